"""Built-in column rules, applied to each batch in the flusher: drop, hash (keyed) or mask the
named columns before anything is written. An ordinary plug-in of the ``mdc_transform_batch``
hook, registered through the ``mdc`` entry points like a third party's.

    ModelDataCollector("churn", designation="inputs", feature_names=[...],
                       column_rules={"drop": ["ssn"], "hash": ["email"], "mask": ["phone"]})

``hash`` writes ``HMAC-SHA256(key, value)`` as 64 hex digits, so equal values still join across
designations and days without being readable; the key comes from ``column_rules["hash_key"]`` or
``MDC_HASH_KEY`` and is never logged. ``mask`` writes ``****`` for every non-null value.
Nulls stay null.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Mapping, Sequence
from typing import Any

import pyarrow as pa

from mdc_core.errors import ConfigurationError
from mdc_core.hookspecs import hookimpl
from mdc_core.records import BatchContext

RULES = ("drop", "hash", "mask")
MASK = "****"
KEY_ENV = "MDC_HASH_KEY"


def check_rules(rules: Mapping[str, Any] | None, columns: Sequence[str] | None) -> dict[str, Any] | None:
    """Validate ``column_rules`` when the collector is built: a mistake raises there, with what
    to fix, not later in the flusher."""
    if not rules:
        return None
    unknown = set(rules) - {*RULES, "hash_key"}
    if unknown:
        raise ConfigurationError(f"column_rules takes {', '.join(RULES)} (lists of column names) and hash_key; "
                                 f"got {', '.join(sorted(unknown))}")
    checked: dict[str, Any] = {}
    seen: set[str] = set()
    for rule in RULES:
        names = rules.get(rule) or []
        if isinstance(names, str) or not all(isinstance(n, str) for n in names):
            raise ConfigurationError(f"column_rules[{rule!r}] must be a list of column names")
        if columns is not None and set(names) - set(columns):
            raise ConfigurationError(f"column_rules[{rule!r}] names columns the collector does not have: "
                                     f"{', '.join(sorted(set(names) - set(columns)))}")
        if seen & set(names):
            raise ConfigurationError(f"column_rules name {', '.join(sorted(seen & set(names)))} in two rules")
        seen |= set(names)
        checked[rule] = tuple(names)
    if checked["hash"]:
        key = rules.get("hash_key") or os.environ.get(KEY_ENV)
        if not key:
            raise ConfigurationError(f"column_rules['hash'] needs a secret key: column_rules['hash_key'] or {KEY_ENV}")
        checked["hash_key"] = key.encode() if isinstance(key, str) else bytes(key)
    return checked


def _hashed(column: pa.ChunkedArray, key: bytes) -> pa.Array:
    return pa.array([None if v is None else hmac.new(key, str(v).encode(), hashlib.sha256).hexdigest()
                     for v in column.to_pylist()], pa.string())


def _masked(column: pa.ChunkedArray) -> pa.Array:
    return pa.array([None if v is None else MASK for v in column.to_pylist()], pa.string())


@hookimpl
def mdc_transform_batch(table: pa.Table, context: BatchContext) -> pa.Table | None:
    rules = context.options.get("column_rules")
    if not rules:
        return None
    for rule, change in (("hash", lambda c: _hashed(c, rules["hash_key"])), ("mask", _masked)):
        for name in rules[rule]:
            if name in table.column_names:
                index = table.column_names.index(name)
                table = table.set_column(index, pa.field(name, pa.string()), change(table.column(index)))
    drop = [name for name in rules["drop"] if name in table.column_names]
    return table.drop_columns(drop) if drop else table
