"""One process of one benchmark cell: build the collectors, loop, wait until durable, report.

    python benchmarks/cell.py SPEC.json

Run by ``benchmarks/suite.py`` (never by hand): it prints ``READY`` once everything is built and
warmed up, waits for a line ``GO`` on standard input (so that all processes of a cell start
together), runs the closed loop, waits until the rows are durable, optionally runs the floor from
the same number of threads, writes its result as JSON (latencies as ``.npy``) where the spec says,
and prints ``DONE``. Targets: ``mdc``, and the peers ``v2`` (azureml-ai-monitoring) and ``v1``
(azureml-monitoring), which run in their own virtual environments without mdc installed.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import workload  # noqa: E402

WARMUP = 5  # requests per thread before the clock starts (their rows are counted too)


def _peak_rss_mb() -> float:
    """This process's peak resident memory. VmHWM, not ru_maxrss: Linux keeps ru_maxrss across
    exec, so a cell would inherit the high-water mark of the suite process that started it."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _mdc(spec: dict) -> tuple[Callable[[int], tuple], Callable[[float], dict]]:
    from mdc_core import ModelDataCollector

    common = {
        "storage": spec["storage"],
        "storage_options": spec.get("options") or {},
        "format": spec.get("format", "csv"),
        "compaction": "off",
    }
    inputs = ModelDataCollector(spec["model"], designation="inputs", feature_names=workload.FEATURES, **common)
    preds = ModelDataCollector(spec["model"], designation="predictions", feature_names=workload.PREDICTIONS, **common)

    def first(x: Any) -> Any:
        return inputs.collect(x)

    def second(y: Any, _ctx: Any) -> Any:
        return preds.collect(y)  # pairs with the inputs just collected on this thread

    def finish(timeout: float) -> dict:
        a = inputs.flush(timeout)
        b = preds.flush(timeout)
        sa, sb = inputs.stats(), preds.stats()
        return {
            "durable": bool(a) and bool(b),
            "refused": sum(sa["dropped"].values()) + sum(sb["dropped"].values()),
            "dropped_by_reason": {
                k: sa["dropped"].get(k, 0) + sb["dropped"].get(k, 0) for k in {**sa["dropped"], **sb["dropped"]}
            },
            "spooled": sa.get("spooled", 0) + sb.get("spooled", 0),
            "unpaired": sb.get("unpaired", 0),
        }

    return (lambda t: (first, second)), finish


def _v2(spec: dict) -> tuple[Callable[[int], tuple], Callable[[float], dict]]:
    """azureml-ai-monitoring: posts each collected frame as JSON to a local sidecar (our sink)."""
    from azureml.ai.monitoring import Collector
    from azureml.ai.monitoring.init import teardown

    dropped = [0]

    def on_error(_exc: Exception) -> None:  # its default re-raises into the scoring function
        dropped[0] += 1

    inputs = Collector(name="model_inputs", on_error=on_error)
    outputs = Collector(name="model_outputs", on_error=on_error)

    def first(x: Any) -> Any:
        return inputs.collect(x)

    def second(y: Any, ctx: Any) -> Any:
        return outputs.collect(y, ctx)

    def finish(_timeout: float) -> dict:
        teardown(wait_for_flush=True)  # drains its queue into the sink, then stops its worker
        # Each refused call is one frame it turned away (queue full) and told on_error about.
        return {"durable": True, "refused": dropped[0] * spec["rows"], "calls_refused": dropped[0]}

    return (lambda t: (first, second)), finish


def _v1(spec: dict) -> tuple[Callable[[int], tuple], Callable[[float], dict]]:
    """azureml-monitoring: Azure ML's original ModelDataCollector (native library, block blob)."""
    from azureml.monitoring import ModelDataCollector

    inputs = ModelDataCollector(spec["model"], designation="inputs", feature_names=workload.FEATURES)
    preds = ModelDataCollector(spec["model"], designation="predictions", feature_names=workload.PREDICTIONS)

    def first(x: Any) -> Any:
        return inputs.collect(x)

    def second(y: Any, ctx: Any) -> Any:
        # Its documented way to correlate: add the inputs' correlation columns, then collect.
        return preds.collect(preds.add_correlations(y, ctx) if ctx else y)

    def finish(_timeout: float) -> dict:
        # It commits its block blobs only when the process shuts down: the suite times that.
        return {"durable": None, "refused": None}

    return (lambda t: (first, second)), finish


TARGETS = {"mdc": _mdc, "v2": _v2, "v1": _v1}


def run(spec: dict, go: Callable[[], None]) -> dict:
    threads, shape, rows = spec["threads"], spec["shape"], spec["rows"]
    seed = 1000 * spec.get("process", 0)
    pools = [workload.make_pool(shape, rows, seed + t) for t in range(threads)]
    request_for, finish = TARGETS[spec["target"]](spec)
    warm = workload.closed_loop(request_for, pools, 0.0, max_iterations=WARMUP)
    cpu0 = _cpu()
    loop = workload.closed_loop(request_for, pools, spec["seconds"], go=go, max_iterations=spec.get("iterations"))
    last_call_wall = time.time() - (time.perf_counter() - loop.last_call_end)
    done = finish(spec.get("flush_timeout", 600.0))
    durable_at = time.perf_counter()
    result: dict[str, Any] = {
        "target": spec["target"],
        "process": spec.get("process", 0),
        "iterations": loop.iterations,
        "warmup_iterations": warm.iterations,
        "calls": 2 * loop.iterations,
        "rows": 2 * rows * loop.iterations,
        "rows_collected": 2 * rows * (loop.iterations + warm.iterations),
        "seconds": loop.seconds,
        "durable_s": durable_at - loop.last_call_end,
        "last_call_wall": last_call_wall,
        "cpu_s": _cpu() - cpu0,
        "peak_rss_mb": _peak_rss_mb(),
        **done,
    }
    np.save(spec["result"] + ".lat.npy", loop.latencies_ns)
    if spec.get("floor"):
        sink: list = []
        pair = workload.floor_request(sink)
        floor = workload.closed_loop(lambda t: pair, pools, spec["seconds"], max_iterations=spec.get("iterations"))
        result["floor"] = {"calls": 2 * floor.iterations, "rows": 2 * rows * floor.iterations, "seconds": floor.seconds}
        np.save(spec["result"] + ".floor.npy", floor.latencies_ns)
    return result


def main() -> None:
    with open(sys.argv[1]) as f:
        spec = json.load(f)
    # The protocol keeps the real stdout; anything a collector prints goes to stderr.
    protocol = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    sys.stdout = sys.stderr

    def go() -> None:
        print("READY", file=protocol, flush=True)
        line = sys.stdin.readline()
        if line.strip() != "GO":
            raise SystemExit(f"cell: expected GO on stdin, got {line!r}")

    result = run(spec, go)
    with open(spec["result"], "w") as f:
        json.dump(result, f)
    print("DONE", file=protocol, flush=True)


if __name__ == "__main__":
    main()
