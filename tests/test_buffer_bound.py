"""The memory bound: what collect() does when the sink is stalled and the buffer is full."""

from __future__ import annotations

import threading

import pytest

from conftest import data_files, read_csv
from mdc_backends.local import LocalBackend
from mdc_core import ModelDataCollector
from mdc_core.pipeline import get_pipeline


class GatedBackend(LocalBackend):
    """The local backend, held shut until the test opens the gate: a stalled sink, for real."""

    def __init__(self, root: str):
        super().__init__(root)
        self.gate = threading.Event()
        self.entered = threading.Event()

    def append(self, key, header, body):
        self.entered.set()
        assert self.gate.wait(60), "the test never opened the gate"
        return super().append(key, header, body)


@pytest.fixture
def bounded(tmp_path):
    """A collector whose sink is stalled, in a pipeline bounded to ~20 rows of memory."""
    pipeline = get_pipeline()
    saved = pipeline.max_bytes, pipeline.on_full, pipeline.block_timeout
    dc = ModelDataCollector("m", designation="inputs", feature_names=["i"], storage=tmp_path)
    backend = GatedBackend(str(tmp_path))
    dc._route.sink.backend = backend
    one_row = 9 * 16 + 64  # estimate_bytes of a one-row list of width 1
    pipeline.max_bytes = 20 * one_row
    yield dc, backend, pipeline, tmp_path
    backend.gate.set()
    pipeline.max_bytes, pipeline.on_full, pipeline.block_timeout = saved
    dc.flush(timeout=30)


def stall(dc, backend) -> None:
    """Collect one row and wait until the flusher is stuck writing it."""
    dc.collect([-1])
    dc._pipeline._wake.set()
    assert backend.entered.wait(30)


def written(tmp_path) -> list[int]:
    return [int(r["i"]) for p in data_files(tmp_path) for r in read_csv(p)]


def test_drop_newest_counts_refused_rows(bounded) -> None:
    """drop_newest: once the bound is hit, new rows are refused and counted; the rest are written."""
    dc, backend, pipeline, root = bounded
    pipeline.on_full = "drop_newest"
    stall(dc, backend)
    for i in range(100):
        dc.collect([i])
        assert pipeline._buffered_bytes <= pipeline.max_bytes
    stats = dc.stats()
    assert stats["dropped"]["buffer_full"] > 0  # the bound really was hit
    backend.gate.set()
    assert dc.flush(timeout=30)
    stats = dc.stats()
    got = written(root)
    assert stats["written"] == len(got) and stats["written"] + stats["dropped"]["buffer_full"] == 101
    assert got == [-1] + list(range(len(got) - 1))  # the oldest were kept


def test_drop_oldest_keeps_the_newest(bounded) -> None:
    """drop_oldest: queued rows make room for new ones; the newest rows are the ones written."""
    dc, backend, pipeline, root = bounded
    pipeline.on_full = "drop_oldest"
    stall(dc, backend)
    for i in range(100):
        dc.collect([i])
    backend.gate.set()
    assert dc.flush(timeout=30)
    got = written(root)
    dropped = dc.stats()["dropped"]["buffer_full"]
    assert dropped > 0 and len(got) + dropped == 101
    assert got[-1] == 99 and got[1:] == list(range(100 - len(got) + 1, 100))


def test_block_waits_then_gives_up_by_its_timeout(bounded) -> None:
    """block: collect() waits for room up to block_timeout, then counts the rows as dropped."""
    dc, backend, pipeline, root = bounded
    pipeline.on_full, pipeline.block_timeout = "block", 0.05
    stall(dc, backend)
    accepted = [i for i in range(40) if dc.collect([i])]
    assert dc.stats()["dropped"]["buffer_full"] == 40 - len(accepted) > 0
    backend.gate.set()
    assert dc.flush(timeout=30)
    assert sorted(written(root)) == [-1] + accepted


def test_block_resumes_when_the_sink_drains(bounded) -> None:
    """block: a collect() waiting for room proceeds as soon as the flusher frees it."""
    dc, backend, pipeline, root = bounded
    pipeline.on_full, pipeline.block_timeout = "block", 60.0
    stall(dc, backend)
    for i in range(19):
        dc.collect([i])
    done = threading.Event()
    waiter = threading.Thread(target=lambda: (dc.collect([1000]), done.set()))
    waiter.start()
    assert not done.wait(0.3)  # it is really waiting
    backend.gate.set()
    assert done.wait(30)
    waiter.join()
    assert dc.flush(timeout=30)
    assert 1000 in written(root) and "buffer_full" not in dc.stats()["dropped"]


def test_bad_policy_is_refused(monkeypatch) -> None:
    """An unknown MDC_ON_FULL policy is a configuration error."""
    from mdc_core.errors import ConfigurationError
    from mdc_core.pipeline import Pipeline

    with pytest.raises(ConfigurationError, match="on_full"):
        Pipeline(on_full="panic")


