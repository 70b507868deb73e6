"""What ``collect()`` accepts, checked cheaply on the caller's thread.

Every accepted input becomes a ``Taken``: a payload the flusher turns into Arrow later, its row
count, the column names it carries (if any) and whether its last eight columns are Azure ML's
``$aml_`` correlation columns. Nothing here converts values: that is the flusher's work.
"""

from __future__ import annotations

import sys
from typing import Any, NamedTuple

import pyarrow as pa

from mdc_core.errors import RowWidthError, UnsupportedInputError

AML_COLUMNS = (
    "$aml_dc_correlation_id",
    "$aml_dc_scoring_timestamp",
    "$aml_dc_boundary",
    "$aml_workspace",
    "$aml_service_name",
    "$aml_model_name",
    "$aml_model_version",
    "$aml_request_id",
)
N_AML = len(AML_COLUMNS)

ACCEPTED = (
    "a list or tuple (one row), a list of rows, a dict of feature -> value (one row) or "
    "feature -> list (columns), a numpy 1-D or 2-D array, a pandas DataFrame or Series, "
    "a pyarrow Table or RecordBatch, or a polars or Spark DataFrame"
)


def default_names(width: int) -> tuple[str, ...]:
    """Column names for data that names none: ``feature_0`` ... ``feature_<width-1>``."""
    return tuple(f"feature_{i}" for i in range(width))


class Kind:
    """What a ``Taken`` holds. Plain ints, not an enum: on Python 3.11 each ``Kind.ROWS`` of an
    enum costs a 0.2 µs lookup, and an enum member is an object the garbage collector tracks."""

    ROWS = 1  # tuple of row tuples
    COLUMNS = 2  # tuple of column sequences
    NUMPY = 3  # 2-D ndarray (a private copy)
    ARROW = 4  # pyarrow.Table
    PANDAS = 5  # pandas.DataFrame


ROWS, COLUMNS, NUMPY, ARROW, PANDAS = Kind.ROWS, Kind.COLUMNS, Kind.NUMPY, Kind.ARROW, Kind.PANDAS


class Taken(NamedTuple):
    kind: int  # a Kind
    payload: Any
    rows: int
    width: int  # feature columns, without carried $aml_ columns
    names: tuple[str, ...] | None  # column names the data carries, $aml_ ones included
    carried: bool  # the last eight columns are Azure ML's $aml_ columns


_new_taken = tuple.__new__  # skips NamedTuple's Python-level __new__ on the hot path


def queued(taken: Taken) -> Taken | tuple[Any, ...]:
    """What the pipeline queues for ``taken``: a single plain row (no names, no ``$aml_``
    columns: the web-request case) as the bare row tuple, anything else as it is. A queued call
    then holds only plain values two levels deep, which the garbage collector stops tracking
    before it reaches the oldest generation; a ``Taken`` it tracks for ever, and with a long
    queue every tracked call feeds full collections (a third of a collecting thread's time)."""
    if taken.rows == 1 and taken.kind is ROWS and taken.names is None and not taken.carried:
        return taken.payload[0]
    return taken


def queued_rows(item: Taken | tuple[Any, ...]) -> int:
    """The rows of something ``queued()`` returned."""
    return 1 if type(item) is tuple else item.rows  # type: ignore[union-attr]


def unqueued(item: Taken | tuple[Any, ...]) -> Taken:
    """The ``Taken`` of something ``queued()`` returned."""
    if type(item) is tuple:
        return _new_taken(Taken, (ROWS, (item,), 1, len(item), None, False))
    return item  # type: ignore[return-value]


_SCALAR_ROW_TYPES = (list, tuple)
_SCALARS = frozenset({float, int, str, bool, type(None)})


def take(data: Any, width: int | None) -> Taken:
    """Check ``data`` against the collector's ``width`` (``None``: not fixed yet) and wrap it."""
    kind = type(data)
    if kind is list or kind is tuple:
        # Fast path: one row of plain scalars at the collector's width (the web-request case).
        if data and type(data[0]) in _SCALARS and len(data) == width:
            return _new_taken(Taken, (ROWS, (tuple(data),), 1, width, None, False))
        return _take_sequence(data, width)
    if kind is dict:
        return _take_dict(data, width)
    return _take_other(data, width)


