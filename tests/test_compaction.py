"""Compaction of closed partitions: automatic, on demand (mdc compact), interrupted, re-run, raced."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading

import pytest

from conftest import SteppingClock, read_csv, read_raw, spec_dir, utc
from mdc_backends.local import LocalBackend
from mdc_core import ModelDataCollector
from mdc_core.cli import main as mdc_main
from mdc_core.compaction import LOCK, MANIFEST, compact_partition
from mdc_core.pipeline import get_pipeline
from mdc_formats.csv import CsvFormat

DAY = "2026/03/05"


def object_store_collector(root, clock, **kw) -> ModelDataCollector:
    """A collector on local disk that behaves like an object store: one file per batch."""
    return ModelDataCollector(
        "best_model",
        designation="inputs",
        feature_names=["x", "text"],
        storage=root,
        storage_options={"append": False},
        clock=clock,
        **kw,
    )


def folder_names(root, date=DAY) -> list[str]:
    return sorted(os.listdir(spec_dir(root, "inputs", date)))


def collect_batches(dc, batches: int, per_batch: int) -> list[tuple[str, str]]:
    rows = []
    for b in range(batches):
        batch = [[b * per_batch + i, f'text "{b}",\n{i}'] for i in range(per_batch)]
        dc.collect(batch)
        assert dc.flush(timeout=30)
        rows.extend((str(x), t) for x, t in batch)
    return rows


def test_batches_without_append_become_one_file_per_flush(tmp_path, monkeypatch) -> None:
    """Without append, every flush writes one create-only batch file named data-<writer>-<seq>.csv."""
    monkeypatch.setenv("MDC_COMPACTION", "off")
    clock = SteppingClock(utc(2026, 3, 5, 10))
    dc = object_store_collector(tmp_path, clock)
    collect_batches(dc, 3, 2)
    names = folder_names(tmp_path)
    assert len(names) == 3 and all(n.startswith("data-") and n.endswith(".csv") for n in names)


def test_automatic_compaction_of_a_closed_day(tmp_path) -> None:
    """A closed day's batches are merged into data.csv automatically: every row once, in time order."""
    ticks = [utc(2026, 3, 5, 10, 0, 0, i) for i in range(100)]
    dc = object_store_collector(tmp_path, SteppingClock(*ticks))
    get_pipeline().compactor.grace = 0.0
    collected = collect_batches(dc, 4, 5)
    assert get_pipeline().compactor.wait_idle(timeout=60)
    assert folder_names(tmp_path) == ["data.csv"]
    raw = read_raw(os.path.join(spec_dir(tmp_path, "inputs", DAY), "data.csv"))
    assert raw[0][:2] == ["x", "text"] and sum(1 for r in raw if r[0] == "x") == 1
    assert [(r[0], r[1]) for r in raw[1:]] == collected
    stamps = [r[3] for r in raw[1:]]
    assert stamps == sorted(stamps)


def test_open_day_is_left_alone(tmp_path) -> None:
    """Today's partition is not compacted automatically (readers use *.csv for the current day)."""
    dc = ModelDataCollector("best_model", designation="inputs", storage=tmp_path, storage_options={"append": False})
    get_pipeline().compactor.grace = 0.0
    dc.collect([1])
    assert dc.flush(timeout=30)
    assert get_pipeline().compactor.wait_idle(timeout=60)
    [path] = [os.path.join(d, f) for d, _, fs in os.walk(tmp_path) for f in fs]
    assert os.path.basename(path).startswith("data-")


