"""Strict schemas: ``collect()`` refuses values whose type conflicts with the collector's schema.

Only collectors built with ``schema_mode="strict"`` pay for this. Each feature column has a
*kind* (``bool``, ``int``, ``float``, ``string``, ``timestamp``): from ``schema=`` when given,
else from the first ``collect()``. Typed input (numpy, pandas, Arrow, polars) is judged by its
dtypes, Python values one by one. Nulls fit every kind, ints fit a float column, and floats
widen an int column (unless ``schema=`` fixed it) — the same rules the Parquet format writes
by; anything else raises ``SchemaConflictError`` naming the column and both types.
"""

from __future__ import annotations

import datetime as dt
import sys
import threading
from collections.abc import Iterable, Sequence
from typing import Any

import pyarrow as pa

from mdc_core.errors import SchemaConflictError
from mdc_core.shapes import Kind, Taken

NULL = "null"


def arrow_kind(t: pa.DataType) -> str:
    """The kind of an Arrow type (nested and other types are stored as text)."""
    if pa.types.is_dictionary(t):
        t = t.value_type
    if pa.types.is_null(t):
        return NULL
    if pa.types.is_boolean(t):
        return "bool"
    if pa.types.is_integer(t):
        return "int"
    if pa.types.is_floating(t) or pa.types.is_decimal(t):
        return "float"
    if pa.types.is_timestamp(t) or pa.types.is_date(t):
        return "timestamp"
    return "string"


def value_kind(value: Any) -> str:
    if value is None:
        return NULL
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return NULL if value != value else "float"  # NaN is stored as null
    if isinstance(value, (dt.datetime, dt.date)):
        return "timestamp"
    numpy = sys.modules.get("numpy")
    if numpy is not None and isinstance(value, numpy.generic):
        return value_kind(value.item())
    return "string"


def meet(kinds: Iterable[str]) -> str:
    """One column's kind from its values' kinds: ints and floats meet as float, any other mix
    is stored as text."""
    found = set(kinds) - {NULL}
    if not found:
        return NULL
    if len(found) == 1:
        return found.pop()
    return "float" if found == {"int", "float"} else "string"


def _dtype_kind(dtype: Any) -> str | None:
    """The kind of a numpy or pandas dtype; None when the values must be looked at."""
    code = getattr(dtype, "kind", "O")
    if code in "iu":
        return "int"
    if code == "f":
        return "float"
    if code == "b":
        return "bool"
    if code in "US":
        return "string"
    if code == "M":
        return "timestamp"
    name = str(dtype)
    for prefix, kind in (("Int", "int"), ("UInt", "int"), ("Float", "float"), ("boolean", "bool"),
                         ("string", "string"), ("datetime64", "timestamp")):
        if name.startswith(prefix):
            return kind
    return None


def column_kinds(taken: Taken) -> list[str]:
    """The kind of each feature column of what ``collect()`` took, in the data's order."""
    width, payload = taken.width, taken.payload
    if taken.kind is Kind.ARROW:
        return [arrow_kind(payload.schema.field(j).type) for j in range(width)]
    if taken.kind is Kind.NUMPY:
        kind = _dtype_kind(payload.dtype)
        return [kind] * width if kind else [meet(map(value_kind, payload[:, j])) for j in range(width)]
    if taken.kind is Kind.PANDAS:
        kinds = []
        for j in range(width):
            column = payload.iloc[:, j]
            kinds.append(_dtype_kind(column.dtype) or meet(map(value_kind, column.tolist())))
        return kinds
    if taken.kind is Kind.COLUMNS:
        return [meet(map(value_kind, column)) for column in payload[:width]]
    return [meet(value_kind(row[j]) for row in payload) for j in range(width)]


class TypeGuard:
    """The kinds a strict collector's columns hold; ``check`` raises on a conflict."""

    def __init__(self, schema: pa.Schema | None = None):
        self.explicit = schema is not None
        self.kinds: dict[str, str] = {f.name: arrow_kind(f.type) for f in schema} if schema is not None else {}
        self._lock = threading.Lock()

    def check(self, taken: Taken, columns: Sequence[str]) -> None:
        kinds = column_kinds(taken)
        names = list(columns)
        given = taken.names[: taken.width] if taken.names is not None else None
        if given is not None and tuple(given) != tuple(columns) and sorted(given) == sorted(columns):
            names = list(given)  # matched by name, as the flusher does
        with self._lock:
            update = {}
            for name, kind in zip(names, kinds):
                have = self.kinds.get(name, NULL)
                if kind in (NULL, have) or (have == "float" and kind == "int"):
                    continue
                if have == NULL or (have == "int" and kind == "float" and not self.explicit):
                    update[name] = kind
                    continue
                source = "schema=" if self.explicit else "the first collect()"
                raise SchemaConflictError(
                    f"column {name!r} got {kind} values but holds {have} values (from {source}); "
                    f"pass {have} values, or build the collector with schema_mode='evolve' to write "
                    "such batches as a new schema version"
                )
            self.kinds.update(update)
