"""Turn what ``collect()`` took into one Arrow table per collector: the flusher's first step.

The table has the collector's feature columns, then Azure ML's eight ``$aml_`` columns, with
``$aml_dc_scoring_timestamp`` as ``timestamp[us, UTC]`` (formats render it as they need).
Python values become Arrow types by Arrow's own inference; a column whose values Arrow cannot
put in one type (``[1, "a"]``) is stored as text, each value written as ``str()`` would
(floats with ``repr()`` so they round-trip), ``None`` and NaN as nulls.
"""

from __future__ import annotations

import functools
import json
import math
import operator
import sys
from collections.abc import Sequence
from typing import Any, NamedTuple

import pyarrow as pa
import pyarrow.compute as pc

from mdc_core import compiled
from mdc_core.correlation import NO_REQUEST_ID, IdRange, format_ids
from mdc_core.errors import UnsupportedInputError
from mdc_core.shapes import AML_COLUMNS, N_AML, ROWS, Kind, Taken, unqueued

TIMESTAMP = pa.timestamp("us", tz="UTC")
AML_TIMESTAMP = AML_COLUMNS[1]

# The transposition loops in C (same tables, less GIL held by the flusher), or None: pure Python.
_transpose = compiled.load("_transpose")
# The compiled collect() queues float rows as Blocks of columns (never made without it).
_hotpath = compiled.load("_hotpath")
_Block = getattr(_hotpath, "Block", None)


class Stamp(NamedTuple):
    """The correlation data a collect() gave its rows: ids ``prefix`` + counter ``start``,
    ``start + step``, ... (``step`` 0: one id for every row; ``prefix`` empty: the rows carry
    their own ``$aml_`` columns).

    This is the layout; ``collect()`` queues it as a plain tuple of strings and ints: cheaper to
    build, and one the garbage collector stops tracking (it never stops tracking a NamedTuple).
    Read it by unpacking, or ``stamp[STAMP_TS]``."""

    prefix: str
    start: int
    step: int
    user: str
    ts_us: int
    request_id: str


STAMP_TS = 4  # where a stamp keeps the scoring time (µs)


def stamp_ids(stamp: Stamp, count: int) -> IdRange | None:
    """The ids of the ``count`` rows ``stamp`` stamped, formatted on demand; None when the rows
    carry their own ``$aml_`` columns."""
    prefix, start, step, user, _, _ = stamp
    return IdRange(prefix, start, count, step, user) if prefix else None


class Deployment(NamedTuple):
    """The constant ``$aml_`` values of one collector."""

    boundary_minutes: int
    workspace: str
    service: str
    model: str
    version: str


def warm_up() -> None:
    """Convert one value now, while a collector is built: the first time pyarrow converts Python
    values it imports pandas, when installed (0.4 s on an idle 2-core box, seconds on a busy
    one). In the flusher that import would hold the GIL while requests are being served."""
    pa.array([0.0])


def build_table(
    columns: Sequence[str], deployment: Deployment, takens: Sequence[Taken], stamps: Sequence[Stamp]
) -> pa.Table:
    """One table of every row of ``takens`` (stamped by ``stamps``, one each), in order, with the
    collector's columns.

    Consecutive Python rows, numpy arrays of one dtype, pandas frames of one set of columns and
    Arrow tables of one schema are converted together: thousands of small calls cost one
    conversion, not thousands. Two parallel sequences, not a list of pairs: a batch may hold
    100,000 calls, and 100,000 short-lived pairs make the garbage collector walk the queue.
    """
    if _all_tuples(takens):  # single plain rows, as queued: the web-request case
        return _rows_table(columns, deployment, list(takens), [1] * len(takens), stamps)
    if _Block is not None and _Block in set(map(type, takens)):
        return _with_blocks(columns, deployment, takens, stamps)
    takens = [unqueued(t) for t in takens]
    if set(_field(takens, 0)) == {ROWS}:  # rows only: one run, no keys
        return _rows_part(columns, deployment, takens, stamps)
    parts: list[pa.Table] = []
    begin, run_key = 0, None
    for i, taken in enumerate(takens):
        key = ROWS if taken.kind is ROWS else _run_key(taken)
        if i > begin and key != run_key:
            parts.append(_run_part(columns, deployment, takens[begin:i], stamps[begin:i]))
            begin = i
        if key is None:
            parts.append(_table_part(columns, deployment, taken, (taken.rows,), stamps[i : i + 1]))
            begin = i + 1
        run_key = key
    if begin < len(takens):
        parts.append(_run_part(columns, deployment, takens[begin:], stamps[begin:]))
    return concat(parts)


