"""The collector end to end on local disk: the seed's script, boundaries, on/off, debug, life cycle."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from conftest import SteppingClock, data_files, read_csv, spec_dir, utc
from mdc_core import ModelDataCollector

SEED_SCRIPT = textwrap.dedent("""
    import numpy as np
    from mdc_core import ModelDataCollector

    class Model:
        def predict(self, data):
            return np.column_stack([data.sum(axis=1), data.mean(axis=1)])

    model = Model()

    def init():
        global inputs_dc, prediction_dc
        inputs_dc = ModelDataCollector("best_model", designation="inputs",
                                       feature_names=["feat1", "feat2", "feat3", "feat4", "feat5", "feat6"])
        prediction_dc = ModelDataCollector("best_model", designation="predictions",
                                           feature_names=["prediction1", "prediction2"])

    def run(data):
        data = np.array(data)
        result = model.predict(data)
        inputs_dc.collect(data)
        prediction_dc.collect(result)
        return result.tolist()

    init()
    for i in range(5):
        run([[i, 1, 2, 3, 4, 5.5]])
    run([[10, 11, 12, 13, 14, 15], [20, 21, 22, 23, 24, 25]])
    # no flush, no close: the atexit hook must write everything
""")


def run_script(tmp_path, script: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("MDC_", "AML_MODEL_DC_"))}
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-c", script],
        cwd=tmp_path,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_seed_script_runs_unchanged_and_rows_land_in_spec_path(tmp_path) -> None:
    """SPEC.md's scoring script, only the import changed, writes joinable rows under ./modeldata."""
    result = run_script(tmp_path, SEED_SCRIPT)
    assert result.returncode == 0, result.stderr
    files = data_files(tmp_path / "modeldata")
    assert len(files) == 2
    inputs = [f for f in files if "/inputs/" in f][0]
    preds = [f for f in files if "/predictions/" in f][0]
    rel = os.path.relpath(inputs, tmp_path / "modeldata").split(os.sep)
    assert rel[:8] == ["default", "default", "default", "default", "best_model", "default", "inputs", rel[7]]
    assert len(rel[7]) == 4 and len(rel[8]) == 2 and len(rel[9]) == 2 and rel[10] == "data.csv"
    ins, outs = read_csv(inputs), read_csv(preds)
    assert len(ins) == len(outs) == 7
    assert list(ins[0])[:6] == ["feat1", "feat2", "feat3", "feat4", "feat5", "feat6"]
    assert [float(r["feat1"]) for r in ins] == [0, 1, 2, 3, 4, 10, 20]
    by_id = {r["$aml_dc_correlation_id"]: r for r in ins}
    for out in outs:
        src = by_id[out["$aml_dc_correlation_id"]]
        assert float(out["prediction1"]) == sum(float(src[f"feat{i}"]) for i in range(1, 7))


def test_midnight_step_splits_rows_into_two_days(tmp_path) -> None:
    """A clock stepping from 23:59:59.999999 to 00:00:00 puts each row in its own day's folder."""
    clock = SteppingClock(utc(2026, 3, 5, 23, 59, 59, 999999), utc(2026, 3, 6, 0, 0, 0))
    dc = ModelDataCollector("best_model", designation="inputs", feature_names=["x"], storage=tmp_path, clock=clock)
    dc.collect([1])
    dc.collect([2])
    assert dc.flush(timeout=30)
    before = read_csv(os.path.join(spec_dir(tmp_path, "inputs", "2026/03/05"), "data.csv"))
    after = read_csv(os.path.join(spec_dir(tmp_path, "inputs", "2026/03/06"), "data.csv"))
    assert [(r["x"], r["$aml_dc_scoring_timestamp"]) for r in before] == [("1", "2026-03-05T23:59:59.999999")]
    assert [(r["x"], r["$aml_dc_scoring_timestamp"]) for r in after] == [("2", "2026-03-06T00:00:00.000000")]


