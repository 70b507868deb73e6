"""Reading a designation back: every row exactly once, as Arrow record batches, file by file.

**Exactly once.** A partition is read from a snapshot of its folder (``partition_files``):

* with no batch objects and no compaction manifest (a closed, compacted day; or local disk,
  which appends to ``data.csv``), each file is read whole with one request, so a compaction
  that runs meanwhile only adds rows the listing did not promise;
* with batches, every file is read before any row is returned, then checked: a listed batch
  that has gone, a main file whose length changed, or a compaction manifest that appeared
  means a compaction ran meanwhile, and the folder is listed and read again;
* with a manifest (a compaction running or interrupted, ``_mdc_compaction.json``), each output's
  checksum says whether it already holds its batches ("after": the batches are skipped) or not
  ("before": they are read), as the compactor itself decides on a re-run.

On local disk a file being appended to is read up to its last complete append (the backend's
``.<name>.committed`` marker). **Types**: CSV's zone-less ``$aml_dc_scoring_timestamp`` and
Parquet's ``timestamp[us, UTC]`` both come back as ``timestamp[us, tz=UTC]``; the other ``$aml_``
columns as string (``$aml_dc_boundary`` as int64); features as the files' types, unified
(ints and floats meet as float64, missing columns are null). **Memory**: one file at a time
(a compacted day is one file), so a long range streams in bounded memory.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
from collections.abc import Iterator, Sequence
from typing import Any

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from mdc_core.compaction import MANIFEST
from mdc_core.errors import BackendError, ConfigurationError
from mdc_core.shapes import AML_COLUMNS
from mdc_core.store import Partition, data_files, is_batch, stem_of
from mdc_formats.parquet_schema import conform

logger = logging.getLogger("mdc.reader")

TIMESTAMP = AML_COLUMNS[1]
UTC_US = pa.timestamp("us", tz="UTC")
AML_TYPES: dict[str, pa.DataType] = {
    name: (UTC_US if name == TIMESTAMP else pa.int64() if name == "$aml_dc_boundary" else pa.string())
    for name in AML_COLUMNS
}
ATTEMPTS = 8
STREAM_BLOCK = 16 << 20
"""Bytes of CSV parsed at a time when the scan's schema is known."""
CACHE_BYTES = 256 << 20
"""Tables a schema pass decoded are kept for the read that follows up to this size (Arrow bytes)."""


class PartitionChanged(BackendError):
    """A partition kept changing under the reader (compactions or erasures in a loop)."""


# -- which files, exactly once -----------------------------------------------------------------


def partition_files(backend: Any, part: Partition, local_append: bool = False) -> Iterator[tuple[str, bytes]]:
    """``(key, bytes)`` of the partition's data files such that every row is in exactly one."""
    files = part.files
    for _ in range(ATTEMPTS):
        names = [n for n, _ in files]
        data = data_files(files)
        if MANIFEST not in names and not any(is_batch(n) for n, _ in data):
            for name, _ in data:  # closed and compacted (or appended to): each read is whole
                raw = _read(backend, part.folder + name, local_append)
                if raw:
                    yield part.folder + name, raw
            return
        chosen = _consistent(backend, part.folder, files, MANIFEST in names)
        if chosen is not None:
            yield from chosen
            return
        files = tuple(
            (key[len(part.folder) :], size)
            for key, size in backend.list(part.folder)
            if "/" not in key[len(part.folder) :]
        )
    raise PartitionChanged(0, f"{part.folder} changed under every one of {ATTEMPTS} reads; try again later")


def _consistent(
    backend: Any, folder: str, files: Sequence[tuple[str, int]], had_manifest: bool
) -> list[tuple[str, bytes]] | None:
    """The files of a folder with batches, read and checked; ``None`` when it changed meanwhile."""
    listed = dict(data_files(files))
    manifest = _manifest(backend, folder) if had_manifest else None
    if had_manifest and manifest is None and backend.size(folder + MANIFEST) is not None:
        return None  # unreadable for now (being written): list again
    keys = list(listed)
    outputs = (manifest or {}).get("outputs", {})
    for key in outputs:  # an output the compactor is creating may not be in our listing
        name = key[len(folder) :]
        if key.startswith(folder) and name not in listed and "/" not in name:
            keys.append(name)
    contents = {name: backend.read(folder + name) for name in keys}
    skip: set[str] = set()
    checked: set[str] = set()
    for key, entry in outputs.items():
        name = key[len(folder) :]
        digest = _digest(contents.get(name))
        if digest == entry.get("after"):
            skip.update(b[len(folder) :] for b in entry.get("batches", ()))
        elif digest != entry.get("before"):
            return None  # neither: it moved on; list again
        checked.add(name)
    result = []
    for name in keys:
        raw = contents[name]
        if name in skip:
            continue
        if raw is None:
            if is_batch(name) or name in listed:
                return None  # deleted after the listing: merged (or erased) meanwhile
            continue
        if name not in checked and name in listed and not is_batch(name) and len(raw) != listed[name]:
            return None  # a main file replaced after the listing
        if raw:
            result.append((folder + name, raw))
    if not had_manifest and backend.size(folder + MANIFEST) is not None:
        return None  # a compaction began while we read
    return result


