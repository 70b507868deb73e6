"""The spool in the flusher: batches survive outages and killed workers, and are replayed once."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import textwrap

from conftest import data_files, read_csv
from mdc_backends.local import LocalBackend
from mdc_core import BackendError, ModelDataCollector


class Outage(LocalBackend):
    """The local backend in object-store mode, refusing creates while ``down`` is set: a real
    failed upload, whose count the test checks."""

    def __init__(self, root: str):
        super().__init__(root, {"append": False})
        self.down = True
        self.refused = 0

    def create(self, key, data):
        if self.down:
            self.refused += 1
            raise BackendError(errno.ECONNREFUSED, "storage is down (injected)")
        return super().create(key, data)


def rows(root) -> list[str]:
    return sorted(r["feature_0"] for p in data_files(root) for r in read_csv(p))


def test_outage_keeps_rows_in_the_spool_and_replays_them_once(tmp_path) -> None:
    """While storage is down the rows wait in the spool (not dropped); once it is back, the
    next flush replays them, and every row is written exactly once."""
    dc = ModelDataCollector(
        "m", designation="inputs", storage=tmp_path, storage_options={"append": False}, compaction="off"
    )
    outage = Outage(str(tmp_path))
    dc._route.sink.backend = outage
    dc._route.sink.backoff = 0.001
    dc._pipeline._spools[dc._route.sink.storage_label] = (dc._route.sink.spool, outage)
    for i in range(3):
        dc.collect([f"a{i}"])
        status = dc.flush(timeout=30)
        assert not status and status.spooled_rows == i + 1 and status.dropped_rows == status.pending_rows == 0
    stats = dc.stats()
    assert outage.refused >= 3 and stats["spooled"] == 3 and stats["dropped"] == {} and stats["written"] == 0
    assert dc._route.sink.spool.bytes() > 0 and rows(tmp_path) == []
    status = dc.flush(timeout=30)  # nothing new was collected: the rows are still only spooled
    assert not status and status.spooled_rows == 3
    outage.down = False
    dc.collect(["b"])
    assert dc.flush(timeout=30)
    assert rows(tmp_path) == ["a0", "a1", "a2", "b"]
    stats = dc.stats()
    assert stats["spooled"] == 0 and stats["written"] == 4 and dc._route.sink.spool.bytes() == 0


WORKER = textwrap.dedent("""
    import os, sys
    from mdc_backends.local import LocalBackend
    from mdc_core import ModelDataCollector
    from mdc_core.spool import Spool
    where = sys.argv[2]
    if where == "upload":        # killed while the upload is under way: nothing reached storage
        LocalBackend.create = lambda self, key, data: os._exit(9)
    elif where == "confirm":     # killed after the upload landed, before the spool copy was removed
        original = Spool.remove
        Spool.remove = lambda self, entry: os._exit(9)
    dc = ModelDataCollector("m", designation="inputs", storage=sys.argv[1], storage_options={"append": False},
                            compaction="off")
    dc.collect([["first"], ["second"]])
    dc.flush(timeout=30)
    os._exit(0)   # not reached when the kill happened
""")

RESTART = textwrap.dedent("""
    import sys
    from mdc_core import ModelDataCollector
    dc = ModelDataCollector("m", designation="inputs", storage=sys.argv[1], storage_options={"append": False},
                            compaction="off")
    dc.collect([["after restart"]])
    assert dc.flush(timeout=30), dc.stats()
    print(dc._pipeline.orphan_rows_replayed)
""")


def run(script: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", script, *args],
        env=dict(os.environ),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_worker_killed_mid_upload_loses_nothing_sealed(tmp_path) -> None:
    """A worker killed during an upload left its sealed batch in the spool; the next process on
    the host adopts and replays it: every row once."""
    killed = run(WORKER, str(tmp_path), "upload")
    assert killed.returncode == 9, killed.stderr  # the kill really happened mid-upload
    assert rows(tmp_path) == []
    restarted = run(RESTART, str(tmp_path))
    assert restarted.returncode == 0, restarted.stderr
    assert restarted.stdout.split() == ["2"]
    assert rows(tmp_path) == ["after restart", "first", "second"]


def test_replay_after_upload_but_before_removal_creates_no_duplicate(tmp_path) -> None:
    """A batch uploaded just before the worker died is replayed under the same create-only name:
    found already there, so it is not written twice."""
    killed = run(WORKER, str(tmp_path), "confirm")
    assert killed.returncode == 9, killed.stderr
    assert rows(tmp_path) == ["first", "second"]  # it did land
    restarted = run(RESTART, str(tmp_path))
    assert restarted.returncode == 0, restarted.stderr
    assert restarted.stdout.split() == ["2"]  # replayed (found delivered)
    assert rows(tmp_path) == ["after restart", "first", "second"]


def full_disk_opener(path, mode="r", *args, **kwargs):
    """An opener for the spool whose files cannot be written: the disk is full."""
    full_disk_opener.calls += 1
    raise OSError(errno.ENOSPC, "No space left on device", path)


full_disk_opener.calls = 0


def test_a_full_spool_disk_uploads_without_a_local_copy(tmp_path, caplog) -> None:
    """The spool's disk is full (ENOSPC from its file opener): the flusher neither crashes nor
    drops; it uploads each batch without a local copy and says so in the log."""
    dc = ModelDataCollector(
        "m", designation="inputs", storage=tmp_path, storage_options={"append": False}, compaction="off"
    )
    dc._route.sink.spool._opener = full_disk_opener
    full_disk_opener.calls = 0
    for i in range(3):
        dc.collect([f"a{i}"])
        assert dc.flush(timeout=30)
    assert full_disk_opener.calls == 3  # every batch really met the full disk
    assert rows(tmp_path) == ["a0", "a1", "a2"] and dc.stats()["dropped"] == {}
    assert any("spool disk full" in r.getMessage() and "without a local copy" in r.getMessage()
               for r in caplog.records)


def test_a_full_spool_disk_and_an_outage_count_the_rows_as_dropped(tmp_path) -> None:
    """With nowhere to keep them (spool disk full) and storage down, the rows are counted as
    dropped with a reason, never lost silently or retried forever."""
    dc = ModelDataCollector(
        "m", designation="inputs", storage=tmp_path, storage_options={"append": False}, compaction="off"
    )
    outage = Outage(str(tmp_path))
    dc._route.sink.backend = outage
    dc._route.sink.backoff = 0.001
    dc._route.sink.spool._opener = full_disk_opener
    dc.collect([["x"], ["y"]])
    status = dc.flush(timeout=30)
    assert not status and status.dropped_rows == 2 and status.spooled_rows == 0, status
    assert outage.refused >= 1 and dc.stats()["dropped"] == {"storage_error": 2}