def test_spill_never_waits_and_stops_at_twice_the_bound(bounded) -> None:
    """spill (the default): collect() never blocks; memory stays under twice the bound, the rest is counted."""
    dc, backend, pipeline, root = bounded
    pipeline.on_full = "spill"
    stall(dc, backend)
    for i in range(100):
        dc.collect([i])
        assert pipeline._buffered_bytes <= 2 * pipeline.max_bytes
    dropped = dc.stats()["dropped"]["buffer_full"]
    assert dropped > 0
    backend.gate.set()
    assert dc.flush(timeout=30)
    assert len(written(root)) + dropped == 101


def test_batches_are_sealed_at_a_bounded_size(tmp_path, monkeypatch) -> None:
    """However much is queued, the flusher seals batches of at most MAX_BATCH_ROWS (plus the last
    call's rows), so objects stay a sensible size and memory is freed as it goes."""
    import mdc_core.pipeline as pipeline_module

    monkeypatch.setattr(pipeline_module, "MAX_BATCH_ROWS", 10)
    monkeypatch.setenv("MDC_SPOOL", "off")
    dc = ModelDataCollector("m", designation="inputs", storage=tmp_path, storage_options={"append": False},
                            compaction="off")
    for call in range(5):
        dc.collect([[call * 10 + i] for i in range(6)])
    assert dc.flush(timeout=30)
    sizes = [len(read_csv(p)) for p in data_files(tmp_path)]
    assert sum(sizes) == 30 and len(sizes) >= 3 and max(sizes) <= 12


class GatedCreates(LocalBackend):
    """The local backend in object-store mode (create-only batch files, spooled first) whose
    uploads hang until the test opens the gate: a hung object store."""

    def __init__(self, root: str):
        super().__init__(root, {"append": False})
        self.gate = threading.Event()
        self.entered = threading.Event()

    def create(self, key, data):
        self.entered.set()
        assert self.gate.wait(60), "the test never opened the gate"
        return super().create(key, data)


def test_spill_moves_rows_to_the_spool_while_an_upload_hangs(tmp_path) -> None:
    """spill with a hung object store: the flusher is stuck in an upload, yet memory stays
    bounded and nothing is dropped, because the spiller seals queued rows into the local spool;
    once storage answers, the replay uploads them, every row once."""
    pipeline = get_pipeline()
    saved = pipeline.max_bytes, pipeline.on_full
    dc = ModelDataCollector("m", designation="inputs", feature_names=["i"], storage=tmp_path,
                            storage_options={"append": False}, compaction="off")
    backend = GatedCreates(str(tmp_path))
    dc._route.sink.backend = backend
    pipeline._spools[dc._route.sink.storage_label] = (dc._route.sink.spool, backend)
    one_row = 9 * 16 + 64
    pipeline.max_bytes, pipeline.on_full = 20 * one_row, "spill"
    try:
        stall(dc, backend)
        for i in range(200):
            dc.collect([i])
            assert pipeline._buffered_bytes <= 2 * pipeline.max_bytes
            if pipeline._buffered_bytes > pipeline.max_bytes:  # give the spiller its turn, as time would
                assert wait_for(lambda: pipeline._buffered_bytes <= pipeline.max_bytes)
        stats = dc.stats()
        assert stats["dropped"] == {} and stats["spooled"] > 100, stats  # spilled, not dropped
        assert not backend.gate.is_set() and data_files(tmp_path, "**/data-*.csv") == []  # nothing uploaded yet
        status = dc.flush(timeout=0.5)
        assert not status and status.spooled_rows == stats["spooled"], status
    finally:
        backend.gate.set()
        pipeline.max_bytes, pipeline.on_full = saved
    status = dc.flush(timeout=30)
    assert status and status.spooled_rows == 0 and status.dropped_rows == 0, status
    got = [int(r["i"]) for p in data_files(tmp_path, "**/data-*.csv") for r in read_csv(p)]
    assert sorted(got) == [-1] + list(range(200))  # every row once
    assert dc._route.sink.spool.bytes() == 0


def wait_for(condition, timeout: float = 30.0) -> bool:
    done = threading.Event()
    for _ in range(int(timeout / 0.01)):
        if condition():
            return True
        done.wait(0.01)
    return condition()


def test_the_age_of_the_oldest_row_in_memory_is_reported(bounded) -> None:
    """While the sink is stalled, stats() says how old the oldest unwritten row is (by the
    pipeline's clock, checked with an explicit 'now'); once written, there is none."""
    import time

    dc, backend, pipeline, root = bounded
    stall(dc, backend)
    dc.collect([1])
    now = time.time()
    age = pipeline.oldest_pending_age(now=now + 100)
    assert age is not None and 100 <= age < 100 + 60  # the stalled row, collected moments ago
    assert dc.stats()["oldest_pending_age_s"] is not None
    backend.gate.set()
    assert dc.flush(timeout=30)
    assert pipeline.oldest_pending_age() is None and dc.stats()["oldest_pending_age_s"] is None
