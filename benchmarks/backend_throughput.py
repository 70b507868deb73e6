"""Sustained rows/s to each backend, and the time to flush 100k rows, measured side by side.

    python benchmarks/backend_throughput.py [--seconds 5] [--threads 4] [--backends local,azure,s3]

Workload (fixed so figures stay comparable): 4 threads each collect 100-row batches of 6
float64 features into one collector for ``--seconds``; then the flush of everything queued is
timed. Separately, 100,000 rows are collected at once and ``flush()`` is timed. Rows are read
back from storage and compared with rows collected: any loss fails the run loudly.
Azurite and SeaweedFS are started on free loopback ports (tests/servers.py), as the tests do.
"""

from __future__ import annotations

import argparse
import csv
import io
import os
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402

from mdc_core import ModelDataCollector  # noqa: E402
from mdc_core.plugins import get_registry  # noqa: E402

FEATURES = [f"feat{i}" for i in range(1, 7)]


def count_rows(backend, prefix: str) -> int:
    rows = 0
    for key, _ in backend.list(prefix):
        if key.endswith(".csv") and "/_" not in key:
            rows += sum(1 for _ in csv.reader(io.StringIO(backend.read(key).decode()))) - 1
    return rows


def run(name: str, url: str, options: dict, seconds: float, threads: int) -> dict:
    model = f"bench{uuid.uuid4().hex[:8]}"
    dc = ModelDataCollector(
        model, designation="inputs", feature_names=FEATURES, storage=url, storage_options=options, compaction="off"
    )
    batch = np.random.default_rng(1).normal(size=(100, 6))
    stop = threading.Event()
    calls = [0] * threads

    def work(t: int) -> None:
        while not stop.is_set():
            dc.collect(batch)
            calls[t] += 1

    workers = [threading.Thread(target=work, args=(t,)) for t in range(threads)]
    start = time.perf_counter()
    for w in workers:
        w.start()
    time.sleep(seconds)
    stop.set()
    for w in workers:
        w.join()
    ok = dc.flush(timeout=600)
    sustained_s = time.perf_counter() - start
    collected = sum(calls) * 100
    big = ModelDataCollector(
        model, designation="predictions", feature_names=FEATURES, storage=url, storage_options=options, compaction="off"
    )
    rows = np.random.default_rng(2).normal(size=(100_000, 6))
    t0 = time.perf_counter()
    big.collect(rows)
    ok = big.flush(timeout=600) and ok
    flush_100k = time.perf_counter() - t0
    plugin = get_registry().backend_for_url(url)
    backend = plugin.factory(url, options)
    prefix = f"default/default/default/default/{model}/"
    read_inputs = count_rows(backend, prefix + "default/inputs/")
    read_preds = count_rows(backend, prefix + "default/predictions/")
    backend.close()
    # Rows the bounded buffer refused are counted by mdc (stats), not lost: lost means neither
    # found in storage nor counted as dropped.
    a, b = dc.stats(), big.stats()
    refused = sum(a["dropped"].values()) + sum(b["dropped"].values())
    lost = (collected + 100_000) - refused - read_inputs - read_preds
    return {
        "backend": name,
        "rows collected": collected,
        "rows/s sustained": a["written"] / sustained_s,
        "flush 100k rows (s)": flush_100k,
        "refused": refused,
        "lost": lost,
        "flush ok": ok,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--backends", default="local,local-objects,azure,s3")
    args = parser.parse_args()
    wanted = args.backends.split(",")
    results = []
    with tempfile.TemporaryDirectory() as work:
        cases: list[tuple[str, Callable[[], tuple[str, dict, Callable[[], None]]]]] = []
        if "local" in wanted:
            cases.append(("local (append)", lambda: (os.path.join(work, "local"), {}, lambda: None)))
        if "local-objects" in wanted:
            cases.append(
                ("local (append=False)", lambda: (os.path.join(work, "objects"), {"append": False}, lambda: None))
            )
        if "azure" in wanted:
            cases.append(("azure (Azurite)", lambda: _server("azurite", work)))
        if "s3" in wanted:
            cases.append(("s3 (SeaweedFS)", lambda: _server("seaweedfs", work)))
        for name, setup in cases:
            url, options, stop = setup()
            try:
                results.append(run(name, url, options, args.seconds, args.threads))
            finally:
                stop()
    print(f"{'backend':24s} {'rows/s':>12s} {'flush 100k':>11s} {'refused':>9s} {'lost':>6s}")
    for r in results:
        print(
            f"{r['backend']:24s} {r['rows/s sustained']:12,.0f} {r['flush 100k rows (s)']:10.2f}s "
            f"{r['refused']:9d} {r['lost']:6d}"
        )
    if any(r["lost"] or not r["flush ok"] for r in results):
        print("ROWS WERE LOST OR NOT FLUSHED", file=sys.stderr)
        sys.exit(1)


def _server(kind: str, work: str):
    """Start Azurite or SeaweedFS as the suite does; a bucket/container ``bench`` is made."""
    from suite import start_backends

    backend = start_backends([kind], Path(work))[kind]
    return backend.url("throughput"), backend.options, backend.stop


if __name__ == "__main__":
    main()
