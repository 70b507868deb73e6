"""The benchmark suite: collect() under concurrent load, beside the floor, the limit and Azure ML's collectors.

    python benchmarks/suite.py                 # quick: whole matrix on local disk, one cell per cloud server
    python benchmarks/suite.py --mode full     # everything on every backend
    python benchmarks/suite.py --peers v1,v2   # also Azure ML's original collector (heavy set-up)

Workload (fixed; ``benchmarks/workload.py``): one request = collect 1 or 100 rows of 6 float64
inputs, then their 2 float64 predictions, correlated. Cells: input type x rows per call x
concurrency (1, 4, 16 threads sharing the collectors in one process; 2 processes), closed loop,
all threads released together. Each cell runs in fresh processes (``benchmarks/cell.py``), so CPU
seconds and peak RSS are the cell's own. After the loop the suite reads storage back and compares
rows read with rows collected: a lost (or duplicated) row fails the run, loudly, with exit code 1.

Side by side in the same run: the floor (``with lock: list.append(row)`` from the same threads,
in the same process, right after the cell), the limit (pyarrow serialising the same rows to CSV and
Parquet in memory, and one large upload of them to each server) and the peers (``--peers``).
Writes ``<out>/<mode>-<UTC time>.md`` and ``.json`` (default out: ``benchmarks/results``).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import fnmatch
import io
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests"))

import peers  # noqa: E402
import workload  # noqa: E402

SHAPES = [("list", 1), ("numpy", 1), ("pandas", 1), ("arrow", 1), ("numpy", 100), ("pandas", 100)]
CONCURRENCY = {"1t": (1, 1), "4t": (1, 4), "16t": (1, 16), "2p": (2, 1)}  # name -> (processes, threads)
CLOUD_QUICK = ("numpy", 100, "4t")
PEER_SHAPES = [("pandas", 1), ("pandas", 100)]  # azureml-ai-monitoring takes pandas frames only


@dataclass
class Backend:
    name: str
    url: Callable[[str], str]  # cell id -> storage URL
    options: dict
    stop: Callable[[], None] = lambda: None
    info: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Cell:
    backend: str
    target: str  # mdc, v1, v2
    shape: str
    rows: int
    concurrency: str
    format: str = "csv"

    @property
    def name(self) -> str:
        fmt = "" if self.format == "csv" else f":{self.format}"
        return f"{self.backend}:{self.target}:{self.shape}:{self.rows}:{self.concurrency}{fmt}"


# ---------------------------------------------------------------------------- servers


def start_backends(names: list[str], work: Path) -> dict[str, Backend]:
    backends: dict[str, Backend] = {}
    if "local" in names:
        root = work / "local"
        root.mkdir()
        backends["local"] = Backend("local", lambda cell_id: str(root / cell_id), {})
    if "azurite" in names:
        from azure.storage.blob import BlobServiceClient

        import servers

        server = servers.start_azurite(work / "azurite")
        BlobServiceClient.from_connection_string(server.connection_string).create_container("bench")
        backends["azurite"] = Backend(
            "azurite",
            lambda cell_id: f"abfs://bench/{cell_id}",
            {"connection_string": server.connection_string},
            server.stop,
            {"server": server, "startup_s": server.startup_seconds},
        )
    if "seaweedfs" in names:
        import boto3

        import servers

        server = servers.start_seaweedfs(work / "seaweed")
        boto3.client(
            "s3",
            endpoint_url=server.endpoint_url,
            aws_access_key_id=server.access_key,
            aws_secret_access_key=server.secret_key,
            region_name=server.region,
        ).create_bucket(Bucket="bench")
        backends["seaweedfs"] = Backend(
            "seaweedfs",
            lambda cell_id: f"s3://bench/{cell_id}",
            {"endpoint_url": server.endpoint_url, "key": server.access_key, "secret": server.secret_key},
            server.stop,
            {"server": server, "startup_s": server.startup_seconds},
        )
    return backends


def open_backend(url: str, options: dict) -> Any:
    from mdc_core.plugins import get_registry

    return get_registry().backend_for_url(url).factory(url, options)


# ---------------------------------------------------------------------------- reading back


def count_stored_rows(url: str, options: dict, model: str) -> dict[str, int]:
    """Rows per designation found in storage under the cell's model (CSV and Parquet objects)."""
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    backend = open_backend(url, options)
    counts = {}
    try:
        for designation in ("inputs", "predictions"):
            prefix = f"default/default/default/default/{model}/default/{designation}/"
            rows = 0
            for key, _size in backend.list(prefix):
                if "/_" in key or key.rsplit("/", 1)[-1].startswith(("_", ".")):
                    continue  # mdc's own files (locks, manifests)
                data = backend.read(key)
                if data is None:
                    continue
                if key.endswith(".csv"):
                    rows += pacsv.read_csv(io.BytesIO(data)).num_rows if data.strip() else 0
                elif key.endswith(".parquet"):
                    rows += pq.read_metadata(io.BytesIO(data)).num_rows
            counts[designation] = rows
    finally:
        backend.close()
    return counts


