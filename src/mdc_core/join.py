"""Joining inputs with predictions (and labels) on the correlation id, with a request-id fallback.

The collector gives each input row its own ``$aml_dc_correlation_id``, and predictions (or labels)
collected for the same request carry the same id, so the id is the join key. Rows that find no
partner by id (predictions collected with another row count, labels attached by hand) are tried
on ``$aml_request_id`` when that id names one row on each side (never the placeholder of rows
collected outside a request): a one-to-one fallback, never a cross product. What stays unpaired
is counted per side.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from mdc_core.correlation import NO_REQUEST_ID
from mdc_core.shapes import AML_COLUMNS

CORRELATION = AML_COLUMNS[0]
TIMESTAMP = AML_COLUMNS[1]
REQUEST = AML_COLUMNS[-1]
HOW = ("inner", "left")


@dataclass
class JoinResult:
    """The joined rows and how they were matched."""

    table: pa.Table
    """Inputs' features, then predictions' (then labels'), then the inputs' ``$aml_`` columns;
    a feature name that is taken already gets the designation as suffix (``p_predictions``)."""
    matched: dict[str, int] = field(default_factory=dict)
    """Per joined side (``predictions``, ``labels``): rows of the left (input) side paired by
    correlation id."""
    by_request: dict[str, int] = field(default_factory=dict)
    """Per joined side: rows paired by the request-id fallback."""
    unmatched: dict[str, int] = field(default_factory=dict)
    """Rows that found no partner: ``inputs`` without a prediction, ``predictions`` without an
    input, ``labels`` without a (paired) input row."""

    def as_dict(self) -> dict[str, Any]:
        return {
            "rows": self.table.num_rows,
            "matched": self.matched,
            "by_request": self.by_request,
            "unmatched": self.unmatched,
        }


def join(inputs: Any, predictions: Any, labels: Any = None, *, how: str = "inner") -> JoinResult:
    """Join ``inputs`` with ``predictions`` (and ``labels``): Arrow tables, pandas or polars
    DataFrames, or ``Scan`` objects. ``how="inner"`` keeps paired rows; ``"left"`` keeps every
    input row (nulls where no prediction or label paired). Labels pair with the inputs' id."""
    if how not in HOW:
        raise ValueError(f"how={how!r}: use one of {HOW}")
    result = JoinResult(_table(inputs))
    left = result.table
    for name, side in (("predictions", predictions), ("labels", labels)):
        if side is None:
            continue
        left, unpaired_left, counts = _pair(left, _table(side), name, how)
        result.matched[name], result.by_request[name], result.unmatched[name] = counts
        if name == "predictions":
            result.unmatched["inputs"] = unpaired_left
    result.table = _ordered(left)
    return result


def _table(data: Any) -> pa.Table:
    if isinstance(data, pa.Table):
        return data
    if hasattr(data, "to_table"):  # a Scan
        return data.to_table()
    if hasattr(data, "to_arrow"):  # polars
        return data.to_arrow()
    if type(data).__module__.startswith("pandas"):
        return pa.Table.from_pandas(data, preserve_index=False)
    return pa.table(data)


def _usable(table: pa.Table, column: str) -> pa.Array:
    """Whether each row's id can pair: present, not empty, not the no-request placeholder."""
    if column not in table.column_names:
        return pa.array([False] * table.num_rows)
    values = table.column(column).cast(pa.string())
    ok = pc.and_(pc.is_valid(values), pc.not_equal(values, ""))
    if column == REQUEST:
        ok = pc.and_(ok, pc.not_equal(values, NO_REQUEST_ID))
    return pc.fill_null(ok, False)


def _unique(table: pa.Table, column: str) -> pa.Table:
    """Rows whose ``column`` value is usable and occurs once."""
    table = table.filter(_usable(table, column))
    if not table.num_rows:
        return table
    counts = pc.value_counts(table.column(column))
    once = pc.filter(counts.field("values"), pc.equal(counts.field("counts"), 1))
    return table.filter(pc.is_in(table.column(column), value_set=once))


def _pair(left: pa.Table, right: pa.Table, name: str, how: str) -> tuple[pa.Table, int, tuple[int, int, int]]:
    taken = set(left.column_names)
    renames = {c: (f"{c}_{name}" if c in taken else c) for c in right.column_names if c not in AML_COLUMNS}
    keys = [c for c in (CORRELATION, REQUEST) if c in right.column_names]
    right = right.select([*renames, *keys]).rename_columns([*renames.values(), *keys])
    features = list(renames.values())
    order = [*left.column_names, *features]  # key columns added below for the matching only
    for key in (CORRELATION, REQUEST):
        if key not in right.column_names:
            right = right.append_column(key, pa.nulls(right.num_rows, pa.string()))
        if key not in left.column_names:
            left = left.append_column(key, pa.nulls(left.num_rows, pa.string()))
    rl, rr = _usable(left, CORRELATION), _usable(right, CORRELATION)
    left_ids = pc.filter(left.column(CORRELATION), rl)
    right_ids = pc.filter(right.column(CORRELATION), rr)
    in_right = pc.and_(rl, pc.fill_null(pc.is_in(left.column(CORRELATION), value_set=right_ids), False))
    in_left = pc.and_(rr, pc.fill_null(pc.is_in(right.column(CORRELATION), value_set=left_ids), False))
    by_id = left.filter(in_right).join(
        right.filter(in_left).drop_columns([REQUEST]), keys=CORRELATION, join_type="inner"
    )
    rest_left, rest_right = left.filter(pc.invert(in_right)), right.filter(pc.invert(in_left))
    lu, ru = _unique(rest_left, REQUEST), _unique(rest_right, REQUEST)
    by_request = lu.join(ru.drop_columns([CORRELATION]), keys=REQUEST, join_type="inner")
    paired_requests = by_request.column(REQUEST)
    still_left = rest_left.filter(
        pc.invert(pc.fill_null(pc.is_in(rest_left.column(REQUEST), value_set=paired_requests), False))
        if by_request.num_rows
        else pa.array([True] * rest_left.num_rows, pa.bool_())
    )
    unpaired_right = rest_right.num_rows - by_request.num_rows
    parts = [by_id.select(order), by_request.select(order)]
    if how == "left" and still_left.num_rows:
        nulls = [pa.nulls(still_left.num_rows, right.schema.field(c).type) for c in features]
        parts.append(pa.table([*still_left.columns, *nulls], names=order))
    joined = pa.concat_tables(parts, promote_options="permissive")
    return joined, still_left.num_rows, (_count(in_right), by_request.num_rows, unpaired_right)


def _ordered(table: pa.Table) -> pa.Table:
    """Features first, the ``$aml_`` columns last; rows by scoring time, then correlation id."""
    names = [c for c in table.column_names if c not in AML_COLUMNS]
    names += [c for c in AML_COLUMNS if c in table.column_names]
    table = table.select(names)
    keys = [(c, "ascending") for c in (TIMESTAMP, CORRELATION) if c in table.column_names]
    return table.sort_by(keys) if keys and table.num_rows else table


def _count(mask: Any) -> int:
    return int(pc.sum(mask).as_py() or 0)