def test_hour_boundary_splits_by_hour(tmp_path) -> None:
    """With boundary='hour' rows land in zero-padded hour folders and carry $aml_dc_boundary=60."""
    clock = SteppingClock(utc(2026, 3, 5, 8, 59, 59, 999999), utc(2026, 3, 5, 9, 0, 0))
    dc = ModelDataCollector("best_model", designation="inputs", boundary="hour", storage=tmp_path, clock=clock)
    dc.collect([1])
    dc.collect([2])
    assert dc.flush(timeout=30)
    eight = read_csv(os.path.join(spec_dir(tmp_path, "inputs", "2026/03/05/08"), "data.csv"))
    nine = read_csv(os.path.join(spec_dir(tmp_path, "inputs", "2026/03/05/09"), "data.csv"))
    assert [r["feature_0"] for r in eight] == ["1"] and [r["feature_0"] for r in nine] == ["2"]
    assert {r["$aml_dc_boundary"] for r in eight + nine} == {"60"}


def test_unpadded_dates_option(tmp_path) -> None:
    """pad_dates=False writes 2026/3/5 folders."""
    clock = SteppingClock(utc(2026, 3, 5, 9, 0))
    dc = ModelDataCollector("best_model", designation="inputs", pad_dates=False, storage=tmp_path, clock=clock)
    dc.collect([1])
    assert dc.flush(timeout=30)
    assert os.path.exists(os.path.join(spec_dir(tmp_path, "inputs", "2026/3/5"), "data.csv"))


def test_local_time_zone_does_not_change_folders(tmp_path) -> None:
    """A process in a non-UTC zone (TZ set) writes the same UTC folders and timestamps."""
    script = textwrap.dedent("""
        import time
        from mdc_core import ModelDataCollector
        assert time.localtime(0).tm_hour != 0, "TZ did not take effect"
        t = 1772755199_999999_000  # 2026-03-05T23:59:59.999999Z
        ticks = iter([t, t + 1_000])
        dc = ModelDataCollector("m", designation="inputs", storage="out", clock=lambda: next(ticks))
        dc.collect([1]); dc.collect([2])
        assert dc.flush(timeout=30)
    """)
    for zone in ("Asia/Tokyo", "America/Los_Angeles"):
        result = run_script(tmp_path, script.replace('"out"', f'"out-{zone.replace("/", "-")}"'), {"TZ": zone})
        assert result.returncode == 0, result.stderr
        root = tmp_path / f"out-{zone.replace('/', '-')}"
        days = [os.path.relpath(p, root).split(os.sep)[7:10] for p in data_files(root)]
        assert sorted(days) == [["2026", "03", "05"], ["2026", "03", "06"]]
        stamps = sorted(r["$aml_dc_scoring_timestamp"] for p in data_files(root) for r in read_csv(p))
        assert stamps == ["2026-03-05T23:59:59.999999", "2026-03-06T00:00:00.000000"]


def test_disabled_collector_writes_nothing_beside_an_enabled_one(tmp_path) -> None:
    """enabled=False makes collect() a no-op, while an enabled twin writes its rows."""
    on = ModelDataCollector("m", designation="inputs", storage=tmp_path / "on")
    off = ModelDataCollector("m", designation="inputs", storage=tmp_path / "off", enabled=False)
    for i in range(10):
        assert on.collect([i])
        assert off.collect([i]) == {}
    assert on.flush(timeout=30) and off.flush(timeout=30)
    assert len(read_csv(data_files(tmp_path / "on")[0])) == 10
    assert not (tmp_path / "off").exists()
    assert off.stats()["collected"] == 0


def test_disabled_by_environment(tmp_path, monkeypatch) -> None:
    """MDC_ENABLED=false (or Azure ML's AML_MODEL_DC_STORAGE_ENABLED=false) turns collection off."""
    monkeypatch.setenv("AML_MODEL_DC_STORAGE_ENABLED", "false")
    dc = ModelDataCollector("m", designation="inputs", storage=tmp_path)
    dc.collect([1])
    assert dc.flush(timeout=30)
    assert not data_files(tmp_path)


def test_enabled_switches_at_run_time(tmp_path) -> None:
    """collector.enabled flips collection live; None goes back to the start-up value."""
    dc = ModelDataCollector("m", designation="inputs", storage=tmp_path, enabled=False)
    dc.collect([1])
    dc.enabled = True
    dc.collect([2])
    dc.enabled = False
    dc.collect([3])
    dc.enabled = None
    assert dc.enabled is False
    dc.collect([4])
    assert dc.flush(timeout=30)
    [path] = data_files(tmp_path)
    assert [r["feature_0"] for r in read_csv(path)] == ["2"]
    with pytest.raises(ValueError):
        dc.enabled = "yes"  # type: ignore[assignment]


