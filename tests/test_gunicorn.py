"""Under gunicorn with 2 workers and --preload: every request's rows are written once, even
when the master gets SIGTERM while the workers still hold queued rows."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request

import pytest

from conftest import data_files, read_csv
from servers import free_ports

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GUNICORN = shutil.which("gunicorn", path=os.path.dirname(sys.executable)) or shutil.which("gunicorn")


@pytest.mark.skipif(GUNICORN is None, reason="gunicorn is not installed (it comes with the test extra)")
def test_sigterm_to_gunicorn_master_writes_every_request_once(tmp_path) -> None:
    """Requests served by 2 preloaded workers, then SIGTERM: worker_exit flushes, rows land once."""
    [port] = free_ports(1)
    env = {k: v for k, v in os.environ.items() if not k.startswith("MDC_")}
    env.update({"MDC_STORAGE_URL": str(tmp_path / "store"), "MDC_FLUSH_INTERVAL": "3600",  # only exit flushes
                "PYTHONPATH": ROOT + os.pathsep + env.get("PYTHONPATH", "")})
    server = subprocess.Popen(
        [GUNICORN, "-c", os.path.join(ROOT, "examples", "gunicorn", "gunicorn.conf.py"), "--preload", "-w", "2",
         "-b", f"127.0.0.1:{port}", "--graceful-timeout", "30", "examples.gunicorn.app:app"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 60
        requests = 60
        sent = 0
        while sent < requests:
            body = json.dumps({"request": sent, "x": sent / 10}).encode()
            req = urllib.request.Request(f"http://127.0.0.1:{port}/", data=body,
                                         headers={"X-Request-ID": f"req-{sent}"})
            try:
                with urllib.request.urlopen(req, timeout=10) as response:
                    assert response.status == 200
                sent += 1
            except (ConnectionError, urllib.error.URLError):
                assert time.monotonic() < deadline, "gunicorn did not start"
                time.sleep(0.1)  # the server is still starting
        assert not data_files(tmp_path / "store")  # nothing written yet: the queue is in the workers
        server.send_signal(signal.SIGTERM)
        output, _ = server.communicate(timeout=90)
    finally:
        if server.poll() is None:
            server.kill()
    assert server.returncode == 0, output
    files = data_files(tmp_path / "store")
    inputs = [r for p in files if "/inputs/" in p for r in read_csv(p)]
    outputs = [r for p in files if "/predictions/" in p for r in read_csv(p)]
    assert sorted(int(r["request"]) for r in inputs) == list(range(requests))
    assert len(outputs) == requests
    by_id = {r["$aml_dc_correlation_id"]: r for r in inputs}
    assert len(by_id) == requests  # two workers never produced the same id
    for out in outputs:
        src = by_id[out["$aml_dc_correlation_id"]]
        assert float(out["y"]) == float(src["x"]) * 2 and out["$aml_request_id"] == f"req-{src['request']}"
