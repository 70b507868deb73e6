"""The GIL handoff: scoring threads that collect flat out let the flusher keep up (handoff.py, _handoff.h)."""

from __future__ import annotations

import os
import threading
import time

import pytest

from conftest import data_files, read_csv
from mdc_core import ModelDataCollector
from mdc_core import pipeline as pipeline_module
from mdc_core.handoff import BEHIND, flusher_first
from mdc_core.pipeline import get_pipeline

_hotpath = pytest.importorskip("mdc_core._hotpath", reason="the handoff is part of the compiled path")

ROW = [0.5, 1.5, 2.5, 3.5, 4.5, 5.5]


def test_flat_out_collectors_engage_the_handoff_and_lose_nothing(tmp_path, monkeypatch) -> None:
    """Eight threads collect in a closed loop for two seconds under an 8 MiB bound: the flusher
    falls behind, writes with the handoff engaged (collect() stepping aside), and every row is
    written exactly once, nothing refused. (benchmarks/sustained_load.py measures how much sooner
    rows are written than without the handoff.)"""
    pipeline = get_pipeline()
    saved = pipeline.max_bytes
    engaged = []

    def recording(behind: bool):
        engaged.append(behind)
        return flusher_first(behind)

    monkeypatch.setattr(pipeline_module, "flusher_first", recording)
    pipeline.max_bytes = 8 << 20
    dc = ModelDataCollector("m", designation="inputs", feature_names=[f"f{j}" for j in range(6)], storage=tmp_path)
    stop = threading.Event()
    start = threading.Barrier(9)

    def score() -> None:
        start.wait()
        while not stop.is_set():
            for _ in range(1000):
                dc.collect(ROW)

    threads = [threading.Thread(target=score) for _ in range(8)]
    try:
        for t in threads:
            t.start()
        start.wait()
        stop.wait(2.0)
        stop.set()
        for t in threads:
            t.join()
        assert dc.flush(timeout=120), dc.stats()
    finally:
        stop.set()
        pipeline.max_bytes = saved
    stats = dc.stats()
    assert sum(stats["dropped"].values()) == 0, stats
    assert True in engaged, "the flusher never fell behind: the test did not test the handoff"
    rows = [r for p in data_files(tmp_path) for r in read_csv(p)]
    assert len(rows) == stats["collected"] == stats["written"] > 100_000
    assert len({r["$aml_dc_correlation_id"] for r in rows}) == len(rows)
    assert {tuple(float(r[f"f{j}"]) for j in range(6)) for r in rows} == {tuple(ROW)}


def test_collect_steps_aside_while_the_flusher_wants_the_gil(tmp_path) -> None:
    """Inside the handoff a collect() lets go of the GIL and waits for it to end: here nobody ends
    it, so the call waits its 5 ms bound and then goes on (rows still queued)."""
    dc = ModelDataCollector("m", designation="inputs", feature_names=["a"], storage=tmp_path)
    dc.collect([0.0])  # the compiled path set up
    took = []

    def one() -> None:
        began = time.perf_counter()
        dc.collect([1.0])
        took.append(time.perf_counter() - began)

    with flusher_first(True) as handoff:
        assert handoff.waiting() == 1
        t = threading.Thread(target=one)
        t.start()
        t.join(30)
    assert handoff.waiting() == 0
    assert took and took[0] >= 0.004, f"collect() did not step aside ({took})"
    assert dc.flush(timeout=30)
    assert [float(r["a"]) for p in data_files(tmp_path) for r in read_csv(p)] == [0.0, 1.0]


def test_the_flusher_engages_the_handoff_only_past_half_the_bound(tmp_path, monkeypatch) -> None:
    """Below half the bound a batch is encoded beside the scoring threads; past it, with the handoff."""
    pipeline = get_pipeline()
    engaged: list[bool] = []

    def recording(behind: bool):
        engaged.append(behind)
        return flusher_first(behind)

    monkeypatch.setattr(pipeline_module, "flusher_first", recording)
    dc = ModelDataCollector("m", designation="inputs", feature_names=[f"f{j}" for j in range(6)], storage=tmp_path)
    saved = pipeline.max_bytes
    pipeline._cycle = lambda: None  # the flusher thread idles: only this thread writes batches
    try:
        for bound_per_batch, expected in ((4, False), (1.5, True)):
            for _ in range(2000):
                dc.collect(ROW)
            with pipeline.lock:
                pipeline._absorb()
                held = pipeline._buffered_bytes
            pipeline.max_bytes = int(held * bound_per_batch)
            del engaged[:]
            while pipeline._seal_and_write():
                pass
            assert engaged and engaged[0] is expected, (bound_per_batch, engaged)  # the first batch decides
    finally:
        del pipeline._cycle
        pipeline.max_bytes = saved
    assert dc.flush(timeout=30)
    assert len([r for p in data_files(tmp_path) for r in read_csv(p)]) == 4000
    assert BEHIND == 2


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_does_not_inherit_a_raised_handoff(tmp_path) -> None:
    """A fork while another thread is inside the handoff: that thread is not in the child, so
    the child's collect() must not step aside for it."""
    raised, release = threading.Event(), threading.Event()

    def flusher() -> None:
        with flusher_first(True):
            raised.set()
            release.wait(30)

    t = threading.Thread(target=flusher)
    t.start()
    try:
        assert raised.wait(30)
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: report what it sees, then leave at once
            os.write(write, str(_hotpath.Handoff().waiting()).encode())
            os._exit(0)
        os.close(write)
        seen = os.read(read, 16)
        os.close(read)
        os.waitpid(pid, 0)
        assert _hotpath.Handoff().waiting() == 1  # the parent's thread is still inside
    finally:
        release.set()
        t.join()
    assert seen == b"0"