def lose_one_row(root: str) -> str:
    """For the harness's own test: delete the last row of one stored CSV file under ``root``."""
    for dirpath, _dirs, files in sorted(os.walk(root)):
        for name in sorted(files):
            if name.endswith(".csv"):
                path = os.path.join(dirpath, name)
                with open(path, "rb") as f:
                    lines = f.read().splitlines(keepends=True)
                if len(lines) > 1:
                    with open(path, "wb") as f:
                        f.writelines(lines[:-1])
                    return path
    raise RuntimeError(f"no CSV file with rows under {root}")


# ---------------------------------------------------------------------------- running a cell


def run_processes(python: str, specs: list[dict], env: dict, log: Path, timeout: float) -> list[dict]:
    """Start one ``cell.py`` per spec, release them together, return their results."""
    procs = []
    with open(log, "ab") as err:
        for spec in specs:
            path = spec["result"] + ".spec.json"
            with open(path, "w") as f:
                json.dump(spec, f)
            procs.append(
                subprocess.Popen(
                    [python, str(HERE / "cell.py"), path],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    stderr=err,
                    env=env,
                    text=True,
                )
            )
        try:
            for p in procs:
                line = p.stdout.readline()
                if line.strip() != "READY":
                    p.wait(timeout=30)
                    raise RuntimeError(f"cell process failed before READY (exit {p.returncode}); see {log}")
            for p in procs:
                p.stdin.write("GO\n")
                p.stdin.flush()
            for p in procs:
                p.wait(timeout=timeout)
                if p.returncode != 0:
                    raise RuntimeError(f"cell process exited with {p.returncode}; see {log}:\n{_tail(log)}")
        finally:
            for p in procs:
                if p.poll() is None:
                    p.kill()
                    p.wait()
    results = []
    for spec in specs:
        with open(spec["result"]) as f:
            results.append(json.load(f))
    return results


