"""The fixed benchmark workload and the closed loop that drives it (no mdc import: peers use it too).

One iteration is one scoring request: collect 1 or 100 input rows of 6 float64 features
(``feat1..feat6``), then the 2-float64 predictions for them, correlated with the inputs. Each
thread of a cell loops as fast as it can (closed loop) from a common start until told to stop;
every ``collect()`` call is timed on the calling thread.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

FEATURES = [f"feat{i}" for i in range(1, 7)]
PREDICTIONS = ["prediction1", "prediction2"]
SHAPES = ("list", "numpy", "pandas", "arrow")
POOL = 64  # distinct requests per thread, cycled


def make_pool(shape: str, rows: int, seed: int, size: int = POOL) -> list[tuple[Any, Any]]:
    """``size`` (inputs, predictions) pairs of the given input type and rows per call."""
    rng = np.random.default_rng(seed)
    pool = []
    for _ in range(size):
        x = rng.normal(size=(rows, 6))
        y = rng.normal(size=(rows, 2))
        pool.append((convert(x, shape, FEATURES), convert(y, shape, PREDICTIONS)))
    return pool


def convert(a: np.ndarray, shape: str, names: list[str]) -> Any:
    """One request's rows as a scoring script would hold them."""
    if shape == "list":
        return a[0].tolist() if len(a) == 1 else a.tolist()
    if shape == "numpy":
        return a  # 2-D, as np.array(request["data"]) gives
    if shape == "pandas":
        import pandas as pd

        return pd.DataFrame(a, columns=names)
    if shape == "arrow":
        import pyarrow as pa

        return pa.table({n: a[:, i] for i, n in enumerate(names)})
    raise ValueError(f"unknown shape {shape!r}: use one of {SHAPES}")


@dataclass
class LoopResult:
    """What the calling threads did: iterations, collect() latencies (ns), and timing."""

    iterations: int
    latencies_ns: np.ndarray
    started: float  # perf_counter() when the threads were released
    last_call_end: float  # perf_counter() at the end of the last collect() of any thread
    per_thread: list[int] = field(default_factory=list)

    @property
    def seconds(self) -> float:
        return self.last_call_end - self.started


Request = Callable[[Any, Any], None]


def closed_loop(
    request_for: Callable[[int], tuple[Callable[[Any], Any], Callable[[Any, Any], Any]]],
    pools: list[list[tuple[Any, Any]]],
    seconds: float,
    go: Callable[[], None] = lambda: None,
    max_iterations: int | None = None,
) -> LoopResult:
    """Run one thread per pool; thread ``t`` calls ``first(x)`` then ``second(y, first's result)``.

    ``request_for(t)`` gives the two callables (built before the clock starts). All threads are
    released together once ``go()`` returns, and stop after ``seconds`` (or ``max_iterations``
    each, for smoke tests). Latency is recorded per call, on the calling thread.
    """
    threads = len(pools)
    barrier = threading.Barrier(threads + 1)
    stop = [False]
    lats: list[list[int]] = [[] for _ in range(threads)]
    counts = [0] * threads
    ends = [0.0] * threads
    errors: list[BaseException] = []
    limit = max_iterations if max_iterations is not None else 1 << 62

    def body(t: int) -> None:
        first, second = request_for(t)
        pool, lat = pools[t], lats[t]
        size = len(pool)
        pc = time.perf_counter_ns
        i = 0
        barrier.wait()
        try:
            while not stop[0] and i < limit:
                x, y = pool[i % size]
                t0 = pc()
                ctx = first(x)
                t1 = pc()
                second(y, ctx)
                t2 = pc()
                lat.append(t1 - t0)
                lat.append(t2 - t1)
                i += 1
        except BaseException as exc:  # reported by the caller, never swallowed
            errors.append(exc)
        ends[t] = time.perf_counter()
        counts[t] = i

    workers = [threading.Thread(target=body, args=(t,), daemon=True) for t in range(threads)]
    for w in workers:
        w.start()
    go()
    barrier.wait()
    started = time.perf_counter()
    if max_iterations is None:
        time.sleep(seconds)
        stop[0] = True
    for w in workers:
        w.join()
    if errors:
        raise errors[0]
    merged = np.concatenate([np.asarray(x, dtype=np.int64) for x in lats]) if lats else np.zeros(0, np.int64)
    return LoopResult(sum(counts), merged, started, max(ends), counts)


def floor_request(sink: list) -> tuple[Callable[[Any], Any], Callable[[Any, Any], Any]]:
    """The floor: ``with lock: list.append(row)`` for the inputs and again for the predictions."""
    lock = threading.Lock()

    def first(x: Any) -> None:
        with lock:
            sink.append(x)

    def second(y: Any, _ctx: Any) -> None:
        with lock:
            sink.append(y)

    return first, second


def percentiles_us(latencies_ns: np.ndarray) -> dict[str, float]:
    """p50, p99 and p99.9 in microseconds (NaN when nothing was measured)."""
    if latencies_ns.size == 0:
        return {"p50_us": float("nan"), "p99_us": float("nan"), "p999_us": float("nan")}
    p50, p99, p999 = np.percentile(latencies_ns, [50, 99, 99.9]) / 1000.0
    return {"p50_us": float(p50), "p99_us": float(p99), "p999_us": float(p999)}
