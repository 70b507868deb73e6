"""CSV as SPEC.md and Azure ML write it: a header row, then rows; RFC 4180 quoting, UTF-8,
``\\n`` line endings, empty fields for nulls and NaN, floats that round-trip exactly, and the
scoring timestamp as ``2026-11-25T01:02:03.123456`` (UTC, no zone). Arrow writes the body.

``format_options={"formula_guard": True}`` is for collections opened in spreadsheet tools: a
text cell starting with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return is written with a
leading ``'`` so the tool shows it instead of running it (OWASP's CSV injection advice). Off by
default, so text round-trips unchanged; numbers are never touched."""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping, Sequence
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from mdc_core import Encoded, FormatPlugin, compiled, hookimpl

SCORING_TIMESTAMP = "$aml_dc_scoring_timestamp"
ISO_SECONDS = "%Y-%m-%dT%H:%M:%S"  # Arrow's %S adds the fraction: six digits for microseconds
FORMULA = r"^[=+\-@\t\r]"
# C loops for the common columns (timestamps in UTC, floats without NaN), or None: Arrow's kernels.
# They keep the GIL: each kernel call releases it, and a flusher that released it waits for it up
# to the switch interval (5 ms) while scoring threads run (benchmarks/flusher_gil.py).
_transpose = compiled.load("_transpose")


def _write_options() -> pacsv.WriteOptions:
    """No header (written separately), "\n" line ends. pyarrow before 26 has no ``eol`` option;
    its writer ends lines with "\n" anyway (passing it raised TypeError: no CSV at all)."""
    try:
        return pacsv.WriteOptions(include_header=False, eol="\n", batch_size=8192)
    except TypeError:
        return pacsv.WriteOptions(include_header=False, batch_size=8192)


class CsvFormat:
    """Encodes batches as CSV; bodies of one header can be appended to one file."""

    def __init__(self, options: Mapping[str, Any] | None = None):
        options = dict(options or {})
        self._write_options = _write_options()
        guard = options.pop("formula_guard", False)
        if options or not isinstance(guard, bool):
            raise ValueError(f"the csv format takes only formula_guard=True/False, got {sorted(options) or guard!r}")
        self.formula_guard = guard

    def encode(self, table: pa.Table) -> Encoded:
        header = io.StringIO()
        csv.writer(header, lineterminator="\n").writerow(table.column_names)
        body = pa.BufferOutputStream()  # Arrow's own sink: no call back into Python (and the GIL) per chunk
        pacsv.write_csv(_printable(table, self.formula_guard), body, self._write_options)
        return Encoded(header.getvalue().encode("utf-8"), body.getvalue().to_pybytes())

    def compact(self, parts: Sequence[bytes]) -> list[Encoded]:
        """Merge whole CSV files: one output per distinct header, records in scoring-time order.

        Records are moved as the exact bytes they were written with (quoting, empty strings vs
        nulls), only reordered: parsing decides where each record ends and when it was scored.
        """
        groups: dict[str, list[tuple[str, str]]] = {}
        for data in parts:
            header, records = _records(data.decode("utf-8"))
            if header is not None:
                groups.setdefault(header, []).extend(records)
        merged = []
        for header, records in groups.items():
            records.sort(key=lambda r: r[0])  # stable: equal timestamps keep their order
            merged.append(Encoded(header.encode("utf-8"), "".join(r for _, r in records).encode("utf-8")))
        return merged


def _records(text: str) -> tuple[str | None, list[tuple[str, str]]]:
    """The header line and ``(scoring timestamp, raw record)`` pairs of one CSV file."""
    lines = list(io.StringIO(text, newline=""))
    reader = csv.reader(lines)
    fields = next(reader, None)
    if fields is None:
        return None, []
    header = "".join(lines[: reader.line_num])
    column = fields.index(SCORING_TIMESTAMP) if SCORING_TIMESTAMP in fields else None
    records, start = [], reader.line_num
    for row in reader:
        raw = "".join(lines[start : reader.line_num])
        start = reader.line_num
        if not raw.endswith("\n"):
            raw += "\n"  # a last record without its newline still ends a line in the merged file
        key = row[column] if column is not None and column < len(row) else ""
        records.append((key, raw))
    return header, records


