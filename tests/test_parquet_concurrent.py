"""A reader in this process reads a Parquet collection while a writer process is still adding
batches to it, on local disk, Azurite and SeaweedFS: every file it can see is whole (only
committed files are visible), and it sees at least every batch the writer has confirmed."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from test_formats_support import STORES, env_for_subprocess, make_store

BATCHES, ROWS = 24, 500

WRITER = r"""
import json, sys
import numpy as np
from mdc_core import ModelDataCollector
url, options, batches, rows = json.loads(sys.argv[1])
dc = ModelDataCollector("best_model", "inputs", [f"feat{i}" for i in range(1, 7)], storage=url,
                        storage_options=options, format="parquet", compaction="off")
rng = np.random.default_rng(3)
for b in range(batches):
    dc.collect(rng.random((rows, 6)))
    assert dc.flush(timeout=60)
    print(f"flushed {b + 1}", flush=True)
    if b + 1 == batches // 2:
        sys.stdin.readline()  # the reader has read the half-written collection
dc.close()
print("done", flush=True)
"""


@pytest.fixture(params=STORES)
def store(request: pytest.FixtureRequest, tmp_path: Path):
    yield from make_store(request, tmp_path)


def test_reader_sees_only_whole_committed_files_while_writer_writes(store: Any, tmp_path: Path) -> None:
    """Reads during writing always parse, count whole batches only, and never fewer than the
    writer has confirmed; the last read holds every row exactly once."""
    args = json.dumps([store.url, store.options, BATCHES, ROWS])
    writer = subprocess.Popen([sys.executable, "-c", WRITER, args], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              text=True, env=env_for_subprocess())
    confirmed = [0]
    halfway = threading.Event()
    done = threading.Event()

    def follow() -> None:
        assert writer.stdout is not None
        for line in writer.stdout:
            if line.startswith("flushed"):
                confirmed[0] = int(line.split()[1])
                if confirmed[0] == BATCHES // 2:
                    halfway.set()
            elif line.startswith("done"):
                done.set()
        halfway.set()

    follower = threading.Thread(target=follow, daemon=True)
    follower.start()
    reads = []
    try:
        assert halfway.wait(120)
        reads.append(_read(store, tmp_path, confirmed[0]))
        assert writer.stdin is not None
        writer.stdin.write("go\n")
        writer.stdin.flush()
        while not done.is_set() and writer.poll() is None:
            reads.append(_read(store, tmp_path, confirmed[0]))
        assert writer.wait(120) == 0
    finally:
        if writer.poll() is None:
            writer.kill()
    follower.join(10)
    assert done.is_set()
    assert reads[0] >= BATCHES // 2
    assert _read(store, tmp_path, BATCHES) == BATCHES


def _read(store: Any, tmp_path: Path, at_least: int) -> int:
    """Read everything visible with pyarrow.dataset's own discovery (which skips names starting
    with ``.`` or ``_``); return the number of whole batches."""
    root = store.download(tmp_path / "copy")
    if not root.exists():
        return 0
    dataset = ds.dataset(str(root), format="parquet")
    for path in dataset.files:
        assert pq.read_metadata(path).num_rows == ROWS  # each file one whole batch
    rows = dataset.count_rows()
    assert rows % ROWS == 0 and rows // ROWS >= at_least
    return rows // ROWS
