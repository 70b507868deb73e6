"""Every type, with nulls, collected in CSV and in Parquet on local disk, Azurite and SeaweedFS,
then read back by pyarrow.dataset, DuckDB and pandas: one parametrised suite for both formats."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.dataset as ds
import pytest

from conftest import SteppingClock, utc
from mdc_core import AML_COLUMNS, ModelDataCollector
from test_formats_support import STORES, files, make_store, plain

duckdb = pytest.importorskip("duckdb")
pd = pytest.importorskip("pandas")

NAMES = ["f", "i", "b", "s"]
ROWS = [
    (1.5, 1, True, "a,b"),
    (None, None, None, None),
    (-2.25, -3, False, 'quote " and\nnewline'),
    (1e300, 2**40, True, "ünïcode ✓"),
]
TYPES = pa.schema([("f", pa.float64()), ("i", pa.int64()), ("b", pa.bool_()), ("s", pa.string())])
WHEN = utc(2026, 3, 5, 9, 30, 0, 123456)
PARQUET_TYPES = {"f": "double", "i": "int64", "b": "bool", "s": "string",
                 "$aml_dc_scoring_timestamp": "timestamp[us, tz=UTC]", "$aml_dc_boundary": "int64"}


@pytest.fixture(params=STORES)
def store(request: pytest.FixtureRequest, tmp_path: Path):
    yield from make_store(request, tmp_path)


def _inputs(kind: str) -> Any:
    columns = list(zip(*ROWS))
    if kind == "python":
        return [list(row) for row in ROWS]
    if kind == "arrow":
        return pa.table([pa.array(c, t.type) for c, t in zip(columns, TYPES)], schema=TYPES)
    if kind == "polars":
        pl = pytest.importorskip("polars")
        return pl.DataFrame({n: list(c) for n, c in zip(NAMES, columns)},
                            schema={"f": pl.Float64, "i": pl.Int64, "b": pl.Boolean, "s": pl.String})
    frame = pd.DataFrame({n: pd.array(list(c), dtype=d) for n, c, d in
                          zip(NAMES, columns, ["Float64", "Int64", "boolean", "string"])})
    return frame


def _collect(store: Any, fmt: str, kind: str) -> None:
    with ModelDataCollector("best_model", "inputs", NAMES, storage=store.url, storage_options=store.options,
                            format=fmt, clock=SteppingClock(WHEN), compaction="off") as dc:
        dc.collect(_inputs(kind))
        assert dc.flush(timeout=60)


def _expected_features(fmt: str, reader: str) -> list[tuple[Any, ...]]:
    if fmt == "parquet":
        return ROWS
    # CSV has no null string: an empty field reads back as "" (pyarrow, pandas) or NULL (DuckDB)
    return [(*row[:3], "" if row[3] is None and reader == "pyarrow" else row[3]) for row in ROWS]


def _read(fmt: str, reader: str, root: Path) -> tuple[list[tuple[Any, ...]], dict[str, str]]:
    pattern = "**/*.parquet" if fmt == "parquet" else "**/*.csv"
    paths = files(root, pattern)
    assert len(paths) == 1, paths
    if reader == "pyarrow":
        file_format: Any = "parquet"
        if fmt == "csv":
            file_format = ds.CsvFileFormat(parse_options=pacsv.ParseOptions(newlines_in_values=True))
        table = ds.dataset(paths, format=file_format).to_table()
        types = {f.name: str(f.type) for f in table.schema}
        return [tuple(plain(v) for v in row.values()) for row in table.to_pylist()], types
    if reader == "duckdb":
        con = duckdb.connect()
        function = "read_parquet" if fmt == "parquet" else "read_csv"
        relation = con.sql(f"SELECT * FROM {function}({paths!r})")
        types = {name: str(t) for name, t in zip(relation.columns, relation.types)}
        return [tuple(plain(v) for v in row) for row in relation.fetchall()], types
    frame = pd.read_parquet(paths[0]) if fmt == "parquet" else pd.read_csv(paths[0], keep_default_na=True)
    types = {name: str(t) for name, t in frame.dtypes.items()}
    return [tuple(plain(v) for v in row) for row in frame.itertuples(index=False)], types


@pytest.mark.parametrize("kind", ["python", "arrow", "pandas", "polars"])
@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_every_type_round_trips(store: Any, fmt: str, kind: str, tmp_path: Path) -> None:
    """Floats, ints, booleans, text (quotes, commas, newlines, non-ASCII) and nulls come back
    from pyarrow.dataset, DuckDB and pandas as collected, with the spec's correlation columns;
    Parquet keeps the types (timestamp[us, UTC] for the scoring time)."""
    _collect(store, fmt, kind)
    root = store.download(tmp_path / "copy")
    for reader in ("pyarrow", "duckdb", "pandas"):
        rows, types = _read(fmt, reader, root)
        assert list(types) == [*NAMES, *AML_COLUMNS], reader
        expected = _expected_features(fmt, reader)
        features = [row[:4] for row in rows]
        if fmt == "csv" and reader == "pandas":  # ints with nulls become floats there
            features, expected = [_normal(r) for r in features], [_normal(r) for r in expected]
        assert features == expected, reader
        stamp: Any = WHEN
        if fmt == "csv" and reader == "pandas":
            stamp = WHEN.replace(tzinfo=None).isoformat()  # pandas leaves ISO text as text
        assert {row[5] for row in rows} == {stamp}, reader
        assert {(row[6], row[9]) for row in rows} == {(1440, "best_model")}, reader
        assert len({row[4] for row in rows}) == len(ROWS), reader  # one correlation id per row
    if fmt == "parquet":
        _, types = _read(fmt, "pyarrow", root)
        assert {k: types[k] for k in PARQUET_TYPES} == PARQUET_TYPES
        _, types = _read(fmt, "duckdb", root)
        assert [types[n] for n in NAMES] == ["DOUBLE", "BIGINT", "BOOLEAN", "VARCHAR"]
        assert types["$aml_dc_scoring_timestamp"] == "TIMESTAMP WITH TIME ZONE"
        _, types = _read(fmt, "pandas", root)
        assert types["$aml_dc_scoring_timestamp"] in ("datetime64[us, UTC]", "datetime64[ns, UTC]")


def _normal(row: tuple[Any, ...]) -> tuple[Any, ...]:
    return tuple(int(v) if isinstance(v, float) and v.is_integer() and abs(v) < 2**53 else v for v in row)
