"""Data drift: how far each window of collected data has moved from a baseline, per feature.

``compute(url, model=..., baseline=..., window="day", start=..., end=...)`` reads the
designation (``inputs`` by default; ``predictions`` for prediction drift) through the reader,
streaming Arrow batches, and returns a ``DriftResult``: ``as_dict()`` (the JSON schema
``mdc.drift/1``), ``to_json()``, ``to_html()`` (a self-contained report). The bins and metrics are
``mdc_core.drift_metrics``'s; the engines (``local``, ``spark``) ``mdc_core.drift_engines``'.

The baseline is training data (a Parquet or CSV file: a path or an fsspec URL; or a pyarrow
Table) or a date range of the same designation (``"2026-03-01..2026-03-07"`` or a
``(start, end)`` pair). Per window: rows; per feature: missing rate and its change, PSI,
KS statistic and p-value, Wasserstein distance (numeric), chi-square and Jensen–Shannon distance
(categorical), and a ``score`` in [0, 1]. A window's ``magnitude`` is its largest feature score;
``top_features`` rank the features by score.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from mdc_core.compaction import MANIFEST
from mdc_core.drift_cli import ENGINES
from mdc_core.drift_engines import TIMESTAMP, Counts, Windows, local_counts, spark_counts
from mdc_core.drift_metrics import (
    BINS,
    FeaturePlan,
    PlanBuilder,
    cell,
    feature_metrics,
    kind_of,
    plot_histogram,
)
from mdc_core.errors import ConfigurationError
from mdc_core.store import NoDataError, Store, as_utc, open_store

SCHEMA = "mdc.drift/1"
TOP = 5
_WINDOW = re.compile(r"^\s*(?P<n>\d+)?\s*(?P<unit>d|day|days|h|hour|hours)\s*$")


def parse_window(text: str | dt.timedelta) -> dt.timedelta:
    """``day``, ``hour``, ``7 days``, ``7d``, ``12h`` (or a timedelta) as a timedelta."""
    if isinstance(text, dt.timedelta):
        width = text
    else:
        match = _WINDOW.match(str(text).lower())
        if not match:
            raise ConfigurationError(f"window {text!r}: use day, hour, 'N days' or 'N hours' (7d, 12h)")
        n = int(match["n"] or 1)
        width = dt.timedelta(days=n) if match["unit"].startswith("d") else dt.timedelta(hours=n)
    if width <= dt.timedelta(0):
        raise ConfigurationError("the window must be longer than zero")
    return width


def parse_range(text: str) -> tuple[dt.datetime, dt.datetime] | None:
    """``A..B`` (each a date, included, or an instant) as ``[start, end)``; None if not a range."""
    start, sep, end = text.partition("..")
    if not sep or "/" in text:
        return None
    lo, hi = as_utc(start.strip()), as_utc(end.strip(), end=True)
    assert lo is not None and hi is not None
    if hi <= lo:
        raise ConfigurationError(f"baseline range {text!r} is empty")
    return lo, hi


@dataclass
class DriftResult:
    """Per-window, per-feature drift against a baseline. ``as_dict()`` is the stable JSON."""

    meta: dict[str, Any]
    features: list[dict[str, Any]]
    windows: list[dict[str, Any]]
    histograms: dict[str, Any] = field(default_factory=dict)

    @property
    def magnitudes(self) -> list[float | None]:
        return [w["magnitude"] for w in self.windows]

    @property
    def max_magnitude(self) -> float | None:
        values = [m for m in self.magnitudes if m is not None]
        return max(values) if values else None

    def exceeds(self, threshold: float) -> bool:
        """Whether some window's magnitude is above ``threshold``."""
        top = self.max_magnitude
        return top is not None and top > threshold

    def top_features(self, n: int = TOP) -> list[str]:
        """The features with the highest score in any window, highest first."""
        best: dict[str, float] = {}
        for w in self.windows:
            for name, m in w["features"].items():
                if m["score"] is not None:
                    best[name] = max(best.get(name, 0.0), m["score"])
        return [n for n, _ in sorted(best.items(), key=lambda kv: (-kv[1], kv[0]))][:n]

    def as_dict(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA,
            **self.meta,
            "features": self.features,
            "windows": self.windows,
            "summary": {"max_magnitude": self.max_magnitude, "top_features": self.top_features()},
            "histograms": self.histograms,
        }

    def to_json(self, **kwargs: Any) -> str:
        return json.dumps(self.as_dict(), **kwargs)

    def to_html(self, threshold: float | None = None) -> str:
        """The self-contained HTML report (``threshold`` drawn on the magnitude plot)."""
        from mdc_core.drift_report import render

        return render(self, threshold)


