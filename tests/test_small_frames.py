"""Many small DataFrames (or Arrow tables) are converted as one run in the flusher; the values
and types written are those each frame would have had on its own."""

from __future__ import annotations

import pyarrow.dataset as ds
import pytest

from conftest import data_files
from mdc_core import ModelDataCollector

pd = pytest.importorskip("pandas")


def test_a_run_of_mixed_dtype_frames_keeps_each_columns_type(tmp_path) -> None:
    dc = ModelDataCollector("m", designation="inputs", storage=tmp_path, format="parquet")
    for i in range(50):
        dc.collect(pd.DataFrame({"i": [2**60 + i], "f": [i / 3], "b": [i % 2 == 0]}))
    assert dc.flush(timeout=30)
    table = ds.dataset(data_files(tmp_path, "**/*.parquet"), format="parquet").to_table().sort_by("i")
    assert [str(table.schema.field(n).type) for n in "ifb"] == ["int64", "double", "bool"]
    assert table.column("i").to_pylist() == [2**60 + i for i in range(50)]  # no trip through float
    assert table.column("f").to_pylist() == [i / 3 for i in range(50)]
    assert table.column("b").to_pylist() == [i % 2 == 0 for i in range(50)]


def test_a_run_of_one_dtype_frames_is_written_row_for_row(tmp_path) -> None:
    features = [f"feat{j}" for j in range(1, 7)]
    dc = ModelDataCollector("m", designation="inputs", feature_names=features, storage=tmp_path, format="parquet")
    ids = [dc.collect(pd.DataFrame([[i + j / 10 for j in range(6)]], columns=features))["$aml_dc_correlation_id"]
           for i in range(200)]
    assert dc.flush(timeout=30)
    table = ds.dataset(data_files(tmp_path, "**/*.parquet"), format="parquet").to_table()
    rows = {r["$aml_dc_correlation_id"]: [r[f] for f in features] for r in table.to_pylist()}
    assert rows == {ids[i]: [i + j / 10 for j in range(6)] for i in range(200)}


def test_a_run_of_small_arrow_tables_is_written_row_for_row(tmp_path) -> None:
    import pyarrow as pa

    dc = ModelDataCollector("m", designation="inputs", storage=tmp_path, format="parquet")
    ids = [dc.collect(pa.table({"i": [i], "s": [f"r{i}"], "x": [i / 7]}))["$aml_dc_correlation_id"]
           for i in range(300)]
    assert dc.flush(timeout=30)
    table = ds.dataset(data_files(tmp_path, "**/*.parquet"), format="parquet").to_table()
    assert [str(table.schema.field(n).type) for n in "isx"] == ["int64", "string", "double"]
    rows = {r["$aml_dc_correlation_id"]: (r["i"], r["s"], r["x"]) for r in table.to_pylist()}
    assert rows == {ids[i]: (i, f"r{i}", i / 7) for i in range(300)}