def _with_blocks(columns: Sequence[str], deployment: Deployment, takens: Sequence[Any],
                 stamps: Sequence[Stamp]) -> pa.Table:
    """A batch holding the compiled collect()'s blocks. Blocks alone become the table by copying
    their buffers; mixed with other rows, each block is expanded into the row tuples it stands
    for, and the batch is converted as it would have been without blocks (same types, same text)."""
    if all(type(t) is _Block for t in takens):
        return _blocks_table(columns, deployment, list(takens))
    rows: list[Any] = []
    row_stamps: list[Stamp] = []
    for taken, stamp in zip(takens, stamps):
        if type(taken) is _Block:
            expanded, expanded_stamps = taken.expand()
            rows.extend(expanded)
            row_stamps.extend(expanded_stamps)
        else:
            rows.append(taken)
            row_stamps.append(stamp)
    return build_table(columns, deployment, rows, row_stamps)


def _blocks_table(columns: Sequence[str], deployment: Deployment, blocks: list[Any]) -> pa.Table:
    """The rows of blocks, in order: Arrow arrays over the C buffers, no value touched by Python."""
    found = _hotpath.block_columns(blocks)
    if found is None:  # ids of two prefixes (renewed by a fork in between): a table per block
        return concat([_blocks_table(columns, deployment, [block]) for block in blocks])
    prefix, features, counters, times, requests = found
    n = len(times) // 8
    arrays = [pa.Array.from_buffers(pa.float64(), n, [None, pa.py_buffer(values)]) for values in features]
    if _transpose is not None:
        offsets, text = _transpose.format_ids(prefix, counters)
        ids = pa.StringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(text))
    else:
        ids = format_ids(prefix, memoryview(counters).cast("Q").tolist())
    timestamps = pa.Array.from_buffers(TIMESTAMP, n, [None, pa.py_buffer(times)])
    request_ids = _repeated_request(requests, n) if type(requests) is str else pa.array(requests, pa.string())
    return _join(pa.table(arrays, names=list(columns)), _aml_table(deployment, ids, timestamps, request_ids, n))


def _all_tuples(takens: Sequence[Any]) -> bool:
    """Whether every queued call is a bare row tuple (not a ``Taken``, a tuple subclass)."""
    if _transpose is not None:
        return _transpose.all_tuples(takens)
    return all(type(t) is tuple for t in takens)


def _run_key(taken: Taken) -> object:
    if taken.kind is Kind.ROWS:
        return Kind.ROWS
    if taken.kind is Kind.NUMPY and not taken.carried:
        return (Kind.NUMPY, taken.payload.dtype)
    if taken.kind is Kind.PANDAS and not taken.carried:
        return (Kind.PANDAS, taken.names)  # dtypes are reconciled when the run is converted
    if taken.kind is Kind.ARROW and not taken.carried:
        return (Kind.ARROW, taken.payload.schema)
    return None


def _run_part(
    columns: Sequence[str], deployment: Deployment, takens: Sequence[Taken], stamps: Sequence[Stamp]
) -> pa.Table:
    first = takens[0]
    if first.kind is Kind.ROWS:
        return _rows_part(columns, deployment, takens, stamps)
    counts = [taken.rows for taken in takens]
    if first.kind is Kind.ARROW:  # one schema: concatenated without copying, converted once
        table = pa.concat_tables([t.payload for t in takens]) if len(takens) > 1 else first.payload
        return _table_part(columns, deployment, first._replace(payload=table, rows=table.num_rows), counts, stamps)
    numpy = sys.modules["numpy"]
    if first.kind is Kind.PANDAS:
        dtypes = set(first.payload.dtypes) if first.names == tuple(columns) else set()
        uniform = dtypes.pop() if len(dtypes) == 1 else None  # one numeric dtype: the run goes as numpy
        array = numpy.concatenate([t.payload.to_numpy() for t in takens]) if uniform is not None else None
        if array is None or array.dtype != uniform or array.dtype.kind not in "fiub":  # else one concat
            frames = [t.payload for t in takens]
            frame = sys.modules["pandas"].concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
            return _table_part(columns, deployment, first._replace(payload=frame, rows=len(frame)), counts, stamps)
    else:
        array = numpy.concatenate([taken.payload for taken in takens]) if len(takens) > 1 else first.payload
    features = pa.table([to_array(array[:, j], columns[j]) for j in range(len(columns))], names=list(columns))
    return _join(features, _stamped(deployment, counts, stamps))


