"""The compiled collect()'s blocks: single float rows queued as columns (``_hotpath.Block``).

A block holds many rows of one collector as C arrays; it must change nothing a user can see:
every row written once, in the order one thread collected it (also between rows that take
other paths), with the ids collect() returned, the same text as the Python path writes, and
the counters right. Rows are read back with the csv module.
"""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest

from conftest import data_files, read_csv
from mdc_core import AML_COLUMNS, ModelDataCollector, request_context
from mdc_core import collector as collector_module
from mdc_core import pipeline as pipeline_module
from mdc_core.pipeline import BLOCK_ROWS
from test_collector import run_script
from test_hotpath import COMPILED, collectors, require_compiled, rows_of

ID, REQUEST = AML_COLUMNS[0], AML_COLUMNS[7]


@pytest.fixture(autouse=True)
def compiled() -> None:
    require_compiled()


def queued_block(collector: ModelDataCollector, row: list[float]) -> Any:
    """Collect ``row`` and return the block it went into (still in the inbox, not yet sealed)."""
    pipeline = collector._pipeline
    with pipeline.lock:  # no absorb meanwhile: the inbox keeps the block
        collector.collect(row)
        return pipeline._inbox[-1][1]


def test_float_rows_go_into_one_block_until_it_is_absorbed(tmp_path) -> None:
    inputs, _ = collectors(tmp_path)
    block = queued_block(inputs, [1.0, 2.0, 3.0])
    assert type(block) is COMPILED.Block and not block.sealed
    inputs.collect([4.0, 5.0, 6.0])
    assert block.rows == 2  # the same block took the second row: no new chunk
    assert inputs.stats()["collected"] == 2  # stats() absorbs: the block is counted and sealed
    assert block.sealed
    assert type(queued_block(inputs, [7.0, 8.0, 9.0])) is COMPILED.Block  # a new one
    assert inputs.flush(timeout=30)
    assert [r["a"] for r in rows_of(tmp_path, "inputs")] == ["1", "4", "7"]


def test_sealed_blocks_become_columns_and_expand_to_the_rows_they_stand_for(tmp_path) -> None:
    inputs, _ = collectors(tmp_path)
    block = queued_block(inputs, [1.5, float("nan"), -0.0])
    with pytest.raises(ValueError, match="sealed"):
        COMPILED.block_columns([block])  # rows may still be added: not readable yet
    with request_context("req-1"):
        inputs.collect([2.5, 1e300, 3.0])
    with inputs._pipeline.lock:
        inputs._pipeline._absorb()
    assert block.sealed and block.rows == 2
    prefix, features, counters, times, requests = COMPILED.block_columns([block])
    assert len(features) == 3 and all(len(f) == 16 for f in features) and len(counters) == len(times) == 16
    assert requests == [correlation_none(), "req-1"] and prefix == block.prefix
    rows, stamps = block.expand()
    assert rows[1] == (2.5, 1e300, 3.0) and rows[0][0] == 1.5 and rows[0][1] != rows[0][1]
    assert [s[5] for s in stamps] == requests and all(s[0] == prefix and s[2] == 1 for s in stamps)
    with pytest.raises(TypeError):
        COMPILED.Block()  # only collect() makes blocks
    assert inputs.flush(timeout=30)
    written = rows_of(tmp_path, "inputs")
    assert [(r["a"], r["b"], r["c"], r[REQUEST]) for r in written] == [
        ("1.5", "", "-0", correlation_none()), ("2.5", "1e+300", "3", "req-1")]


def correlation_none() -> str:
    from mdc_core import NO_REQUEST_ID

    return NO_REQUEST_ID


def scenario(root: Path) -> tuple[list[list[str]], list[str], list[str], dict[str, Any]]:
    """One thread's collects that take every path in turn; the rows read back, in order."""
    np = pytest.importorskip("numpy")
    inputs, preds = collectors(root)
    calls: list[tuple[Any, str]] = [
        ([1.5, 2.0, 3.0], ""),
        ([2.5, 2.0, 3.0], ""),
        ([3, 2, 1], ""),  # ints: a tuple chunk of its own
        ([4.5, 2.0, 3.0], ""),
        (np.array([[5.5, 2.0, 3.0]]), ""),  # float64 array: the block again
        (["x", 2.0, 3.0], ""),  # text: the column becomes text for this batch
        ([6.5, 2.0, 3.0], "user-9"),  # a user id: the Python method
        (np.array([7, 8, 9], dtype=np.int64), ""),
        ({"a": 8.5, "b": 2.0, "c": 3.0}, ""),  # a dict: the Python method
        ([9.5, 2.0, 3.0], ""),
    ]
    returned = [inputs.collect(data, user)[ID] for data, user in calls]
    paired = preds.collect([0.25, 0.5])  # pairs with the last inputs
    inputs.collect([[1.0, 1.0, 1.0], [2.0, 2.0, 2.0]])  # two rows: the next prediction cannot pair
    unpaired = preds.collect([0.75, 1.0])
    with_user = inputs.collect([10.5, 2.0, 3.0], "order-1")
    carried = preds.collect([1.25, 1.5])  # pairs with a user id: a tuple chunk
    assert paired[ID] == returned[-1] and unpaired[ID] not in returned and carried == with_user
    assert inputs.flush(timeout=30) and preds.flush(timeout=30)
    ins, outs = rows_of(root, "inputs"), rows_of(root, "predictions")
    assert [r[ID] for r in ins][: len(returned)] == returned
    assert [r[ID] for r in outs] == [paired[ID], unpaired[ID], with_user[ID]]
    features = [[r["a"], r["b"], r["c"]] for r in ins] + [[r["p"], r["q"]] for r in outs]
    return features, [r[ID] for r in ins], [r[ID] for r in outs], preds.stats()


