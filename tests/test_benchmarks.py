"""The benchmark harness itself (benchmarks/suite.py) on tiny counts: it counts rows honestly.

No timing is asserted here: the figures belong to benchmark runs, not to the test suite.
"""

from __future__ import annotations

import glob
import http.client
import json
import os
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


def run_suite(out: Path, *extra: str) -> tuple[int, dict, str]:
    cmd = [
        sys.executable,
        str(BENCHMARKS / "suite.py"),
        "--backends", "local",
        "--peers", "none",
        "--limit-rows", "0",
        "--iterations", "40",
        "--out", str(out),
        *extra,
    ]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=dict(os.environ))
    (report,) = glob.glob(str(out / "*.json"))
    with open(report) as f:
        return done.returncode, json.load(f), done.stderr


def test_rows_read_back_equal_rows_collected(tmp_path: Path) -> None:
    """A one-thread cell and a two-process cell on local disk read back every row they collected."""
    code, report, err = run_suite(tmp_path, "--cells", "local:mdc:list:1:1t,local:mdc:numpy:100:2p")
    assert code == 0, err
    cells = {c["cell"]: c for c in report["cells"]}
    assert set(cells) == {"local:mdc:list:1:1t", "local:mdc:numpy:100:2p"}
    one, two = cells["local:mdc:list:1:1t"], cells["local:mdc:numpy:100:2p"]
    # 40 timed + 5 warm-up requests per thread, each an inputs and a predictions collect.
    assert one["rows_collected"] == 2 * 1 * 45
    assert two["rows_collected"] == 2 * 2 * 100 * 45
    for cell in (one, two):
        assert cell["rows_read_back"] == cell["rows_collected"]
        assert cell["lost"] == 0 and cell["flush_ok"]
        assert cell["read_back_by_designation"]["inputs"] == cell["read_back_by_designation"]["predictions"]
        assert cell["floor"]["calls_per_s"] > 0 and cell["p99_us"] > 0
    assert report["failures"] == []
    md = glob.glob(str(tmp_path / "*.md"))[0]
    assert "No row lost in any cell" in Path(md).read_text()


def test_a_lost_row_fails_the_run(tmp_path: Path) -> None:
    """Deleting one stored row before the read-back makes the run report the loss and exit 1."""
    code, report, err = run_suite(tmp_path, "--cells", "local:mdc:list:1:1t", "--lose-one-row")
    assert code == 1
    assert "ROW LOSS" in err and "BENCHMARK FAILED" in err
    (cell,) = report["cells"]
    assert cell["lost"] == 1 and cell["rows_read_back"] == cell["rows_collected"] - 1
    assert report["losses"] and report["targets"][-1]["met"] is False
    md = glob.glob(str(tmp_path / "*.md"))[0]
    assert "**FAILED**" in Path(md).read_text()


def test_md5_proxy_drops_only_an_empty_content_md5() -> None:
    """The loopback proxy in front of Azurite removes an empty Content-MD5 and forwards the rest."""
    sys.path.insert(0, str(BENCHMARKS))
    from peer_v1 import Md5Proxy

    seen: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_PUT(self) -> None:  # noqa: N802
            body = self.rfile.read(int(self.headers["Content-Length"]))
            seen.append({"md5": self.headers.get("Content-MD5"), "x": self.headers.get("x-ms-test"), "body": body})
            self.send_response(201)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    proxy = Md5Proxy(server.server_address[1])
    try:
        conn = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=10)
        for md5 in ("", "abc="):  # two requests on one kept-alive connection
            conn.putrequest("PUT", "/devstoreaccount1/c/b")
            conn.putheader("Content-MD5", md5)
            conn.putheader("x-ms-test", "kept")
            conn.putheader("Content-Length", "5")
            conn.endheaders(b"hello")
            response = conn.getresponse()
            response.read()
            assert response.status == 201
        conn.close()
    finally:
        proxy.stop()
        server.shutdown()
        server.server_close()
    assert seen == [
        {"md5": None, "x": "kept", "body": b"hello"},
        {"md5": "abc=", "x": "kept", "body": b"hello"},
    ]
    assert proxy.dropped_headers == 1


@pytest.mark.parametrize("shape", ["list", "numpy", "pandas", "arrow"])
def test_workload_pools_have_the_fixed_shape(shape: str) -> None:
    """Every input type carries 6 features per input row and 2 per prediction row."""
    sys.path.insert(0, str(BENCHMARKS))
    import workload

    for rows in (1, 100):
        x, y = workload.make_pool(shape, rows, seed=1, size=1)[0]
        assert (_width(x, shape, rows), _width(y, shape, rows)) == (6, 2)


def _width(data: object, shape: str, rows: int) -> int:
    if shape == "list":
        return len(data) if rows == 1 else len(data[0])
    return data.num_columns if shape == "arrow" else data.shape[1]


SUSTAINED_WITH_A_LOST_ROW = """
import sys
sys.path.insert(0, sys.argv[1])
sys.argv = ["sustained_load.py", "--seconds", "0.3", "--threads", "2"]
import sustained_load
real = sustained_load.rows_on_disk
sustained_load.rows_on_disk = lambda root: real(root) - 1  # one row that storage never got
sys.exit(sustained_load.main())
"""


def test_sustained_load_reads_every_row_back_and_fails_on_a_lost_one(tmp_path: Path) -> None:
    """benchmarks/sustained_load.py on a short loop: every row read back ("ok", exit 0); with one
    row missing from storage the same run reports it and exits 1."""
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    ok = subprocess.run([sys.executable, str(BENCHMARKS / "sustained_load.py"), "--seconds", "0.3", "--threads", "1,2"],
                        capture_output=True, text=True, timeout=120, env=env)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    rows = [line.split() for line in ok.stdout.splitlines()[2:]]
    assert [r[0] for r in rows] == ["1", "2"] and all(r[-1] == "ok" for r in rows), ok.stdout
    assert all(int(r[2].replace(",", "")) > 0 for r in rows)  # rows were collected
    lost = subprocess.run([sys.executable, "-c", SUSTAINED_WITH_A_LOST_ROW, str(BENCHMARKS)],
                          capture_output=True, text=True, timeout=120, env=env)
    assert lost.returncode == 1, lost.stdout + lost.stderr
    assert "LOST 1" in lost.stdout