def _tail(path: Path, n: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return ""


def _rate(parts: list[dict], key: str) -> float:
    return sum(p[key] / p["seconds"] for p in parts if p["seconds"] > 0)


def aggregate(cell: Cell, specs: list[dict], parts: list[dict]) -> dict:
    lat = np.concatenate([np.load(s["result"] + ".lat.npy") for s in specs])
    out: dict[str, Any] = {
        "cell": cell.name,
        "backend": cell.backend,
        "target": cell.target,
        "shape": cell.shape,
        "rows_per_call": cell.rows,
        "concurrency": cell.concurrency,
        "format": cell.format,
        "calls": sum(p["calls"] for p in parts),
        "seconds": max(p["seconds"] for p in parts),
        "calls_per_s": _rate(parts, "calls"),
        "rows_per_s": _rate(parts, "rows"),
        **workload.percentiles_us(lat),
        "cpu_s": sum(p["cpu_s"] for p in parts),
        "peak_rss_mb": sum(p["peak_rss_mb"] for p in parts),
        "durable_s": max(p["durable_s"] for p in parts),
        "rows_collected": sum(p["rows_collected"] for p in parts),
        "refused": None if any(p.get("refused") is None for p in parts) else sum(p["refused"] for p in parts),
        "flush_ok": all(p.get("durable") is not False for p in parts),
    }
    if any("calls_refused" in p for p in parts):
        out["calls_refused"] = sum(p.get("calls_refused", 0) for p in parts)
    if any(p.get("dropped_by_reason") for p in parts):
        reasons: dict[str, int] = {}
        for p in parts:
            for k, v in (p.get("dropped_by_reason") or {}).items():
                reasons[k] = reasons.get(k, 0) + v
        out["dropped_by_reason"] = reasons
    if all("floor" in p for p in parts):
        floor_lat = np.concatenate([np.load(s["result"] + ".floor.npy") for s in specs])
        floors = [p["floor"] for p in parts]
        out["floor"] = {
            "calls_per_s": _rate(floors, "calls"),
            "rows_per_s": _rate(floors, "rows"),
            **workload.percentiles_us(floor_lat),
        }
        out["x_floor_calls"] = out["calls_per_s"] / out["floor"]["calls_per_s"]
    # The end-to-end rate: rows accepted per second from the start of the loop until durable.
    accepted = out["rows_collected"] - (out["refused"] or 0)
    out["e2e_rows_per_s"] = accepted / (out["seconds"] + out["durable_s"])
    return out


class Suite:
    def __init__(self, args: argparse.Namespace, work: Path):
        self.args = args
        self.work = work
        self.results: list[dict] = []
        self.failures: list[str] = []
        self.losses: list[str] = []
        self.notes: list[str] = []
        self.sink: peers.Sink | None = None
        self.peer_python: dict[str, str] = {}

    def wanted(self, cell: Cell) -> bool:
        if not self.args.cells:
            return True
        return any(fnmatch.fnmatch(cell.name, pattern) for pattern in self.args.cells.split(","))

    def spec(self, cell: Cell, process: int, cell_dir: Path, url: str, options: dict, model: str) -> dict:
        processes, threads = CONCURRENCY[cell.concurrency]
        return {
            "target": cell.target,
            "shape": cell.shape,
            "rows": cell.rows,
            "threads": threads,
            "process": process,
            "seconds": self.args.seconds,
            "iterations": self.args.iterations,
            "storage": url,
            "options": options,
            "model": model,
            "format": cell.format,
            "floor": cell.target == "mdc",
            "result": str(cell_dir / f"p{process}"),
        }

    def mdc_env(self, cell_dir: Path) -> dict:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("MDC_", "AML_MODEL_DC_"))}
        env["MDC_SPOOL_DIR"] = str(cell_dir / "spool")
        return env

    def run_cell(self, cell: Cell, backend: Backend) -> None:
        cell_id = f"c{len(self.results):03d}-{uuid.uuid4().hex[:6]}"
        cell_dir = self.work / "cells" / cell_id
        cell_dir.mkdir(parents=True)
        model = f"bench{uuid.uuid4().hex[:8]}"
        url = backend.url(cell_id)
        processes, _ = CONCURRENCY[cell.concurrency]
        specs = [self.spec(cell, p, cell_dir, url, backend.options, model) for p in range(processes)]
        log = cell_dir / "stderr.log"
        started = time.monotonic()
        try:
            if cell.target == "mdc":
                parts = run_processes(sys.executable, specs, self.mdc_env(cell_dir), log, self.args.cell_timeout)
            elif cell.target == "v2":
                assert self.sink is not None
                self.sink.reset()
                parts = run_processes(
                    self.peer_python["v2"], specs, peers.v2_env(self.sink), log, self.args.cell_timeout
                )
            else:
                import peer_v1

                parts = peer_v1.run(self, cell, specs, log)
        except Exception as exc:  # a crashed cell is a failed run, reported with its log
            self.failures.append(f"{cell.name}: {exc}")
            print(f"FAILED {cell.name}: {exc}", file=sys.stderr)
            return
        result = aggregate(cell, specs, parts)
        if cell.target == "mdc":
            if self.args.lose_one_row:
                result["sabotaged"] = lose_one_row(url)
            stored = count_stored_rows(url, backend.options, model)
            result["rows_read_back"] = sum(stored.values())
            result["read_back_by_designation"] = stored
        elif cell.target == "v2":
            assert self.sink is not None
            result["rows_read_back"] = self.sink.total()  # rows the sidecar received
        else:
            result["rows_read_back"] = parts[0].get("rows_read_back", 0)
            result["read_back_by_designation"] = parts[0].get("read_back_by_designation")
        delivered = result["rows_read_back"]
        expected = result["rows_collected"] - (result["refused"] or 0)
        result["lost"] = expected - delivered
        if cell.target == "mdc":
            if result["lost"] != 0 or not result["flush_ok"]:
                msg = (
                    f"{cell.name}: {result['rows_collected']} rows collected, {result['refused']} refused and counted, "
                    f"{delivered} read back from storage ({result['lost']:+d} lost), flush ok={result['flush_ok']}"
                )
                self.failures.append(msg)
                self.losses.append(msg)
                print(f"\n*** ROW LOSS: {msg} ***\n", file=sys.stderr)
            if result["refused"]:
                self.notes.append(
                    f"{cell.name}: {result['refused']} rows refused by the buffer bound (counted, not lost)"
                )
        result["wall_s"] = time.monotonic() - started
        self.results.append(result)
        print(_one_line(result), file=sys.stderr, flush=True)
        if not self.args.keep:
            shutil.rmtree(cell_dir / "spool", ignore_errors=True)
            if backend.name == "local":
                shutil.rmtree(url, ignore_errors=True)


