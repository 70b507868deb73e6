"""Drive a real scoring server: send requests, SIGTERM it, and check every request's rows."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request

from conftest import data_files, read_csv
from mdc_core import ModelDataCollector

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def server_env(store: str) -> dict[str, str]:
    """The environment for a server whose collectors write to ``store`` only on exit paths."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MDC_")}
    env.update({"MDC_STORAGE_URL": store, "MDC_FLUSH_INTERVAL": "3600",
                "PYTHONPATH": ROOT + os.pathsep + env.get("PYTHONPATH", "")})
    return env


def serve_then_sigterm(argv: list[str], env: dict[str, str], port: int, store: str, requests: int,
                       exit_codes: tuple[int, ...] = (0,)) -> str:
    """Start the server, send ``requests`` scoring requests, check nothing is written yet (the
    rows are queued in the server), SIGTERM it, and return its output once it exited with one
    of ``exit_codes``."""
    server = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 60
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
                assert server.poll() is None and time.monotonic() < deadline, "the server did not start"
                time.sleep(0.1)  # the server is still starting
        assert not data_files(store)  # nothing written yet: the queue is in the server
        server.send_signal(signal.SIGTERM)
        output, _ = server.communicate(timeout=90)
    finally:
        if server.poll() is None:
            server.kill()
    assert server.returncode in exit_codes, output
    return output


def check_every_request_once(store: str, requests: int) -> None:
    """Each request's input row and its prediction landed once, correlated."""
    files = data_files(store)
    inputs = [r for p in files if "/inputs/" in p for r in read_csv(p)]
    outputs = [r for p in files if "/predictions/" in p for r in read_csv(p)]
    assert sorted(int(r["request"]) for r in inputs) == list(range(requests))
    assert len(outputs) == requests
    by_id = {r["$aml_dc_correlation_id"]: r for r in inputs}
    assert len(by_id) == requests  # no two processes produced the same id
    for out in outputs:
        src = by_id[out["$aml_dc_correlation_id"]]
        assert float(out["y"]) == float(src["x"]) * 2 and out["$aml_request_id"] == f"req-{src['request']}"


def rows(store, designation, name="data"):
    """The rows of one designation's ``<name>.csv`` files, by the csv module."""
    return [r for p in data_files(store, f"**/{designation}/**/{name}.csv") for r in read_csv(p)]


def collectors(store):
    """Inputs, predictions, body-capture and failure-capture collectors of one store."""
    inputs = ModelDataCollector("best_model", designation="inputs", feature_names=["a", "b"], storage=store)
    preds = ModelDataCollector("best_model", designation="predictions", feature_names=["y"], storage=store)
    bodies = ModelDataCollector("best_model", designation="general", collection_name="http_bodies", storage=store)
    failures = ModelDataCollector("best_model", designation="general", collection_name="http_failures", storage=store)
    return inputs, preds, bodies, failures


def break_captures(monkeypatch, *dcs):
    """Make the capture collectors' collect() raise, with serving's rate-limited log fresh (a line
    an earlier test logged must not be held back)."""
    from mdc_core import serving
    from mdc_core.ratelimit import RateLimitedLog

    def broken(*args, **kwargs):
        raise RuntimeError("capture broke")

    for dc in dcs:
        monkeypatch.setattr(dc, "collect", broken)
    monkeypatch.setattr(serving, "_log", RateLimitedLog(serving.logger))


def flush_all(*dcs):
    for dc in dcs:
        assert dc.flush(timeout=30)