def _manifest(backend: Any, folder: str) -> dict[str, Any] | None:
    raw = backend.read(folder + MANIFEST)
    if raw is None:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return None


def _digest(data: bytes | None) -> str:
    return "absent" if data is None else hashlib.sha256(data).hexdigest()


def _read(backend: Any, key: str, local_append: bool) -> bytes | None:
    """The object; for a local file being appended to, only up to its last complete append.
    The marker is read first: an append that completes meanwhile is left for the next read."""
    if not local_append:
        return backend.read(key)
    folder, _, name = key.rpartition("/")
    marker = backend.read(f"{folder}/.{name}.committed" if folder else f".{name}.committed")
    raw = backend.read(key)
    try:
        committed = int(marker.strip() or b"0") if marker is not None else None
    except ValueError:
        committed = None
    return raw[:committed] if raw is not None and committed is not None and committed < len(raw) else raw


# -- decoding ---------------------------------------------------------------------------------


def decode(key: str, raw: bytes, columns: Sequence[str] | None = None, filter: Any = None) -> pa.Table:
    """One data file as a table with the reader's types: projected to ``columns`` (those it has)
    and filtered by the dataset expression ``filter`` (pushed into Parquet's row groups)."""
    ext = key.rpartition(".")[2]
    if ext == "parquet":
        fragment, have, filter = _parquet(raw, columns, filter)
        return _normalise(fragment.to_table(columns=have, filter=filter))
    if ext == "csv":
        names = _csv_header(raw)
        types = {n: (pa.timestamp("us") if n == TIMESTAMP else t) for n, t in AML_TYPES.items() if n in names}
        include = None
        if columns is not None:
            include = [n for n in names if n in columns or (filter is not None and n == TIMESTAMP)] or names[:1]
        table = _normalise(pacsv.read_csv(io.BytesIO(raw), convert_options=_csv_options(types, include)))
        return _project(_filter(table, filter), columns)
    raise ConfigurationError(f"mdc cannot read .{ext} files ({key})")


def decode_stream(
    key: str, raw: bytes, schema: pa.Schema, columns: Sequence[str] | None = None, filter: Any = None
) -> Iterator[pa.Table]:
    """``decode`` in pieces (Parquet row groups, CSV blocks of ``STREAM_BLOCK`` bytes) for a
    scan whose ``schema`` is known: CSV columns are parsed as the schema's types, not guessed."""
    ext = key.rpartition(".")[2]
    if ext == "parquet":
        fragment, have, filter = _parquet(raw, columns, filter)
        for batch in fragment.to_batches(columns=have, filter=filter):
            yield _normalise(pa.Table.from_batches([batch]))
        return
    if ext != "csv":
        raise ConfigurationError(f"mdc cannot read .{ext} files ({key})")
    names = _csv_header(raw)
    include = [n for n in names if n in schema.names and (columns is None or n in columns)]
    if filter is not None and TIMESTAMP in names and TIMESTAMP not in include:
        include.append(TIMESTAMP)
    include = include or names[:1]
    types = {}
    for name in include:
        t = AML_TYPES.get(name) or (schema.field(name).type if name in schema.names else pa.string())
        types[name] = pa.timestamp(t.unit) if pa.types.is_timestamp(t) else t  # zone-less text: cast after
    options = _csv_options(types, include)
    reader = pacsv.open_csv(
        pa.BufferReader(raw), read_options=pacsv.ReadOptions(block_size=STREAM_BLOCK), convert_options=options
    )
    for batch in reader:
        yield _project(_filter(_normalise(pa.Table.from_batches([batch])), filter), columns)


def _parquet(raw: bytes, columns: Sequence[str] | None, filter: Any) -> tuple[Any, list[str] | None, Any]:
    fragment = ds.ParquetFileFormat().make_fragment(pa.BufferReader(raw))
    physical = fragment.physical_schema.names
    have = [c for c in columns if c in physical] if columns is not None else None
    return fragment, have, filter if TIMESTAMP in physical else None


