"""How close to the floor can a collector with Azure ML's collect() contract get at all?

    python benchmarks/api_minimum.py [--seconds 1] [--repeats 3]

Builds ``api_minimum.c`` (a C function doing only what the contract requires per call: copy the
row, set the pairing context variable, return the eight-key dict with a fresh id and timestamp)
into ``.cache/bench/api_minimum`` and runs it in the suite's closed loop (``workload.py``: list
rows, 1/4/16 threads) beside the floor and mdc, medians of the repeats, ratios from one run.
It answers whether the floor targets are out of reach for the API itself or only for mdc's
implementation of it.
"""

from __future__ import annotations

import argparse
import contextvars
import importlib
import statistics
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import workload  # noqa: E402


def build() -> object:
    """The compiled lower bound (setuptools' build_ext, as installing mdc builds its own)."""
    from setuptools import Distribution, Extension

    out = HERE.parent / ".cache" / "bench" / "api_minimum"
    with tempfile.TemporaryDirectory() as temp:
        dist = Distribution({
            "name": "api_minimum",
            "ext_modules": [Extension("api_minimum", [str(HERE / "api_minimum.c")])],
            "script_args": ["-q", "build_ext", "--build-lib", str(out), "--build-temp", temp],
        })
        dist.parse_command_line()
        dist.run_commands()
    sys.path.insert(0, str(out))
    return importlib.import_module("api_minimum")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=1.0)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    from mdc_core import ModelDataCollector
    from mdc_core.shapes import AML_COLUMNS

    minimum = build()
    sink: list = []
    minimum.setup(dict.fromkeys(AML_COLUMNS, ""), contextvars.ContextVar("mdc_open"), sink)
    root = tempfile.mkdtemp()
    inputs = ModelDataCollector("bench", designation="inputs", feature_names=workload.FEATURES, storage=root)
    preds = ModelDataCollector("bench", designation="predictions", feature_names=workload.PREDICTIONS, storage=root)
    kinds = {
        "floor": lambda t: workload.floor_request(sink),
        "api minimum": lambda t: (minimum.minimal, lambda y, ctx: minimum.minimal(y)),
        "mdc": lambda t: (inputs.collect, lambda y, ctx: preds.collect(y)),
    }
    print(f"{'threads':>7}  {'collector':12} {'calls/s':>12} {'x floor':>8} {'p99 us':>8}")
    for threads in (1, 4, 16):
        pools = [workload.make_pool("list", 1, seed=t) for t in range(threads)]
        runs: dict[str, list[tuple[float, float]]] = {k: [] for k in kinds}
        for _ in range(args.repeats):
            for name, request_for in kinds.items():
                loop = workload.closed_loop(request_for, pools, args.seconds)
                p99 = workload.percentiles_us(loop.latencies_ns)["p99_us"]
                runs[name].append((2 * loop.iterations / loop.seconds, p99))
                sink.clear()
                inputs.flush()
                preds.flush()
        floor = statistics.median(rate for rate, _ in runs["floor"])
        for name, results in runs.items():
            rate = statistics.median(r for r, _ in results)
            p99 = statistics.median(p for _, p in results)
            print(f"{threads:>7}  {name:12} {rate:>12,.0f} {rate / floor:>8.2f} {p99:>8.1f}")


if __name__ == "__main__":
    main()
