"""Parquet: typed columns, one file per sealed batch, compacted per closed day into ``data.parquet``.

Columns keep their types: float64, int64, bool, string, and ``$aml_dc_scoring_timestamp`` as
``timestamp[us, UTC]`` (Parquet ``TIMESTAMP(MICROS, isAdjustedToUTC)``), nulls as nulls. How a
collector's types are chosen and evolve is in ``mdc_formats.parquet_schema``; every file records
its schema version in its key-value metadata. Files carry min/max statistics (and a page index)
so DuckDB and Spark skip row groups by timestamp. A pyarrow Table goes through as Arrow: no
row is turned into Python objects on the way.

Options (``format_options``), all optional:

==================  =========  ==============================================================
``compression``     ``zstd``   any Parquet codec pyarrow knows (``snappy``, ``gzip``, ``none``)
``compression_level`` ``None`` the codec's level (``None``: the codec's default)
``dictionary``      ``auto``   ``auto``: dictionary-encode every column but floats and the
                               unique ids; ``True``/``False``: all or none
``byte_stream_split`` ``True`` split float columns' bytes into streams before compressing
``seal_rows``       500000     seal a batch once a collector has this many rows waiting ...
``seal_seconds``    60         ... or its oldest waiting rows are this old (flush() seals now)
``row_group_bytes`` 128 MiB    compaction's row-group target (Arrow's in-memory size)
==================  =========  ==============================================================
"""

from __future__ import annotations

import io
import json
from collections.abc import Mapping, Sequence
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from mdc_core import Encoded, FormatPlugin, hookimpl
from mdc_core.compaction import Merged
from mdc_formats.parquet_schema import VERSION_KEY, SchemaPin, conform, schema_version, unify

SCORING_TIMESTAMP = "$aml_dc_scoring_timestamp"
UNIQUE_COLUMNS = frozenset({"$aml_dc_correlation_id"})
MERGED_KEY = b"mdc.merged_schema_versions"
DEFAULTS: dict[str, Any] = {
    "compression": "zstd",
    "compression_level": None,
    "dictionary": "auto",
    "byte_stream_split": True,
    "seal_rows": 500_000,
    "seal_seconds": 60.0,
    "row_group_bytes": 128 << 20,
}


