"""PySpark (local mode) reads the layout as the seed's Databricks step does —
``.../inputs/<yyyy>/*/*/data.csv`` — and today's batch files with ``*.csv`` (Spark skips mdc's
``_`` files itself); rows equal the rows collected. One Spark session for the module. Spark here
has no Azure/S3 connectors, so it reads local disk, whose layout is byte for byte the cloud one."""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from mdc_core.compaction import LOCK
from test_reader import CID, DAYS, FEATURES, TS, collect_days

pyspark = pytest.importorskip("pyspark")
if shutil.which("java") is None:
    pytest.skip("PySpark needs Java (17) on the PATH", allow_module_level=True)

from pyspark.sql import SparkSession  # noqa: E402

INPUTS = "default/default/default/default/best_model/3/inputs"
pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore:PySpark does not yet fully support pandas")]


@pytest.fixture(scope="module")
def spark() -> Iterator[Any]:
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)  # workers need this venv's mdc, not PATH's python3
    session = (
        SparkSession.builder.master("local[1]")
        .appName("mdc-layout")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.shuffle.partitions", "1")
        .config("spark.sql.session.timeZone", "UTC")
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


def read(spark: Any, path: str) -> list[tuple[Any, ...]]:
    """As a Databricks notebook reads mdc's CSV: header, RFC 4180 quotes (escape is the quote)."""
    frame = spark.read.option("header", True).option("escape", '"').option("inferSchema", True).csv(path)
    rows = frame.select(CID, *FEATURES, TS).collect()
    return sorted((r[0], r[1], r[2], r[3], r[4].strftime("%Y-%m-%dT%H:%M:%S.%f")) for r in rows)


def wanted(rows: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    return sorted((r[CID], *(r[f] for f in FEATURES), r[TS].strftime("%Y-%m-%dT%H:%M:%S.%f")) for r in rows)


def test_spark_reads_data_csv_by_wildcard(spark, tmp_path) -> None:
    """spark.read.csv('.../inputs/2026/*/*/data.csv') gives every row collected, typed."""
    collected = collect_days(str(tmp_path))
    assert read(spark, f"{tmp_path}/{INPUTS}/2026/*/*/data.csv") == wanted(collected["inputs"])


def test_spark_reads_todays_batch_files_and_skips_mdc_files(spark, tmp_path) -> None:
    """With batch files (an object store's open day), '*.csv' gives each row once; reading the
    day's folder does too, with a compaction lock and manifest beside the batches: Spark skips
    files whose names start with '_'."""
    collected = collect_days(str(tmp_path), days=DAYS[:1], storage_options={"append": False}, compaction="off")
    day = tmp_path / INPUTS / "2026/03/04"
    (day / LOCK).write_text('{"owner": "x", "expires": 0}')
    (day / "_mdc_compaction.json").write_text('{"outputs": {}}')
    assert read(spark, f"{tmp_path}/{INPUTS}/2026/*/*/*.csv") == wanted(collected["inputs"])
    assert read(spark, str(day)) == wanted(collected["inputs"])