def concat(parts: list[pa.Table]) -> pa.Table:
    """Concatenate, widening types where Arrow can and falling back to text where it cannot."""
    if len(parts) == 1:
        return parts[0]
    try:
        return pa.concat_tables(parts, promote_options="permissive")
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
        pass
    names = parts[0].column_names
    fixed: list[list[pa.ChunkedArray]] = [[] for _ in parts]
    for j in range(len(names)):
        columns = [p.column(j) for p in parts]
        if len({c.type for c in columns if not pa.types.is_null(c.type)}) > 1:
            to_float = all(_exactly_float(c) for c in columns)
            columns = [pc.cast(c, pa.float64()) if to_float else _as_text(c) for c in columns]
        for i, c in enumerate(columns):
            fixed[i].append(c)
    return pa.concat_tables([pa.table(cols, names=names) for cols in fixed], promote_options="permissive")


_EXACT_INT = 2**53


def _exactly_float(column: pa.ChunkedArray) -> bool:
    """Whether ``column`` converts to float64 without changing a value (ints and floats meet
    as float64; anything else meets as text)."""
    t = column.type
    if pa.types.is_floating(t) or pa.types.is_null(t):
        return True
    if not pa.types.is_integer(t):
        return False
    low, high = (v.as_py() for v in pc.min_max(column).values())
    return low is None or (low >= -_EXACT_INT and high <= _EXACT_INT)


def _rows_part(
    columns: Sequence[str], deployment: Deployment, takens: Sequence[Taken], stamps: Sequence[Stamp]
) -> pa.Table:
    payloads, counts, names, carrieds = (_field(takens, i) for i in (1, 2, 4, 5))
    carried = carrieds[0]
    if len(set(carrieds)) > 1:
        # Mixed carried/uncarried rows in one run: split so each part is built one way.
        return concat([_rows_part(columns, deployment, takens[i : i + 1], stamps[i : i + 1])
                       for i in range(len(takens))])
    if len(counts) == sum(counts) and set(names) == {None}:  # single plain rows
        rows: list[tuple[Any, ...]] = [payload[0] for payload in payloads]
    else:
        rows = []
        for taken in takens:
            rows.extend(taken.payload if taken.names is None else _ordered_rows(taken, columns))
    return _rows_table(columns, deployment, rows, counts, stamps, carried)


def _rows_table(columns: Sequence[str], deployment: Deployment, rows: list[tuple[Any, ...]],
                counts: Sequence[int], stamps: Sequence[Stamp], carried: bool = False) -> pa.Table:
    """The table of Python rows in the collector's column order (``counts[i]`` rows stamped by
    ``stamps[i]``; with ``carried``, each row ends with its own eight ``$aml_`` values)."""
    width, n = len(columns), len(rows)
    floats = _float_columns(rows, width)
    values = [_field(rows, j) if j >= width or floats[j] is None else []
              for j in range(width + (N_AML if carried else 0))]
    arrays = [
        to_array(values[j], columns[j]) if floats[j] is None
        else _plain(pa.Array.from_buffers(pa.float64(), n, [None, pa.py_buffer(floats[j])]), columns[j])
        for j in range(width)
    ]
    features = pa.table(arrays, names=list(columns))
    if carried:
        aml = pa.table([pa.array(values[width + i]) for i in range(N_AML)], names=list(AML_COLUMNS))
        return _join(features, _carried(aml))
    return _join(features, _stamped(deployment, counts, stamps))


