"""The HTTP routes of ``nngraph serve`` and the limits every request goes through (the POST routes are plain
ASGI handlers, the GET routes and the lifespan Starlette's: :func:`make_app`).

``POST /v1/infer``    tensors in (JSON or .npz, :mod:`.codec`), checked against the model's inputs (422 naming the
                      input and what the model takes), queued for a dynamic batch (:mod:`.batching`), outputs out
``POST /v1/generate`` ``{"ids": [[..]] | "text": ".." | [".."], max_new_tokens, do_sample, temperature, top_k, top_p,
                      repetition_penalty, eos, seed, stream}`` (:mod:`.generation`); with ``"stream": true`` the
                      new tokens (and text) come as server-sent events as the decoder chooses them
``GET /health``       ``{"status": "ok"}`` once the model is loaded
``GET /metadata``     the model (:meth:`.model.ServedModel.describe`) and the server's limits
``GET /metrics``      Prometheus text format (:mod:`.metrics`)

Limits: at most ``max_concurrency`` requests are handled at once and ``queue_size`` are admitted and not yet
answered (beyond either: 503 with ``Retry-After``); a body over ``max_body`` bytes is refused with 413 (from Content-Length before
reading, else as it streams in); a body that takes over ``read_timeout`` to arrive gets 408 (slow clients hold
no slot for long); a request not answered within ``timeout`` gets 504 and is dropped from its batch. Nothing
in a request names a file: bodies are decoded in memory.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import asdict, dataclass
from typing import Any, AsyncIterator, Awaitable, Callable

import numpy as np
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from nngraph.compilers.onnx.runner import InferError

from .batching import Batcher, QueueFull
from .codec import BodyError, decode_inputs, encode_outputs, parse_json
from .generation import Generator, Piece, options_from
from .metrics import Metrics
from .model import ServedModel

LOG = logging.getLogger("nngraph.serve")
Headers = dict[str, str]
Handler = Callable[[bytes, Headers], Awaitable[Response]]
#: outputs of more values than this are encoded on a worker thread (JSON of 10^6 floats takes ~1 s)
OFF_LOOP = 1 << 16


@dataclass(frozen=True)
class Limits:
    """The server's batching and limits (``nngraph serve``'s options; seconds and bytes)."""

    max_batch: int = 16
    window: float = 0.0
    max_wait: float = 0.010
    queue_size: int = 256
    max_concurrency: int = 128
    max_body: int = 16 << 20
    timeout: float = 30.0
    read_timeout: float = 10.0
    max_new_tokens: int = 256
    retry_after: int = 1


class Refused(Exception):
    """An answer other than 200: status, message, the metrics' reason, extra headers."""

    def __init__(self, status: int, message: str, reason: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.reason, self.headers = status, reason, headers or {}


class Server:
    """The state behind the routes: model, batcher, generator, limits, metrics."""

    def __init__(self, model: ServedModel, limits: Limits, generator: Generator | None = None) -> None:
        self.model, self.limits, self.generator = model, limits, generator
        self.in_flight = 0
        self.metrics = Metrics(limits.max_batch, lambda: self.batcher.depth(), lambda: self.in_flight)
        self.batcher = Batcher(model, limits.max_batch, limits.window, limits.max_wait, limits.queue_size, self.metrics,
                               instances=len(model.sessions))

    async def guarded(self, scope: Scope, receive: Receive, endpoint: str, handle: Handler) -> Response:
        """Run ``handle(body, headers)`` within the limits (module doc); errors become JSON answers; metrics
        recorded."""
        start, reason = time.perf_counter(), None
        try:
            if self.in_flight >= self.limits.max_concurrency:
                raise Refused(503, f"{self.in_flight} requests are being handled (the limit); retry later",
                              "overloaded", self._retry())
            self.in_flight += 1
            try:
                headers = _headers(scope)
                response = await handle(await self._body(headers, receive), headers)
            finally:
                self.in_flight -= 1
        except Exception as exc:  # noqa: BLE001 - every error is an answer (_refused), never a traceback
            refused = self._refused(exc)
            response, reason = JSONResponse({"error": str(refused)}, refused.status, headers=refused.headers), \
                refused.reason
        self.metrics.answered(endpoint, response.status_code, time.perf_counter() - start, reason)
        return response

    def _refused(self, exc: Exception) -> Refused:
        """The answer an error becomes: bodies that cannot be read 400 (or 422), inputs the model does not take
        422, a full queue 503, no answer in time 504; anything else 500 (its traceback in the server's log)."""
        if isinstance(exc, Refused):
            return exc
        if isinstance(exc, BodyError):
            return Refused(exc.status, str(exc), "bad_body")
        if isinstance(exc, InferError):
            return Refused(422, str(exc), "bad_input")
        if isinstance(exc, QueueFull):
            return Refused(503, f"{exc}; retry later", "queue_full", self._retry())
        if isinstance(exc, asyncio.TimeoutError):
            return Refused(504, f"no answer within {self.limits.timeout:g} s (the request was dropped)", "timeout")
        LOG.error("internal error answering a request", exc_info=exc)
        return Refused(500, f"internal error: {type(exc).__name__}: {exc}", "internal")

    def _retry(self) -> dict[str, str]:
        return {"Retry-After": str(self.limits.retry_after)}

    async def _body(self, headers: Headers, receive: Receive) -> bytes:
        """The body, at most ``max_body`` bytes (413), within ``read_timeout`` (408)."""
        cap = self.limits.max_body
        declared = headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > cap:
            raise Refused(413, f"the body is {int(declared):,} bytes; the limit is {cap:,}", "too_large")

        async def read() -> bytes:
            chunks, size = [], 0
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    raise Refused(499, "the client disconnected before its body arrived", "disconnected")
                chunk = message.get("body", b"")
                size += len(chunk)
                if size > cap:
                    raise Refused(413, f"the body exceeds the limit of {cap:,} bytes", "too_large")
                if not message.get("more_body", False):
                    return b"".join([*chunks, chunk]) if chunks else chunk
                chunks.append(chunk)

        try:
            async with asyncio.timeout(self.limits.read_timeout):  # (wait_for would start a task per request)
                return await read()
        except TimeoutError:
            raise Refused(408, f"the body did not arrive within {self.limits.read_timeout:g} s", "slow_client") from None

    # --- routes -----------------------------------------------------------------------------------------
    async def infer(self, scope: Scope, receive: Receive) -> Response:
        async def handle(body: bytes, headers: Headers) -> Response:
            feeds = decode_inputs(body, headers.get("content-type", ""), self.model.dtype_of,
                                  self.limits.max_body * 8)
            answer = await self.batcher.submit(self.model.check(feeds), within=self.limits.timeout)
            outputs, accept = answer.outputs, headers.get("accept", "")
            if sum(v.size for v in outputs.values()) > OFF_LOOP:  # a long encoding must not stall the other requests
                content, media = await asyncio.to_thread(encode_outputs, outputs, accept)
            else:
                content, media = encode_outputs(outputs, accept)
            return Response(content, media_type=media, headers={"Server-Timing": answer.server_timing()})

        return await self.guarded(scope, receive, "infer", handle)

    async def generate(self, scope: Scope, receive: Receive) -> Response:
        async def handle(body: bytes, headers: Headers) -> Response:
            if self.generator is None:
                raise Refused(404, "this server has no decoder for /v1/generate (serve a decoder exported with "
                                   "--kv-cache, or a decoder spec with --generate)", "no_decoder")
            doc = parse_json(body)
            if not isinstance(doc, dict):
                raise BodyError('the body must be a JSON object: {"ids": [[...]], "max_new_tokens": N, ...}', 422)
            rows = self._prompt(doc)
            options = options_from(doc, self.limits.max_new_tokens)
            ids, steps = self.generator.padded(rows), self.generator.stream(rows, options)
            # the first step runs before the answer starts, so a prompt the model refuses gets a 422
            first = await asyncio.wait_for(asyncio.to_thread(next, steps, None), self.limits.timeout)
            if doc.get("stream"):
                return StreamingResponse(self._events(ids, first, steps), media_type="text/event-stream",
                                         headers={"Cache-Control": "no-cache"})
            rest = await asyncio.wait_for(asyncio.to_thread(list, steps), self.limits.timeout)
            return JSONResponse(self._final(ids, [] if first is None else [first, *rest]))

        return await self.guarded(scope, receive, "generate", handle)

    def _prompt(self, doc: dict[str, Any]) -> list[list[int]]:
        """Token id rows from ``ids`` (one row, or a list of rows, lengths may differ) or ``text`` (one or a list)."""
        if "text" in doc:
            texts = [doc["text"]] if isinstance(doc["text"], str) else doc["text"]
            if not isinstance(texts, list) or not texts or not all(isinstance(x, str) for x in texts):
                raise BodyError("'text' must be a string or a list of strings", 422)
            return self.generator.encode(texts)
        ids = doc.get("ids")
        rows = [ids] if isinstance(ids, list) and ids and not isinstance(ids[0], list) else ids
        if not isinstance(rows, list) or not rows or not all(
                isinstance(r, list) and r and all(isinstance(x, int) and not isinstance(x, bool) for x in r)
                for r in rows):
            raise BodyError('"ids" must be token ids: [1, 2, 3], or rows [[1, 2], [3, 4, 5]]', 422)
        return rows

    def _final(self, ids: np.ndarray, pieces: list[Piece]) -> dict[str, Any]:
        """The whole answer: every row's ids (prompt, then each step's token), its text with a tokenizer."""
        seq = np.concatenate([ids, np.stack([p.ids for p in pieces], 1)], 1) if pieces else ids
        out: dict[str, Any] = {"tokens": seq.tolist(), "prompt_length": int(ids.shape[1])}
        text = self.generator.decode(seq)
        return out if text is None else {**out, "text": text}

    async def _events(self, ids: np.ndarray, first: Piece | None, steps: Any) -> AsyncIterator[bytes]:
        """Server-sent events: ``token`` per step (the new id of every row, whether the row generated it, and
        the text it added), then ``done`` with the whole answer (:meth:`_final`)."""
        self.in_flight += 1
        pieces: list[Piece] = []
        piece = first
        try:
            ends = time.perf_counter() + self.limits.timeout
            while piece is not None:
                pieces.append(piece)
                data = {"step": len(pieces) - 1, "ids": piece.ids.tolist(), "active": piece.active.tolist()}
                yield _event("token", data if piece.text is None else {**data, "text": piece.text})
                left = ends - time.perf_counter()
                piece = await asyncio.wait_for(asyncio.to_thread(next, steps, None), max(left, 0.001))
            yield _event("done", self._final(ids, pieces))
        except (InferError, asyncio.TimeoutError) as exc:
            yield _event("error", {"error": str(exc) or f"no answer within {self.limits.timeout:g} s"})
        finally:
            self.in_flight -= 1

    async def health(self, request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def metadata(self, request: Request) -> Response:
        return JSONResponse({**self.model.describe(), "generate": self.generator is not None,
                             "limits": asdict(self.limits)})

    async def metrics_route(self, request: Request) -> Response:
        body, media = self.metrics.exposition()
        return Response(body, media_type=media)


def _event(name: str, data: dict[str, Any]) -> bytes:
    return f"event: {name}\ndata: {json.dumps(data)}\n\n".encode()


def _headers(scope: Scope) -> Headers:
    """The request's headers by lower-case name (ASGI gives them lower case, as bytes)."""
    return {name.decode("latin-1"): value.decode("latin-1") for name, value in scope["headers"]}


def make_app(server: Server) -> ASGIApp:
    """The ASGI app: ``POST /v1/infer`` and ``POST /v1/generate`` go straight to their handlers (every
    request of a busy server takes this path, and each layer of Starlette's router and middleware costs the
    one event loop time: with the answer timeout's timer, 13-25% less event-loop CPU per answer for gpt_char
    at 16 clients); another method on those paths gets a JSON 405; everything else -- the GET routes, the
    lifespan that starts and stops the batcher -- goes to Starlette."""
    from contextlib import asynccontextmanager

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        server.batcher.start()
        try:
            yield
        finally:
            await server.batcher.stop()

    posts = {"/v1/infer": server.infer, "/v1/generate": server.generate}
    routed = Starlette(routes=[Route("/health", server.health), Route("/metadata", server.metadata),
                               Route("/metrics", server.metrics_route)], lifespan=lifespan)

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        handle = posts.get(scope["path"]) if scope["type"] == "http" else None
        if handle is None:
            await routed(scope, receive, send)
        elif scope["method"] != "POST":
            await JSONResponse({"error": f"{scope['path']} takes POST"}, 405, headers={"Allow": "POST"})(
                scope, receive, send)
        else:
            await (await handle(scope, receive))(scope, receive, send)

    return app
