"""Model quality per window, when labels exist: inputs joined with predictions and labels one day
at a time (``mdc_core.export.join_by_day``: memory bounded by a day), each labelled row put in
its input's window; per window the labelled rows, accuracy (prediction equals label) and, for
numbers, mean absolute and root mean squared error."""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from mdc_core.drift_engines import TIMESTAMP, Windows, _micros
from mdc_core.errors import ConfigurationError
from mdc_core.store import NoDataError, Store


def label_metrics(
    store: Store, model: str | None, windows: Windows, prediction: str, label: str, filters: dict[str, Any]
) -> list[dict[str, Any]]:
    """One dict per window: ``labelled``, ``accuracy``, ``mae``, ``rmse`` (``None`` without rows
    or, for the errors, when the columns are not numbers)."""
    from mdc_core.export import join_by_day

    n = np.zeros(windows.count, np.int64)
    correct = np.zeros(windows.count, np.int64)
    numeric = np.zeros(windows.count, np.int64)
    abs_err = np.zeros(windows.count)
    sq_err = np.zeros(windows.count)
    lo, hi = windows.bounds(0)[0], windows.bounds(windows.count - 1)[1]
    try:
        days = join_by_day(store, model, start=lo, end=hi, labels=True, how="inner", **filters)
    except NoDataError:
        days = None
    for joined in days or ():
        table = joined.table
        if not table.num_rows:
            continue
        names = table.column_names
        pred_col = prediction if prediction in names else f"{prediction}_predictions"
        label_col = label if label in names and label != prediction else f"{label}_labels"
        if pred_col not in names or label_col not in names:
            raise ConfigurationError(f"no column {prediction!r} in predictions or {label!r} in labels")
        window = windows.index(_micros(table.column(TIMESTAMP)))
        keep = (window >= 0) & (window < windows.count)
        p, y = table.column(pred_col), table.column(label_col)
        present = pc.and_(pc.is_valid(p), pc.is_valid(y)).to_numpy(zero_copy_only=False) & keep
        win = window[present]
        n += np.bincount(win, minlength=windows.count)
        same = pc.equal(p.cast(pa.string()), y.cast(pa.string())).to_numpy(zero_copy_only=False)[present]
        correct += np.bincount(win[same.astype(bool)], minlength=windows.count)
        if _number(p.type) and _number(y.type):
            pv = p.cast(pa.float64()).to_numpy(zero_copy_only=False)[present]
            yv = y.cast(pa.float64()).to_numpy(zero_copy_only=False)[present]
            numeric += np.bincount(win, minlength=windows.count)
            abs_err += np.bincount(win, weights=np.abs(pv - yv), minlength=windows.count)
            sq_err += np.bincount(win, weights=(pv - yv) ** 2, minlength=windows.count)
    out = []
    for w in range(windows.count):
        entry: dict[str, Any] = {"labelled": int(n[w]), "accuracy": None, "mae": None, "rmse": None}
        if n[w]:
            entry["accuracy"] = float(correct[w] / n[w])
        if numeric[w]:
            entry["mae"] = float(abs_err[w] / numeric[w])
            entry["rmse"] = float(np.sqrt(sq_err[w] / numeric[w]))
        out.append(entry)
    return out


def _number(dtype: pa.DataType) -> bool:
    return pa.types.is_integer(dtype) or pa.types.is_floating(dtype) or pa.types.is_decimal(dtype)