def compute(
    url: str | Store,
    *,
    baseline: Any,
    model: str | None = None,
    version: str | None = None,
    designation: str = "inputs",
    window: str | dt.timedelta = "day",
    start: Any = None,
    end: Any = None,
    features: Sequence[str] | None = None,
    engine: str = "local",
    spark: Any = None,
    service: str | None = None,
    workspace: str | None = None,
    storage_options: dict[str, Any] | None = None,
    progress: Callable[[int, int], None] | None = None,
    prediction_column: str | None = None,
    label_column: str | None = None,
) -> DriftResult:
    """Drift of ``designation`` per window of ``window`` in ``[start, end)`` against ``baseline``.

    ``start``/``end`` default to the first and last partition in the store; ``features`` to the
    baseline's numeric and categorical columns (not ``$aml_`` ones). ``engine="spark"`` counts on
    PySpark (``spark``: a session; default: ``SparkSession.builder.getOrCreate()``) over a local
    root. With ``prediction_column`` and ``label_column``, each window also gets ``labels``:
    accuracy, MAE and RMSE of its inputs' predictions against their labels
    (``mdc_core.drift_labels``). ``progress(done, total)`` is called as partitions are read (local engine). Raises
    ``NoDataError`` when the baseline has no rows or no partition matches.
    """
    if engine not in ENGINES:
        raise ConfigurationError(f"engine {engine!r}: choose one of {', '.join(ENGINES)}")
    width = parse_window(window)
    store = url if isinstance(url, Store) else open_store(url, **(storage_options or {}))
    try:
        where = {"model": model, "version": version, "service": service, "workspace": workspace}
        source, base_batches, base_paths = _baseline(store, baseline, designation, where)
        plans, base_counts = _plan(base_batches, features, source, engine, spark, base_paths)
        parts = store.partitions(designation=designation, start=start, end=end, **where)
        lo, hi = as_utc(start), as_utc(end, end=True)
        if lo is None or hi is None:
            if not parts:
                raise NoDataError(f"no {designation} under {store!r} to measure drift on")
            lo = lo or min(p.start for p in parts)
            hi = hi or max(p.end for p in parts)
        count = max(1, -(-(hi - lo) // width))
        windows = Windows(lo, width, count)
        columns = [p.name for p in plans] + [TIMESTAMP]
        scan = store.read(model, designation, start=lo, end=hi, columns=columns, schema=_schema(plans), **_only(where))
        scan.progress = progress  # (partitions read, partitions in all)
        if engine == "spark":
            clean = [p for p in scan.partitions if not compacting(p)]
            counts = spark_counts(_session(spark), plans, _paths(store, clean), windows)
            busy = [p for p in scan.partitions if compacting(p)]
            if busy:  # a compaction runs (or was cut short) there: the reader reads each row once
                add_counts(counts, local_counts(plans, _batches(scan.subset(busy)), windows))
        else:
            counts = local_counts(plans, _batches(scan), windows)
        meta = {
            "url": _redacted(store),
            "model": model,
            "version": version,
            "designation": designation,
            "engine": engine,
            "baseline": {"source": source, "rows": int(base_counts.rows[0])},
            "window": _describe(width),
            "start": lo.isoformat(),
            "end": hi.isoformat(),
            "bins": BINS,
        }
        result = assemble(meta, plans, base_counts, counts, windows)
        if prediction_column and label_column:
            from mdc_core.drift_labels import label_metrics

            quality = label_metrics(store, model, windows, prediction_column, label_column, _only(where))
            for entry, q in zip(result.windows, quality):
                entry["labels"] = q
        return result
    finally:
        if not isinstance(url, Store):
            store.close()


def _only(where: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in where.items() if k != "model"}


def _redacted(store: Store) -> str:
    from mdc_core.redact import redact_url

    return redact_url(store.url)


def _describe(width: dt.timedelta) -> str:
    if width % dt.timedelta(days=1) == dt.timedelta(0):
        days = width // dt.timedelta(days=1)
        return "day" if days == 1 else f"{days} days"
    hours = width / dt.timedelta(hours=1)
    return "hour" if hours == 1 else f"{hours:g} hours"


def _schema(plans: Sequence[FeaturePlan]) -> pa.Schema:
    from mdc_core.reader import UTC_US

    fields = [pa.field(p.name, pa.float64() if p.kind == "numeric" else pa.string()) for p in plans]
    return pa.schema([*fields, pa.field(TIMESTAMP, UTC_US)])


def _batches(scan: Any) -> Iterator[pa.RecordBatch]:
    yield from scan.to_batches()


def _session(spark: Any) -> Any:
    if spark is not None:
        return spark
    try:
        from pyspark.sql import SparkSession
    except ImportError as exc:
        raise ImportError("engine='spark' needs pyspark: pip install pyspark") from exc
    # Python workers must run this interpreter, which has mdc; the PATH's python3 may not.
    # Read when the JVM starts (spark.pyspark.python is not honoured in local mode).
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    return SparkSession.builder.config("spark.sql.session.timeZone", "UTC").getOrCreate()


def compacting(part: Any) -> bool:
    """Whether a compaction of the partition runs or was cut short (its manifest is there): its
    files may hold some rows twice until it ends, so only the reader reads it exactly once."""
    return any(name == MANIFEST for name, _ in part.files)


def add_counts(into: Counts, more: Counts) -> None:
    for total, part in zip(into.hists, more.hists):
        total.add(part)
    into.rows += more.rows


def _paths(store: Store, parts: Sequence[Any]) -> list[str]:
    """Local paths of the partitions' data files (Spark reads local disk here)."""
    root = store.url.removeprefix("file://")
    if "://" in root:
        raise ConfigurationError("engine='spark' reads a local root (Spark here has no cloud connectors)")
    return [f"{root.rstrip('/')}/{p.folder}{name}" for p in parts for name, _ in p.data_files]


# -- the baseline -------------------------------------------------------------------------------


def _baseline(
    store: Store, baseline: Any, designation: str, where: dict[str, Any]
) -> tuple[str, Callable[[], Iterator[pa.RecordBatch]], list[str] | None]:
    """``(description, a function that streams its batches, local file paths for Spark)``."""
    if isinstance(baseline, (pa.Table, pa.RecordBatch)):
        table = baseline
        return f"table of {table.num_rows} rows", lambda: iter(table.to_batches()), None
    span = parse_range(baseline) if isinstance(baseline, str) else None
    if span is None and isinstance(baseline, (tuple, list)) and len(baseline) == 2:
        span = (as_utc(baseline[0]), as_utc(baseline[1], end=True))  # type: ignore[assignment]
    if span is not None:
        lo, hi = span
        parts = store.partitions(designation=designation, start=lo, end=hi, **where)

        def stream() -> Iterator[pa.RecordBatch]:
            yield from store.read(where["model"], designation, start=lo, end=hi, **_only(where)).to_batches()

        spark_can = "://" not in store.url.removeprefix("file://") and not any(compacting(p) for p in parts)
        paths = _paths(store, parts) if spark_can else None  # else the reader counts it, exactly once
        return f"{designation} {lo.isoformat()}..{hi.isoformat()}", stream, paths
    if isinstance(baseline, str):
        return baseline, lambda: _file_batches(baseline), [baseline] if "://" not in baseline else None
    raise ConfigurationError("baseline: a Parquet or CSV file (path or URL), a pyarrow Table, or a date range A..B")


def _file_batches(url: str) -> Iterator[pa.RecordBatch]:
    import pyarrow.dataset as ds

    fmt = "csv" if url.rstrip("/").endswith((".csv", ".csv.gz")) else "parquet"
    if "://" in url and not url.startswith("file://"):
        try:
            import fsspec
        except ImportError as exc:
            raise ImportError("a baseline URL needs fsspec (and its backend, e.g. s3fs or adlfs)") from exc
        fs, path = fsspec.core.url_to_fs(url)
        dataset = ds.dataset(path, format=fmt, filesystem=fs)
    else:
        dataset = ds.dataset(url.removeprefix("file://"), format=fmt)
    yield from dataset.to_batches()


def _plan(
    batches: Callable[[], Iterator[pa.RecordBatch]],
    features: Sequence[str] | None,
    source: str,
    engine: str,
    spark: Any,
    paths: list[str] | None,
) -> tuple[list[FeaturePlan], Counts]:
    """Decide the bins from one pass over the baseline, then count it (a second pass, on the
    chosen engine when it can read the baseline)."""
    builder: PlanBuilder | None = None
    rows = 0
    for batch in batches():
        if builder is None:
            kinds = {}
            for f in batch.schema:
                kind = kind_of(f.type)
                wanted = f.name in features if features is not None else not f.name.startswith("$aml_")
                if kind is not None and wanted:
                    kinds[f.name] = kind
            if features is not None:
                unknown = [n for n in features if n not in kinds]
                if unknown:
                    raise ConfigurationError(f"features not in the baseline (or not numeric/text): {unknown}")
            builder = PlanBuilder(kinds)
        builder.add(batch)
        rows += batch.num_rows
    if builder is None or rows == 0:
        raise NoDataError(f"the baseline ({source}) has no rows")
    plans = builder.plan()
    if engine == "spark" and paths is not None:
        return plans, spark_counts(_session(spark), plans, paths, None)
    return plans, local_counts(plans, batches(), None)


# -- assembling the result --------------------------------------------------------------------


def assemble(
    meta: dict[str, Any], plans: Sequence[FeaturePlan], base: Counts, counts: Counts, windows: Windows
) -> DriftResult:
    """Metrics of every window and feature from the baseline's and the windows' histograms."""
    base_cells = [cell(h, 0) for h in base.hists]
    features = []
    for plan, b in zip(plans, base_cells):
        entry = plan.as_dict()
        entry["baseline_missing_rate"] = b.missing / b.rows if b.rows else None
        features.append(entry)
    out_windows = []
    best: dict[str, tuple[float, int]] = {}
    for w in range(windows.count):
        lo, hi = windows.bounds(w)
        per = {}
        for plan, b, hist in zip(plans, base_cells, counts.hists):
            m = feature_metrics(plan, b, cell(hist, w))
            per[plan.name] = m
            if m["score"] is not None and m["score"] > best.get(plan.name, (-1.0, 0))[0]:
                best[plan.name] = (m["score"], w)
        scores = {n: m["score"] for n, m in per.items() if m["score"] is not None}
        ranked = sorted(scores.items(), key=lambda kv: (-kv[1], kv[0]))
        out_windows.append(
            {
                "start": lo.isoformat(),
                "end": hi.isoformat(),
                "rows": int(counts.rows[w]),
                "magnitude": ranked[0][1] if ranked else None,
                "top_features": [{"name": n, "score": s} for n, s in ranked[:TOP]],
                "features": per,
            }
        )
    histograms = {}
    for plan, b, hist in zip(plans, base_cells, counts.hists):
        at = best.get(plan.name, (0.0, None))[1]
        histograms[plan.name] = {
            "edges": list(plan.plot_edges) if plan.kind == "numeric" else [*plan.categories, "(other)"],
            "baseline": plot_histogram(plan, b),
            "window": None if at is None else out_windows[at]["start"],
            "current": [] if at is None else plot_histogram(plan, cell(hist, at)),
        }
    return DriftResult(_clean(meta), features, _clean(out_windows), histograms)


def _clean(value: Any) -> Any:
    """Plain JSON: numpy numbers as Python ones, NaN and infinities as null."""
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if np.isfinite(value) else None
    return value