def _take_sequence(data: list[Any] | tuple[Any, ...], width: int | None) -> Taken:
    if not data:
        return Taken(Kind.ROWS, (), 0, width or 0, None, False)
    first = data[0]
    if type(first) in _SCALAR_ROW_TYPES or _is_numpy_array(first):
        rows = tuple(tuple(row) if type(row) in _SCALAR_ROW_TYPES else _row_from(row) for row in data)
        w = len(rows[0])
        for i, row in enumerate(rows):
            if len(row) != w:
                raise RowWidthError(
                    f"row {i} has {len(row)} values but row 0 has {w}: all rows of one call must have the same width"
                )
        carried = _check_width(w, width)
        return Taken(Kind.ROWS, rows, len(rows), w - N_AML * carried, None, carried)
    row = tuple(data)
    carried = _check_width(len(row), width)
    return Taken(Kind.ROWS, (row,), 1, len(row) - N_AML * carried, None, carried)


def _row_from(row: Any) -> tuple[Any, ...]:
    if _is_numpy_array(row) and row.ndim == 1:
        return tuple(row.tolist())
    raise UnsupportedInputError(
        f"a list of rows must hold lists, tuples or 1-D arrays, not {type(row).__name__}; accepted: {ACCEPTED}"
    )


def _take_dict(data: dict[Any, Any], width: int | None) -> Taken:
    if not data:
        raise RowWidthError("an empty dict has no features to collect")
    names = tuple(str(k) for k in data)
    values = tuple(data.values())
    first = values[0]
    if isinstance(first, (list, tuple)) or _is_numpy_array(first):
        for name, v in zip(names, values):
            if not (isinstance(v, (list, tuple)) or _is_numpy_array(v) and v.ndim == 1):
                raise RowWidthError(
                    f"column {name!r} is a {type(v).__name__}, not a list, but {names[0]!r} is a list: "
                    "a dict is either one row (feature -> value) or columns (feature -> list)"
                )
        columns = tuple(list(v) if not _is_numpy_array(v) else v.tolist() for v in values)
        n = len(columns[0])
        for name, col in zip(names, columns):
            if len(col) != n:
                raise RowWidthError(
                    f"column {name!r} has {len(col)} values but {names[0]!r} has {n}: "
                    "columns of a dict must be equally long"
                )
        carried = _check_width(len(names), width, names)
        return Taken(Kind.COLUMNS, columns, n, len(names) - N_AML * carried, names, carried)
    carried = _check_width(len(names), width, names)
    return Taken(Kind.ROWS, (values,), 1, len(names) - N_AML * carried, names, carried)


def _take_other(data: Any, width: int | None) -> Taken:
    if isinstance(data, (str, bytes, bytearray, memoryview)):
        raise UnsupportedInputError(
            f"cannot collect {type(data).__name__}: mdc stores tabular rows, not text or binary "
            f"blobs; accepted: {ACCEPTED}"
        )
    if isinstance(data, pa.RecordBatch):
        data = pa.Table.from_batches([data])
    if isinstance(data, pa.Table):
        names = tuple(data.schema.names)  # Table.column_names costs 6x more
        _refuse_binary(data.schema)
        carried = _check_width(len(names), width, names)
        return Taken(Kind.ARROW, data, data.num_rows, len(names) - N_AML * carried, names, carried)
    if _is_numpy_array(data):
        return _take_numpy(data, width)
    pandas = sys.modules.get("pandas")
    if pandas is not None and isinstance(data, pandas.DataFrame):
        names = frame_names(data.columns)
        carried = _check_width(len(names), width, names)
        return Taken(Kind.PANDAS, data, len(data), len(names) - N_AML * carried, names, carried)
    if pandas is not None and isinstance(data, pandas.Series):
        names = tuple(str(i) for i in data.index)
        carried = _check_width(len(names), width, names)
        return Taken(Kind.ROWS, (tuple(data.tolist()),), 1, len(names) - N_AML * carried, names, carried)
    polars = sys.modules.get("polars")
    if polars is not None and isinstance(data, polars.DataFrame):
        return _take_other(data.to_arrow(), width)
    spark = sys.modules.get("pyspark.sql")
    if spark is not None and isinstance(data, spark.DataFrame):
        # A Spark DataFrame is a query: run it now, as the caller asked for its rows to be kept.
        names = tuple(data.columns)
        _check_width(len(names), width, names)
        table = (
            data.toArrow() if hasattr(data, "toArrow") else pa.Table.from_pandas(data.toPandas(), preserve_index=False)
        )
        return _take_other(table, width)
    raise UnsupportedInputError(
        f"cannot collect {type(data).__module__}.{type(data).__qualname__}; accepted: {ACCEPTED}"
    )