def test_cli_compacts_closed_days_and_reports_json(tmp_path, monkeypatch, capsys) -> None:
    """`mdc compact URL --json` merges closed partitions, leaves open ones unless --include-open."""
    monkeypatch.setenv("MDC_COMPACTION", "off")
    closed = object_store_collector(tmp_path, SteppingClock(utc(2026, 3, 5, 10)))
    collected = collect_batches(closed, 3, 2)
    today = ModelDataCollector(
        "best_model", designation="predictions", storage=tmp_path, storage_options={"append": False}
    )
    today.collect([1])
    assert today.flush(timeout=30)
    assert mdc_main(["compact", str(tmp_path), "--json", "--option", "append=false"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert [p["merged"] for p in report["partitions"]] == [3]
    assert folder_names(tmp_path) == ["data.csv"]
    assert [
        (r["x"], r["text"]) for r in read_csv(os.path.join(spec_dir(tmp_path, "inputs", DAY), "data.csv"))
    ] == collected
    assert mdc_main(["compact", str(tmp_path), "--include-open"]) == 0
    assert "1 batches merged" in capsys.readouterr().out


def test_cli_usage_errors_exit_2(tmp_path, capsys) -> None:
    """A URL no backend serves, or a malformed option, exits 2 with a message."""
    assert mdc_main(["compact", "gopher://x"]) == 2
    assert "no storage backend serves gopher" in capsys.readouterr().err
    with pytest.raises(SystemExit) as info:
        mdc_main(["compact", str(tmp_path), "--option", "novalue"])
    assert info.value.code == 2


def test_console_script_is_installed(tmp_path) -> None:
    """The `mdc` console entry point exists and answers --help."""
    out = subprocess.run(
        [os.path.join(os.path.dirname(sys.executable), "mdc"), "compact", "--help"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "--include-open" in out


class Crash(Exception):
    pass


class CrashingBackend(LocalBackend):
    """The local backend, dying at a chosen step: the fault is real (the exception aborts the run)."""

    def __init__(self, root, crash_on):
        super().__init__(root, {"append": False})
        self.crash_on = crash_on
        self.crashed = False

    def put(self, key, data):
        if self.crash_on == "put" and not key.endswith(MANIFEST):
            self.crashed = True
            raise Crash(key)
        super().put(key, data)

    def delete(self, key):
        if self.crash_on == "delete" and not key.endswith((MANIFEST, LOCK)):
            self.crashed = True
            raise Crash(key)
        super().delete(key)


def make_batches(root, count=3) -> tuple[str, list[str]]:
    backend = LocalBackend(str(root), {"append": False})
    folder = "w/s/m/1/inputs/2026/03/05"
    lines = []
    for i in range(count):
        line = f"{i},2026-03-05T10:00:00.{i:06d}\n"
        backend.create(f"{folder}/data-{i:016x}-{i:010d}.csv", b"v,$aml_dc_scoring_timestamp\n" + line.encode())
        lines.append(line)
    return folder, lines


@pytest.mark.parametrize("crash_on", ["put", "delete"])
def test_interrupted_compaction_resumes_without_duplicates(tmp_path, crash_on) -> None:
    """A compactor that dies after writing the manifest (before or after replacing data.csv)
    leaves work that the next run finishes with every row exactly once."""
    folder, lines = make_batches(tmp_path)
    crashing = CrashingBackend(str(tmp_path), crash_on)
    with pytest.raises(Crash):
        compact_partition(crashing, CsvFormat(), folder, "data", "csv")
    assert crashing.crashed
    left = os.listdir(tmp_path / folder)
    assert MANIFEST in left and any(n.startswith("data-") for n in left)  # its unfinished work is still there
    compact_partition(LocalBackend(str(tmp_path), {"append": False}), CsvFormat(), folder, "data", "csv")
    assert sorted(os.listdir(tmp_path / folder)) == ["data.csv"]
    assert (tmp_path / folder / "data.csv").read_text() == "v,$aml_dc_scoring_timestamp\n" + "".join(lines)


def test_live_lock_is_respected_and_expired_lock_is_taken(tmp_path) -> None:
    """A compactor skips a partition locked by a live one, and takes over a lapsed lock."""
    folder, _ = make_batches(tmp_path)
    backend = LocalBackend(str(tmp_path), {"append": False})
    backend.create(f"{folder}/{LOCK}", json.dumps({"owner": "other", "expires": 2e9}).encode())
    assert compact_partition(backend, CsvFormat(), folder, "data", "csv").skipped == "locked by another compactor"
    backend.put(f"{folder}/{LOCK}", json.dumps({"owner": "other", "expires": 1.0}).encode())
    assert len(compact_partition(backend, CsvFormat(), folder, "data", "csv").merged) == 3


def test_late_batches_are_merged_by_the_next_run(tmp_path) -> None:
    """A batch that arrives after compaction (a replayed spool, a late replica) is merged next time."""
    folder, lines = make_batches(tmp_path, 2)
    backend = LocalBackend(str(tmp_path), {"append": False})
    compact_partition(backend, CsvFormat(), folder, "data", "csv")
    late = "9,2026-03-05T09:00:00.000000\n"
    backend.create(f"{folder}/data-{'f' * 16}-0000000001.csv", b"v,$aml_dc_scoring_timestamp\n" + late.encode())
    compact_partition(backend, CsvFormat(), folder, "data", "csv")
    assert (tmp_path / folder / "data.csv").read_text() == "v,$aml_dc_scoring_timestamp\n" + late + "".join(lines)


def test_other_header_goes_to_a_sibling(tmp_path) -> None:
    """Batches with other columns are compacted into data-<hash>.csv, never under data.csv's header."""
    folder, lines = make_batches(tmp_path, 2)
    backend = LocalBackend(str(tmp_path), {"append": False})
    backend.create(
        f"{folder}/data-{'e' * 16}-0000000001.csv", b"w,z,$aml_dc_scoring_timestamp\n1,2,2026-03-05T10:00:00\n"
    )
    result = compact_partition(backend, CsvFormat(), folder, "data", "csv")
    assert len(result.outputs) == 2
    names = sorted(os.listdir(tmp_path / folder))
    assert names[0] == "data-" + names[0][5:13] + ".csv" and names[1] == "data.csv"
    assert (tmp_path / folder / names[0]).read_text() == "w,z,$aml_dc_scoring_timestamp\n1,2,2026-03-05T10:00:00\n"


def test_racing_compactors_merge_exactly_once(tmp_path) -> None:
    """Four compactors racing on one partition: one wins the lock; rows appear once."""
    folder, lines = make_batches(tmp_path, 20)
    start = threading.Barrier(4)
    results = []

    def run() -> None:
        start.wait()
        results.append(
            compact_partition(LocalBackend(str(tmp_path), {"append": False}), CsvFormat(), folder, "data", "csv")
        )

    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(len(r.merged) for r in results) == 20
    assert (tmp_path / folder / "data.csv").read_text() == "v,$aml_dc_scoring_timestamp\n" + "".join(lines)
