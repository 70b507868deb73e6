"""Which Arrow schema a Parquet batch is written with, and how schemas of many files meet.

One collector's columns keep the types of its first batch (its *pinned* schema), so its files
agree: a later batch whose column is narrower (ints into a float64 column, float32 into
float64, an all-null column) is cast to the pinned type; one that is wider (floats into an
int64 column) widens the pin, which starts a new schema version. A value that cannot be
widened either way (text into a float64 column, booleans into int64) is a *conflict*: the batch
keeps its own type for that column, under a new schema version, and a warning is logged; the
pin stays, so the next ordinary batch is written as before.

A schema version is a fingerprint of the column names and types, stored in every file's
key-value metadata (``mdc.schema_version``). Readers unify the files' schemas (``unify``):
columns that appear or disappear meet as the union (missing values are null), numbers widen.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from mdc_core.ratelimit import RateLimitedLog

logger = logging.getLogger("mdc.parquet")

VERSION_KEY = b"mdc.schema_version"
_EXACT_INT = 2**53


def schema_version(schema: pa.Schema) -> str:
    """A short, stable fingerprint of the column names and types (not of metadata)."""
    text = "\n".join(f"{field.name}\t{field.type}" for field in schema)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def unify(schemas: Iterable[pa.Schema]) -> pa.Schema:
    """The union of ``schemas``: every column, numbers widened; raises ``pa.ArrowTypeError``
    (or ``pa.ArrowInvalid``) when a column's types cannot meet (text and numbers)."""
    plain = [s.remove_metadata() for s in schemas]
    return pa.unify_schemas(plain, promote_options="permissive")


def union_schema(paths: Iterable[str], filesystem: Any = None) -> pa.Schema:
    """The schema all of ``paths`` read into, from their footers only: pass it to
    ``pyarrow.dataset.dataset(paths, schema=...)`` or ``pandas.read_parquet(..., schema=...)``
    so columns that some files lack come back as nulls instead of being dropped."""
    return unify(pq.read_schema(p, filesystem=filesystem) for p in paths)


def conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """``table`` with ``schema``'s columns in its order: missing ones null, others cast."""
    columns = []
    for field in schema:
        if field.name in table.column_names:
            column = table.column(field.name)
            columns.append(column if column.type == field.type else column.cast(field.type))
        else:
            columns.append(pa.nulls(table.num_rows, field.type))
    return pa.table(columns, schema=schema)


@dataclass
class Resolved:
    """A batch ready to write: the table, its schema version, and the columns in conflict."""

    table: pa.Table
    version: str
    conflicts: tuple[str, ...] = ()


class SchemaPin:
    """One collector's pinned schema (see the module docstring); not thread-safe, as the one
    flusher thread encodes a collector's batches one at a time."""

    def __init__(self, schema: pa.Schema | None = None):
        self.pinned = schema
        self.explicit = schema is not None
        """A pin from ``schema=`` is the user's contract: it never widens, it only conflicts."""
        self.versions: list[str] = []
        """The schema versions this collector has written, oldest first."""
        self._log = RateLimitedLog(logger)  # per collector: each one's first conflict is seen

    def resolve(self, table: pa.Table) -> Resolved:
        table = pa.table([_plain_type(c) for c in table.columns], names=table.column_names)
        if self.pinned is None:
            self.pinned = table.schema.remove_metadata()
        pinned = {f.name: f for f in self.pinned}
        fields, columns, conflicts, widened = [], [], [], False
        for name, column in zip(table.column_names, table.columns):
            field = pinned.get(name)
            target = column.type if field is None else _meet(field.type, column, self.explicit)
            if target is None:
                conflicts.append(name)
                target = column.type
            elif field is None or target != field.type:
                widened = True  # a new column or a wider type: the pin follows
            if column.type != target:
                column = column.cast(target)
            fields.append(pa.field(name, target))
            columns.append(column)
        schema = pa.schema(fields)
        if widened:
            keep = [f for f in schema if f.name not in conflicts]
            kept = {f.name for f in keep}
            self.pinned = pa.schema([*keep, *(f for f in self.pinned if f.name not in kept)])
        if conflicts:
            self._log.log(logging.WARNING, f"conflict:{','.join(conflicts)}",
                     "mdc: column(s) %s hold values of another type than the collector's schema (%s); "
                     "the batch is written as a new schema version", ", ".join(conflicts),
                     ", ".join(f"{n}: {pinned[n].type}" for n in conflicts))
        version = schema_version(schema)
        if version not in self.versions:
            self.versions.append(version)
        return Resolved(pa.table(columns, schema=schema), version, tuple(conflicts))


def _meet(pinned: pa.DataType, column: pa.ChunkedArray | pa.Array, explicit: bool = False) -> pa.DataType | None:
    """The type to write ``column`` with in a ``pinned`` column; None when they conflict."""
    have = column.type
    if have == pinned or pa.types.is_null(have):
        return pinned
    if pa.types.is_null(pinned):
        return have
    if pa.types.is_integer(have) and pa.types.is_floating(pinned):
        return pinned if _exactly_float(column) else None
    if _numeric(have) and _numeric(pinned) and _casts_exactly(column, pinned):
        return pinned  # whole floats into an int64 column, small ints into int8: values kept
    if explicit:
        return None
    try:
        met = unify([pa.schema([("c", pinned)]), pa.schema([("c", have)])]).field("c").type
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
        return None
    if pa.types.is_integer(pinned) and pa.types.is_floating(met):
        return pa.float64()  # ints meet floats as float64, whatever their widths
    return met


def _plain_type(column: pa.ChunkedArray) -> pa.ChunkedArray:
    """Text as ``string`` whatever its Arrow layout (pandas' large_string, categoricals), so
    files of one collector agree whichever input the rows came from."""
    t = column.type
    if pa.types.is_dictionary(t):
        column, t = column.cast(t.value_type), t.value_type
    if pa.types.is_large_string(t) or _is_string_view(t):
        return column.cast(pa.string())
    return column


_is_string_view = getattr(pa.types, "is_string_view", lambda t: False)  # pyarrow >= 16


def _numeric(t: pa.DataType) -> bool:
    return pa.types.is_integer(t) or pa.types.is_floating(t)


def _casts_exactly(column: pa.ChunkedArray | pa.Array, target: pa.DataType) -> bool:
    try:
        column.cast(target, safe=True)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return False
    return True


def _exactly_float(column: pa.ChunkedArray | pa.Array) -> bool:
    """Whether every integer in ``column`` is a float64 too (|v| <= 2**53)."""
    low, high = (v.as_py() for v in pc.min_max(column).values())
    return low is None or (low >= -_EXACT_INT and high <= _EXACT_INT)
