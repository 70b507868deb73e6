"""What the ASGI and WSGI middleware share: request ids, and the capture of bodies and failures.

Request id of a served request (``$aml_request_id`` of its rows, echoed as ``X-Request-ID``):

1. the ``X-Request-ID`` header, verbatim, when it is 1 to 128 printable ASCII characters
   (anything else is ignored: it would be an unsafe response header or an oversized cell);
2. else the trace id of a valid W3C ``traceparent`` header, written UUID-style
   (``4bf92f3577b34da6a3ce929d0e0e4736`` becomes ``4bf92f35-77b3-4da6-a3ce-929d0e0e4736``), so the
   rows stay joinable with the traces: remove the dashes to get the trace id back;
3. else a new uuid4.

Capture (optional, per middleware) collects one row per request into a ``general`` collector
(``BODY_COLUMNS``: the JSON bodies, cut at a byte limit, with the full sizes and a truncation
flag) and one row per failed request into another (``FAILURE_COLUMNS``: status 500 or more, or
an exception escaping the application; the exception's class name only, never its message,
which may quote user data). Both happen inside the request's scope, so they carry its request
id. Capturing is ``collect()`` only: it never does I/O, and any error in it is logged and
swallowed, never raised into the request.
"""

from __future__ import annotations

import codecs
import contextvars
import logging
import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from mdc_core import correlation
from mdc_core.designations import GENERAL
from mdc_core.errors import ConfigurationError
from mdc_core.ratelimit import RateLimitedLog

if TYPE_CHECKING:
    from mdc_core.collector import ModelDataCollector

logger = logging.getLogger("mdc")
_log = RateLimitedLog(logger)


def _capture_failed(what: str) -> None:
    """Log the exception being handled, once a minute per kind: capture never raises."""
    _log.log(logging.ERROR, what, f"mdc: {what}; the request is served without it", exc_info=True)

REQUEST_ID_HEADER = "X-Request-ID"
MAX_REQUEST_ID_LENGTH = 128
DEFAULT_MAX_BODY_BYTES = 64 * 1024
"""Default limit of each captured body, in bytes of UTF-8; longer bodies are cut and flagged."""

BODY_COLUMNS = (
    "method",
    "path",
    "status",
    "request_body",
    "request_bytes",
    "request_truncated",
    "response_body",
    "response_bytes",
    "response_truncated",
)
"""Columns of a body-capture row. ``*_bytes`` is the body's full size; a body that is not JSON is
not captured (empty, with its size)."""

FAILURE_COLUMNS = ("method", "path", "status", "error")
"""Columns of a failure row: ``error`` is the exception's class (``ValueError``,
``json.decoder.JSONDecodeError``), empty when the application answered 5xx itself."""

_REQUEST_ID = re.compile(r"[\x20-\x7e]{1,128}")  # MAX_REQUEST_ID_LENGTH
_TRACEPARENT = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?")
_ZERO_TRACE = "0" * 32
_JSON_TYPES = frozenset({"application/json", "application/x-ndjson", "application/ndjson", "application/jsonl"})
_ZERO_PARENT = "0" * 16


def resolve_request_id(header: str | None, traceparent: str | None = None) -> str:
    """The request id for the ``X-Request-ID`` and ``traceparent`` header values (``None`` when
    absent): see the module's docstring for the rules."""
    if header:
        header = header.strip()
        if _REQUEST_ID.fullmatch(header):
            return header
    if traceparent:
        trace_id = trace_id_of(traceparent)
        if trace_id:
            return trace_id
    return str(uuid.uuid4())


def trace_id_of(traceparent: str) -> str | None:
    """The trace id of a W3C ``traceparent`` value, UUID-style, or ``None`` when it is invalid
    (version ``ff``, an all-zero trace or parent id, extra fields after version ``00``)."""
    match = _TRACEPARENT.fullmatch(traceparent.strip())
    if match is None:
        return None
    version, trace, parent, _flags, rest = match.groups()
    if version == "ff" or (version == "00" and rest) or trace == _ZERO_TRACE or parent == _ZERO_PARENT:
        return None
    return f"{trace[:8]}-{trace[8:12]}-{trace[12:16]}-{trace[16:20]}-{trace[20:]}"


def error_name(exc: BaseException) -> str:
    """``ValueError`` for built-ins, else ``module.QualName``: the class, never the message."""
    cls = type(exc)
    return cls.__qualname__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}"


def is_json(content_type: str | None) -> bool:
    """``application/json``, ``application/<anything>+json`` and JSON lines (``application/x-ndjson``,
    ``application/jsonl``), with any parameters."""
    if not content_type:
        return False
    media = content_type.split(";", 1)[0].strip().lower()
    return media in _JSON_TYPES or (media.startswith("application/") and media.endswith("+json"))


def _check_collector(collector: ModelDataCollector | None, columns: tuple[str, ...], what: str) -> None:
    if collector is None:
        return
    if getattr(collector, "designation", None) != GENERAL:
        raise ConfigurationError(
            f"{what}= must be a ModelDataCollector with designation='general' (and its own collection_name), "
            f"got {collector!r}"
        )
    names = collector.feature_names
    if names is not None and set(names) != set(columns):
        raise ConfigurationError(
            f"{what}= collector has feature_names {list(names)}; leave them out, or give {list(columns)}"
        )


def _on(collector: ModelDataCollector | None) -> bool:
    return collector is not None and collector.enabled


