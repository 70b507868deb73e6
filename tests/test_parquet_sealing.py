"""File sizing: the flusher holds a Parquet collector's rows until its batch is ripe (rows,
age, flush, memory pressure) while CSV seals every cycle; Arrow input reaches the Parquet
writer without being turned into Python objects."""

from __future__ import annotations

import collections
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mdc_core import ModelDataCollector
from mdc_core.batches import Deployment, Stamp, build_table
from mdc_core.pipeline import Pipeline, get_pipeline
from mdc_core.sealing import Holder
from mdc_core.shapes import take
from mdc_formats.parquet import ParquetFormat
from test_formats_support import env_for_subprocess, files


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def route(seal_rows: int = 0, seal_seconds: float = 0.0) -> Any:
    fmt = type("Fmt", (), {"seal_rows": seal_rows, "seal_seconds": seal_seconds})()
    return type("Route", (), {"sink": type("Sink", (), {"format": fmt})()})()


def chunk(r: Any, rows: int, seq: int) -> tuple[Any, ...]:
    return (r, type("Taken", (), {"rows": rows})(), Stamp("", 0, 0, "", seq * 1_000, ""), 0, seq)


def test_holder_keeps_rows_until_ripe() -> None:
    """Chunks of a holding route leave the queue until it has seal_rows rows or its oldest
    chunk is seal_seconds old; others stay queued; the queue stays in sequence order."""
    clock = FakeClock()
    holder = Holder(clock)
    parquet, csv = route(seal_rows=10, seal_seconds=60), route()
    queue = collections.deque([chunk(parquet, 4, 1), chunk(csv, 1, 2), chunk(parquet, 4, 3)])
    assert holder.sort(queue, seal_upto=0, pressure=False) == -8
    assert [c[4] for c in queue] == [2] and holder.lowest() == [1] and holder.oldest_us() == [1_000]
    queue.append(chunk(parquet, 2, 4))
    assert holder.sort(queue, seal_upto=0, pressure=False) == -2 + 10  # 10 rows: ripe, all back
    assert [c[4] for c in queue] == [1, 2, 3, 4] and not holder and holder.lowest() == []
    queue.clear()
    queue.append(chunk(parquet, 1, 5))
    holder.sort(queue, 0, False)
    clock.now += 59
    assert holder.sort(queue, 0, False) == 0 and not queue
    clock.now += 1
    assert holder.sort(queue, 0, False) == 1 and [c[4] for c in queue] == [5]


@pytest.mark.parametrize("why", ["flush", "pressure"])
def test_holder_releases_on_flush_and_pressure(why: str) -> None:
    """flush() (a seal_upto at or past the held rows) and memory pressure release at once."""
    holder = Holder(FakeClock())
    queue = collections.deque([chunk(route(seal_rows=1000, seal_seconds=600), 5, 7)])
    holder.sort(queue, 0, False)
    assert not queue
    assert holder.sort(queue, 7 if why == "flush" else 0, why == "pressure") == 5
    assert len(queue) == 1


def run_cycle(pipeline: Pipeline) -> None:
    """One whole flusher cycle begun after this call (no flush(), which would seal everything)."""
    with pipeline._done:
        begun = pipeline._started
    pipeline._start()
    pipeline._wake.set()
    with pipeline._done:
        assert pipeline._done.wait_for(lambda: pipeline._finished > begun, 30)


def test_parquet_seals_longer_than_csv(tmp_path: Path) -> None:
    """Three flusher cycles make three CSV batch files but no Parquet file (its rows wait,
    counted as pending); flush() seals them into one file; seal_rows seals without a flush."""
    common: dict[str, Any] = {"storage": str(tmp_path), "storage_options": {"append": False}, "compaction": "off"}
    csv = ModelDataCollector("m", "inputs", ["v"], **common)
    parquet = ModelDataCollector("m", "predictions", ["v"], format="parquet", **common)
    small = ModelDataCollector("m", "labels", ["v"], format="parquet", format_options={"seal_rows": 2}, **common)
    pipeline = get_pipeline()
    for i in range(3):
        for dc in (csv, parquet, small):
            dc.collect([[float(i)]])
        run_cycle(pipeline)
    assert len(files(tmp_path, "**/inputs/**/*.csv")) == 3
    assert files(tmp_path, "**/predictions/**/*.parquet") == []
    assert parquet.stats()["pending"] == 3
    assert [pq.read_metadata(p).num_rows for p in files(tmp_path, "**/labels/**/*.parquet")] == [2]
    assert parquet.flush(timeout=30)
    (path,) = files(tmp_path, "**/predictions/**/*.parquet")
    assert pq.read_table(path).column("v").to_pylist() == [0.0, 1.0, 2.0]
    for dc in (csv, parquet, small):
        dc.close()


