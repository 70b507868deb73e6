"""WSGI middleware: every request served in a request scope with its id (plain WSGI, so it works
with Flask, Django, Falcon, Bottle or a bare WSGI callable).

    app.wsgi_app = MdcWSGIMiddleware(app.wsgi_app)                               # Flask
    app = MdcWSGIMiddleware(app, bodies=bodies_dc, failures=failures_dc)         # any WSGI app

Rows collected while the application runs, and while the server iterates the body it returned
(a streaming generator), get the request's id as ``$aml_request_id``; the response carries it as
``X-Request-ID`` (replacing one the application set). The id rules are in ``mdc_core.serving``.
The request body is observed through a wrapper of ``wsgi.input`` (``read``, ``read1``,
``readinto``, ``readline``, ``readlines``, iteration: each byte the application reads, once), the
response body through a wrapper of the returned iterable (``close()`` is passed on), so the
application reads and streams exactly as without the middleware.

Flask answers an unhandled exception with a 500 itself (unless it propagates exceptions, as in
testing): to record the exception's class, connect ``mdc_core.record_exception`` to
``flask.got_request_exception``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

from mdc_core.correlation import RequestScope
from mdc_core.serving import CapturingMiddleware, Exchange, resolve_request_id, serving

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class MdcWSGIMiddleware(CapturingMiddleware):
    """Serve each request of ``app`` in an mdc request scope, echo its id as ``X-Request-ID``,
    and optionally capture its JSON bodies (``bodies``) and its failure (``failures``), each a
    ``general`` ``ModelDataCollector`` with its own ``collection_name``. Bodies are cut at
    ``max_body_bytes`` (flagged). Capture never raises into the request."""

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        request_id = resolve_request_id(environ.get("HTTP_X_REQUEST_ID"), environ.get("HTTP_TRACEPARENT"))
        path = (environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", "")).encode("latin-1", "replace")
        exchange = self._capture.exchange(
            environ.get("REQUEST_METHOD", ""), path.decode("utf-8", "replace"), environ.get("CONTENT_TYPE")
        )
        if exchange is not None and environ.get("wsgi.input") is not None:
            environ["wsgi.input"] = _ObservedInput(environ["wsgi.input"], exchange)

        def echoing_start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            headers = [(k, v) for k, v in headers if k.lower() != "x-request-id"]
            headers.append(("X-Request-ID", request_id))
            write = start_response(status, headers, exc_info) if exc_info else start_response(status, headers)
            if exchange is None:
                return write
            content_type = next((v for k, v in headers if k.lower() == "content-type"), None)
            exchange.response_start(_status_code(status), content_type)

            def observed_write(data: bytes) -> Any:  # the legacy write() callable
                exchange.response_chunk(data)
                return write(data)

            return observed_write

        scope = RequestScope(request_id)
        with serving(scope, exchange):
            try:
                body = self.app(environ, echoing_start_response)
            except Exception as exc:
                if exchange is not None:
                    exchange.finish(exc)
                raise
        return _ObservedBody(body, scope, exchange)


def _status_code(status: str) -> int:
    try:
        return int(status.split(None, 1)[0])
    except (ValueError, IndexError):
        return 0


class _ObservedBody:
    """The application's body iterable, iterated and closed inside the request's scope."""

    def __init__(self, body: Iterable[bytes], scope: RequestScope, exchange: Exchange | None) -> None:
        self._body = body
        self._iterator: Iterator[bytes] | None = None
        self._scope = scope
        self._exchange = exchange

    def __iter__(self) -> Iterator[bytes]:
        return self

    def __next__(self) -> bytes:
        exchange = self._exchange
        with serving(self._scope, exchange):
            try:
                if self._iterator is None:
                    self._iterator = iter(self._body)
                chunk = next(self._iterator)
            except StopIteration:
                if exchange is not None:
                    exchange.finish()
                raise
            except Exception as exc:
                if exchange is not None:
                    exchange.finish(exc)
                raise
        if exchange is not None:
            exchange.response_chunk(chunk)
        return chunk

    def close(self) -> None:
        with serving(self._scope, self._exchange):
            try:
                close = getattr(self._body, "close", None)
                if close is not None:
                    close()
            except Exception as exc:
                if self._exchange is not None:
                    self._exchange.finish(exc)
                raise
            if self._exchange is not None:
                self._exchange.finish()


class _ObservedInput:
    """``wsgi.input`` that shows what the application reads to the capture, nothing more."""

    def __init__(self, stream: Any, exchange: Exchange) -> None:
        self._stream = stream
        self._exchange = exchange

    def read(self, *args: Any) -> bytes:
        data = self._stream.read(*args)
        self._exchange.request_chunk(data)
        return data

    def read1(self, *args: Any) -> bytes:
        reader = getattr(self._stream, "read1", self._stream.read)
        data = reader(*args)
        self._exchange.request_chunk(data)
        return data

    def readinto(self, buffer: Any) -> int | None:
        """Werkzeug (Flask) reads through ``readinto`` when the stream has it."""
        if not hasattr(self._stream, "readinto"):
            data = self._stream.read(len(buffer))
            buffer[: len(data)] = data
            self._exchange.request_chunk(data)
            return len(data)
        count = self._stream.readinto(buffer)
        if count:
            self._exchange.request_chunk(bytes(memoryview(buffer)[:count]))
        return count

    def readline(self, *args: Any) -> bytes:
        data = self._stream.readline(*args)
        self._exchange.request_chunk(data)
        return data

    def readlines(self, *args: Any) -> list[bytes]:
        lines = self._stream.readlines(*args)
        for line in lines:
            self._exchange.request_chunk(line)
        return lines

    def __iter__(self) -> Iterator[bytes]:
        for line in self._stream:
            self._exchange.request_chunk(line)
            yield line

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)