def _one_line(r: dict) -> str:
    floor = f" floor {r['floor']['calls_per_s']:,.0f}/s x{r['x_floor_calls']:.2f}" if "floor" in r else ""
    return (
        f"{r['cell']:38s} {r['calls_per_s']:>10,.0f} calls/s {r['rows_per_s']:>11,.0f} rows/s "
        f"p99 {r['p99_us']:8.1f}us durable {r['durable_s']:6.2f}s lost {r['lost']}{floor}"
    )


# ---------------------------------------------------------------------------- the limit


def synthetic_tables(n: int) -> list[Any]:
    """The rows mdc writes for ``n`` requests of one row: inputs (6 floats) and predictions (2 floats),
    each with Azure ML's eight correlation columns."""
    import pyarrow as pa

    rng = np.random.default_rng(7)
    ids = [f"{uuid.uuid4().hex[:12]}{i & 0xFFFFFFFFFFFF:012x}" for i in range(n)]
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")
    aml = {
        "$aml_dc_correlation_id": pa.array(ids),
        "$aml_dc_scoring_timestamp": pa.array([stamp] * n),
        "$aml_dc_boundary": pa.array(["1440"] * n),
        "$aml_workspace": pa.array(["default/default/default"] * n),
        "$aml_service_name": pa.array(["default"] * n),
        "$aml_model_name": pa.array(["bench"] * n),
        "$aml_model_version": pa.array(["default"] * n),
        "$aml_request_id": pa.array(ids),
    }
    tables = []
    for names in (workload.FEATURES, workload.PREDICTIONS):
        data = rng.normal(size=(n, len(names)))
        tables.append(pa.table({**{c: data[:, i] for i, c in enumerate(names)}, **aml}))
    return tables


def _best_of(fn: Callable[[], Any], repeats: int) -> tuple[float, Any]:
    best, value = float("inf"), None
    for _ in range(repeats):
        t0 = time.perf_counter()
        value = fn()
        best = min(best, time.perf_counter() - t0)
    return best, value


def _upload(store: Any, blobs: list[bytes]) -> None:
    for b in blobs:
        if not store.create(f"limit/{uuid.uuid4().hex}.csv", b):
            raise RuntimeError("limit upload: object existed")


def measure_limit(backends: dict[str, Backend], n: int) -> dict:
    """pyarrow serialising 2n rows (n inputs + n predictions) to CSV/Parquet in memory, and one upload
    of each CSV object per backend: the end-to-end ceiling on this machine."""
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    tables = synthetic_tables(n)
    rows = sum(t.num_rows for t in tables)

    def serialise(write: Callable[[Any, Any], None]) -> list[bytes]:
        out = []
        for t in tables:
            sink = pa.BufferOutputStream()
            write(t, sink)
            out.append(sink.getvalue().to_pybytes())
        return out

    csv_s, blobs = _best_of(lambda: serialise(pacsv.write_csv), 3)
    parquet_s, pblobs = _best_of(lambda: serialise(pq.write_table), 3)
    limit: dict[str, Any] = {
        "rows": rows,
        "csv_bytes": sum(len(b) for b in blobs),
        "parquet_bytes": sum(len(b) for b in pblobs),
        "csv_rows_per_s": rows / csv_s,
        "parquet_rows_per_s": rows / parquet_s,
        "upload": {},
    }
    for name, backend in backends.items():
        url = backend.url(f"limit-{uuid.uuid4().hex[:6]}")
        store = open_backend(url, backend.options)
        try:
            upload_s, _ = _best_of(lambda store=store: _upload(store, blobs), 2)
        finally:
            store.close()
        limit["upload"][name] = {
            "upload_s": upload_s,
            "upload_mb_per_s": limit["csv_bytes"] / upload_s / 1e6,
            "serialise_upload_rows_per_s": rows / (csv_s + upload_s),
        }
    return limit


