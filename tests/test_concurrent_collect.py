"""collect() from many threads at once: chunks go to a lock-free inbox and are numbered later, so
every row must still be counted, written once, with a unique correlation id, and paired."""

from __future__ import annotations

import threading

from conftest import data_files, read_csv
from mdc_core import ModelDataCollector, request_context
from mdc_core.pipeline import ABSORB_EVERY, get_pipeline


def test_a_few_rows_left_in_the_inbox_are_counted_and_flushed(tmp_path) -> None:
    """Fewer rows than one absorb: stats() counts them at once and flush() writes them."""
    dc = ModelDataCollector("m", designation="inputs", feature_names=["a"], storage=tmp_path)
    for i in range(3):
        dc.collect([i + 0.5])
    assert len(get_pipeline()._inbox) > 0  # the case under test: rows not yet numbered
    assert dc.stats()["collected"] == 3
    assert dc.flush(timeout=30)
    assert [r["a"] for f in data_files(tmp_path) for r in read_csv(f)] == ["0.5", "1.5", "2.5"]


def test_threads_mixing_single_rows_batches_and_pairs_lose_nothing(tmp_path) -> None:
    """8 threads, each serving requests of 1 or 3 input rows with paired predictions: every row
    read back once (by the csv module), ids unique across single rows and batches, every
    prediction sharing its input's id, and the collectors' counts exact."""
    inputs = ModelDataCollector("m", designation="inputs", feature_names=["t", "i", "r"], storage=tmp_path)
    preds = ModelDataCollector("m", designation="predictions", feature_names=["t", "i", "r"], storage=tmp_path)
    threads, requests = 8, 3 * ABSORB_EVERY
    start = threading.Barrier(threads)

    def serve(t: int) -> None:
        start.wait()
        for i in range(requests):
            rows = 1 if i % 4 else 3
            data = [[t, i, r] for r in range(rows)] if rows > 1 else [t, i, 0]
            with request_context():
                inputs.collect(data)
                preds.collect(data)

    workers = [threading.Thread(target=serve, args=(t,)) for t in range(threads)]
    [w.start() for w in workers]
    [w.join() for w in workers]
    assert inputs.flush(timeout=60) and preds.flush(timeout=60)
    expected = threads * sum(1 if i % 4 else 3 for i in range(requests))
    assert inputs.stats()["collected"] == inputs.stats()["written"] == expected
    assert preds.stats()["written"] == expected and preds.stats()["unpaired"] == 0

    def read(designation: str) -> dict[tuple[str, str, str], dict[str, str]]:
        rows = [r for f in data_files(tmp_path, f"**/{designation}/**/*.csv") for r in read_csv(f)]
        keyed = {(r["t"], r["i"], r["r"]): r for r in rows}
        assert len(keyed) == len(rows) == expected  # each row once
        return keyed

    got_inputs, got_preds = read("inputs"), read("predictions")
    ids = [r["$aml_dc_correlation_id"] for r in got_inputs.values()]
    assert len(set(ids)) == expected
    for key, row in got_inputs.items():
        assert got_preds[key]["$aml_dc_correlation_id"] == row["$aml_dc_correlation_id"]
        assert got_preds[key]["$aml_request_id"] == row["$aml_request_id"]


def test_queued_single_rows_leave_the_garbage_collector_nothing_to_walk(tmp_path) -> None:
    """A queued 1-row call is plain values (route key, row tuple or block of float rows, stamp
    tuple) that the GC stops tracking within two young collections, so a long queue never feeds
    full collections (when each call held its Route and a Taken they took a third of a
    collecting thread's time). Int rows are queued one by one and close the float rows' block."""
    import gc

    from mdc_core.shapes import queued_rows

    pipeline = get_pipeline()
    dc = ModelDataCollector("m", designation="inputs", feature_names=["a", "b"], storage=tmp_path)
    with pipeline.lock:  # the flusher cannot take the calls while they are inspected
        for i in range(2 * ABSORB_EVERY):
            dc.collect([i + 0.5, 1.5] if i % 4 else [i, 1])
        pipeline._absorb()
        queued_calls = list(pipeline._queue)
        gc.collect(0)
        gc.collect(1)
        tracked = sum(gc.is_tracked(chunk) for chunk in queued_calls)
    assert sum(queued_rows(chunk[1]) for chunk in queued_calls) == 2 * ABSORB_EVERY
    assert len(queued_calls) >= ABSORB_EVERY // 2  # every int row and the blocks between them
    assert tracked == 0, f"{tracked} of {len(queued_calls)} queued calls are still tracked by the GC"
    assert dc.flush(timeout=30) and dc.stats()["written"] == 2 * ABSORB_EVERY
