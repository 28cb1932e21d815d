"""The body of ``nngraph serve``: load the model, probe how it batches, run uvicorn until SIGTERM or Ctrl-C.

The model is an ONNX file, or a spec / training run folder exported first to a temporary folder (removed
at exit); with ``generate`` a spec or run folder is also exported with a KV cache for ``/v1/generate``
(an ONNX file serves ``/v1/generate`` itself when it is a decoder exported with ``--kv-cache``).

Shutdown: on SIGTERM (or SIGINT) uvicorn stops accepting connections, lets the requests in flight finish
(their batches run; at most ``timeout`` + 5 s), then the batcher stops and the command returns 0. uvicorn
re-raises the signal it caught once it has shut down; a no-op handler installed here receives it, so the
process exits 0 rather than being killed by the default action.
"""

from __future__ import annotations

import os
import signal
from contextlib import ExitStack
from pathlib import Path
from typing import Callable, Sequence

from .app import Limits, Server, make_app
from .generation import Generator
from .model import ServedModel

Echo = Callable[..., None]


def serve_command(model: Path, *, host: str, port: int, target: str, threads: int | None, limits: Limits,
                  generate: bool, overrides: Sequence[str], weights: Path | None, echo: Echo,
                  log_level: str = "warning", spin: bool = False, tokenizer: Path | None = None,
                  instances: int = 1) -> int:
    """Serve ``model`` until a signal; 0 after a clean shutdown, 1 for a model that cannot be served, 2 for a
    bad option."""
    from nngraph.compilers.onnx.export import ExportError
    from nngraph.compilers.onnx.kernels import TARGETS
    from nngraph.compilers.onnx.runner import InferError, check_threads
    from nngraph.compilers.onnx.weights import ExportWeightsError
    from nngraph.compilers.tokenizer import TokenizerError

    if target not in TARGETS:
        echo(f"error: unknown target '{target}' (use {', '.join(TARGETS)})", err=True)
        return 2
    try:
        check_threads(threads)
        return _serve(model, host, port, target, threads, limits, generate, overrides, weights, echo, log_level, spin,
                      tokenizer, instances)
    except (InferError, ExportError, ExportWeightsError, TokenizerError) as exc:
        echo(f"error: {exc}", err=True)
        return 1


def _serve(model: Path, host: str, port: int, target: str, threads: int | None, limits: Limits, generate: bool,
           overrides: Sequence[str], weights: Path | None, echo: Echo, log_level: str, spin: bool,
           tokenizer: Path | None, instances: int) -> int:
    import uvicorn

    from nngraph.compilers.onnx.commands import as_onnx, needs_export

    with ExitStack() as stack:
        path, result = stack.enter_context(as_onnx(model, overrides, weights, target, False))
        if result is not None:
            echo(f"exported {model} for serving", err=True)
        served = ServedModel(path, target, threads or _threads_per_instance(instances), spin, instances)
        served.probe()
        decoder = path if not needs_export(model) and served.meta.get("kv_cache") else None
        if generate and needs_export(model):
            decoder, _ = stack.enter_context(as_onnx(model, overrides, weights, target, True))
        elif decoder is None and generate:
            decoder = path  # an ONNX decoder without a cache: decoded by re-running the sequence
        generator = None
        if decoder is not None:
            from nngraph.compilers.onnx.generate_cli import tokenizer_of

            generator = Generator(decoder, target, threads, tokenizer_of(model, decoder, tokenizer))
        server = Server(served, limits, generator)
        # proxy_headers=False: no access log reads the client's address, so uvicorn's X-Forwarded-For layer
        # would only cost every request a coroutine
        config = uvicorn.Config(make_app(server), host=host, port=port, log_level=log_level, access_log=False,
                                proxy_headers=False, timeout_graceful_shutdown=int(limits.timeout) + 5, lifespan="on",
                                http=_protocol())
        batching = served.describe()["batching"]
        echo(f"serving {model} on http://{host}:{port} (batch dim: {batching['batch_dim'] or 'none'}; "
             f"padded: {', '.join(batching['padded_dims']) or 'none'}; max batch {limits.max_batch}; "
             f"generate: {'yes' if generator else 'no'})", err=True)
        previous = {sig: signal.signal(sig, _after_shutdown) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            uvicorn.Server(config).run()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
    echo("stopped", err=True)
    return 0


def _threads_per_instance(instances: int) -> int | None:
    """ORT's intra-op threads for each of ``instances`` model instances when ``--threads`` is not given: the
    cores shared out (one instance: None, ORT's default of one per core)."""
    if instances == 1:
        return None
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, cores // instances)


def _protocol() -> object:
    """uvicorn's HTTP protocol: httptools with one write per answer (:mod:`.protocol`; measured in
    bench/serve.py's setting, gpt_char at 16 clients, three alternating A/B runs at load 4-14: 4-25% less
    server CPU per answer at batch 1, 0-20% with dynamic batching); "auto" without httptools (then
    uvicorn's h11 protocol)."""
    try:
        from .protocol import OneWriteProtocol
    except ImportError:
        return "auto"
    return OneWriteProtocol


def _after_shutdown(signum: int, frame: object) -> None:
    """Receives the signal uvicorn re-raises after its graceful shutdown (see the module doc)."""