def test_rows_keep_one_threads_order_and_python_text_across_paths(tmp_path, monkeypatch) -> None:
    features, _, _, stats = scenario(tmp_path / "compiled")
    monkeypatch.setattr(collector_module, "_hotpath", None)
    monkeypatch.setattr(pipeline_module, "_hotpath", None)
    expected, _, _, expected_stats = scenario(tmp_path / "python")
    assert features == expected
    assert [row[0] for row in features[:10]] == ["1.5", "2.5", "3", "4.5", "5.5", "x", "6.5", "7", "8.5", "9.5"]
    assert stats["unpaired"] == expected_stats["unpaired"] == 1
    assert stats["collected"] == stats["written"] == 3


def test_more_rows_than_a_block_holds_are_all_written_in_order(tmp_path) -> None:
    inputs, _ = collectors(tmp_path)
    total = 3 * BLOCK_ROWS + 7
    returned = []
    for i in range(total):
        returned.append(inputs.collect([float(i), 0.5, 0.25])[ID])
        if i == BLOCK_ROWS + 3:
            assert inputs.flush(timeout=30)  # seals an open block halfway
    assert inputs.flush(timeout=30)
    written = rows_of(tmp_path, "inputs")
    assert [r["a"] for r in written] == [str(i) for i in range(total)]
    assert [r[ID] for r in written] == returned and len(set(returned)) == total
    assert inputs.stats()["collected"] == inputs.stats()["written"] == total


def test_a_bound_too_small_for_a_block_queues_rows_one_by_one(tmp_path) -> None:
    inputs, _ = collectors(tmp_path)
    pipeline = inputs._pipeline
    before = pipeline.max_bytes
    pipeline.max_bytes = 1 << 20  # a 128-byte lock-free chunk: no block fits
    try:
        with pipeline.lock:
            pipeline._absorb()
        queued = []
        for i in range(50):
            inputs.collect([float(i), 1.0, 2.0])
            queued.extend(type(chunk[1]).__name__ for chunk in list(pipeline._inbox) + list(pipeline._queue))
        assert "Block" not in queued
        assert inputs.flush(timeout=30)
    finally:
        pipeline.max_bytes = before
    assert [r["a"] for r in rows_of(tmp_path, "inputs")] == [str(i) for i in range(50)]


def test_a_forked_child_does_not_add_to_its_parents_open_block(tmp_path) -> None:
    script = textwrap.dedent("""
        import os
        from mdc_core import ModelDataCollector
        dc = ModelDataCollector("m", designation="inputs", feature_names=["x"], storage="store")
        for i in range(5):
            dc.collect([float(i)])          # an open block, still in the inbox at the fork
        pid = os.fork()
        if pid == 0:
            for i in range(100, 103):
                dc.collect([float(i)])
            ok = dc.flush(timeout=30)
            os._exit(0 if ok and dc.stats()["written"] == 3 else 3)
        for i in range(5, 8):
            dc.collect([float(i)])
        assert dc.flush(timeout=30) and dc.stats()["written"] == 8
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0, status
    """)
    result = run_script(tmp_path, script)
    assert result.returncode == 0, result.stderr
    rows = [r for p in data_files(tmp_path / "store") for r in read_csv(p)]
    assert sorted(float(r["x"]) for r in rows) == [*map(float, range(8)), 100.0, 101.0, 102.0]
    assert len({r[ID] for r in rows}) == 11


@pytest.mark.parametrize("policy", ["drop_newest", "drop_oldest"])
def test_the_memory_bound_holds_with_blocks_and_every_row_is_accounted_for(tmp_path, policy) -> None:
    """A bound large enough for blocks (8 MiB: ~29 rows each, ~250,000 rows in all), a stalled
    sink: blocks stop at the bound, the policy decides, and written + dropped is every row."""
    from test_buffer_bound import GatedBackend, stall, written

    pipeline = pipeline_module.get_pipeline()
    saved = pipeline.max_bytes, pipeline.on_full
    dc = ModelDataCollector("m", designation="inputs", feature_names=["i"], storage=tmp_path)
    backend = GatedBackend(str(tmp_path))
    dc._route.sink.backend = backend
    pipeline.max_bytes, pipeline.on_full = 8 << 20, policy
    try:
        stall(dc, backend)
        blocks = 0
        for i in range(400_000):
            dc.collect([float(i)])
            if i % 20_000 == 0:
                with pipeline.lock:
                    blocks += sum(type(chunk[1]) is COMPILED.Block for chunk in pipeline._inbox)
                    pipeline._absorb()
                    assert pipeline._buffered_bytes <= pipeline.max_bytes
        stats = dc.stats()
        assert blocks > 0 and stats["dropped"]["buffer_full"] > 0  # blocks were used; the bound was hit
    finally:
        backend.gate.set()
        flushed = dc.flush(timeout=60)
        pipeline.max_bytes, pipeline.on_full = saved
    assert flushed
    stats, got = dc.stats(), written(tmp_path)
    assert stats["written"] == len(got) and stats["written"] + stats["dropped"]["buffer_full"] == 400_001
    kept = [int(v) for v in got[1:]]  # after the stalling row
    if policy == "drop_newest":
        assert kept == list(range(len(kept)))  # the first rows, in order
    else:
        assert kept == sorted(kept) and kept[-1] == 399_999  # the latest rows are kept
