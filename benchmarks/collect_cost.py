"""Per-call cost of collect() on the caller's thread, beside the floor of a locked list append.

    python benchmarks/collect_cost.py [--calls 20000] [--repeats 7]

Prints the median (over repeats) nanoseconds per call of each case and its ratio to the floor
measured in the same run. Writes go to a temporary folder; the flusher runs as usual.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time

import numpy as np
import pandas as pd
import pyarrow as pa

from mdc_core import ModelDataCollector

FEATURES = [f"feat{i}" for i in range(1, 7)]


def per_call(fn, arg, calls: int) -> float:
    start = time.perf_counter_ns()
    for _ in range(calls):
        fn(arg)
    return (time.perf_counter_ns() - start) / calls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=20_000)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as root:
        on = ModelDataCollector("bench", designation="inputs", feature_names=FEATURES, storage=root)
        off = ModelDataCollector("bench", designation="inputs", feature_names=FEATURES, storage=root, enabled=False)
        preds = ModelDataCollector("bench", designation="predictions", feature_names=["p1", "p2"], storage=root)
        row = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6]
        batch = [row] * 100
        lock, sink = threading.Lock(), []

        def floor(r):
            with lock:
                sink.append(r)

        def request(r):
            on.collect(r)
            preds.collect([0.5, 0.7])

        cases = {
            "floor: with lock: list.append(row)": (floor, row),
            "disabled collector, list row": (off.collect, row),
            "list row": (on.collect, row),
            "tuple row": (on.collect, tuple(row)),
            "dict row": (on.collect, dict(zip(FEATURES, row))),
            "numpy 1-D row": (on.collect, np.array(row)),
            "pandas 1-row DataFrame": (on.collect, pd.DataFrame([row], columns=FEATURES)),
            "arrow 1-row Table": (on.collect, pa.table({f: [v] for f, v in zip(FEATURES, row)})),
            "request: inputs + paired predictions": (request, row),
            "100-row list batch (per call)": (on.collect, batch),
            "100-row numpy batch (per call)": (on.collect, np.array(batch)),
        }
        results = {}
        for name, (fn, arg) in cases.items():
            samples = []
            for _ in range(args.repeats):
                samples.append(per_call(fn, arg, args.calls))
                sink.clear()
                on.flush()
            results[name] = statistics.median(samples)
        base = results["floor: with lock: list.append(row)"]
        print(f"{'case':45s} {'ns/call':>10s} {'x floor':>8s}")
        for name, ns in results.items():
            print(f"{name:45s} {ns:10.0f} {ns / base:8.1f}")
        on.flush()
        print("\nrows written:", on.stats()["written"], "dropped:", on.stats()["dropped"])


if __name__ == "__main__":
    main()
