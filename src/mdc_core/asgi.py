"""ASGI middleware: every HTTP request served in a request scope with its id (plain ASGI, so it
works with FastAPI, Starlette, Quart, Litestar or a bare ASGI callable).

    app.add_middleware(MdcASGIMiddleware)                       # FastAPI / Starlette
    app = MdcASGIMiddleware(app, bodies=bodies_dc, failures=failures_dc)   # any ASGI app

Rows collected while a request is served, in its task or in tasks and threads it starts (they
copy the context), get its id as ``$aml_request_id``; the response carries it as
``X-Request-ID`` (replacing one the application set). The id rules are in ``mdc_core.serving``.
Bodies are observed as they pass through ``receive`` and ``send``: the application reads and
streams them exactly as without the middleware. Lifespan messages pass through untouched;
websocket connections get a request scope (no header echo, no capture).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from mdc_core.correlation import RequestScope
from mdc_core.serving import CapturingMiddleware, Exchange, resolve_request_id, serving

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_HEADER = b"x-request-id"


class MdcASGIMiddleware(CapturingMiddleware):
    """Serve each request of ``app`` in an mdc request scope, echo its id as ``X-Request-ID``,
    and optionally capture its JSON bodies (``bodies``) and its failure (``failures``), each a
    ``general`` ``ModelDataCollector`` with its own ``collection_name``. Bodies are cut at
    ``max_body_bytes`` (flagged). Capture never raises into the request."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind != "http" and kind != "websocket":
            await self.app(scope, receive, send)
            return
        header = traceparent = None
        content_type = None
        for name, value in scope.get("headers") or ():
            name = name.lower()
            if name == _HEADER:
                header = value.decode("latin-1")
            elif name == b"traceparent":
                traceparent = value.decode("latin-1")
            elif name == b"content-type":
                content_type = value.decode("latin-1")
        request_id = resolve_request_id(header, traceparent)
        if kind == "websocket":
            with serving(RequestScope(request_id), None):
                await self.app(scope, receive, send)
            return
        exchange = self._capture.exchange(scope.get("method", ""), scope.get("path", ""), content_type)
        echo = request_id.encode("latin-1")
        if exchange is not None:
            receive = _observed_receive(receive, exchange)
        with serving(RequestScope(request_id), exchange):
            try:
                await self.app(scope, receive, _echoing_send(send, echo, exchange))
            except Exception as exc:
                if exchange is not None:
                    exchange.finish(exc)
                raise
            if exchange is not None:
                exchange.finish()


def _observed_receive(receive: Receive, exchange: Exchange) -> Receive:
    async def observed() -> Message:
        message = await receive()
        if message.get("type") == "http.request":
            exchange.request_chunk(message.get("body", b""))
        return message

    return observed


def _echoing_send(send: Send, echo: bytes, exchange: Exchange | None) -> Send:
    async def echoing(message: Message) -> None:
        kind = message.get("type")
        if kind == "http.response.start":
            headers = [(k, v) for k, v in message.get("headers") or () if k.lower() != _HEADER]
            headers.append((_HEADER, echo))
            message = {**message, "headers": headers}
            if exchange is not None:
                content_type = next((v.decode("latin-1") for k, v in headers if k.lower() == b"content-type"), None)
                exchange.response_start(int(message.get("status", 200)), content_type)
        elif kind == "http.response.body" and exchange is not None:
            exchange.response_chunk(message.get("body", b""))
        await send(message)

    return echoing
