"""Real servers, real SIGTERM: every request's rows are written once, under gunicorn with 2
preloaded workers (the master gets SIGTERM while the workers hold queued rows) and under uvicorn
(its lifespan shutdown closes the collectors)."""

from __future__ import annotations

import os
import shutil
import signal
import sys

import pytest

from servers import free_ports
from serving import ROOT, check_every_request_once, serve_then_sigterm, server_env

GUNICORN = shutil.which("gunicorn", path=os.path.dirname(sys.executable)) or shutil.which("gunicorn")


@pytest.mark.skipif(GUNICORN is None, reason="gunicorn is not installed (it comes with the test extra)")
def test_sigterm_to_gunicorn_master_writes_every_request_once(tmp_path) -> None:
    """Requests served by 2 preloaded workers, then SIGTERM: worker_exit flushes, rows land once."""
    [port] = free_ports(1)
    store = str(tmp_path / "store")
    argv = [GUNICORN, "-c", os.path.join(ROOT, "examples", "gunicorn", "gunicorn.conf.py"), "--preload", "-w", "2",
            "-b", f"127.0.0.1:{port}", "--graceful-timeout", "30", "examples.gunicorn.app:app"]
    serve_then_sigterm(argv, server_env(store), port, store, requests=60)
    check_every_request_once(store, 60)


def test_sigterm_to_uvicorn_writes_every_request_once(tmp_path) -> None:
    """uvicorn answers SIGTERM with the ASGI lifespan shutdown, where the example closes its
    collectors: every request's rows land once."""
    pytest.importorskip("uvicorn", reason="uvicorn comes with the test extra")
    [port] = free_ports(1)
    store = str(tmp_path / "store")
    argv = [sys.executable, "-m", "uvicorn", "--host", "127.0.0.1", "--port", str(port), "--lifespan", "on",
            "--timeout-graceful-shutdown", "30", "examples.asgi.app:app"]
    # uvicorn re-raises the SIGTERM it handled once it has shut down cleanly
    output = serve_then_sigterm(argv, server_env(store), port, store, requests=40,
                                exit_codes=(0, -signal.SIGTERM))
    assert "Application shutdown complete" in output, output
    check_every_request_once(store, 40)