def _float_columns(rows: list[tuple[Any, ...]], width: int) -> list[bytes | None]:
    """Per feature column, its values as float64 bytes when all are exactly ``float`` (Arrow
    infers float64 for them, NaN kept), else None: that column is converted from Python."""
    if _transpose is None or not rows:  # no rows: Arrow infers the null type, not float64
        return [None] * width
    try:
        return _transpose.float_columns(rows, width)
    except (TypeError, ValueError):  # a row that is not a tuple, or short: as Python reports it
        return [None] * width


def _field(records: Sequence[Sequence[Any]], index: int) -> list[Any]:
    """Field ``index`` of every record: a C-level pass (``zip(*records)`` would make an iterator
    per record, 100,000 objects for the garbage collector to chase in a large batch)."""
    return list(map(operator.itemgetter(index), records))


def _ordered_rows(taken: Taken, columns: Sequence[str]) -> Sequence[tuple[Any, ...]]:
    """Rows of a dict or Series whose names are the collector's columns in another order are
    reordered by name; otherwise values are taken by position (``feature_names`` wins)."""
    names = taken.names
    if names is None or _features(names, taken.carried) == tuple(columns):
        return taken.payload
    order = _order(names, columns, taken.carried)
    if order is None:
        return taken.payload
    return [tuple(row[i] for i in order) for row in taken.payload]


def _table_part(
    columns: Sequence[str], deployment: Deployment, taken: Taken, counts: Sequence[int], stamps: Sequence[Stamp]
) -> pa.Table:
    kind, payload = taken.kind, taken.payload
    if kind is Kind.COLUMNS:
        table = pa.table(
            [to_array(col, name) for col, name in zip(payload, taken.names or columns)],
            names=list(taken.names or columns),
        )
    elif kind is Kind.NUMPY:
        table = pa.table(
            [to_array(payload[:, j], str(j)) for j in range(payload.shape[1])],
            names=[str(j) for j in range(payload.shape[1])],
        )
    elif kind is Kind.PANDAS:
        table = _from_pandas(payload)
    else:
        table = payload
    width = len(columns)
    if taken.names is not None:
        order = _order(taken.names, columns, taken.carried)
        if order is not None:
            table = table.select(order + ([*range(width, width + N_AML)] if taken.carried else []))
    features = pa.table(table.columns[:width], names=list(columns))
    features = pa.table([_plain(c, n) for c, n in zip(features.columns, columns)], names=list(columns))
    if taken.carried:
        aml = pa.table(table.columns[width : width + N_AML], names=list(AML_COLUMNS))
        return _join(features, _carried(aml))
    return _join(features, _stamped(deployment, counts, stamps))


def _features(names: tuple[str, ...], carried: bool) -> tuple[str, ...]:
    return names[:-N_AML] if carried else names


def _order(names: tuple[str, ...], columns: Sequence[str], carried: bool) -> list[int] | None:
    features = _features(names, carried)
    if features == tuple(columns) or sorted(features) != sorted(columns):
        return None
    position = {name: i for i, name in enumerate(features)}
    return [position[c] for c in columns]


def _from_pandas(frame: Any) -> pa.Table:
    try:
        return pa.Table.from_pandas(frame, preserve_index=False)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        names = [str(c) for c in frame.columns]
        return pa.table([to_array(frame.iloc[:, j].tolist(), names[j]) for j in range(len(names))], names=names)


def _join(features: pa.Table, aml: pa.Table) -> pa.Table:
    return pa.table(features.columns + aml.columns, names=features.column_names + aml.column_names)


def _stamped(deployment: Deployment, counts: Sequence[int], stamps: Sequence[Stamp]) -> pa.Table:
    """The ``$aml_`` columns of rows stamped by ``collect()`` (``counts[i]`` rows by ``stamps[i]``),
    built column by column: for single-row calls the stamps transposed are the columns, so ten
    thousand calls cost a ``zip``, not ten thousand small arrays."""
    total = sum(counts)
    fast = _compiled_stamp_columns(stamps, None if total == len(counts) else counts, total)
    ids, timestamps, requests = fast or _stamp_columns(counts, stamps, total)
    return _aml_table(deployment, ids, timestamps, requests, total)


