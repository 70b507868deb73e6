"""Exporting a training set: joined inputs and predictions (and labels), or one designation,
for a time range, written as one Parquet or CSV file at any fsspec URL.

The join runs one day at a time (predictions and labels carry their inputs' timestamp, so they
are filed under the same day), and each day is written as it is joined: memory holds one day.
"""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import fsspec
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from mdc_core.errors import ConfigurationError
from mdc_core.join import JoinResult, join
from mdc_core.reader import Scan, conform
from mdc_core.redact import redact_url
from mdc_core.store import NoDataError, as_utc

if TYPE_CHECKING:
    from mdc_core.store import Store

FORMATS = ("parquet", "csv")


@dataclass
class ExportResult:
    """What an export wrote: rows, days, and the join's counts summed over the days."""

    destination: str
    format: str
    rows: int = 0
    days: int = 0
    matched: dict[str, int] = field(default_factory=dict)
    by_request: dict[str, int] = field(default_factory=dict)
    unmatched: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def export(
    store: Store,
    destination: str,
    model: str | None = None,
    *,
    start: Any = None,
    end: Any = None,
    designation: str | None = None,
    labels: bool = False,
    how: str = "inner",
    format: str | None = None,
    columns: list[str] | None = None,
    storage_options: dict[str, Any] | None = None,
    overwrite: bool = False,
    progress: Any = None,
    **filters: Any,
) -> ExportResult:
    """Write ``destination`` (a path or fsspec URL; its storage options apart). Without
    ``designation``: inputs joined with predictions (and labels), ``how`` as in ``join``; with
    it: that designation's rows as they are. ``format`` defaults to the destination's extension,
    else Parquet. An existing destination is refused unless ``overwrite``."""
    fmt = format or ("csv" if destination.lower().endswith(".csv") else "parquet")
    if fmt not in FORMATS:
        raise ConfigurationError(f"format={fmt!r}: use one of {FORMATS}")
    fs, path = fsspec.core.url_to_fs(destination, **(storage_options or {}))
    if not overwrite and fs.exists(path):
        raise FileExistsError(f"{redact_url(destination)} exists; pass overwrite=True (--overwrite) to replace it")
    result = ExportResult(redact_url(destination), fmt)
    lo, hi = as_utc(start), as_utc(end, end=True)

    def scan(name: str) -> Scan:
        return store.read(
            model, name, start=start, end=end, columns=columns if name == designation else None, **filters
        )

    if designation is not None:
        source = scan(designation)
        if not source.partitions:
            raise NoDataError(f"no {designation} in {_range(lo, hi)} under {redact_url(store.url)}")
        days = sorted({p.start.date() for p in source.partitions})
        source.progress = progress
        schema = source.schema
        with _Writer(fs, path, fmt, schema) as writer:
            for batch in source.to_batches():
                writer.write(pa.Table.from_batches([batch], schema=schema))
                result.rows += batch.num_rows
        result.days = len(days)
        return result

    joined_days = join_by_day(store, model, start=start, end=end, labels=labels, how=how, **filters)
    with _Writer(fs, path, fmt, joined_days.schema) as writer:
        for i, joined in enumerate(joined_days):
            table = joined.table
            if columns is not None:
                table = table.select([c for c in columns if c in table.column_names])
            writer.write(table)
            result.rows += table.num_rows
            add_counts(result, joined)
            if progress is not None:
                progress(i + 1, len(joined_days.days))
    result.days = len(joined_days.days)
    return result


@dataclass
class JoinedDays:
    """Inputs joined with predictions (and labels), one day at a time, every day's table with
    ``schema``; iterate for a ``JoinResult`` per day."""

    schema: pa.Schema
    days: list[dt.date]
    scans: list[Scan]
    how: str

    def __iter__(self) -> Iterator[JoinResult]:
        for day in self.days:
            tables = [s.subset([p for p in s.partitions if p.start.date() == day]).to_table() for s in self.scans]
            joined = join(*tables, how=self.how)
            joined.table = conform(joined.table, self.schema)
            yield joined


def join_by_day(
    store: Store,
    model: str | None = None,
    *,
    start: Any = None,
    end: Any = None,
    labels: bool = False,
    how: str = "inner",
    **filters: Any,
) -> JoinedDays:
    """The join of ``Store.join``, in bounded memory: predictions and labels carry their inputs'
    timestamp, so each day joins on its own. Raises ``NoDataError`` when no inputs match."""
    sides = ["inputs", "predictions", *(["labels"] if labels else [])]
    scans = [store.read(model, name, start=start, end=end, **filters) for name in sides]
    if not scans[0].partitions:
        span = _range(as_utc(start), as_utc(end, end=True))
        raise NoDataError(f"no inputs in {span} under {redact_url(store.url)}")
    days = sorted({p.start.date() for p in scans[0].partitions})
    schema = join(*(s.schema.empty_table() for s in scans), how=how).table.schema
    return JoinedDays(schema, days, scans, how)


def add_counts(into: ExportResult, joined: JoinResult) -> None:
    """Add a day's counts to a running total."""
    pairs = ((joined.matched, into.matched), (joined.by_request, into.by_request), (joined.unmatched, into.unmatched))
    for counts, total in pairs:
        for key, n in counts.items():
            total[key] = total.get(key, 0) + n


def _range(lo: dt.datetime | None, hi: dt.datetime | None) -> str:
    return f"[{lo.isoformat() if lo else '-inf'}, {hi.isoformat() if hi else '+inf'})"


class _Writer:
    """One Parquet or CSV file written table by table through an fsspec file."""

    def __init__(self, fs: Any, path: str, fmt: str, schema: pa.Schema):
        self.fs, self.path, self.fmt, self.schema = fs, path, fmt, schema
        self._file: Any = None
        self._writer: Any = None

    def __enter__(self) -> _Writer:
        parent = self.path.rpartition("/")[0]
        if parent:
            with contextlib.suppress(OSError, NotImplementedError):  # object stores have no folders
                self.fs.makedirs(parent, exist_ok=True)
        self._file = self.fs.open(self.path, "wb")
        return self

    def write(self, table: pa.Table) -> None:
        if self._writer is None:
            self.schema = table.schema
            if self.fmt == "parquet":
                self._writer = pq.ParquetWriter(self._file, self.schema, compression="zstd")
            else:
                self._writer = pacsv.CSVWriter(self._file, self.schema)
        self._writer.write_table(table.cast(self.schema) if table.schema != self.schema else table)

    def __exit__(self, exc_type: Any, *rest: Any) -> None:
        try:
            if self._writer is None and exc_type is None:
                self.write(self.schema.empty_table())
            if self._writer is not None:
                self._writer.close()
        finally:
            self._file.close()
        if exc_type is not None:
            with contextlib.suppress(OSError):
                self.fs.rm(self.path)  # no half-written training set left behind