def _iso(column: pa.ChunkedArray) -> pa.Array | pa.ChunkedArray:
    """ISO text of timestamps, formatting each distinct value once (``strftime`` costs ~1.4 µs a
    value): rows of one collect() share their timestamp; rows of single-row calls have their
    own, but share the second, so the seconds are formatted once each and the six digits of
    microseconds appended (9x faster than ``strftime`` on every value, same text). Microseconds
    in UTC without nulls, the scoring timestamp, are formatted by a C loop instead."""
    fast = _compiled_iso(column)
    if fast is not None:
        return fast
    column = column.combine_chunks()
    encoded = pc.dictionary_encode(column)
    if len(encoded.dictionary) * 2 <= len(encoded):
        return pc.take(pc.strftime(encoded.dictionary, format=ISO_SECONDS), encoded.indices)
    if column.type.unit != "us":  # a feature column in ms or ns: its own number of digits
        return pc.strftime(column, format=ISO_SECONDS)
    seconds = pc.floor_temporal(column, unit="second")
    micros = pc.subtract(column.cast(pa.int64()), seconds.cast(pa.int64()))
    encoded = pc.dictionary_encode(seconds.cast(pa.timestamp("s", tz=column.type.tz)))
    text = pc.take(pc.strftime(encoded.dictionary, format=ISO_SECONDS), encoded.indices)
    return pc.binary_join_element_wise(text, pc.utf8_lpad(pc.cast(micros, pa.string()), 6, "0"), ".")


def _compiled_iso(column: pa.ChunkedArray) -> pa.ChunkedArray | None:
    """``_iso`` of microsecond timestamps in UTC (or without a zone) and no nulls, by C; None for
    anything else, or a year outside 1000-9999."""
    t = column.type
    if _transpose is None or t.unit != "us" or t.tz not in (None, "UTC") or column.null_count:
        return None
    texts = []
    for chunk in column.chunks:
        n = len(chunk)
        found = _transpose.iso_text(chunk.buffers()[1], chunk.offset, n) if n else (b"\0\0\0\0", b"")
        if found is None:
            return None
        offsets, data = found
        texts.append(pa.StringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(data)))
    return pa.chunked_array(texts, pa.string())


def _may_hold_nan(column: pa.ChunkedArray) -> bool:
    """Whether a float column may hold a NaN: False only when a C pass over float64 values found none."""
    if _transpose is None or column.type != pa.float64():
        return True
    chunks = [chunk for chunk in column.chunks if len(chunk)]
    return any(_transpose.has_nan(chunk.buffers()[1], chunk.offset, len(chunk)) for chunk in chunks)


def _printable(table: pa.Table, formula_guard: bool = False) -> pa.Table:
    """Timestamps as ISO-8601 text, NaN as empty: the forms CSV readers expect."""
    columns = []
    for column in table.columns:
        t = column.type
        if column.num_chunks > 8:  # a batch of 1-row Arrow tables has a chunk per call: write_csv
            column = pa.chunked_array([column.combine_chunks()], t)  # takes ~80 us a chunk
        if pa.types.is_timestamp(t):
            column = _iso(column)
        elif pa.types.is_floating(t) and _may_hold_nan(column):
            column = pc.if_else(pc.is_nan(column), pa.scalar(None, t), column)
        elif formula_guard and (pa.types.is_string(t) or pa.types.is_large_string(t)):
            column = pc.replace_substring_regex(column, FORMULA, "'\\0")
        columns.append(column)
    return pa.table(columns, names=table.column_names)


@hookimpl
def mdc_formats() -> list[FormatPlugin]:
    return [
        FormatPlugin(
            name="csv",
            extension="csv",
            factory=CsvFormat,
            appendable=True,
            description="CSV with a header row (the spec's format)",
        )
    ]
