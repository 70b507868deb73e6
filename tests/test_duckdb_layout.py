"""DuckDB reads the layout as it is — a glob over ``.../inputs/<yyyy>/*/*/*.csv`` (or
``*.parquet``) — on local disk, and on Azurite and SeaweedFS through an fsspec filesystem
registered on the connection (DuckDB's own cloud extensions would download from the internet).
Every query's rows are compared with the rows collected."""

from __future__ import annotations

from typing import Any

import pytest

from conftest import to_ns
from mdc_core.cli import main as mdc_main
from test_reader import CID, DAYS, FEATURES, TS, collect_days
from test_reader_cloud import Cloud, cloud  # noqa: F401  (fixture)

duckdb = pytest.importorskip("duckdb")

INPUTS = "default/default/default/default/best_model/3/inputs"
EPOCH = 'epoch_us("$aml_dc_scoring_timestamp")'


def wanted(rows: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    """``(correlation id, features..., scoring time in epoch µs)`` of the collected rows."""
    return sorted((r[CID], *(r[f] for f in FEATURES), _epoch_us(r[TS])) for r in rows)


def _epoch_us(instant: Any) -> int:
    return to_ns(instant) // 1000


def query(con: Any, source: str) -> list[tuple[Any, ...]]:
    columns = ", ".join(f'"{c}"' for c in (CID, *FEATURES))
    return sorted(con.sql(f"SELECT {columns}, {EPOCH} FROM {source}").fetchall())


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_duckdb_globs_the_local_layout(tmp_path, fmt) -> None:
    """read_csv / read_parquet over <root>/.../inputs/2026/*/*/*.<ext> return the rows collected."""
    collected = collect_days(str(tmp_path), format=fmt, compaction="off")
    glob = f"{tmp_path}/{INPUTS}/2026/*/*/*.{fmt}"
    source = (
        f"read_csv('{glob}', union_by_name=true)" if fmt == "csv" else f"read_parquet('{glob}', union_by_name=true)"
    )
    con = duckdb.connect()
    assert query(con, source) == wanted(collected["inputs"])
    march_5th = f"{tmp_path}/{INPUTS}/2026/03/05/*.{fmt}"  # the zero-padded day as a path filter
    one_day = f"read_csv('{march_5th}')" if fmt == "csv" else f"read_parquet('{march_5th}')"
    assert query(con, one_day) == wanted([r for r in collected["inputs"] if r[TS].day == 5])


def test_duckdb_reads_object_stores_through_fsspec(cloud: Cloud) -> None:  # noqa: F811
    """On Azurite and SeaweedFS, DuckDB with the adlfs/s3fs filesystem registered globs today's
    batch objects (*.csv) and, after 'mdc compact', the one data.csv per day."""
    collected = collect_days(cloud.url, storage_options=cloud.options, compaction="off", days=DAYS[:2])
    con = duckdb.connect()
    con.register_filesystem(cloud.fs)
    base = f"{cloud.url}/{INPUTS}/2026/*/*"
    assert query(con, f"read_csv('{base}/*.csv', union_by_name=true)") == wanted(collected["inputs"])
    assert mdc_main(["compact", cloud.url, "--include-open", *cloud.cli_options()]) == 0
    cloud.fs.invalidate_cache()
    assert query(con, f"read_csv('{base}/data.csv')") == wanted(collected["inputs"])
