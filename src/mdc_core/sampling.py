"""Correlated sampling: a row is kept or skipped by a hash of its correlation id, so the inputs,
predictions and labels of one request are kept or skipped together, in every process and on
every replica, whenever they are collected.

The rule, reproducible anywhere (Spark, SQL): keep a row when the first 8 bytes of
``sha256(correlation_id as UTF-8)``, read as a big-endian unsigned integer, are below
``sample_rate * 2**64``. ``always_keep`` rules keep rows whatever the hash says, e.g.
``{"column": "status", "in": ["error"]}``. Sampling runs in the flusher, once per batch: it
costs ``collect()`` nothing, and skipped rows are counted (``stats()["sampled_out"]``), not dropped.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from mdc_core.errors import ConfigurationError

CORRELATION_COLUMN = "$aml_dc_correlation_id"
_SCALE = float(2**64)


@dataclass(frozen=True)
class KeepRule:
    """Keep rows whose ``column`` holds one of ``values``."""

    column: str
    values: tuple[Any, ...]

    def to_json(self) -> dict[str, Any]:
        return {"column": self.column, "in": list(self.values)}


def check_rate(rate: Any, where: str = "sample_rate") -> float:
    """A sampling rate between 0 and 1, or a ConfigurationError saying so."""
    if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0.0 <= float(rate) <= 1.0:
        raise ConfigurationError(f"{where} must be a number from 0 to 1 (the share of requests kept), got {rate!r}")
    return float(rate)


def keep_rules(rules: Iterable[Mapping[str, Any]] | None, where: str = "always_keep") -> tuple[KeepRule, ...]:
    """Parse ``[{"column": name, "in": [values...]}, ...]``."""
    parsed = []
    for rule in rules or ():
        if not isinstance(rule, Mapping) or set(rule) != {"column", "in"} or not isinstance(rule["column"], str) \
                or not isinstance(rule["in"], (list, tuple)) or not rule["in"]:
            raise ConfigurationError(f'{where} takes rules like {{"column": "status", "in": ["error"]}}, '
                                     f"got {rule!r}")
        parsed.append(KeepRule(rule["column"], tuple(rule["in"])))
    return tuple(parsed)


def kept(correlation_id: str, rate: float) -> bool:
    """Whether the request with this correlation id is in the sample."""
    if rate >= 1.0:
        return True
    digest = hashlib.sha256(correlation_id.encode()).digest()
    return int.from_bytes(digest[:8], "big") < rate * _SCALE


def sample(table: pa.Table, rate: float, rules: Sequence[KeepRule] = ()) -> tuple[pa.Table, int]:
    """The rows of ``table`` in the sample, and how many were skipped."""
    if rate >= 1.0 or table.num_rows == 0:
        return table, 0
    ids = table.column(CORRELATION_COLUMN).to_pylist()
    mask = pa.array([kept(i or "", rate) for i in ids], pa.bool_())
    for rule in rules:
        if rule.column in table.column_names:
            column = table.column(rule.column)
            values = pa.array(rule.values).cast(column.type, safe=False) if column.type != pa.null() else None
            if values is not None:
                mask = pc.or_(mask, pc.fill_null(pc.is_in(column, value_set=values), False))
    out = table.filter(mask)
    return out, table.num_rows - out.num_rows