def _aml_table(deployment: Deployment, ids: pa.Array, timestamps: pa.Array, requests: pa.Array,
               total: int) -> pa.Table:
    """The eight ``$aml_`` columns: the rows' ids, times and request ids, and the constants."""
    d = deployment
    return pa.table(
        [
            ids,
            timestamps,
            repeated(d.boundary_minutes, pa.int64(), total),
            repeated(d.workspace, pa.string(), total),
            repeated(d.service, pa.string(), total),
            repeated(d.model, pa.string(), total),
            repeated(d.version, pa.string(), total),
            requests,
        ],
        names=list(AML_COLUMNS),
    )


REPEAT_ROWS = 4096  # a cached constant column's length; longer batches reuse it chunk by chunk


@functools.lru_cache(maxsize=64)
def _constant_column(value: Any, type_: pa.DataType) -> pa.Array:
    return pa.repeat(pa.scalar(value, type_), REPEAT_ROWS)


def repeated(value: Any, type_: pa.DataType, n: int) -> pa.Array | pa.ChunkedArray:
    """``value`` in each of ``n`` rows, as zero-copy slices of a column made once per value: a
    collector's constant ``$aml_`` columns cost the flusher no work per batch (``pa.repeat``
    holds the GIL, 5 ns a row a column, a third of turning 10,000 queued rows into a table)."""
    base = _constant_column(value, type_)
    if n <= REPEAT_ROWS:
        return base.slice(0, n)
    whole, rest = divmod(n, REPEAT_ROWS)
    return pa.chunked_array([base] * whole + [base.slice(0, rest)], type_)


def _repeated_request(request_id: str, n: int) -> pa.Array | pa.ChunkedArray:
    """One request id for ``n`` rows: cached for the rows outside any request, made otherwise
    (a request's id is seen in one batch or two)."""
    if request_id == NO_REQUEST_ID:
        return repeated(NO_REQUEST_ID, pa.string(), n)
    return pa.repeat(pa.scalar(request_id, pa.string()), n)


def _compiled_stamp_columns(
    stamps: Sequence[Stamp], counts: Sequence[int] | None, n: int
) -> tuple[pa.Array, pa.Array, pa.Array] | None:
    """``_stamp_columns`` by C loops (``counts``: rows per stamp, None for one each), when the
    stamps share one prefix and no user id (the usual batch); None otherwise, or without the
    compiled module."""
    if _transpose is None:
        return None
    columns = _transpose.stamp_columns(stamps, counts)
    if columns is None:
        return None
    prefix, counters, times, requests = columns
    offsets, text = _transpose.format_ids(prefix, counters)
    ids = pa.StringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(text))
    timestamps = pa.Array.from_buffers(TIMESTAMP, n, [None, pa.py_buffer(times)])
    if type(requests) is str:  # one request id for every row (the rows outside any request)
        return ids, timestamps, _repeated_request(requests, n)
    return ids, timestamps, pa.array(requests, pa.string())


def _stamp_columns(
    counts: Sequence[int], stamps: Sequence[Stamp], total: int
) -> tuple[pa.Array, pa.Array, pa.Array]:
    """The ids, scoring times and request ids of ``_stamped``'s rows, from Python values."""
    prefixes, starts, users, times, requests = (_field(stamps, i) for i in (0, 1, 3, 4, 5))
    ts: Sequence[int] = times
    counters: Sequence[int] = starts
    if total != len(counts):  # calls of several rows: expand each call's values to its rows
        ts, requests, counters = [], [], []
        for n, (_, start, step, _, ts_us, request_id) in zip(counts, stamps):
            ts.extend([ts_us] * n)
            requests.extend([request_id] * n)
            counters.extend(range(start, start + n * step, step) if step else [start] * n)
    distinct = set(prefixes)
    if len(distinct) == 1 and not any(users):
        ids = format_ids(distinct.pop(), counters)
    else:  # user correlation ids, ids from before a fork, or no rows: formatted one by one
        ids = pa.array([i for n, stamp in zip(counts, stamps) for i in stamp_ids(stamp, n) or ()], pa.string())
    return ids, pa.array(ts, TIMESTAMP), pa.array(requests, pa.string())


