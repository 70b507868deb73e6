"""How much of a collecting thread's time the garbage collector takes, and its longest pause.

    python benchmarks/gc_share.py [--seconds 3]

One thread collects 1-row list requests (inputs, then predictions) in a closed loop into a
temporary folder while the flusher runs as usual; ``gc.callbacks`` time every collection. Prints
calls/s, seconds spent per generation, collections per generation, the GC's share of the loop
and the longest single collection. Run it on two revisions side by side (``PYTHONPATH=<other
src>``) to compare: the share, not the absolute rate, is what carries across machines.
"""

from __future__ import annotations

import argparse
import gc
import tempfile
import time

from mdc_core import ModelDataCollector


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args()

    root = tempfile.mkdtemp()
    inputs = ModelDataCollector("bench", designation="inputs", feature_names=[f"feat{i}" for i in range(1, 7)],
                                storage=root)
    predictions = ModelDataCollector("bench", designation="predictions", feature_names=["p1", "p2"], storage=root)
    row, prediction = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6], [0.5, 0.7]

    spent, counts, longest, started = [0.0, 0.0, 0.0], [0, 0, 0], [0.0], [0.0]

    def timing(phase: str, info: dict) -> None:
        if phase == "start":
            started[0] = time.perf_counter()
            return
        took = time.perf_counter() - started[0]
        spent[info["generation"]] += took
        counts[info["generation"]] += 1
        longest[0] = max(longest[0], took)

    gc.callbacks.append(timing)
    calls, begin = 0, time.perf_counter()
    try:
        while time.perf_counter() - begin < args.seconds:
            for _ in range(1000):
                inputs.collect(row)
                predictions.collect(prediction)
            calls += 2000
    finally:
        gc.callbacks.remove(timing)
    elapsed = time.perf_counter() - begin
    print(f"calls/s {calls / elapsed:,.0f}; GC seconds by generation {[round(s, 3) for s in spent]}, "
          f"collections {counts}; GC share {100 * sum(spent) / elapsed:.1f} %; longest pause {longest[0] * 1e3:.1f} ms")
    inputs.flush()
    predictions.flush()


if __name__ == "__main__":
    main()