def _csv_options(types: dict[str, pa.DataType], include: list[str] | None) -> pacsv.ConvertOptions:
    """Empty fields are nulls, ``""`` an empty string: how the CSV format wrote them."""
    return pacsv.ConvertOptions(
        column_types=types, include_columns=include, strings_can_be_null=True, quoted_strings_can_be_null=False
    )


def _project(table: pa.Table, columns: Sequence[str] | None) -> pa.Table:
    return table if columns is None else table.select([n for n in table.column_names if n in columns])


def _csv_header(raw: bytes) -> list[str]:
    end = raw.find(b"\n")
    line = (raw if end < 0 else raw[:end]).decode("utf-8")
    return next(csv.reader([line]), [])


def _filter(table: pa.Table, expression: Any) -> pa.Table:
    return table if expression is None or TIMESTAMP not in table.column_names else table.filter(expression)


def _normalise(table: pa.Table) -> pa.Table:
    """The ``$aml_`` columns as ``AML_TYPES``; text as ``string`` whatever its layout."""
    columns = []
    for name, column in zip(table.column_names, table.columns):
        want = AML_TYPES.get(name)
        if want is not None and column.type != want:
            column = column.cast(want)  # zone-less means UTC: the cast keeps the value
        elif want is None and pa.types.is_dictionary(column.type):
            column = column.cast(column.type.value_type)
        if pa.types.is_large_string(column.type) or pa.types.is_string_view(column.type):
            column = column.cast(pa.string())
        columns.append(column)
    return pa.table(columns, names=table.column_names)


def unify(schemas: Sequence[pa.Schema]) -> pa.Schema:
    """Every column of every file: numbers widen, ints and floats meet as float64, nulls take
    the other's type; the ``$aml_`` columns last, in their order."""
    merged = pa.unify_schemas([s.remove_metadata() for s in schemas], promote_options="permissive")
    fields = []
    for f in merged:
        if f.name in AML_TYPES:
            continue
        t = f.type
        if pa.types.is_floating(t):
            t = pa.float64()
        fields.append(pa.field(f.name, t))
    aml = [pa.field(n, AML_TYPES[n]) for n in AML_COLUMNS if n in merged.names]
    return pa.schema(fields + aml)


def time_filter(start: Any, end: Any) -> Any:
    expression = None
    field = ds.field(TIMESTAMP)
    if start is not None:
        expression = field >= pa.scalar(start, UTC_US)
    if end is not None:
        upper = field < pa.scalar(end, UTC_US)
        expression = upper if expression is None else expression & upper
    return expression


def count_rows(backend: Any, part: Partition, local_append: bool = False) -> int:
    """Rows of a partition, each counted once (Parquet from footers)."""
    total = 0
    for key, raw in partition_files(backend, part, local_append):
        if key.endswith(".parquet"):
            total += pq.ParquetFile(pa.BufferReader(raw)).metadata.num_rows
        else:
            total += decode(key, raw, columns=_csv_header(raw)[:1]).num_rows
    return total


# -- the scan ---------------------------------------------------------------------------------


