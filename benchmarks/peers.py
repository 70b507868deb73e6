"""Azure ML's collectors as peers: their own virtual environments, a sidecar sink, a loopback proxy.

* ``v2`` — ``azureml-ai-monitoring`` 1.0.0 (``Collector``): queues a reference to each pandas frame
  and posts it as JSON to a local sidecar; ``Sink`` stands in for the sidecar and counts rows.
* ``v1`` — ``azureml-monitoring`` 0.1.0a21 (``ModelDataCollector``): writes to Azure Blob through
  a bundled native library (see ``benchmarks/peer_v1.py`` for what it needs).

Each peer is installed from the package index into ``.cache/bench/venv-<peer>`` on first use (the
venv is reused afterwards) and never sees mdc. Telemetry is off; every connection is loopback.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import venv
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CACHE = REPO / ".cache" / "bench"

V2_REQUIREMENTS = ["azureml-ai-monitoring==1.0.0", "pandas", "numpy"]


class PeerUnavailable(RuntimeError):
    """A peer could not be installed or started; the message says why (it goes into the report)."""


def venv_python(name: str, requirements: list[str], no_deps: list[str] = (), timeout: float = 600.0) -> Path:
    """The python of ``.cache/bench/venv-<name>``, created and filled with ``requirements`` once
    (and ``no_deps``, installed without their dependencies)."""
    home = CACHE / f"venv-{name}"
    python = home / "bin" / "python"
    stamp = home / ".requirements"
    wanted = "\n".join([*requirements, "--no-deps", *no_deps])
    if python.exists() and stamp.exists() and stamp.read_text() == wanted:
        return python
    venv.EnvBuilder(with_pip=True, clear=True).create(home)
    pip = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    for cmd in ([*pip, *requirements], [*pip, "--no-deps", *no_deps] if no_deps else None):
        if cmd is None:
            continue
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
        except subprocess.TimeoutExpired as exc:
            raise PeerUnavailable(f"{' '.join(cmd[3:])} took over {timeout:.0f}s") from exc
        if done.returncode != 0:
            raise PeerUnavailable(f"{' '.join(cmd[3:])} failed:\n{done.stderr[-2000:]}")
    stamp.write_text(wanted)
    return python


def v2_python() -> Path:
    return venv_python("v2", V2_REQUIREMENTS)


def peer_env(extra: dict[str, str]) -> dict[str, str]:
    """The environment of a peer process: no mdc settings, loopback never proxied, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MDC_", "AML_", "AZUREML_"))}
    env.pop("PYTHONPATH", None)
    env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost"
    env.update(extra)
    return env


class Sink:
    """A loopback HTTP sidecar: counts the rows of the JSON record arrays posted to it."""

    def __init__(self) -> None:
        self.rows: dict[str, int] = {}
        self.posts = 0
        self._lock = threading.Lock()
        sink = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                kind = self.headers.get("ce-type", "?")
                try:
                    records = json.loads(body)
                    n = len(records) if isinstance(records, list) else 1
                except ValueError:
                    n = 0
                with sink._lock:
                    sink.rows[kind] = sink.rows.get(kind, 0) + n
                    sink.posts += 1
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def reset(self) -> None:
        with self._lock:
            self.rows, self.posts = {}, 0

    def total(self) -> int:
        with self._lock:
            return sum(self.rows.values())

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def v2_env(sink: Sink) -> dict[str, str]:
    return peer_env(
        {"AZUREML_MDC_ENABLED": "true", "AZUREML_MDC_HOST": "127.0.0.1", "AZUREML_MDC_PORT": str(sink.port)}
    )


if __name__ == "__main__":  # python benchmarks/peers.py: install the default peer's venv
    print(v2_python(), file=sys.stderr)
