"""How long the flusher takes to write one batch alone, and beside a thread that never lets go of the GIL.

    python benchmarks/flusher_gil.py [--rows 10000] [--repeats 5]

Why: CPython hands the GIL back to a thread that released it (for a system call, or a C call
that releases it) only when the holder lets go, at the latest after ``sys.getswitchinterval()``
(5 ms). Scoring threads that collect in a closed loop always hold or want the GIL, so every
blocking call of the flusher (a write, an fsync, a rename, a socket send) can cost it 5 ms: the
"convoy effect". The difference between the two timings, in units of the switch interval, is
the number of such round trips in one batch. Single float rows of 6 features, written by
``Pipeline._seal_and_write`` to local disk appending (CSV), and as objects with the spool (the
object-store path on local disk). Medians of ``--repeats`` batches each.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time

from mdc_core import ModelDataCollector

ROW = [0.5, 1.5, 2.5, 3.5, 4.5, 5.5]


def batch_seconds(collector: ModelDataCollector, rows: int) -> float:
    """Queue ``rows`` rows, then time the flusher's write of them (called on this thread)."""
    pipeline = collector._pipeline
    for _ in range(rows):
        collector.collect(ROW)
    with pipeline.lock:
        pipeline._absorb()
    began = time.perf_counter()
    pipeline._seal_and_write()
    return time.perf_counter() - began


def measure(collector: ModelDataCollector, rows: int, repeats: int) -> tuple[float, float]:
    batch_seconds(collector, rows)  # warm up: first conversions, files created
    alone = statistics.median(batch_seconds(collector, rows) for _ in range(repeats))
    stop = threading.Event()

    def spin() -> None:  # a scoring thread that never blocks
        while not stop.is_set():
            pass

    spinner = threading.Thread(target=spin, daemon=True)
    spinner.start()
    try:
        beside = statistics.median(batch_seconds(collector, rows) for _ in range(repeats))
    finally:
        stop.set()
        spinner.join()
    return alone, beside


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    interval = sys.getswitchinterval()
    print(f"{args.rows} single float rows per batch, switch interval {interval * 1e3:.0f} ms, "
          f"medians of {args.repeats}")
    print(f"{'sink':28s} {'alone ms':>9s} {'beside ms':>10s} {'round trips':>12s}")
    with tempfile.TemporaryDirectory() as work:
        cases = [("local disk, appending", {}), ("local disk, objects + spool", {"append": False})]
        for i, (name, options) in enumerate(cases):
            collector = ModelDataCollector(f"gil{i}", designation="inputs", feature_names=[f"f{j}" for j in range(6)],
                                           storage=f"{work}/{i}", storage_options=options, compaction="off")
            pipeline = collector._pipeline
            pipeline.interval, pipeline.batch_rows = 1000.0, 10**9  # this thread writes the batches
            alone, beside = measure(collector, args.rows, args.repeats)
            print(f"{name:28s} {alone * 1e3:9.1f} {beside * 1e3:10.1f} {(beside - alone) / interval:12.0f}")
            collector.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
