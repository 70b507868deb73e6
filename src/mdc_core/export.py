"""Exporting a training set: joined inputs and predictions (and labels), or one designation,
for a time range, written as one Parquet or CSV file at any fsspec URL.

The join runs one day at a time (predictions and labels carry their inputs' timestamp, so they
are filed under the same day), and each day is written as it is joined: memory holds one day.
"""

from __future__ import annotations

import contextlib
import datetime as dt
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import fsspec
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from mdc_core.errors import ConfigurationError
from mdc_core.join import join
from mdc_core.reader import Scan, conform
from mdc_core.redact import redact_url
from mdc_core.store import NoDataError, as_utc

if TYPE_CHECKING:
    from mdc_core.store import Store

FORMATS = ("parquet", "csv")


@dataclass
class ExportResult:
    destination: str
    format: str
    rows: int = 0
    days: int = 0
    matched: dict[str, int] = field(default_factory=dict)
    unmatched: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "destination": self.destination,
            "format": self.format,
            "rows": self.rows,
            "days": self.days,
            "matched": self.matched,
            "unmatched": self.unmatched,
        }


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

    inputs = scan("inputs")
    if not inputs.partitions:
        raise NoDataError(f"no inputs in {_range(lo, hi)} under {redact_url(store.url)}")
    days = sorted({p.start.date() for p in inputs.partitions})
    scans = [inputs, *(scan(s) for s in ["predictions", *(["labels"] if labels else [])])]
    schema = join(*(s.schema.empty_table() for s in scans), how=how).table.schema
    with _Writer(fs, path, fmt, schema) as writer:
        for i, day in enumerate(days):
            tables = [s.subset([p for p in s.partitions if p.start.date() == day]).to_table() for s in scans]
            joined = join(*tables, how=how)
            table = conform(joined.table, schema)
            if columns is not None:
                table = table.select([c for c in columns if c in table.column_names])
            writer.write(table)
            result.rows += table.num_rows
            for counts, into in ((joined.matched, result.matched), (joined.unmatched, result.unmatched)):
                for key, n in counts.items():
                    into[key] = into.get(key, 0) + n
            if progress is not None:
                progress(i + 1, len(days))
    result.days = len(days)
    return result


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