def _carried(aml: pa.Table) -> pa.Table:
    """``$aml_`` columns supplied by the caller, as given, with the timestamp parsed."""
    columns = []
    for name, col in zip(AML_COLUMNS, aml.columns):
        if name == AML_TIMESTAMP:
            col = parse_timestamps(col)
            if col.null_count:
                # The row's date decides its folder: without one it has no place to go.
                raise ValueError(
                    f"{col.null_count} rows carry an empty {AML_TIMESTAMP}: "
                    "pass the values add_correlations() was given by collect()"
                )
        elif name == "$aml_dc_boundary":
            col = pc.cast(col, pa.int64())  # 1440 or "1440"
        else:
            col = _as_text(col)
        columns.append(col)
    return pa.table(columns, names=list(AML_COLUMNS))


def parse_timestamps(col: pa.Array | pa.ChunkedArray) -> pa.ChunkedArray:
    """ISO-8601 text (zone-less means UTC) or Arrow timestamps as ``timestamp[us, UTC]``."""
    if pa.types.is_timestamp(col.type):
        if col.type.tz is None:
            col = pc.assume_timezone(col, "UTC")
        return pc.cast(col, TIMESTAMP)
    text = _as_text(col)
    try:
        naive = pc.cast(text, pa.timestamp("us"))
        return pc.assume_timezone(naive, "UTC")
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return pc.cast(pc.cast(text, pa.timestamp("us", tz="UTC")), TIMESTAMP)


def to_array(values: Sequence[Any], name: str) -> pa.Array:
    """One column from Python (or numpy) values, by Arrow's inference, else as text."""
    try:
        array = pa.array(values)
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, OverflowError):
        return pa.array([_text(v) for v in _pylist(values)], pa.string())
    if (pa.types.is_floating(array.type) or pa.types.is_integer(array.type)) and _has_bool(values):
        # Arrow turns [1.5, True] into [1.5, 1.0] (but refuses [True, 1.5]): keep both as text.
        return pa.array([_text(v) for v in _pylist(values)], pa.string())
    return _plain(array, name)


def _has_bool(values: Any) -> bool:
    dtype = getattr(values, "dtype", None)
    if dtype is not None and dtype.kind != "O":
        return False  # a numeric numpy column holds no booleans
    types = set(map(type, values))
    numpy = sys.modules.get("numpy")
    return bool in types or (numpy is not None and numpy.bool_ in types)


def _plain(array: pa.Array | pa.ChunkedArray, name: str) -> pa.Array | pa.ChunkedArray:
    """Refuse binary values; store nested values (lists, dicts) as JSON text."""
    t = array.type
    if pa.types.is_binary(t) or pa.types.is_large_binary(t) or pa.types.is_fixed_size_binary(t):
        raise UnsupportedInputError(
            f"column {name!r} holds bytes: mdc stores tabular values (numbers, text, booleans, "
            "timestamps), not binary media; decode or drop the column before collect()"
        )
    if pa.types.is_nested(t):
        return pa.array([None if v is None else json.dumps(v, default=str) for v in array.to_pylist()], pa.string())
    return array


def _pylist(values: Any) -> list[Any]:
    return values.tolist() if hasattr(values, "tolist") else list(values)


def _text(value: Any) -> str | None:
    numpy = sys.modules.get("numpy")
    if numpy is not None and isinstance(value, numpy.generic):
        value = value.item()  # np.float64(1.5) is written as 1.5, np.True_ as true
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        raise UnsupportedInputError("a value is bytes: mdc stores tabular values, not binary media")
    if isinstance(value, (list, dict, tuple)):
        return json.dumps(value, default=str)
    return str(value)


def _as_text(col: pa.Array | pa.ChunkedArray) -> pa.Array | pa.ChunkedArray:
    if pa.types.is_string(col.type) or pa.types.is_large_string(col.type):
        return col
    if pa.types.is_null(col.type):
        return col.cast(pa.string())
    if pa.types.is_timestamp(col.type) or pa.types.is_nested(col.type):
        return pa.array(
            [_text(v) if not hasattr(v, "isoformat") else v.isoformat() for v in col.to_pylist()], pa.string()
        )
    try:
        if pa.types.is_floating(col.type):
            col = pc.if_else(pc.is_nan(col), pa.scalar(None, col.type), col)
        return pc.cast(col, pa.string())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return pa.array([_text(v) for v in col.to_pylist()], pa.string())
