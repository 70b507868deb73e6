"""A loopback TCP proxy that cuts connections in the middle of a request, for fault tests.

    with FaultProxy("127.0.0.1", server_port, cut_after=64 * 1024, cuts=1) as proxy:
        ... point the client at 127.0.0.1:proxy.port ...
    assert proxy.cut == 1   # the fault really happened

Every connection is forwarded both ways. The first ``cuts`` connections whose client sends
more than ``cut_after`` bytes are reset (SO_LINGER 0, so the peer sees a RST) right after the
proxy forwarded ``cut_after`` bytes: the server has a partial request body and the client an
error, as when a connection drops during an upload. Only loopback addresses are used.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading


class FaultProxy:
    def __init__(self, host: str, port: int, *, cut_after: int, cuts: int = 1):
        self.target = (host, port)
        self.cut_after = cut_after
        self.cuts_left = cuts
        self.cut = 0
        self.connections = 0
        self._lock = threading.Lock()
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(64)
        self.port = self._listener.getsockname()[1]
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)

    def __enter__(self) -> FaultProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._closed.set()
        self._listener.close()

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            with self._lock:
                self.connections += 1
                doomed = self.cuts_left > 0
            threading.Thread(target=self._serve, args=(client, doomed), daemon=True).start()

    def _serve(self, client: socket.socket, doomed: bool) -> None:
        try:
            upstream = socket.create_connection(self.target, timeout=30)
        except OSError:
            client.close()
            return
        threading.Thread(target=_pump, args=(upstream, client), daemon=True).start()
        sent = 0
        try:
            while True:
                data = client.recv(65536)
                if not data:
                    break
                if doomed and sent + len(data) > self.cut_after:
                    with self._lock:
                        fire = self.cuts_left > 0
                        if fire:
                            self.cuts_left -= 1
                            self.cut += 1
                    if fire:
                        upstream.sendall(data[: self.cut_after - sent])
                        _reset(client)
                        _reset(upstream)
                        return
                    doomed = False
                upstream.sendall(data)
                sent += len(data)
        except OSError:
            pass
        finally:
            for s in (client, upstream):
                with contextlib.suppress(OSError):
                    s.close()


def _pump(src: socket.socket, dst: socket.socket) -> None:
    try:
        while True:
            data = src.recv(65536)
            if not data:
                break
            dst.sendall(data)
    except OSError:
        pass
    finally:
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)


def _reset(sock: socket.socket) -> None:
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()
    except OSError:
        pass
