"""An HTTP/1.1-aware loopback fault proxy for the fault-injection suite.

    with HttpFaultProxy("127.0.0.1", server_port) as proxy:
        proxy.add(Rule(action=RESPOND, status=503, code="SlowDown", method="PUT", times=3))
        ... point the client at 127.0.0.1:proxy.port ...
    assert proxy.fault_count > 0          # the fault really happened

Each client connection is served by a thread that reads one request at a time (request line,
headers, body by ``Content-Length`` or chunked encoding), asks the plan what to do with it, and
then either forwards it to the real server (on a connection of its own, kept alive) and relays
the answer, or injects a fault:

* ``REFUSE``     close the client's connection (with a RST) before forwarding anything;
* ``BLACKHOLE``  keep the connection open and never answer, until ``release()`` or ``stop()``
  (then the connection is closed, the request never forwarded);
* ``LATENCY``    wait ``delay`` seconds, then forward as usual;
* ``RESPOND``    answer a synthetic error (500/503/429/403 ...) with an S3- or Azure-shaped XML
  body, without forwarding;
* ``DROP_RESPONSE`` forward the request, read the server's full answer, then close the client's
  connection without sending it: the write landed, the client never hears.

The plan is a list of :class:`Rule` (first match with shots left wins) and/or a callable
``plan(request) -> Rule | None``. Every injected fault is counted (``faults`` by kind,
``fault_count`` in all); ``log`` records each request with what happened and the server's status.
Only loopback addresses are used. ``stop()`` (or leaving the ``with``) closes the listener and
every connection and joins the threads.
"""

from __future__ import annotations

import contextlib
import dataclasses
import re
import socket
import struct
import threading
import time
from collections import Counter
from collections.abc import Callable

REFUSE = "refuse"
BLACKHOLE = "blackhole"
LATENCY = "latency"
RESPOND = "respond"
DROP_RESPONSE = "drop_response"
ACTIONS = (REFUSE, BLACKHOLE, LATENCY, RESPOND, DROP_RESPONSE)

_REASONS = {
    400: "Bad Request",
    403: "Forbidden",
    404: "Not Found",
    409: "Conflict",
    412: "Precondition Failed",
    429: "Too Many Requests",
    500: "Internal Server Error",
    503: "Service Unavailable",
}
_S3_MESSAGES = {
    "SlowDown": "Please reduce your request rate.",
    "ExpiredToken": "The provided token has expired.",
    "InternalError": "We encountered an internal error. Please try again.",
    "ServiceUnavailable": "Service is unable to handle request.",
    "AccessDenied": "Access Denied",
}
_AZURE_MESSAGES = {
    "ServerBusy": "The server is currently unable to receive requests. Please retry your request.",
    "InternalError": "The server encountered an internal error. Please retry the request.",
    "AuthenticationFailed": "Server failed to authenticate the request.",
    "OperationTimedOut": "The operation could not be completed within the permitted time.",
}


@dataclasses.dataclass(frozen=True)
class Request:
    method: str
    path: str
    headers: dict[str, str]  # lower-case names
    content_length: int
    connection: int  # serial number of the client connection


@dataclasses.dataclass
class Rule:
    """What to do with matching requests, ``times`` times (None: for as long as it is in the plan)."""

    action: str
    method: str | None = None
    path: str | None = None  # a regular expression searched in the request target
    match: Callable[[Request], bool] | None = None
    times: int | None = None
    status: int = 503
    code: str = "SlowDown"
    flavour: str = "s3"  # "s3" or "azure": the shape of a synthetic error
    delay: float = 0.0
    fired: int = 0

    def __post_init__(self) -> None:
        if self.action not in ACTIONS:
            raise ValueError(f"unknown action {self.action!r}")

    def matches(self, req: Request) -> bool:
        if self.times is not None and self.fired >= self.times:
            return False
        if self.method is not None and req.method != self.method.upper():
            return False
        if self.path is not None and not re.search(self.path, req.path):
            return False
        return self.match is None or bool(self.match(req))


def error_response(status: int, code: str, flavour: str = "s3", path: str = "/") -> bytes:
    """A complete HTTP/1.1 answer shaped like S3's or Azure Blob's error, closing the connection."""
    reason = _REASONS.get(status, "Error")
    if flavour == "azure":
        message = _AZURE_MESSAGES.get(code, "Injected fault.")
        body = (
            f'\ufeff<?xml version="1.0" encoding="utf-8"?><Error><Code>{code}</Code>'
            f"<Message>{message}\nRequestId:00000000-0000-0000-0000-000000000000\n"
            f"Time:2026-01-01T00:00:00.0000000Z</Message></Error>"
        ).encode()
        extra = f"x-ms-error-code: {code}\r\nx-ms-request-id: 00000000-0000-0000-0000-000000000000\r\n"
        ctype = "application/xml"
    else:
        message = _S3_MESSAGES.get(code, "Injected fault.")
        body = (
            f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code><Message>{message}</Message>'
            f"<Resource>{path}</Resource><RequestId>0000000000000000</RequestId></Error>"
        ).encode()
        extra = "x-amz-request-id: 0000000000000000\r\n"
        ctype = "application/xml"
    if status in (429, 503):
        extra += "Retry-After: 0\r\n"
    head = (
        f"HTTP/1.1 {status} {reason}\r\nContent-Type: {ctype}\r\nContent-Length: {len(body)}\r\n"
        f"{extra}Connection: close\r\n\r\n"
    )
    return head.encode("latin-1") + body


