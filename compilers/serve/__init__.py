"""``nngraph serve``: an HTTP inference server over ONNX Runtime with dynamic batching (needs the ``serve`` extra).

Modules: :mod:`.model` (the session, request checks, stacking and padding decided by start-up probes),
:mod:`.batching` (the queue and the batching loop), :mod:`.codec` (JSON and ``.npz`` bodies), :mod:`.metrics`
(Prometheus), :mod:`.generation` (the adapter over the ONNX decoding loop for ``/v1/generate``),
:mod:`.app` (the Starlette routes and limits), :mod:`.server` (loading the model, uvicorn, SIGTERM).
"""