class Scan:
    """The rows of a set of partitions in a time range; read when asked, file by file.

    ``schema`` fixes the columns and types (one pass); without it, ``to_batches`` first reads
    the files for their schemas, keeping what it decoded up to ``CACHE_BYTES`` for the rows (so
    small reads read once); past that it reads the rows again (Parquet: only footers the first
    time). Pass ``schema=`` to stream a large range in one pass. ``to_table`` reads once.
    """

    def __init__(
        self,
        backend: Any,
        partitions: Sequence[Partition],
        *,
        start: Any = None,
        end: Any = None,
        columns: Sequence[str] | None = None,
        schema: pa.Schema | None = None,
        collection: str | None = None,
        local_append: bool = False,
        progress: Any = None,
    ):
        self.backend = backend
        self.partitions = list(partitions)
        self.start, self.end = start, end
        self.columns = list(columns) if columns is not None else None
        self._schema = schema
        self.collection = collection
        self.local_append = local_append
        self.progress = progress
        """Called with ``(partitions done, partitions in all)`` as the read goes on."""
        self._cached: list[pa.Table] | None = None

    def subset(self, partitions: Sequence[Partition]) -> Scan:
        """The same scan over some of its partitions (and with its schema, if known)."""
        copy = Scan.__new__(Scan)
        copy.__dict__.update(self.__dict__, partitions=list(partitions), progress=None, _cached=None)
        return copy

    @property
    def files(self) -> int:
        return sum(len(p.data_files) for p in self.partitions)

    @property
    def bytes(self) -> int:
        return sum(p.bytes for p in self.partitions)

    def _files(self) -> Iterator[tuple[int, Partition, str, bytes]]:
        for i, part in enumerate(self.partitions):
            for key, raw in partition_files(self.backend, part, self.local_append):
                if self.collection is None or stem_of(key.rpartition("/")[2]) == self.collection:
                    yield i, part, key, raw

    def _decode(self, part: Partition, key: str, raw: bytes, stream: bool = False) -> Iterator[pa.Table]:
        """The file's tables: in pieces when ``stream`` (the schema is known), else whole."""
        expression = time_filter(self.start, self.end)
        inside = (self.start is None or part.start >= self.start) and (self.end is None or part.end <= self.end)
        push = expression if not inside else None  # a day inside the range needs no pushed filter
        tables = (
            decode_stream(key, raw, self._schema, self.columns, push)
            if stream
            else [decode(key, raw, self.columns, push)]
        )
        for table in tables:
            if inside and expression is not None and TIMESTAMP in table.column_names:
                table = table.filter(expression)  # rows are filed under their own date, but be exact
            yield table

    def _tables(self) -> Iterator[pa.Table]:
        cached, self._cached = self._cached, None
        if cached is not None:  # decoded by the schema pass: the same snapshot, read once
            yield from cached
            if self.progress is not None:
                self.progress(len(self.partitions), len(self.partitions))
            return
        done = 0
        for i, part, key, raw in self._files():
            if self.progress is not None and i > done:
                self.progress(i, len(self.partitions))
                done = i
            yield from self._decode(part, key, raw, stream=self._schema is not None)
        if self.progress is not None:
            self.progress(len(self.partitions), len(self.partitions))

    @property
    def schema(self) -> pa.Schema:
        """The columns and types every batch has (read from the files once, then cached). The
        files' tables are kept for the read that follows while they fit in ``CACHE_BYTES``."""
        if self._schema is None:
            schemas: list[pa.Schema] = []
            cached: list[pa.Table] | None = []
            size = 0
            for _, part, key, raw in self._files():
                if cached is None and key.endswith(".parquet"):
                    schema = _normalise(pq.ParquetFile(pa.BufferReader(raw)).schema_arrow.empty_table()).schema
                    if self.columns is not None:
                        schema = pa.schema([f for f in schema if f.name in self.columns])
                    schemas.append(schema)
                    continue
                table = next(self._decode(part, key, raw))
                schemas.append(table.schema)
                if cached is not None:
                    cached.append(table)
                    size += table.nbytes
                    if size > CACHE_BYTES:
                        cached = None  # too big to keep: the rows are read again
            self._schema = self._order(unify(schemas)) if schemas else pa.schema([])
            self._cached = cached
        return self._schema

    def _order(self, schema: pa.Schema) -> pa.Schema:
        if self.columns is None:
            return schema
        return pa.schema([schema.field(c) for c in self.columns if c in schema.names])

    def to_batches(self, batch_size: int = 65_536) -> Iterator[pa.RecordBatch]:
        """Record batches, all with ``schema``, one file in memory at a time."""
        schema = self.schema
        for table in self._tables():
            if table.num_rows:
                yield from conform(table, schema).to_batches(max_chunksize=batch_size)

    def to_reader(self) -> pa.RecordBatchReader:
        """A ``pyarrow.RecordBatchReader`` (DuckDB, polars and pyarrow consume it lazily)."""
        return pa.RecordBatchReader.from_batches(self.schema, self.to_batches())

    def to_dataset(self) -> ds.Dataset:
        """A one-shot ``pyarrow.dataset.Dataset`` over the stream: scan it once (filters and
        projections apply as it streams)."""
        return ds.dataset(self.to_reader())

    def to_table(self) -> pa.Table:
        """Every row, in one table (files' types unified as ``schema`` describes)."""
        tables = [t for t in self._tables()]
        if self._schema is None:
            schema = self._order(unify([t.schema for t in tables])) if tables else pa.schema([])
            self._schema = schema
        schema = self._schema
        return pa.Table.from_batches([b for t in tables for b in conform(t, schema).to_batches()], schema=schema)

    def to_pandas(self, **kwargs: Any) -> Any:
        """A pandas DataFrame (``pip install 'mdc[pandas]'``); keyword arguments go to Arrow's
        ``to_pandas``."""
        return self.to_table().to_pandas(**kwargs)

    def to_polars(self) -> Any:
        """A polars DataFrame (``pip install polars``)."""
        try:
            import polars as pl
        except ImportError as exc:
            raise ImportError("to_polars() needs polars: pip install polars") from exc
        return pl.from_arrow(self.to_table())

    def count_rows(self) -> int:
        """How many rows the scan holds (each once)."""
        return sum(t.num_rows for t in self._tables())