def frame_names(index: Any) -> tuple[str, ...]:
    """A DataFrame's column names as strings. pandas 3 keeps text labels in Arrow, where
    ``Index.tolist()`` costs 13 µs for six names; Arrow's own ``to_pylist()`` costs 1 µs."""
    arrow = getattr(index.array, "__arrow_array__", None) if index.nlevels == 1 else None
    names = arrow().to_pylist() if arrow is not None else index.tolist()
    return tuple(n if type(n) is str else str(n) for n in names)


def _take_numpy(array: Any, width: int | None) -> Taken:
    if array.dtype.kind in "SVM" or array.ndim > 2 or array.ndim == 0:
        what = f"{array.ndim}-D" if array.ndim != 1 else f"dtype {array.dtype}"
        raise UnsupportedInputError(
            f"cannot collect a numpy array of {what} ({array.shape}): rows are 1-D or 2-D arrays "
            f"of numbers, strings or booleans (images, audio and video are out of scope); accepted: {ACCEPTED}"
        )
    rows = array.reshape(1, -1) if array.ndim == 1 else array
    if not rows.dtype.isnative:  # big-endian data (read from a file): Arrow converts only native order
        rows = rows.astype(rows.dtype.newbyteorder("="))
    carried = _check_width(rows.shape[1], width)
    if rows.shape[0] == 1 and not carried and rows.dtype in _PYTHON_EXACT:
        # One row of float64 or int64 (np.array(request["data"])): as a Python row it is queued
        # like a list (see queued()), and converts back to the same Arrow type.
        return _new_taken(Taken, (ROWS, (tuple(rows[0].tolist()),), 1, rows.shape[1], None, False))
    return Taken(Kind.NUMPY, _private_copy(rows), rows.shape[0], rows.shape[1] - N_AML * carried, None, carried)


_PYTHON_EXACT = ("float64", "int64")  # dtypes whose values Arrow infers back exactly from Python


def _private_copy(array: Any) -> Any:
    """A copy the caller cannot change. ``ndarray.copy()`` releases the GIL for arrays of a few
    hundred values, and taking it back behind other threads cost 100-row calls a p99 of
    milliseconds; ``tobytes()`` copies holding it (values that are objects need ``copy()``)."""
    if array.dtype.hasobject:
        return array.copy()
    numpy = sys.modules["numpy"]
    return numpy.frombuffer(array.tobytes(), array.dtype).reshape(array.shape)


_BINARY_TYPES = [pa.binary(), pa.large_binary(), pa.binary(1)]
if hasattr(pa, "binary_view"):
    _BINARY_TYPES.append(pa.binary_view())
_BINARY_TYPE_IDS = frozenset(t.id for t in _BINARY_TYPES)


def _refuse_binary(schema: pa.Schema) -> None:
    """Binary columns (images, audio, ...) are refused here, where the schema says so cheaply
    (by type id: the ``pa.types.is_*`` predicates cost 5 µs for six columns)."""
    for i, t in enumerate(schema.types):
        if t.id in _BINARY_TYPE_IDS:
            raise UnsupportedInputError(
                f"column {schema.names[i]!r} holds bytes ({t}): mdc stores tabular rows, not binary media; "
                f"decode or drop the column; accepted: {ACCEPTED}"
            )


def _is_numpy_array(value: Any) -> bool:
    numpy = sys.modules.get("numpy")
    return numpy is not None and isinstance(value, numpy.ndarray)


def _check_width(got: int, width: int | None, names: tuple[str, ...] | None = None) -> bool:
    """True when the data carries the eight ``$aml_`` columns after its features."""
    if got == 0 or names == AML_COLUMNS:
        raise RowWidthError("data has no feature columns: a row needs at least one value")
    if names is not None and names[-N_AML:] == AML_COLUMNS:
        features = got - N_AML
        if width is not None and features != width:
            raise RowWidthError(
                f"data has {features} feature columns (plus the $aml_ columns) but the collector has {width}"
            )
        return True
    if width is None or got == width:
        return False
    if names is None and got == width + N_AML:
        return True
    raise RowWidthError(
        f"data has {got} columns but the collector has {width} "
        f"(feature_names or the first collect() fixed them); "
        f"pass rows of {width} values, or {width + N_AML} with the $aml_ columns from add_correlations()"
    )