def test_bad_format_options_are_refused() -> None:
    """Unknown options, a codec pyarrow lacks and non-positive thresholds fail when the
    collector is built, naming what to fix."""
    with pytest.raises(ValueError, match="unknown parquet format option"):
        ParquetFormat({"compresion": "zstd"})
    with pytest.raises(ValueError, match="compression='lzma'"):
        ParquetFormat({"compression": "lzma"})
    with pytest.raises(ValueError, match="seal_seconds=0"):
        ParquetFormat({"seal_seconds": 0})
    assert ParquetFormat({"compression": "snappy", "dictionary": False}).compression == "snappy"


def test_arrow_input_is_not_converted_to_python(tmp_path: Path) -> None:
    """A pyarrow Table's columns reach the format as the same Arrow buffers (zero copy), and the
    Parquet file holds their values: nothing went through Python objects."""
    values = np.random.default_rng(1).random(50_000)
    table = pa.table({"a": values, "n": pa.array(np.arange(50_000))})
    taken = take(table, None)
    stamp = Stamp("p", 0, 1, "", 1_772_700_000_000_000, "r")
    built = build_table(["a", "n"], Deployment(1440, "w/x/y", "s", "m", "1"), [taken], [stamp])
    fmt = ParquetFormat()
    resolved = fmt.pin.resolve(built)
    for name in ("a", "n"):
        original = table.column(name).chunk(0).buffers()[1].address
        assert built.column(name).chunk(0).buffers()[1].address == original
        assert resolved.table.column(name).chunk(0).buffers()[1].address == original
    data = fmt.encode(built).body
    assert np.array_equal(pq.read_table(pa.BufferReader(data)).column("a").to_numpy(), values)


def test_held_rows_are_written_at_exit(tmp_path: Path) -> None:
    """A script that collects Parquet rows and ends without flush() still writes them: the exit
    hook seals what the flusher was holding back."""
    script = (
        "from mdc_core import ModelDataCollector\n"
        f"dc = ModelDataCollector('m', 'inputs', ['v'], storage={str(tmp_path)!r}, format='parquet')\n"
        "for i in range(5):\n"
        "    dc.collect([[float(i)]])\n"
        "from mdc_core.pipeline import get_pipeline\n"
        "from test_parquet_sealing import run_cycle\n"
        "run_cycle(get_pipeline())  # the flusher now holds the rows\n"
        "assert get_pipeline()._holder and not get_pipeline()._queue\n"
    )
    subprocess.run([sys.executable, "-c", script], check=True, timeout=120, env=env_for_subprocess())
    (path,) = files(tmp_path, "**/*.parquet")
    assert pq.read_table(path).column("v").to_pylist() == [0.0, 1.0, 2.0, 3.0, 4.0]


def test_debug_mode_prints_parquet_rows_as_text(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Debug mode shows a Parquet collector's rows as readable CSV text and stores nothing."""
    with ModelDataCollector("m", "inputs", ["a", "b"], storage=str(tmp_path / "store"), format="parquet",
                            debug=True) as dc:
        dc.collect([[1.5, "hello"]])
        assert dc.flush(timeout=30)
    out = capsys.readouterr().out
    assert "m/default/inputs/" in out and ".parquet" in out
    assert "a,b,$aml_dc_correlation_id" in out and '1.5,"hello",' in out
    assert not (tmp_path / "store").exists()