class Capture:
    """A middleware's capture settings: where body and failure rows go, and the body limit."""

    __slots__ = ("bodies", "failures", "max_body_bytes")

    def __init__(
        self,
        bodies: ModelDataCollector | None,
        failures: ModelDataCollector | None,
        max_body_bytes: int,
    ) -> None:
        _check_collector(bodies, BODY_COLUMNS, "bodies")
        _check_collector(failures, FAILURE_COLUMNS, "failures")
        if isinstance(max_body_bytes, bool) or not isinstance(max_body_bytes, int) or max_body_bytes < 0:
            raise ConfigurationError(f"max_body_bytes must be a whole number of bytes >= 0, got {max_body_bytes!r}")
        self.bodies = bodies
        self.failures = failures
        self.max_body_bytes = max_body_bytes

    def exchange(self, method: str, path: str, content_type: str | None) -> Exchange | None:
        """The capture state of one request, or ``None`` when nothing is captured."""
        if not _on(self.bodies) and not _on(self.failures):
            return None  # nothing to capture: no per-request cost beyond the scope
        return Exchange(self, method, path, content_type)


class _Body:
    """The first ``limit`` bytes of a body (only kept when it is JSON) and its full size."""

    __slots__ = ("keep", "limit", "chunks", "kept", "size")

    def __init__(self, keep: bool, limit: int) -> None:
        self.keep = keep
        self.limit = limit
        self.chunks: list[bytes] = []
        self.kept = 0
        self.size = 0

    def add(self, data: bytes) -> None:
        self.size += len(data)
        room = self.limit - self.kept
        if self.keep and room > 0 and data:
            piece = bytes(data[:room])
            self.chunks.append(piece)
            self.kept += len(piece)

    def text(self) -> str:
        """The kept bytes as text; a character cut at the limit is left out, not mangled."""
        if not self.keep:
            return ""
        data = b"".join(self.chunks)
        return codecs.getincrementaldecoder("utf-8")("replace").decode(data, final=self.size == self.kept)

    @property
    def truncated(self) -> bool:
        return self.keep and self.size > self.kept


class Exchange:
    """One request's capture: fed by the middleware as the bodies pass, finished exactly once."""

    __slots__ = ("capture", "method", "path", "status", "error", "request", "response", "done")

    def __init__(self, capture: Capture, method: str, path: str, content_type: str | None) -> None:
        self.capture = capture
        self.method = method
        self.path = path
        self.status = 0
        self.error: BaseException | None = None
        keep = _on(capture.bodies)
        self.request = _Body(keep and is_json(content_type), capture.max_body_bytes)
        self.response = _Body(False, capture.max_body_bytes)
        self.done = False

    def request_chunk(self, data: bytes) -> None:
        try:
            self.request.add(data)
        except Exception:  # capture never breaks the request
            _capture_failed("capturing a request body failed")

    def response_start(self, status: int, content_type: str | None) -> None:
        self.status = status
        self.response.keep = _on(self.capture.bodies) and is_json(content_type)

    def response_chunk(self, data: bytes) -> None:
        try:
            self.response.add(data)
        except Exception:
            _capture_failed("capturing a response body failed")

    def finish(self, error: BaseException | None = None) -> None:
        """Collect the body row and, for a failure, the failure row (once; never raises). An
        exception escaping before the response started is answered 500 by the server."""
        if self.done:
            return
        self.done = True
        error = error or self.error
        status = self.status or (500 if error is not None else 0)
        capture = self.capture
        try:
            if capture.bodies is not None:
                capture.bodies.collect(
                    {
                        "method": self.method,
                        "path": self.path,
                        "status": status,
                        "request_body": self.request.text(),
                        "request_bytes": self.request.size,
                        "request_truncated": self.request.truncated,
                        "response_body": self.response.text(),
                        "response_bytes": self.response.size,
                        "response_truncated": self.response.truncated,
                    }
                )
        except Exception:
            _capture_failed("collecting the bodies of a request failed")
        try:
            if capture.failures is not None and (error is not None or status >= 500):
                capture.failures.collect(
                    {
                        "method": self.method,
                        "path": self.path,
                        "status": status,
                        "error": error_name(error) if error is not None else "",
                    }
                )
        except Exception:
            _capture_failed("collecting a failed request failed")


_exchange: contextvars.ContextVar[Exchange | None] = contextvars.ContextVar("mdc_exchange", default=None)


def record_exception(exc: BaseException) -> None:
    """Tell the mdc middleware serving this request which exception made it fail, for
    frameworks that turn exceptions into 500 responses themselves (Flask: connect it to
    ``flask.got_request_exception``). Only the class is recorded. Outside a request, or without
    failure capture, it does nothing."""
    exchange = _exchange.get()
    if exchange is not None and exchange.error is None:
        exchange.error = exc


@contextmanager
def serving(scope: correlation.RequestScope, exchange: Exchange | None) -> Iterator[None]:
    """Make ``scope`` (and ``exchange``) current, as ``request_context()`` does, for one stretch of
    a request: WSGI runs the application and then each step of its body iterator, and the same
    scope must be current in each, so inputs collected in one pair with predictions in another."""
    token = correlation._scope.set(scope)
    exchange_token = _exchange.set(exchange)
    try:
        yield
    finally:
        _exchange.reset(exchange_token)
        correlation._scope.reset(token)


class CapturingMiddleware:
    """What both middlewares are built with: the application they wrap and the capture settings."""

    def __init__(
        self,
        app: Any,
        *,
        bodies: ModelDataCollector | None = None,
        failures: ModelDataCollector | None = None,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    ) -> None:
        self.app = app
        self._capture = Capture(bodies, failures, max_body_bytes)