def test_debug_mode_prints_rows_and_stores_nothing(tmp_path) -> None:
    """MDC_DEBUG=true prints the rows (with their would-be path) to stdout instead of storing them."""
    script = textwrap.dedent("""
        from mdc_core import ModelDataCollector
        dc = ModelDataCollector("m", designation="inputs", feature_names=["a", "b"], storage="store")
        dc.collect([1, "hello"])
        assert dc.flush(timeout=30)
    """)
    result = run_script(tmp_path, script, {"MDC_DEBUG": "true"})
    assert result.returncode == 0, result.stderr
    assert "m/default/inputs/" in result.stdout
    assert "a,b,$aml_dc_correlation_id" in result.stdout and '1,"hello",' in result.stdout
    assert not (tmp_path / "store").exists()


def test_flush_and_close_are_idempotent_and_close_refuses_rows(tmp_path) -> None:
    """close() flushes; calling it twice is fine; rows collected after it are counted as dropped."""
    with ModelDataCollector("m", designation="inputs", storage=tmp_path) as dc:
        dc.collect([1])
    assert bool(dc.close()) and bool(dc.close())
    assert bool(dc.flush()) and bool(dc.flush(timeout=0))
    assert dc.collect([2]) == {}
    stats = dc.stats()
    assert stats["written"] == 1 and stats["dropped"] == {"closed": 1} and stats["pending"] == 0
    assert len(read_csv(data_files(tmp_path)[0])) == 1


def test_storage_failure_never_raises_into_collect(tmp_path, caplog) -> None:
    """A root that cannot be written (it is a file) costs no exception: rows are counted and logged."""
    blocker = tmp_path / "root"
    blocker.write_text("not a folder")
    dc = ModelDataCollector("m", designation="inputs", storage=blocker)
    dc._route.sink.backoff = 0.0  # keep the retries quick
    for i in range(3):
        dc.collect([i])
    status = dc.flush(timeout=30)
    assert not status and status.dropped_rows == 3 and status.spooled_rows == 0
    stats = dc.stats()
    assert stats["dropped"] == {"storage_error": 3} and stats["written"] == 0 and stats["pending"] == 0
    assert any("could not write 3 rows" in r.getMessage() for r in caplog.records)


def test_stats_count_rows(tmp_path) -> None:
    """stats() reports collected, written and pending rows."""
    dc = ModelDataCollector("m", designation="inputs", storage=tmp_path)
    dc.collect([[1], [2], [3]])
    before = dc.stats()
    assert before["collected"] == 3 and before["written"] + before["pending"] == 3
    assert dc.flush(timeout=30)
    after = dc.stats()
    assert after.pop("last_batch_seconds") > 0  # the batch the flush wrote
    assert after == {
        "collected": 3,
        "written": 3,
        "dropped": {},
        "pending": 0,
        "spooled": 0,
        "spilled": 0,
        "sampled_out": 0,
        "unpaired": 0,
        "retries": 0,
        "buffered_bytes": 0,
        "oldest_pending_age_s": None,
    }


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork (POSIX)")
def test_forked_child_writes_its_own_rows_only(tmp_path) -> None:
    """After fork the child starts with an empty queue and fresh ids; parent and child rows land once each."""
    script = textwrap.dedent("""
        import os
        from mdc_core import ModelDataCollector
        dc = ModelDataCollector("m", designation="inputs", storage="store")
        dc.collect(["parent-before-fork"])   # still queued when we fork
        pid = os.fork()
        if pid == 0:
            dc.collect(["child"])
            ok = dc.flush(timeout=30)
            os._exit(0 if ok and dc.stats()["written"] == 1 else 3)
        dc.collect(["parent-after-fork"])
        assert dc.flush(timeout=30)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0, status
    """)
    result = run_script(tmp_path, script)
    assert result.returncode == 0, result.stderr
    rows = [r for p in data_files(tmp_path / "store") for r in read_csv(p)]
    assert sorted(r["feature_0"] for r in rows) == ["child", "parent-after-fork", "parent-before-fork"]
    assert len({r["$aml_dc_correlation_id"] for r in rows}) == 3
