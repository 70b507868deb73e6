"""Does the flusher keep up with scoring threads that collect flat out for many seconds?

    python benchmarks/sustained_load.py [--threads 1,4,16] [--seconds 10] [--shape list]

The suite's cells last a second or two: rows wait in memory and are written in the "durable"
seconds after the loop, so a flusher that falls behind does not show. Here each thread runs the
fixed workload (one request: 1 input row, then its prediction) in a closed loop, on local disk
with the defaults, for ``--seconds``. At the end of the loop it reports how many of the rows
collected were already written, what memory held (against the bound), and what was dropped;
then it flushes, times that, and counts the rows in the CSV files with the ``csv`` module, which
must equal the rows collected less those counted as dropped.

Why it matters: CPython gives the GIL back to a thread that released it (the flusher, for each
write) only when the holder lets go, at the latest after the 5 ms switch interval, and threads
collecting in a closed loop never let go. Real services leave the GIL between requests (network
I/O, native inference), so this is the worst case, and the case where memory grows to its bound.
"""

from __future__ import annotations

import argparse
import csv
import glob
import os
import sys
import tempfile
import time

import workload

from mdc_core import ModelDataCollector


def rows_on_disk(root: str) -> int:
    total = 0
    for path in glob.glob(os.path.join(root, "**", "*.csv"), recursive=True):
        with open(path, newline="") as f:
            total += sum(1 for _ in csv.reader(f)) - 1  # less the header
    return total


def run(threads: int, seconds: float, shape: str) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as root:
        inputs = ModelDataCollector("m", designation="inputs", feature_names=workload.FEATURES, storage=root)
        predictions = ModelDataCollector("m", designation="predictions", feature_names=workload.PREDICTIONS,
                                         storage=root)
        pipeline = inputs._pipeline
        pools = [workload.make_pool(shape, 1, t) for t in range(threads)]

        def first(x: object) -> object:
            return inputs.collect(x)

        def second(y: object, _ctx: object) -> object:
            return predictions.collect(y)

        result = workload.closed_loop(lambda t: (first, second), pools, seconds)
        at_end = [inputs.stats(), predictions.stats()]
        buffered = pipeline.buffered_bytes
        began = time.perf_counter()
        inputs.flush()
        predictions.flush()
        durable = time.perf_counter() - began
        final = [inputs.stats(), predictions.stats()]
        inputs.close()
        predictions.close()
        collected = sum(s["collected"] for s in final)
        dropped = sum(sum(s["dropped"].values()) for s in final)
        on_disk = rows_on_disk(root)
    return {
        "threads": threads,
        "calls_per_s": len(result.latencies_ns) / result.seconds,
        "collected": collected,
        "written_at_end": sum(s["written"] for s in at_end),
        "buffered_mib": buffered / 2**20,
        "bound_mib": pipeline.max_bytes / 2**20,
        "dropped": dropped,
        "durable_s": durable,
        "on_disk": on_disk,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", default="1,4,16")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--shape", default="list", choices=workload.SHAPES)
    args = parser.parse_args()
    print(f"{args.shape} rows, one request = 1 input row + 1 prediction row, {args.seconds:.0f} s closed loop, "
          "local disk, defaults")
    print(f"{'threads':>7s} {'calls/s':>10s} {'collected':>11s} {'written at end':>15s} {'memory MiB':>11s} "
          f"{'dropped':>8s} {'durable s':>10s} {'read back':>10s}")
    failed = False
    for threads in (int(t) for t in args.threads.split(",")):
        r = run(threads, args.seconds, args.shape)
        lost = r["collected"] - r["dropped"] - r["on_disk"]
        failed |= lost != 0
        print(f"{threads:7d} {r['calls_per_s']:10,.0f} {r['collected']:11,} "
              f"{r['written_at_end']:8,} ({r['written_at_end'] / r['collected']:4.0%}) "
              f"{r['buffered_mib']:5.0f}/{r['bound_mib']:.0f} {r['dropped']:8,} {r['durable_s']:10.1f} "
              f"{'ok' if lost == 0 else f'LOST {lost:,}':>10s}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