class _Closed(Exception):
    """The peer closed its side (or the proxy is stopping)."""


class _Reader:
    """Buffered reads of HTTP messages from a socket."""

    def __init__(self, sock: socket.socket):
        self.sock = sock
        self.buf = b""

    def _fill(self) -> None:
        data = self.sock.recv(65536)
        if not data:
            raise _Closed()
        self.buf += data

    def until(self, marker: bytes, limit: int = 1 << 20) -> bytes:
        while True:
            i = self.buf.find(marker)
            if i >= 0:
                out, self.buf = self.buf[: i + len(marker)], self.buf[i + len(marker) :]
                return out
            if len(self.buf) > limit:
                raise _Closed()
            self._fill()

    def exactly(self, n: int) -> bytes:
        while len(self.buf) < n:
            self._fill()
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def rest(self) -> bytes:
        out = self.buf
        self.buf = b""
        with contextlib.suppress(_Closed, OSError):
            while True:
                self._fill()
                out += self.buf
                self.buf = b""
        return out

    def head(self) -> tuple[str, list[tuple[str, str]], bytes]:
        raw = self.until(b"\r\n\r\n")
        lines = raw[:-4].decode("latin-1").split("\r\n")
        headers = []
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers.append((name.strip(), value.strip()))
        return lines[0], headers, raw

    def body(self, headers: dict[str, str], *, until_close: bool = False) -> bytes:
        """The message body in its wire form (chunked bodies are relayed as they came)."""
        if "chunked" in headers.get("transfer-encoding", "").lower():
            out = b""
            while True:
                size_line = self.until(b"\r\n")
                out += size_line
                size = int(size_line.split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while True:  # trailers, then an empty line
                        trailer = self.until(b"\r\n")
                        out += trailer
                        if trailer == b"\r\n":
                            return out
                out += self.exactly(size + 2)
        if "content-length" in headers:
            return self.exactly(int(headers["content-length"]))
        return self.rest() if until_close else b""


def _reset(sock: socket.socket | None) -> None:
    if sock is None:
        return
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with contextlib.suppress(OSError):
        sock.close()


class HttpFaultProxy:
    def __init__(
        self,
        host: str,
        port: int,
        *,
        rules: list[Rule] | None = None,
        plan: Callable[[Request], Rule | None] | None = None,
        upstream_timeout: float = 60.0,
    ):
        if host not in ("127.0.0.1", "localhost", "::1"):
            raise ValueError("the fault proxy forwards to loopback servers only")
        self.target = ("127.0.0.1" if host == "localhost" else host, port)
        self.rules: list[Rule] = list(rules or [])
        self.plan = plan
        self.upstream_timeout = upstream_timeout
        self.faults: Counter[str] = Counter()
        self.log: list[tuple[str, str, str, int | None]] = []  # (method, path, what, server status)
        self.connections = 0
        self._lock = threading.Lock()
        self._release = threading.Event()
        self._stopping = threading.Event()
        self._socks: set[socket.socket] = set()
        self._threads: list[threading.Thread] = []
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(128)
        self.port = self._listener.getsockname()[1]
        self._acceptor = threading.Thread(target=self._accept, name="httpfaults-accept", daemon=True)

    # -- control -------------------------------------------------------------------------------

    @property
    def fault_count(self) -> int:
        with self._lock:
            return sum(self.faults.values())

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def add(self, *rules: Rule) -> None:
        with self._lock:
            self.rules.extend(rules)

    def clear(self) -> None:
        """Remove every rule and the plan; requests are forwarded from now on."""
        with self._lock:
            self.rules.clear()
            self.plan = None

    def release(self) -> None:
        """End every blackhole: held connections are closed, unanswered; new ones are held again
        only if a BLACKHOLE rule is still in the plan."""
        self._release.set()

    def statuses(self, method: str | None = None) -> list[int | None]:
        with self._lock:
            return [s for m, _, what, s in self.log if (method is None or m == method) and s is not None]

    def start(self) -> HttpFaultProxy:
        self._acceptor.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        self._release.set()
        with contextlib.suppress(OSError):
            self._listener.close()
        with self._lock:
            socks, self._socks = list(self._socks), set()
        for s in socks:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                s.close()
        self._acceptor.join(timeout=5)
        for t in list(self._threads):
            t.join(timeout=5)

    def __enter__(self) -> HttpFaultProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- serving -------------------------------------------------------------------------------

    def _track(self, sock: socket.socket) -> None:
        with self._lock:
            if self._stopping.is_set():
                raise _Closed()
            self._socks.add(sock)

    def _forget(self, sock: socket.socket | None) -> None:
        if sock is None:
            return
        with self._lock:
            self._socks.discard(sock)

    def _accept(self) -> None:
        while not self._stopping.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            with self._lock:
                self.connections += 1
                serial = self.connections
                self._threads = [t for t in self._threads if t.is_alive()]
            t = threading.Thread(target=self._serve, args=(client, serial), name=f"httpfaults-{serial}", daemon=True)
            self._threads.append(t)
            t.start()

    def _decide(self, req: Request) -> Rule | None:
        with self._lock:
            for rule in self.rules:
                if rule.matches(req):
                    rule.fired += 1
                    return rule
            plan = self.plan
        return plan(req) if plan is not None else None

    def _note(self, req: Request, what: str, status: int | None, fault: bool) -> None:
        with self._lock:
            if fault:
                self.faults[what] += 1
            self.log.append((req.method, req.path, what, status))

    def _serve(self, client: socket.socket, serial: int) -> None:
        upstream: socket.socket | None = None
        up_reader: _Reader | None = None
        try:
            self._track(client)
            reader = _Reader(client)
            while not self._stopping.is_set():
                line, header_list, raw_head = reader.head()
                headers = {k.lower(): v for k, v in header_list}
                method, _, rest = line.partition(" ")
                path = rest.rpartition(" ")[0] or rest
                if headers.get("expect", "").lower() == "100-continue":
                    client.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
                    raw_head = b"".join(
                        f"{k}: {v}\r\n".encode("latin-1") for k, v in header_list if k.lower() != "expect"
                    )
                    raw_head = line.encode("latin-1") + b"\r\n" + raw_head + b"\r\n"
                body = reader.body(headers)
                req = Request(method.upper(), path, headers, int(headers.get("content-length", 0) or 0), serial)
                rule = self._decide(req)
                action = rule.action if rule else None
                if action == REFUSE:
                    self._note(req, REFUSE, None, True)
                    return
                if action == BLACKHOLE:
                    self._note(req, BLACKHOLE, None, True)
                    while not (self._release.wait(0.05) or self._stopping.is_set()):
                        pass
                    return
                if action == RESPOND:
                    assert rule is not None
                    self._note(req, f"{RESPOND}:{rule.status}:{rule.code}", rule.status, True)
                    client.sendall(error_response(rule.status, rule.code, rule.flavour, path))
                    return
                if action == LATENCY:
                    assert rule is not None
                    self._note(req, LATENCY, None, True)
                    if self._stopping.wait(rule.delay):
                        return
                # forward
                if upstream is None:
                    upstream = socket.create_connection(self.target, timeout=self.upstream_timeout)
                    self._track(upstream)
                    up_reader = _Reader(upstream)
                assert up_reader is not None
                upstream.sendall(raw_head + body)
                status_line, resp_list, resp_head = up_reader.head()
                status = int(status_line.split(" ")[1])
                while 100 <= status < 200:  # interim answers: relay, read the final one
                    if action != DROP_RESPONSE:
                        client.sendall(resp_head)
                    status_line, resp_list, resp_head = up_reader.head()
                    status = int(status_line.split(" ")[1])
                resp_headers = {k.lower(): v for k, v in resp_list}
                no_body = req.method == "HEAD" or status in (204, 304)
                resp_body = b"" if no_body else up_reader.body(resp_headers, until_close=True)
                if action == DROP_RESPONSE:
                    self._note(req, DROP_RESPONSE, status, True)
                    return
                self._note(req, "forwarded", status, False)
                client.sendall(resp_head + resp_body)
                closing = "close" in resp_headers.get("connection", "").lower() or (
                    not no_body
                    and "content-length" not in resp_headers
                    and "chunked" not in resp_headers.get("transfer-encoding", "").lower()
                )
                if closing or "close" in headers.get("connection", "").lower():
                    return
        except (_Closed, OSError, ValueError, IndexError):
            pass
        finally:
            self._forget(client)
            self._forget(upstream)
            _reset(client)
            if upstream is not None:
                with contextlib.suppress(OSError):
                    upstream.close()


def wait_until(predicate: Callable[[], bool], timeout: float, step: float = 0.05) -> bool:
    """Poll ``predicate`` until true or ``timeout`` seconds have passed; its last value."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return predicate()