# ---------------------------------------------------------------------------- report


def machine() -> dict:
    info = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
    }
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
    with contextlib.suppress(OSError):
        mem = Path("/proc/meminfo").read_text().split()
        info["memory_gb"] = round(int(mem[1]) / 1024 / 1024, 1)
    with contextlib.suppress(Exception):
        import pyarrow

        import mdc_core

        info["pyarrow"] = pyarrow.__version__
        git = ["git", "-C", str(HERE.parent)]
        head = subprocess.run([*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run([*git, "status", "--porcelain", "src"], capture_output=True, text=True).stdout.strip()
        info["mdc_commit"] = os.environ.get("MDC_BENCH_COMMIT") or (head + (" + uncommitted src/" if dirty else ""))
        info["mdc_core"] = os.path.dirname(mdc_core.__file__)
        info["compiled"] = "none"
        with contextlib.suppress(ImportError):
            from mdc_core.compiled import load

            built = [n for n in ("_hotpath", "_transpose", "_durable") if load(n) is not None]
            info["compiled"] = ", ".join(built) or "none"
    return info


def _f(x: Any, digits: int = 0) -> str:
    if x is None:
        return "–"
    if isinstance(x, float):
        if x != x:
            return "–"
        return f"{x:,.{digits}f}"
    return f"{x:,}" if isinstance(x, int) else str(x)


TARGET_NAMES = {"mdc": "mdc", "v2": "azureml-ai-monitoring 1.0.0", "v1": "azureml-monitoring 0.1.0a21"}


def markdown(report: dict) -> str:
    lines = [f"# mdc benchmark — {report['mode']} mode, {report['finished']}", ""]
    m = report["machine"]
    lines.append(
        f"Machine: {m.get('cpu', '?')}, {m.get('cpus')} cores, {m.get('memory_gb', '?')} GB; {m.get('platform')}; "
        f"Python {m.get('python')}, pyarrow {m.get('pyarrow', '?')}; mdc at {m.get('mdc_commit', '?')} "
        f"(compiled fast paths: {m.get('compiled', '?')}). "
        f"Command: `{report['command']}` ({report['wall_s']:.0f} s)."
    )
    lines += ["", "## Cells", ""]
    lines.append(
        "Rates are per second of the closed loop; a call is one `collect()` (a request makes two: inputs, then "
        "predictions), rows count both designations. Latency is per `collect()` on the calling thread. "
        "*durable* is the time from the last `collect()` to `flush()` reporting everything in storage. "
        "*e2e rows/s*: rows accepted per second from the start of the loop until durable. *refused*: rows the "
        "bounded buffer turned away and counted (`stats()['dropped']`), not lost. "
        "*read back* counts the rows found in storage (for the v2 peer: received by the sidecar). "
        "*floor* is `with lock: list.append(row)` from the same threads in the same process."
    )
    lines.append("")
    head = [
        "backend", "collector", "input", "rows/call", "conc.", "calls/s", "rows/s", "p50 µs", "p99 µs", "p99.9 µs",
        "CPU s", "peak RSS MB", "durable s", "e2e rows/s", "collected", "refused", "read back", "lost",
        "floor calls/s", "× floor", "floor p99 µs",
    ]  # fmt: skip
    lines.append("| " + " | ".join(head) + " |")
    lines.append("|" + "---|" * len(head))
    for r in report["cells"]:
        floor = r.get("floor") or {}
        who = TARGET_NAMES.get(r["target"], r["target"]) + ("" if r["format"] == "csv" else f" ({r['format']})")
        lost = r["lost"]
        lost_text = f"**{lost}**" if lost and r["target"] == "mdc" else _f(lost)
        lines.append(
            "| "
            + " | ".join(
                [
                    r["backend"],
                    who,
                    r["shape"],
                    str(r["rows_per_call"]),
                    r["concurrency"],
                    _f(r["calls_per_s"]),
                    _f(r["rows_per_s"]),
                    _f(r["p50_us"], 1),
                    _f(r["p99_us"], 1),
                    _f(r["p999_us"], 1),
                    _f(r["cpu_s"], 2),
                    _f(r["peak_rss_mb"]),
                    _f(r["durable_s"], 2),
                    _f(r["e2e_rows_per_s"]),
                    _f(r["rows_collected"]),
                    _f(r["refused"]),
                    _f(r["rows_read_back"]),
                    lost_text,
                    _f(floor.get("calls_per_s")),
                    _f(r.get("x_floor_calls"), 2),
                    _f(floor.get("p99_us"), 1),
                ]
            )  # fmt: skip
            + " |"
        )
    if report.get("limit"):
        lim = report["limit"]
        lines += ["", "## The limit", ""]
        lines.append(
            f"pyarrow serialising {lim['rows']:,} rows (half inputs, half predictions, with the `$aml_` columns) into "
            f"memory: CSV {lim['csv_rows_per_s']:,.0f} rows/s ({lim['csv_bytes'] / 1e6:.1f} MB), "
            f"Parquet {lim['parquet_rows_per_s']:,.0f} rows/s ({lim['parquet_bytes'] / 1e6:.1f} MB)."
        )
        lines += ["", "| backend | one upload of the CSV (s) | MB/s | serialise + upload rows/s |", "|---|---|---|---|"]
        for name, u in lim["upload"].items():
            rate = f"{u['serialise_upload_rows_per_s']:,.0f}"
            lines.append(f"| {name} | {u['upload_s']:.2f} | {u['upload_mb_per_s']:.0f} | {rate} |")
    if report.get("targets"):
        lines += ["", "## Targets (ratios from this run)", "", "| target | measured | met |", "|---|---|---|"]
        for t in report["targets"]:
            met = "yes" if t["met"] else "**no**" if t["met"] is False else "–"
            lines.append(f"| {t['target']} | {t['measured']} | {met} |")
    if report.get("peers"):
        lines += ["", "## Peers", ""]
        for name, status in report["peers"].items():
            lines.append(f"- {TARGET_NAMES.get(name, name)}: {status}")
    if report["notes"]:
        lines += ["", "## Notes", ""] + [f"- {n}" for n in report["notes"]]
    lines += ["", "## Result", ""]
    if report["failures"]:
        lines += ["**FAILED**:", ""] + [f"- {f}" for f in report["failures"]]
    else:
        lines.append("No row lost in any cell: every row collected was read back from storage.")
    return "\n".join(lines) + "\n"


def find(cells: list[dict], **want: Any) -> dict | None:
    for r in cells:
        if all(r.get(k) == v for k, v in want.items()):
            return r
    return None


def targets(report: dict) -> list[dict]:
    """The issue's targets, as ratios measured side by side in this run."""
    cells, out = report["cells"], []

    def add(name: str, measured: str, met: bool | None) -> None:
        out.append({"target": name, "measured": measured, "met": met})

    for conc, need in (("1t", 0.2), ("4t", 0.5), ("16t", 0.5)):
        r = find(cells, backend="local", target="mdc", shape="list", rows_per_call=1, concurrency=conc)
        if r and "x_floor_calls" in r:
            add(
                f"list rows, {conc}: calls/s ≥ {need:g} × floor",
                f"{r['x_floor_calls']:.2f} × floor",
                r["x_floor_calls"] >= need,
            )
    r = find(cells, backend="local", target="mdc", shape="list", rows_per_call=1, concurrency="16t")
    if r and "floor" in r:
        ratio = r["p99_us"] / r["floor"]["p99_us"]
        add(
            "list rows, 16t: p99 ≤ 2 × floor's",
            f"{r['p99_us']:.1f} µs = {ratio:.2f} × floor's {r['floor']['p99_us']:.1f} µs",
            ratio <= 2,
        )
    for conc in CONCURRENCY:
        m = find(cells, backend="local", target="mdc", shape="pandas", rows_per_call=1, concurrency=conc)
        p = find(cells, target="v2", shape="pandas", rows_per_call=1, concurrency=conc)
        if m and p:
            ratio = m["calls_per_s"] / p["calls_per_s"]
            delivered = p["rows_read_back"] / p["rows_collected"] if p["rows_collected"] else 0
            add(
                f"1-row pandas, {conc}: calls/s ≥ azureml-ai-monitoring's",
                f"{ratio:.2f} × ({m['calls_per_s']:,.0f} vs {p['calls_per_s']:,.0f}); it delivered "
                f"{delivered:.0%} of its rows, mdc lost {m['lost']}",
                ratio >= 1,
            )
        m = find(cells, backend="local", target="mdc", shape="pandas", rows_per_call=100, concurrency=conc)
        p = find(cells, target="v2", shape="pandas", rows_per_call=100, concurrency=conc)
        if m and p:
            ratio = m["rows_per_s"] / p["rows_per_s"]
            add(
                f"100-row pandas, {conc}: collect-side rows/s ≥ azureml-ai-monitoring's",
                f"{ratio:.2f} × ({m['rows_per_s']:,.0f} vs {p['rows_per_s']:,.0f})",
                ratio >= 1,
            )
    limit = report.get("limit") or {}
    for backend in ("azurite", "seaweedfs"):
        r = find(cells, backend=backend, target="mdc", shape="numpy", rows_per_call=100, concurrency="4t")
        u = (limit.get("upload") or {}).get(backend)
        if r and u:
            ratio = r["e2e_rows_per_s"] / u["serialise_upload_rows_per_s"]
            add(
                f"{backend}: end-to-end rows/s (100-row batches, 4t) ≥ ½ serialise+upload limit",
                f"{ratio:.2f} × ({r['e2e_rows_per_s']:,.0f} vs {u['serialise_upload_rows_per_s']:,.0f})",
                ratio >= 0.5,
            )
    mdc_cells = [r for r in cells if r["target"] == "mdc"]
    lost = sum(abs(r["lost"]) for r in mdc_cells)
    add(
        "zero rows lost in every mdc cell (read back from storage)",
        f"{lost} lost in {len(mdc_cells)} cells",
        lost == 0 and not report["losses"],
    )
    return out


# ---------------------------------------------------------------------------- main


def plan(args: argparse.Namespace, backends: list[str], peer_list: list[str]) -> Iterator[Cell]:
    for backend in backends:
        full = args.mode == "full" or backend == "local"
        for shape, rows in SHAPES:
            for conc in CONCURRENCY:
                if full or (shape, rows, conc) == CLOUD_QUICK:
                    yield Cell(backend, "mdc", shape, rows, conc)
        if backend == "local" and args.parquet:
            yield Cell(backend, "mdc", "numpy", 100, "4t", "parquet")
    if "v2" in peer_list:
        for shape, rows in PEER_SHAPES:
            for conc in CONCURRENCY:
                yield Cell("sidecar", "v2", shape, rows, conc)
    if "v1" in peer_list:
        for shape, rows in PEER_SHAPES:
            for conc in ("1t", "4t", "16t"):
                yield Cell("azurite", "v1", shape, rows, conc)


def parquet_available() -> bool:
    try:
        from mdc_core.plugins import get_registry

        return "parquet" in get_registry().formats()
    except Exception:
        return False


def snapshot(rev: str, into: Path) -> None:
    """Export ``src/`` at ``rev`` and put it first on the path of this process and of the cells, so a
    run measures one commit even while the work tree changes under it."""
    into.mkdir(parents=True)
    files = ["src", "setup.py", "pyproject.toml", "README.md"]
    listed = subprocess.run(
        ["git", "-C", str(HERE.parent), "ls-tree", "--name-only", rev, *files], capture_output=True, text=True
    ).stdout.split()
    archive = subprocess.run(
        ["git", "-C", str(HERE.parent), "archive", rev, *listed], capture_output=True, check=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    if (into / "setup.py").exists():
        build_compiled(into, rev)
    src = str(into / "src")
    sys.path.insert(0, src)
    os.environ["PYTHONPATH"] = os.pathsep.join([src, *filter(None, [os.environ.get("PYTHONPATH")])])
    commit = subprocess.run(
        ["git", "-C", str(HERE.parent), "rev-parse", "--short", rev], capture_output=True, text=True
    )
    os.environ["MDC_BENCH_COMMIT"] = commit.stdout.strip()


def build_compiled(tree: Path, rev: str) -> None:
    """Build the snapshot's compiled fast paths as installing that commit does (a wheel, built by
    pip in isolation) and put them beside its sources; without a compiler the run is pure Python."""
    wheels = tree / "wheel"
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--disable-pip-version-check", "-w", str(wheels),
         "."],
        cwd=tree, capture_output=True, text=True,
    )
    found = list(wheels.glob("*.whl")) if built.returncode == 0 else []
    if not found:
        print(f"compiled fast paths not built for {rev}: pure Python\n{built.stderr[-2000:]}", file=sys.stderr)
        return
    with zipfile.ZipFile(found[0]) as wheel:
        for name in wheel.namelist():
            if name.startswith("mdc_core/") and name.endswith((".so", ".pyd")):
                (tree / "src" / name).write_bytes(wheel.read(name))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mode", choices=("quick", "full"), default="quick")
    parser.add_argument("--seconds", type=float, help="closed-loop seconds per cell (quick 1, full 5)")
    parser.add_argument("--iterations", type=int, help="fixed requests per thread instead of --seconds (smoke tests)")
    parser.add_argument("--backends", default="local,azurite,seaweedfs")
    parser.add_argument("--cells", default="", help="only cells whose name matches one of these comma-separated globs")
    parser.add_argument("--peers", default="v2", help="v2 (default), v1,v2, or none")
    parser.add_argument("--limit-rows", type=int, default=100_000, help="requests serialised for the limit (0: skip)")
    parser.add_argument("--out", default=str(HERE / "results"))
    parser.add_argument("--plot", help="also draw calls/s and p99 against threads into this PNG")
    parser.add_argument("--cell-timeout", type=float, default=900.0)
    parser.add_argument("--keep", action="store_true", help="keep the cells' storage and spool folders")
    parser.add_argument(
        "--at", metavar="REV", help="benchmark mdc's src/ as committed at REV (a git snapshot), not the work tree"
    )
    parser.add_argument("--lose-one-row", action="store_true", help=argparse.SUPPRESS)  # the harness's own test
    args = parser.parse_args(argv)
    if args.seconds is None:
        args.seconds = 1.0 if args.mode == "quick" else 5.0
    peer_list = [] if args.peers in ("", "none") else args.peers.split(",")
    backend_names = args.backends.split(",")
    args.parquet = parquet_available()
    started = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="mdc-bench-"))
    if args.at:
        snapshot(args.at, work / "snapshot")
    report: dict[str, Any] = {
        "mode": args.mode,
        "command": "python benchmarks/suite.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "machine": machine(),
        "seconds_per_cell": args.seconds,
        "peers": {},
    }
    suite = Suite(args, work)
    backends: dict[str, Backend] = {}
    try:
        cells = [c for c in plan(args, backend_names, peer_list) if suite.wanted(c)]
        needed = sorted({c.backend for c in cells if c.target == "mdc"} | ({"azurite"} if "v1" in peer_list else set()))
        if args.limit_rows and not args.cells:
            needed = sorted(set(needed) | (set(backend_names) & {"local", "azurite", "seaweedfs"}))
        backends = start_backends(needed, work)
        if "v2" in peer_list and any(c.target == "v2" for c in cells):
            try:
                suite.peer_python["v2"] = str(peers.v2_python())
                suite.sink = peers.Sink()
                report["peers"]["v2"] = "ran: installed into its own venv, posting to a loopback sidecar sink"
            except peers.PeerUnavailable as exc:
                report["peers"]["v2"] = f"not run: {exc}"
                cells = [c for c in cells if c.target != "v2"]
        if "v1" in peer_list:
            import peer_v1

            status = peer_v1.prepare(suite, backends.get("azurite"))
            report["peers"]["v1"] = status
            if not status.startswith("ran"):
                cells = [c for c in cells if c.target != "v1"]
        if args.limit_rows and backends:
            report["limit"] = measure_limit(backends, args.limit_rows // 2)
        for cell in cells:
            suite.run_cell(cell, backends.get(cell.backend) or Backend(cell.backend, lambda _: "", {}))
    finally:
        for b in backends.values():
            b.stop()
        if suite.sink is not None:
            suite.sink.close()
        with contextlib.suppress(Exception):
            import peer_v1

            peer_v1.cleanup(suite)
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    report["cells"] = suite.results
    report["failures"] = suite.failures
    report["losses"] = suite.losses
    report["notes"] = suite.notes
    report["finished"] = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    report["wall_s"] = time.monotonic() - started
    report["targets"] = targets(report)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = out / f"{args.mode}-{dt.datetime.now(dt.timezone.utc).strftime('%Y%m%dT%H%M%SZ')}"
    stem.with_suffix(".json").write_text(json.dumps(report, indent=1, default=str))
    text = markdown(report)
    stem.with_suffix(".md").write_text(text)
    if args.plot:
        import plot

        try:
            plot.draw(stem.with_suffix(".json"), Path(args.plot))
        except Exception as exc:
            print(f"plot not drawn: {exc}", file=sys.stderr)
    print(text)
    print(f"wrote {stem}.md and .json", file=sys.stderr)
    if suite.failures:
        print("\n*** BENCHMARK FAILED: " + "; ".join(suite.failures) + " ***", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
