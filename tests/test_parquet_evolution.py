"""Parquet schema evolution (columns added and removed, types widened, conflicts, strict mode)
and compaction of a day's files into data.parquet, on local disk, Azurite and SeaweedFS; read
back by pyarrow.dataset, DuckDB and pandas."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from conftest import SteppingClock, utc
from mdc_backends.local import LocalBackend
from mdc_core import ConfigurationError, ModelDataCollector, SchemaConflictError
from mdc_core.compaction import MANIFEST, compact_partition
from mdc_core.pipeline import get_pipeline
from mdc_formats.parquet import MERGED_KEY, ParquetFormat
from mdc_formats.parquet_schema import VERSION_KEY, union_schema
from test_formats_support import STORES, files, make_store

duckdb = pytest.importorskip("duckdb")
pd = pytest.importorskip("pandas")

FOLDER = "default/default/default/default/best_model/default/inputs/2026/03/05/"


@pytest.fixture(params=STORES)
def store(request: pytest.FixtureRequest, tmp_path: Path):
    yield from make_store(request, tmp_path)


def ticks() -> SteppingClock:
    return SteppingClock(*(utc(2026, 3, 5, 10, 0, 0, i) for i in range(10_000)))


def collector(store: Any, names: list[str], clock: SteppingClock | None = None, **kw: Any) -> ModelDataCollector:
    return ModelDataCollector("best_model", "inputs", names, storage=store.url, storage_options=store.options,
                              format="parquet", clock=clock or ticks(), compaction="off", **kw)


def write_batches(store: Any, names: list[str], batches: list[list[list[Any]]], clock: Any = None) -> None:
    """Each inner list is collected and flushed on its own, so it becomes one file."""
    with collector(store, names, clock) as dc:
        for rows in batches:
            dc.collect(rows)
            assert dc.flush(timeout=60)


def parquet_files(store: Any, tmp_path: Path) -> list[str]:
    return files(store.download(tmp_path / "copy"), "**/*.parquet")


def by_three_readers(paths: list[str], columns: list[str]) -> list[list[dict[str, Any]]]:
    """The rows as pyarrow.dataset (with the files' union schema), DuckDB (union_by_name) and
    pandas (the same schema) read them, sorted by scoring time."""
    schema = union_schema(paths)
    arrow = ds.dataset(paths, schema=schema).to_table().sort_by("$aml_dc_scoring_timestamp")
    con = duckdb.connect()
    names = ", ".join(f'"{c}"' for c in columns)
    duck = con.sql(f"SELECT {names} FROM read_parquet({paths!r}, union_by_name = true) "
                   'ORDER BY "$aml_dc_scoring_timestamp"').fetchall()
    frame = pd.read_parquet(paths, schema=schema).sort_values("$aml_dc_scoring_timestamp")
    frame = frame[columns].astype(object).where(frame[columns].notna(), None)
    return [
        arrow.select(columns).to_pylist(),
        [dict(zip(columns, row)) for row in duck],
        frame.to_dict("records"),
    ]


def test_added_and_removed_columns_read_as_the_union(store: Any, tmp_path: Path) -> None:
    """Three deployments write one folder with [a, b], [a, b, c], [a]: three schema versions;
    every reader sees the union with nulls where a column was missing; compaction writes the
    same rows into one data.parquet that records the versions it merged."""
    clock = ticks()
    write_batches(store, ["a", "b"], [[[1.0, "x"]]], clock)
    write_batches(store, ["a", "b", "c"], [[[2.0, "y", True]]], clock)
    write_batches(store, ["a"], [[[3.0]]], clock)
    paths = parquet_files(store, tmp_path)
    assert len(paths) == 3
    versions = {pq.read_schema(p).metadata[VERSION_KEY] for p in paths}
    assert len(versions) == 3
    expected = [{"a": 1.0, "b": "x", "c": None}, {"a": 2.0, "b": "y", "c": True}, {"a": 3.0, "b": None, "c": None}]
    for rows in by_three_readers(paths, ["a", "b", "c"]):
        assert rows == expected
    result = compact_partition(store.backend(), ParquetFormat(), FOLDER, "data", "parquet")
    assert len(result.merged) == 3
    paths = parquet_files(store, tmp_path)
    assert [Path(p).name for p in paths] == ["data.parquet"]
    assert pq.read_table(paths[0]).select(["a", "b", "c"]).to_pylist() == expected
    merged = pq.read_schema(paths[0]).metadata[MERGED_KEY]
    assert {v.encode() for v in json.loads(merged)} == versions


def test_ints_then_floats_widen_to_float64(store: Any, tmp_path: Path) -> None:
    """Python ints make an int64 column (the first batch is all whole numbers); a later batch
    of floats widens it to float64 in a new schema version, and later ints stay float64."""
    write_batches(store, ["x"], [[[1], [2]], [[2.5]], [[3]]])
    paths = parquet_files(store, tmp_path)
    types = [str(pq.read_schema(p).field("x").type) for p in sorted(paths, key=_first_stamp)]
    assert types == ["int64", "double", "double"]
    for rows in by_three_readers(paths, ["x"]):
        assert [r["x"] for r in rows] == [1.0, 2.0, 2.5, 3.0]
    assert str(union_schema(paths).field("x").type) == "double"
    compact_partition(store.backend(), ParquetFormat(), FOLDER, "data", "parquet")
    (data,) = parquet_files(store, tmp_path)
    table = pq.read_table(data)
    assert table.schema.field("x").type == pa.float64()
    assert table.column("x").to_pylist() == [1.0, 2.0, 2.5, 3.0]


def test_type_conflict_is_a_new_version_with_a_warning(store: Any, tmp_path: Path, caplog) -> None:
    """Text in a float column cannot be widened: that batch is written with a string column
    (a warning names the column), the next batch is float again, and compaction keeps the two
    apart: data.parquet for the floats, data-<hash8>.parquet for the text. No row is lost."""
    clock = ticks()
    with caplog.at_level(logging.WARNING, logger="mdc.parquet"):
        write_batches(store, ["x"], [[[1.5]], [["abc"]], [[2.5]]], clock)
    assert any("'x'" in r.getMessage() or " x " in r.getMessage() for r in caplog.records)
    paths = parquet_files(store, tmp_path)
    types = [str(pq.read_schema(p).field("x").type) for p in sorted(paths, key=_first_stamp)]
    assert types == ["double", "string", "double"]
    compact_partition(store.backend(), ParquetFormat(), FOLDER, "data", "parquet")
    paths = parquet_files(store, tmp_path)
    names = sorted(Path(p).name for p in paths)
    assert names[1] == "data.parquet" and names[0].startswith("data-") and len(names) == 2
    main, sibling = (pq.read_table(p) for p in sorted(paths, key=lambda p: not p.endswith("data.parquet")))
    assert main.column("x").to_pylist() == [1.5, 2.5]
    assert sibling.column("x").to_pylist() == ["abc"]
    write_batches(store, ["x"], [[["def"]], [[3.5]]], clock)  # later batches join their own kind
    compact_partition(store.backend(), ParquetFormat(), FOLDER, "data", "parquet")
    paths = parquet_files(store, tmp_path)
    assert sorted(Path(p).name for p in paths) == names
    main, sibling = (pq.read_table(p) for p in sorted(paths, key=lambda p: not p.endswith("data.parquet")))
    assert main.column("x").to_pylist() == [1.5, 2.5, 3.5]
    assert sibling.column("x").to_pylist() == ["abc", "def"]


def test_strict_mode_raises_at_collect(store: Any, tmp_path: Path) -> None:
    """schema_mode='strict' refuses conflicting values in collect() itself, naming the column;
    the refused rows are not queued, the others are written."""
    with collector(store, ["x", "y"], schema_mode="strict") as dc:
        dc.collect([[1, "a"]])
        dc.collect([[2.5, "b"]])  # ints widen to floats: allowed
        with pytest.raises(SchemaConflictError, match="'y'.*string"):
            dc.collect([[3.0, 4]])
        with pytest.raises(SchemaConflictError, match="'x'"):
            dc.collect(pa.table({"x": ["no"], "y": ["c"]}))
        assert dc.stats()["collected"] == 2
        assert dc.flush(timeout=60)
    (path,) = parquet_files(store, tmp_path)
    assert pq.read_table(path).select(["x", "y"]).to_pylist() == [{"x": 1.0, "y": "a"}, {"x": 2.5, "y": "b"}]


def test_explicit_schema_types_the_columns(store: Any, tmp_path: Path) -> None:
    """schema= fixes the types (here int32 and float32, which inference would not choose) and
    may stand in for feature_names; strict mode checks values against it from the first row."""
    schema = pa.schema([("n", pa.int32()), ("v", pa.float32())])
    with ModelDataCollector("best_model", "inputs", storage=store.url, storage_options=store.options,
                            format="parquet", schema=schema, schema_mode="strict", clock=ticks(),
                            compaction="off") as dc:
        assert dc.feature_names == ("n", "v")
        with pytest.raises(SchemaConflictError, match="'n'.*float.*schema="):
            dc.collect([[1.5, 2]])
        dc.collect([[1, 2], [None, 0.5]])
        assert dc.flush(timeout=60)
    (path,) = parquet_files(store, tmp_path)
    table = pq.read_table(path)
    assert (table.schema.field("n").type, table.schema.field("v").type) == (pa.int32(), pa.float32())
    assert table.select(["n", "v"]).to_pylist() == [{"n": 1, "v": 2.0}, {"n": None, "v": 0.5}]


def test_schema_must_match_the_features(tmp_path: Path) -> None:
    """A schema= whose names differ from feature_names is refused when the collector is built."""
    with pytest.raises(ConfigurationError, match="lacks \\['b'\\].*\\['c'\\] extra"):
        ModelDataCollector("m", "inputs", ["a", "b"], storage=str(tmp_path), format="parquet",
                           schema=pa.schema([("a", pa.float64()), ("c", pa.float64())]))
    with pytest.raises(ConfigurationError, match="pyarrow.Schema"):
        ModelDataCollector("m", "inputs", ["a"], storage=str(tmp_path), format="parquet", schema={"a": "float"})
    with pytest.raises(ConfigurationError, match="schema_mode"):
        ModelDataCollector("m", "inputs", ["a"], storage=str(tmp_path), format="parquet", schema_mode="loose")


def test_compaction_equals_rows_collected_and_survives_interruption(store: Any, tmp_path: Path) -> None:
    """Five batches compact into data.parquet holding exactly the collected rows in time order;
    a run interrupted after writing it (batches not yet deleted) is finished by the next run
    without a duplicate; a late batch is merged into the existing data.parquet."""
    rng = np.random.default_rng(7)
    names = [f"feat{i}" for i in range(1, 7)]
    batches = [rng.random((200, 6)) for _ in range(5)]
    clock = ticks()
    with collector(store, names, clock) as dc:
        for batch in batches:
            dc.collect(batch)
            assert dc.flush(timeout=60)
    backend = store.backend()
    broken = _FailingDelete(backend)
    with pytest.raises(OSError, match="interrupted"):
        compact_partition(broken, ParquetFormat(), FOLDER, "data", "parquet")
    assert any(key.endswith(MANIFEST) for key, _ in backend.list(FOLDER))
    result = compact_partition(backend, ParquetFormat({"row_group_bytes": 20_000}), FOLDER, "data", "parquet")
    assert not result.merged and result.skipped == "no batches"  # already in data.parquet: only deleted
    paths = parquet_files(store, tmp_path)
    assert [Path(p).name for p in paths] == ["data.parquet"]
    expected = np.concatenate(batches)
    table = pq.read_table(paths[0])
    assert np.array_equal(np.column_stack([table.column(n).to_numpy() for n in names]), expected)
    stamps = table.column("$aml_dc_scoring_timestamp").to_pylist()
    assert stamps == sorted(stamps)
    write_batches(store, names, [rng.random((3, 6)).tolist()], clock)
    result = compact_partition(backend, ParquetFormat(), FOLDER, "data", "parquet")
    assert len(result.merged) == 1
    (path,) = parquet_files(store, tmp_path)
    assert pq.read_metadata(path).num_rows == 1003
    assert duckdb.sql(f"SELECT count(DISTINCT \"$aml_dc_correlation_id\") FROM '{path}'").fetchall() == [(1003,)]


def test_compacted_file_has_row_groups_with_timestamp_statistics(tmp_path: Path) -> None:
    """Compaction cuts row groups by its byte target; each carries min/max of the scoring time,
    which DuckDB uses to skip row groups (its filter returns exactly the matching rows)."""
    store_root = tmp_path / "rows"
    clock = SteppingClock(*(utc(2026, 3, 5, 10, 0, i) for i in range(60)))
    with ModelDataCollector("best_model", "inputs", ["v"], storage=str(store_root), format="parquet",
                            clock=clock, compaction="off") as dc:
        for i in range(60):
            dc.collect([[float(i)]] * 100)
            if i % 20 == 19:
                assert dc.flush(timeout=60)
    compact_partition(LocalBackend(str(store_root), {"append": False}), ParquetFormat({"row_group_bytes": 100_000}),
                      FOLDER, "data", "parquet")
    (path,) = files(store_root, "**/*.parquet")
    meta = pq.read_metadata(path)
    assert meta.num_row_groups > 1
    column = meta.schema.to_arrow_schema().get_field_index("$aml_dc_scoring_timestamp")
    bounds = [(meta.row_group(g).column(column).statistics.min, meta.row_group(g).column(column).statistics.max)
              for g in range(meta.num_row_groups)]
    assert all(low <= high for low, high in bounds)
    assert all(bounds[g][1] <= bounds[g + 1][0] for g in range(len(bounds) - 1))  # sorted: groups don't overlap
    count = duckdb.sql(f"SELECT count(*) FROM '{path}' WHERE \"$aml_dc_scoring_timestamp\" "
                       ">= TIMESTAMPTZ '2026-03-05 10:00:30+00'").fetchall()
    assert count == [(3000,)]


def test_parquet_is_compacted_automatically(tmp_path: Path) -> None:
    """Like CSV, a closed day's Parquet batches become data.parquet without anyone asking."""
    get_pipeline().compactor.grace = 0.0
    with ModelDataCollector("best_model", "inputs", ["v"], storage=str(tmp_path), format="parquet",
                            clock=ticks()) as dc:
        for i in range(3):
            dc.collect([[float(i)]])
            assert dc.flush(timeout=60)
    assert get_pipeline().compactor.wait_idle(timeout=60)
    (path,) = files(tmp_path, "**/*.parquet")
    assert Path(path).name == "data.parquet"
    assert pq.read_table(path).column("v").to_pylist() == [0.0, 1.0, 2.0]


class _FailingDelete:
    """A backend whose deletes fail: compaction stops after replacing data.parquet."""

    def __init__(self, backend: Any):
        self._backend = backend

    def __getattr__(self, name: str) -> Any:
        return getattr(self._backend, name)

    def delete(self, key: str) -> None:
        if key.rsplit("/", 1)[-1].startswith("data-"):
            raise OSError("interrupted")
        self._backend.delete(key)


def _first_stamp(path: str) -> Any:
    return pq.read_table(path).column("$aml_dc_scoring_timestamp")[0].as_py()


def test_mdc_compact_command_handles_parquet(tmp_path: Path) -> None:
    """`mdc compact URL --include-open` turns today's Parquet batch files into data.parquet."""
    from mdc_core.cli import main as mdc_main

    with ModelDataCollector("best_model", "inputs", ["v"], storage=str(tmp_path), format="parquet",
                            compaction="off") as dc:
        for i in range(3):
            dc.collect([[i]])
            assert dc.flush(timeout=60)
    assert len(files(tmp_path, "**/*.parquet")) == 3
    assert mdc_main(["compact", str(tmp_path), "--include-open"]) == 0
    (path,) = files(tmp_path, "**/*.parquet")
    assert Path(path).name == "data.parquet"
    assert pq.read_table(path).column("v").to_pylist() == [0, 1, 2]
