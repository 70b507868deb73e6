"""The two engines that count rows into a drift plan's bins: ``local`` streams Arrow batches on
this machine; ``spark`` runs the same per-batch function (``drift_metrics.partial``) on Spark's
executors with ``mapInArrow`` and sums the partial histograms there, so only the summed bins
(windows x features x bins small rows) reach the driver, never a raw row.

Both engines give the same counts; sums of values (used by the Wasserstein distance) may differ
in the last bits as Spark adds partial sums in its own order (relative 1e-12).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from mdc_core.drift_metrics import FeaturePlan, Histogram, partial

TIMESTAMP = "$aml_dc_scoring_timestamp"
_US = 1_000_000


@dataclass(frozen=True)
class Windows:
    """``count`` windows of ``width`` from ``start`` (UTC)."""

    start: dt.datetime
    width: dt.timedelta
    count: int

    @property
    def start_us(self) -> int:
        return int(self.start.timestamp()) * _US + self.start.microsecond

    @property
    def width_us(self) -> int:
        return int(self.width.total_seconds() * _US)

    def bounds(self, i: int) -> tuple[dt.datetime, dt.datetime]:
        return self.start + i * self.width, self.start + (i + 1) * self.width

    def index(self, micros: np.ndarray) -> np.ndarray:
        """Each instant's window (``-1`` before the first, ``count`` or more after the last)."""
        return np.where(micros == np.iinfo(np.int64).min, -1, np.floor_divide(micros - self.start_us, self.width_us))


@dataclass
class Counts:
    """What an engine returns: one ``Histogram`` per plan, and the rows of each window."""

    hists: list[Histogram]
    rows: np.ndarray


def _column(batch: pa.RecordBatch, name: str) -> Any:
    if name in batch.schema.names:
        return batch.column(name)
    return pa.nulls(batch.num_rows, pa.float64())


def _micros(column: Any) -> np.ndarray:
    """int64 microseconds since the epoch; missing as int64 min."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
        column = pc.strptime(column, format="%Y-%m-%dT%H:%M:%S", unit="us", error_is_null=True)
    if pa.types.is_timestamp(column.type):
        column = pc.cast(column, pa.timestamp("us", tz=column.type.tz)).cast(pa.int64())
    return column.fill_null(np.iinfo(np.int64).min).to_numpy(zero_copy_only=False).astype(np.int64)


def batch_histograms(
    plans: Sequence[FeaturePlan], batch: pa.RecordBatch, windows: Windows | None
) -> tuple[list[Histogram], np.ndarray]:
    """One batch's partial histograms; ``windows=None`` puts every row in one window (a baseline)."""
    if windows is None:
        window = np.zeros(batch.num_rows, np.int64)
        count = 1
    else:
        window = windows.index(_micros(batch.column(TIMESTAMP)))
        count = windows.count
    inside = window[(window >= 0) & (window < count)]
    rows = np.bincount(inside, minlength=count)
    return [partial(p, _column(batch, p.name), window, count) for p in plans], rows


def local_counts(
    plans: Sequence[FeaturePlan],
    batches: Iterable[pa.RecordBatch],
    windows: Windows | None,
    progress: Callable[[int], None] | None = None,
) -> Counts:
    """Stream ``batches`` once, adding their partial histograms (memory: the histograms only)."""
    count = 1 if windows is None else windows.count
    hists = [Histogram.empty(count, p.bins) for p in plans]
    rows = np.zeros(count, np.int64)
    seen = 0
    for batch in batches:
        parts, batch_rows = batch_histograms(plans, batch, windows)
        for total, part in zip(hists, parts):
            total.add(part)
        rows += batch_rows
        seen += batch.num_rows
        if progress is not None:
            progress(seen)
    return Counts(hists, rows)


# -- Spark ------------------------------------------------------------------------------------

LONG = pa.schema(
    [
        ("feature", pa.int32()),
        ("window", pa.int64()),
        ("bin", pa.int32()),
        ("count", pa.int64()),
        ("total", pa.float64()),
        ("lo", pa.float64()),
        ("hi", pa.float64()),
    ]
)
"""A partial histogram as rows: ``bin`` -1 is the missing count, -2 carries ``lo``/``hi``;
``feature`` -1 holds the rows of each window."""
SPARK_SCHEMA = "feature int, window long, bin int, count long, total double, lo double, hi double"


def to_long(hists: Sequence[Histogram], rows: np.ndarray) -> pa.RecordBatch:
    """Partial histograms as ``LONG`` rows (only the bins with rows)."""
    columns: dict[str, list[np.ndarray]] = {name: [] for name in LONG.names}

    def put(feature: int, window: np.ndarray, bins: Any, count: Any, total: Any, lo: Any, hi: Any) -> None:
        n = len(window)
        columns["feature"].append(np.full(n, feature, np.int32))
        columns["window"].append(window.astype(np.int64))
        columns["bin"].append(np.broadcast_to(bins, n).astype(np.int32))
        columns["count"].append(np.broadcast_to(count, n).astype(np.int64))
        columns["total"].append(np.broadcast_to(total, n).astype(np.float64))
        columns["lo"].append(np.broadcast_to(lo, n).astype(np.float64))
        columns["hi"].append(np.broadcast_to(hi, n).astype(np.float64))

    for f, hist in enumerate(hists):
        w, b = np.nonzero(hist.counts)
        put(f, w, b, hist.counts[w, b], hist.sums[w, b], np.nan, np.nan)
        w = np.nonzero(hist.missing)[0]
        put(f, w, -1, hist.missing[w], 0.0, np.nan, np.nan)
        w = np.nonzero(np.isfinite(hist.lo))[0]
        put(f, w, -2, 0, 0.0, hist.lo[w], hist.hi[w])
    w = np.nonzero(rows)[0]
    put(-1, w, 0, rows[w], 0.0, np.nan, np.nan)
    arrays = [pa.array(np.concatenate(columns[f.name]), f.type) for f in LONG]
    return pa.RecordBatch.from_arrays(arrays, schema=LONG)


