"""Writing rows and summaries for the command line: an aligned text table, CSV, Parquet, JSON
lines; byte sizes for people; a progress line that shows only on a terminal."""

from __future__ import annotations

import datetime as dt
import json
import sys
from collections.abc import Iterable
from typing import IO, Any

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

ROW_FORMATS = ("table", "csv", "parquet", "json")


def human_bytes(n: int) -> str:
    size = float(n)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if size < 1000 or unit == "TB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{n} B"


class Progress:
    """``progress(done, total)`` draws ``label done/total`` on standard error when it is a
    terminal (and ``enabled``), else does nothing; ``close()`` ends the line."""

    def __init__(self, label: str, enabled: bool = True, stream: IO[str] | None = None):
        self.stream = stream or sys.stderr
        self.label = label
        self.active = enabled and self.stream.isatty()
        self._drawn = False

    def __call__(self, done: int, total: int) -> None:
        if self.active:
            width = 30
            filled = width * done // max(total, 1)
            self.stream.write(f"\r{self.label} [{'#' * filled}{'.' * (width - filled)}] {done}/{total}")
            self.stream.flush()
            self._drawn = True

    def close(self) -> None:
        if self._drawn:
            self.stream.write("\n")
            self.stream.flush()
            self._drawn = False


def _jsonable(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return value.isoformat()
    if isinstance(value, (dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, float) and value != value:
        return None
    return value


def write_rows(
    batches: Iterable[pa.RecordBatch], schema: pa.Schema, fmt: str, out: IO[bytes], limit: int | None
) -> int:
    """Write ``batches`` to the binary stream ``out`` as ``fmt``; return the rows written."""
    if fmt not in ROW_FORMATS:
        raise ValueError(f"format {fmt!r}: use one of {ROW_FORMATS}")
    rows = 0
    if fmt == "table":
        return _table(batches, schema, out, limit)
    writer: Any = None
    if fmt == "parquet":
        writer = pq.ParquetWriter(out, schema, compression="zstd")
    elif fmt == "csv":
        writer = pacsv.CSVWriter(out, schema)
    try:
        for batch in batches:
            if limit is not None:
                batch = batch.slice(0, max(limit - rows, 0))
            if fmt == "json":
                for row in batch.to_pylist():
                    out.write(json.dumps({k: _jsonable(v) for k, v in row.items()}).encode() + b"\n")
            elif batch.num_rows:
                writer.write_batch(batch)
            rows += batch.num_rows
            if limit is not None and rows >= limit:
                break
    finally:
        if writer is not None:
            writer.close()
    return rows


def _table(batches: Iterable[pa.RecordBatch], schema: pa.Schema, out: IO[bytes], limit: int | None) -> int:
    shown: list[list[str]] = []
    total = 0
    cap = 50 if limit is None else limit
    for batch in batches:
        total += batch.num_rows
        for row in batch.slice(0, max(cap - len(shown), 0)).to_pylist():
            shown.append(["" if v is None else str(_jsonable(v)) for v in row.values()])
        if limit is not None and total >= limit:
            total = min(total, limit)
            break
    names = schema.names
    widths = [min(max([len(n)] + [len(r[i]) for r in shown]), 40) for i, n in enumerate(names)]

    def line(cells: list[str]) -> str:
        return "  ".join((c if len(c) <= w else c[: w - 1] + "…").ljust(w) for c, w in zip(cells, widths)).rstrip()

    text = [line(names), line(["-" * w for w in widths]), *(line(r) for r in shown)]
    if total > len(shown):
        text.append(f"... {total - len(shown)} more rows (--limit N, or --format csv|json|parquet for all)")
    text.append(f"({total} rows)")
    out.write(("\n".join(text) + "\n").encode("utf-8"))
    return total
