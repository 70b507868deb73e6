"""``add_correlations``: append the eight ``$aml_`` columns to data, as Azure ML's collector did.

The result, collected by another designation, keeps those values (the usual way to carry an
input's correlation to a prediction collected elsewhere, or to labels collected days later).
A correlation with one id per row (from a multi-row ``collect()``) pairs row for row.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from typing import Any

import pyarrow as pa

from mdc_core.errors import RowWidthError, UnsupportedInputError
from mdc_core.shapes import ACCEPTED, AML_COLUMNS


def attach_correlations(data: Any, correlations: Mapping[str, Any]) -> Any:
    """``data`` (same type) with ``$aml_`` columns from ``correlations`` after its own."""
    missing = [c for c in AML_COLUMNS if c not in correlations]
    if missing:
        raise ValueError(f"correlations lacks {', '.join(missing)}: pass the dict collect() returned")
    n = _row_count(data)
    columns = {name: _per_row(correlations[name], n, name) for name in AML_COLUMNS}
    kind = type(data)
    if kind in (list, tuple):
        if data and isinstance(data[0], (list, tuple)) or _is_numpy(data[0] if data else None):
            return [list(row) + [columns[c][i] for c in AML_COLUMNS] for i, row in enumerate(data)]
        return list(data) + [columns[c][0] for c in AML_COLUMNS]
    if kind is dict:
        first = next(iter(data.values()), None)
        if isinstance(first, (list, tuple)) or _is_numpy(first):
            return {**data, **{c: list(v) for c, v in columns.items()}}
        return {**data, **{c: v[0] for c, v in columns.items()}}
    if isinstance(data, pa.RecordBatch):
        data = pa.Table.from_batches([data])
    if isinstance(data, pa.Table):
        for name in AML_COLUMNS:
            data = data.append_column(name, pa.array(columns[name]))
        return data
    if _is_numpy(data):
        numpy = sys.modules["numpy"]
        rows = data.reshape(1, -1) if data.ndim == 1 else data
        extra = numpy.array([[columns[c][i] for c in AML_COLUMNS] for i in range(n)], dtype=object)
        joined = numpy.concatenate([rows.astype(object), extra], axis=1)
        return joined[0] if data.ndim == 1 else joined
    pandas = sys.modules.get("pandas")
    if pandas is not None and isinstance(data, pandas.DataFrame):
        return data.assign(**{c: columns[c] for c in AML_COLUMNS})
    if pandas is not None and isinstance(data, pandas.Series):
        return pandas.concat(
            [data.astype(object), pandas.Series({c: columns[c][0] for c in AML_COLUMNS}, dtype=object)]
        )
    polars = sys.modules.get("polars")
    if polars is not None and isinstance(data, polars.DataFrame):
        return data.with_columns([polars.Series(c, columns[c]) for c in AML_COLUMNS])
    raise UnsupportedInputError(f"cannot add correlations to {type(data).__name__}; accepted: {ACCEPTED}")


def _row_count(data: Any) -> int:
    if type(data) in (list, tuple):
        if data and (isinstance(data[0], (list, tuple)) or _is_numpy(data[0])):
            return len(data)
        return 1
    if type(data) is dict:
        first = next(iter(data.values()), None)
        return len(first) if isinstance(first, (list, tuple)) or _is_numpy(first) else 1
    if _is_numpy(data):
        return 1 if data.ndim == 1 else data.shape[0]
    pandas = sys.modules.get("pandas")
    if pandas is not None and isinstance(data, pandas.Series):
        return 1
    if isinstance(data, (pa.Table, pa.RecordBatch)):
        return data.num_rows
    if hasattr(data, "shape"):
        return data.shape[0]
    raise UnsupportedInputError(f"cannot add correlations to {type(data).__name__}; accepted: {ACCEPTED}")


def _per_row(value: Any, n: int, name: str) -> list[Any]:
    if isinstance(value, Sequence) and not isinstance(value, str):
        values = list(value)
        if len(values) == n:
            return values
        if len(values) == 1:
            return values * n
        raise RowWidthError(f"{name} has {len(values)} values for {n} rows: correlate data of the same row count")
    return [value] * n


def _is_numpy(value: Any) -> bool:
    numpy = sys.modules.get("numpy")
    return numpy is not None and isinstance(value, numpy.ndarray)