def from_long(plans: Sequence[FeaturePlan], table: pa.Table, count: int) -> Counts:
    """Summed ``LONG`` rows back into histograms."""
    hists = [Histogram.empty(count, p.bins) for p in plans]
    rows = np.zeros(count, np.int64)
    data = {name: table.column(name).to_numpy(zero_copy_only=False) for name in LONG.names}
    feature, window, bins = data["feature"], data["window"], data["bin"]
    np.add.at(rows, window[feature < 0], data["count"][feature < 0])
    for f, hist in enumerate(hists):
        mine = feature == f
        at = mine & (bins >= 0)
        np.add.at(hist.counts, (window[at], bins[at]), data["count"][at])
        np.add.at(hist.sums, (window[at], bins[at]), data["total"][at])
        at = mine & (bins == -1)
        np.add.at(hist.missing, window[at], data["count"][at])
        at = mine & (bins == -2)
        np.minimum.at(hist.lo, window[at], data["lo"][at])
        np.maximum.at(hist.hi, window[at], data["hi"][at])
    return Counts(hists, rows)


def spark_frame(spark: Any, paths: Sequence[str], names: Sequence[str], timestamp: bool) -> Any:
    """The files (CSV by extension, else Parquet) as one DataFrame of the feature columns (CSV
    fields as strings, empty as null) and, with ``timestamp``, ``$aml_dc_scoring_timestamp``."""
    from functools import reduce

    from pyspark.sql import functions as F

    frames = []
    csv = [p for p in paths if p.endswith(".csv")]
    parquet = [p for p in paths if not p.endswith(".csv")]  # .parquet files, or a folder of them
    if csv:
        frames.append(spark.read.option("header", True).option("escape", '"').csv(csv))
    if parquet:
        frames.append(spark.read.parquet(*parquet))
    wanted = list(names) + ([TIMESTAMP] if timestamp else [])
    selected = []
    for frame in frames:
        cols = []
        for name in wanted:
            col = F.col(f"`{name}`") if name in frame.columns else F.lit(None).cast("string")
            if name == TIMESTAMP:
                ts = dict(frame.dtypes).get(name)
                col = F.to_timestamp(col) if ts == "string" else col
                col = F.unix_micros(col.cast("timestamp"))
            cols.append(col.alias(name))
        selected.append(frame.select(*cols))
    if not selected:
        raise ValueError("no CSV or Parquet files to read")
    return reduce(lambda a, b: a.unionByName(b, allowMissingColumns=True), selected)


def spark_counts(spark: Any, plans: Sequence[FeaturePlan], paths: Sequence[str], windows: Windows | None) -> Counts:
    """The same counts as ``local_counts``, computed on Spark's executors: each partition's
    batches become summed ``LONG`` rows, then a group-by adds them; the driver collects only the
    summed bins."""
    from pyspark.sql import functions as F

    count = 1 if windows is None else windows.count
    if not paths:
        return Counts([Histogram.empty(count, p.bins) for p in plans], np.zeros(count, np.int64))
    frame = spark_frame(spark, paths, [p.name for p in plans], windows is not None)
    plans = list(plans)

    def histograms(batches: Iterable[pa.RecordBatch]) -> Iterable[pa.RecordBatch]:
        hists = [Histogram.empty(count, p.bins) for p in plans]
        rows = np.zeros(count, np.int64)
        for batch in batches:
            if windows is not None:  # the timestamp arrives as int64 microseconds
                window = windows.index(
                    batch.column(TIMESTAMP).fill_null(np.iinfo(np.int64).min).to_numpy(zero_copy_only=False)
                )
                window = window.astype(np.int64)
            else:
                window = np.zeros(batch.num_rows, np.int64)
            for total, plan in zip(hists, plans):
                total.add(partial(plan, _column(batch, plan.name), window, count))
            inside = window[(window >= 0) & (window < count)]
            rows += np.bincount(inside, minlength=count)
        yield to_long(hists, rows)

    summed = (
        frame.mapInArrow(histograms, SPARK_SCHEMA)
        .groupBy("feature", "window", "bin")
        .agg(
            F.sum("count").alias("count"),
            F.sum("total").alias("total"),
            F.min("lo").alias("lo"),
            F.max("hi").alias("hi"),
        )
        .orderBy("feature", "window", "bin")
    )
    table = pa.Table.from_pylist([r.asDict() for r in summed.collect()], schema=LONG)
    return from_long(plans, table, count)
