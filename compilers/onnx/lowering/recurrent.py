"""Ops whose export needs no new forward, declared for ``--explain``, the metadata and ``--kv-cache``.

RNN/LSTM/GRU layers export as the ONNX ``LSTM``/``GRU``/``RNN`` ops, which loop over a dynamic sequence
themselves; ``recur``, ``act`` and ``ode`` are unrolled by the tracer. Recurrent layers and the
attention variants with a running or length-projected state carry state that is not a key/value
cache, so an export with ``--kv-cache`` refuses them.
"""

from __future__ import annotations

from .registry import declare

_ONNX_LOOP = "the ONNX {} op (loops over the dynamic sequence itself)"

declare("lstm", _ONNX_LOOP.format("LSTM"), stateful=True)
declare("gru", _ONNX_LOOP.format("GRU"), stateful=True)
declare("rnn", _ONNX_LOOP.format("RNN"), stateful=True)
declare("recur", "time loop unrolled by the tracer: the time dim of its sequences is fixed in the file")
declare("act", "all max_steps ACT steps unrolled (steps after a position halts weigh 0: the eager early exit's result)")
declare("ode", "the fixed-step solver's steps unrolled (dopri5 is adaptive: not exportable)")
declare("linear_attention", stateful=True)
declare("performer_attention", stateful=True)
declare("linformer_attention", stateful=True)
