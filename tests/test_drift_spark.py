"""``engine="spark"`` gives the local engine's numbers on the same layout (CSV and Parquet days,
numeric and categorical features, missing values, an empty window), with a file baseline and a
date-range baseline; the raw rows stay on the executors. One Spark session for the module."""

from __future__ import annotations

import shutil
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mdc_core import drift
from mdc_core.drift_metrics import BINS
from test_drift import assert_same, day, write_day

pyspark = pytest.importorskip("pyspark")
if shutil.which("java") is None:
    pytest.skip("PySpark needs Java (17) on the PATH", allow_module_level=True)

from test_spark_layout import spark  # noqa: E402, F401  (the module's one local Spark session)

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore:PySpark does not yet fully support pandas")]


def columns(seed: int, n: int, shift: float = 0.0, p: tuple[float, ...] = (0.5, 0.3, 0.2)) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    x = rng.normal(shift, 1.0, n)
    return {
        "x": pa.array([None if i % 17 == 0 else v for i, v in enumerate(x)], pa.float64()),
        "y": rng.normal(0, 2, n),
        "kind": rng.choice(["a", "b", "c"], n, p=list(p)),
    }


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("drift-spark")
    write_day(path, day(4), columns(1, 3000))
    write_day(path, day(5), columns(2, 2500, shift=0.5), fmt="parquet")
    write_day(path, day(7), columns(3, 2000, p=(0.2, 0.3, 0.5)))
    pq.write_table(pa.table(columns(4, 4000)), path / "train.parquet")
    return str(path)


@pytest.mark.parametrize("baseline", ["file", "range"])
def test_spark_engine_gives_the_local_numbers(spark, root, baseline) -> None:
    """Every count, rate and metric of every window and feature equals the local engine's (floats
    from sums of values to 1e-9 relative); the shifted day and the categorical day rank as built."""
    source = f"{root}/train.parquet" if baseline == "file" else "2026-03-04..2026-03-04"
    kwargs = dict(model="m", baseline=source, start="2026-03-04", end="2026-03-07")
    local = drift.compute(root, **kwargs)
    on_spark = drift.compute(root, engine="spark", spark=spark, **kwargs)
    one, other = local.as_dict(), on_spark.as_dict()
    assert other["engine"] == "spark"
    one.pop("engine"), other.pop("engine")
    assert_same(one, other)
    assert [w["rows"] for w in one["windows"]] == [3000, 2500, 0, 2000]
    assert one["windows"][1]["top_features"][0]["name"] == "x"
    assert one["windows"][3]["top_features"][0]["name"] == "kind"
    assert one["windows"][0]["features"]["x"]["missing"] == len(range(0, 3000, 17))


def test_spark_engine_never_collects_rows(spark, root, monkeypatch) -> None:
    """What the driver collects is the summed bins (at most windows x features x (bins + 3) rows
    of ``LONG``'s columns), never a raw row."""
    frame_type = type(spark.range(1))
    collected: list[int] = []
    real = frame_type.collect

    def counting(self: Any) -> Any:
        rows = real(self)
        collected.append(len(rows))
        assert set(self.columns) == {"feature", "window", "bin", "count", "total", "lo", "hi"}
        return rows

    monkeypatch.setattr(frame_type, "collect", counting)
    r = drift.compute(root, model="m", baseline="2026-03-04..2026-03-04", engine="spark", spark=spark)
    windows, features = len(r.windows), len(r.features)
    assert len(collected) == 2  # the baseline's bins, the windows' bins
    assert max(collected) <= windows * (features * (BINS + 1 + 2) + 1)


def test_engines_agree_on_what_a_collector_wrote(spark, tmp_path) -> None:
    """Rows collected by ModelDataCollector (CSV with quoted text, commas, missing floats; one day
    in batch objects, not compacted): both engines count every row once, with the same numbers."""
    from test_reader import collect_days

    collect_days(str(tmp_path), per_batch=30)
    collect_days(str(tmp_path / "batches"), per_batch=30, storage_options={"append": False}, compaction="off")
    for root in (tmp_path, tmp_path / "batches"):
        kwargs = dict(model="best_model", version="3", baseline="2026-03-04..2026-03-04", start="2026-03-04")
        local = drift.compute(str(root), end="2026-03-06", **kwargs).as_dict()
        on_spark = drift.compute(str(root), end="2026-03-06", engine="spark", spark=spark, **kwargs).as_dict()
        local.pop("engine"), on_spark.pop("engine")
        assert_same(local, on_spark)
        assert [w["rows"] for w in local["windows"]] == [60, 60, 60]
        assert local["windows"][0]["features"]["x_float"]["missing_rate"] == pytest.approx(1 / 3)
        assert local["windows"][0]["magnitude"] == 0.0
        assert {f["name"]: f["kind"] for f in local["features"]} == {
            "x_int": "numeric",
            "x_float": "numeric",
            "x_text": "categorical",
        }


def test_spark_leaves_a_partition_being_compacted_to_the_reader(spark, tmp_path) -> None:
    """A compaction cut short after writing data.csv but before deleting its batch: the batch's
    rows are in both files. Spark is not given that partition (the reader reads it, each row
    once), so both engines count 1000 rows, not 1300."""
    import hashlib
    import json

    import pyarrow.csv as pacsv

    from mdc_core.compaction import MANIFEST
    from test_drift import SERIES

    write_day(tmp_path, day(4), columns(5, 1000))
    folder = f"{SERIES}/inputs/2026/03/04/"
    data = (tmp_path / folder / "data.csv").read_bytes()
    batch = "data-0123456789abcdef-0000000001.csv"
    pacsv.write_csv(pacsv.read_csv(tmp_path / folder / "data.csv").slice(0, 300), tmp_path / folder / batch)
    entry = {"before": "0" * 64, "after": hashlib.sha256(data).hexdigest(), "batches": [folder + batch]}
    (tmp_path / folder / MANIFEST).write_text(json.dumps({"outputs": {folder + "data.csv": entry}}))
    write_day(tmp_path, day(5), columns(6, 800))
    kwargs = dict(model="m", baseline=pa.table(columns(7, 500)), start="2026-03-04")
    local = drift.compute(str(tmp_path), end="2026-03-05", **kwargs).as_dict()
    on_spark = drift.compute(str(tmp_path), end="2026-03-05", engine="spark", spark=spark, **kwargs).as_dict()
    assert [w["rows"] for w in local["windows"]] == [1000, 800]
    local.pop("engine"), on_spark.pop("engine")
    assert_same(local, on_spark)