class ParquetFormat:
    """Encodes each batch as a whole Parquet file (one row group) and merges files per day."""

    binary = True
    """Debug mode prints this format's rows as CSV text instead."""

    def __init__(self, options: Mapping[str, Any] | None = None):
        unknown = sorted(set(options or {}) - set(DEFAULTS))
        if unknown:
            raise ValueError(f"unknown parquet format option(s) {unknown}; known: {sorted(DEFAULTS)}")
        opts = {**DEFAULTS, **dict(options or {})}
        self.compression = str(opts["compression"])
        self.compression_level = opts["compression_level"]
        self.dictionary = opts["dictionary"]
        if self.dictionary not in ("auto", True, False):
            raise ValueError(f"dictionary={self.dictionary!r}: use 'auto', True or False")
        self.byte_stream_split = bool(opts["byte_stream_split"])
        self.seal_rows = _positive(opts["seal_rows"], "seal_rows", int)
        self.seal_seconds = _positive(opts["seal_seconds"], "seal_seconds", float)
        self.row_group_bytes = _positive(opts["row_group_bytes"], "row_group_bytes", int)
        try:
            pa.Codec("gzip" if self.compression == "none" else self.compression)
        except (ValueError, pa.ArrowException) as exc:
            raise ValueError(f"compression={self.compression!r} is not a codec pyarrow can write: {exc}") from None
        self.pin = SchemaPin()

    def use_schema(self, schema: pa.Schema) -> None:
        """Write the feature columns with these types (the collector's ``schema=``)."""
        self.pin = SchemaPin(schema)

    @property
    def versions(self) -> list[str]:
        """The schema versions this collector has written, oldest first."""
        return list(self.pin.versions)

    def encode(self, table: pa.Table) -> Encoded:
        resolved = self.pin.resolve(table)
        schema = resolved.table.schema.with_metadata({VERSION_KEY: resolved.version.encode()})
        return Encoded(b"", self._write(resolved.table.replace_schema_metadata(schema.metadata), None))

    def compact(self, parts: Sequence[bytes]) -> list[Encoded]:
        """Merge whole files: one output per group of schemas that unify (see ``merge``)."""
        return [Encoded(b"", m.data) for m in self.merge(parts)]

    def merge(self, parts: Sequence[bytes], outputs: int = 0) -> list[Merged]:
        """Merge files into as few as their schemas allow, rows in scoring-time order.

        Files join the first group whose schema unifies with theirs (the union of columns,
        numbers widened); a file that conflicts with every group starts one. The first
        ``outputs`` parts are earlier outputs of compaction: each starts a group of its own,
        so two outputs are never merged (each keeps its name)."""
        groups: list[tuple[pa.Schema, list[int], list[pa.Table]]] = []
        for i, data in enumerate(parts):
            if not data:
                continue
            table = pq.read_table(pa.BufferReader(data))
            if i >= outputs and self._join(groups, i, table):
                continue
            groups.append((table.schema.remove_metadata(), [i], [table]))
        merged = []
        for schema, sources, tables in groups:
            versions = sorted({_version_of(t) for t in tables})
            table = pa.concat_tables([conform(t, schema) for t in tables])
            if SCORING_TIMESTAMP in table.column_names:
                table = table.sort_by(SCORING_TIMESTAMP)  # stable: equal times keep their order
            version = schema_version(schema)
            metadata = {VERSION_KEY: version.encode(), MERGED_KEY: json.dumps(versions).encode()}
            data = self._write(table.replace_schema_metadata(metadata), self._row_group_rows(table))
            merged.append(Merged(data=data, key=version.encode(), sources=tuple(sources)))
        return merged

    @staticmethod
    def _join(groups: list[tuple[pa.Schema, list[int], list[pa.Table]]], i: int, table: pa.Table) -> bool:
        """Add part ``i`` to the first group whose schema unifies with its own; False if none does."""
        for g, (schema, sources, tables) in enumerate(groups):
            try:
                united = unify([schema, table.schema])
            except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
                continue
            groups[g] = (united, [*sources, i], [*tables, table])
            return True
        return False

    def _row_group_rows(self, table: pa.Table) -> int:
        per_row = max(1, table.nbytes // max(1, table.num_rows))
        return max(1, self.row_group_bytes // per_row)

    def _write(self, table: pa.Table, row_group_rows: int | None) -> bytes:
        sink = io.BytesIO()
        pq.write_table(
            table,
            sink,
            row_group_size=row_group_rows or max(1, table.num_rows),
            compression=self.compression,
            compression_level=self.compression_level,
            use_dictionary=self._dictionary(table.schema),
            use_byte_stream_split=[f.name for f in table.schema if pa.types.is_floating(f.type)]
            if self.byte_stream_split
            else False,
            write_statistics=True,
            write_page_index=True,
            store_schema=True,
        )
        return sink.getvalue()

    def _dictionary(self, schema: pa.Schema) -> bool | list[str]:
        if self.dictionary != "auto":
            return bool(self.dictionary)
        return [f.name for f in schema if not pa.types.is_floating(f.type) and f.name not in UNIQUE_COLUMNS]


def _version_of(table: pa.Table) -> str:
    metadata = table.schema.metadata or {}
    found = metadata.get(VERSION_KEY)
    return found.decode() if found else schema_version(table.schema)


def _positive(value: Any, name: str, kind: type) -> Any:
    try:
        number = kind(value)
    except (TypeError, ValueError):
        number = 0
    if isinstance(value, bool) or number <= 0:
        raise ValueError(f"{name}={value!r}: give a positive number")
    return number


@hookimpl
def mdc_formats() -> list[FormatPlugin]:
    return [
        FormatPlugin(
            name="parquet",
            extension="parquet",
            factory=ParquetFormat,
            appendable=False,
            description="Parquet with typed columns, one file per batch, compacted per closed day",
        )
    ]
