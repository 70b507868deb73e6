"""The compiled transposition (``mdc_core._transpose``) builds the tables pure Python builds: same
values, types, nulls and NaNs, and the same errors; it falls back wherever it is not sure."""

from __future__ import annotations

import importlib
import math
import os
import struct
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mdc_core import batches, compiled
from mdc_core.batches import Deployment, build_table
from mdc_core.correlation import NO_REQUEST_ID, format_id
from mdc_core.errors import UnsupportedInputError
from mdc_core.shapes import AML_COLUMNS, Kind, Taken, take


def _load() -> Any:
    """The module itself, even under MDC_PURE_PYTHON=1 (both ways are compared explicitly)."""
    try:
        module = importlib.import_module("mdc_core._transpose")
    except ImportError as exc:
        reason = f"mdc_core._transpose is not built ({exc})"
    else:
        if hasattr(module, "float_columns"):
            return module
        reason = "mdc_core._transpose is an old build without its functions: reinstall mdc"
    if os.environ.get("MDC_REQUIRE_COMPILED") == "1":
        pytest.fail(f"{reason}, and MDC_REQUIRE_COMPILED=1", pytrace=False)
    print(f"skipping {__name__}: {reason}", file=sys.stderr)
    pytest.skip(reason, allow_module_level=True)


T = _load()
DEP = Deployment(1440, "ws", "svc", "model", "1")
PREFIX = "12345678-1234-4123-8123-"
TS = 1_700_000_000_000_000


def stamp(start: int, *, prefix: str = PREFIX, step: int = 1, user: str = "", ts: int | None = None,
          request: Any = NO_REQUEST_ID) -> tuple[Any, ...]:
    return (prefix, start, step, user, TS + start if ts is None else ts, request)


def stamps_for(n: int, **kwargs: Any) -> list[tuple[Any, ...]]:
    return [stamp(i, **kwargs) for i in range(n)]


class Spy:
    """The compiled module, recording what each function returned."""

    def __init__(self) -> None:
        self.returned: dict[str, list[Any]] = {}

    def __getattr__(self, name: str) -> Callable[..., Any]:
        function = getattr(T, name)

        def spied(*args: Any) -> Any:
            result = function(*args)
            self.returned.setdefault(name, []).append(result)
            return result

        return spied


@contextmanager
def transpose(module: Any) -> Iterator[None]:
    saved = batches._transpose
    batches._transpose = module
    try:
        yield
    finally:
        batches._transpose = saved


def outcome(build: Callable[[], pa.Table]) -> pa.Table | tuple[type[BaseException], str]:
    try:
        return build()
    except Exception as exc:  # the error itself is what is compared
        return type(exc), str(exc)


def _bits(values: list[Any]) -> list[Any]:
    """Values with floats as their bit patterns: NaN equals NaN, -0.0 differs from 0.0."""
    return [("float", struct.pack("<d", v)) if isinstance(v, float) else v for v in values]


def _has_nan(table: pa.Table) -> bool:
    return any(pa.types.is_floating(c.type) and pc.any(pc.is_nan(c)).as_py() for c in table.columns)


def assert_same(fast: Any, pure: Any) -> None:
    if not isinstance(pure, pa.Table):
        assert fast == pure
        return
    assert isinstance(fast, pa.Table), fast
    assert fast.schema.equals(pure.schema, check_metadata=True)
    for name in pure.column_names:
        a, b = fast.column(name), pure.column(name)
        if pa.types.is_timestamp(b.type):  # as numbers: Python's datetime has a narrower range
            a, b = a.cast(pa.int64()), b.cast(pa.int64())
        assert a.null_count == b.null_count, name
        assert _bits(a.to_pylist()) == _bits(b.to_pylist()), name
    if not _has_nan(pure):  # Arrow's equality has NaN != NaN
        assert fast.equals(pure)


def both(columns: Sequence[str], takens: Sequence[Any], stamps: Sequence[Any]) -> tuple[Any, Spy]:
    """build_table with the compiled module and without: the same table, or the same error."""
    spy = Spy()
    with transpose(spy):
        fast = outcome(lambda: build_table(columns, DEP, takens, stamps))
    with transpose(None):
        pure = outcome(lambda: build_table(columns, DEP, takens, stamps))
    assert_same(fast, pure)
    return fast, spy


def cols(width: int) -> list[str]:
    return [f"f{j}" for j in range(width)]


# --- build_table: compiled and pure Python agree --------------------------------------------


@pytest.mark.parametrize("n", [1, 7, 10_000])
def test_all_float_rows_go_through_the_buffers(n: int) -> None:
    """Exact-float columns and single-row stamps are built from C buffers, as Python builds them."""
    rows = [tuple(i * 6 + j + 0.5 for j in range(6)) for i in range(n)]
    table, spy = both(cols(6), rows, stamps_for(n))
    assert all(isinstance(b, bytes) for b in spy.returned["float_columns"][0])
    assert spy.returned["stamp_columns"][0] is not None
    assert table.column("f5").type == pa.float64()
    assert table.column(AML_COLUMNS[0]).to_pylist() == [format_id(PREFIX, i, "") for i in range(n)]
    assert table.column(AML_COLUMNS[-1]).to_pylist() == [NO_REQUEST_ID] * n


def test_nan_inf_and_signed_zero_are_kept_as_values() -> None:
    """NaN stays a NaN (not a null), infinities and -0.0 stay as they are."""
    rows = [(math.nan, math.inf), (-0.0, -math.inf), (1e308, 5e-324)]
    table, spy = both(cols(2), rows, stamps_for(3))
    assert spy.returned["float_columns"][0][0] is not None
    assert table.column("f0").null_count == 0
    assert math.isnan(table.column("f0")[0].as_py())


@pytest.mark.parametrize(
    "values",
    [
        [1.5, 2, 3.25],  # float and int: float64
        [1, 2.5],
        [1.0, None, 2.0],  # float and None: a null
        [None, None],
        [True, 1.5],  # Arrow refuses [True, 1.5]: text
        [1.5, True],  # Arrow accepts [1.5, True]: text anyway
        [True, False],
        ["a", 1.5],
        ["a", "b"],
        [1.5, float("nan"), None],
        [2**70, 1.5],  # no Arrow type: text
        [[1.0], [2.0]],  # nested: JSON text
        [{"a": 1.0}, {"a": 2.0}],
    ],
)
def test_columns_that_are_not_all_floats_are_converted_by_python(values: list[Any]) -> None:
    """A column with anything but floats is left to Python; a float column beside it is not."""
    rows = [(v, float(i)) for i, v in enumerate(values)]
    _, spy = both(cols(2), rows, stamps_for(len(rows)))
    floats = spy.returned["float_columns"][0]
    assert floats[0] is None and floats[1] is not None


def test_float_subclasses_are_converted_by_python() -> None:
    """numpy's float64 (a float subclass) goes through Arrow's inference, like any subclass."""
    numpy = pytest.importorskip("numpy")

    class Float(float):
        pass

    rows = [(numpy.float64(1.5), Float(2.5), 3.5), (numpy.float64(4.5), Float(5.5), 6.5)]
    _, spy = both(cols(3), rows, stamps_for(2))
    assert spy.returned["float_columns"][0][:2] == [None, None]


def test_bytes_are_refused_the_same_way() -> None:
    """Binary values raise the same error with or without the compiled module."""
    result, _ = both(cols(2), [(1.0, b"x"), (2.0, b"y")], stamps_for(2))
    assert result[0] is UnsupportedInputError


def test_no_rows() -> None:
    """An empty batch is a table of null-typed features either way (not float64)."""
    table, _ = both(cols(2), [], [])
    assert table.num_rows == 0 and table.column("f0").type == pa.null()


def test_several_prefixes_user_ids_and_odd_stamps_are_formatted_by_python() -> None:
    """Stamps the C path does not take (ids from before a fork, user ids, values out of range)
    give the table, or the error, Python gives."""
    rows = [(1.0,), (2.0,), (3.0,)]
    cases = [
        [stamp(0), stamp(1, prefix="87654321-1234-4123-8123-"), stamp(2)],
        [stamp(0), stamp(1, user="user"), stamp(2)],
        [stamp(0, user="user")] * 3,
        [stamp(2**48 + 5), stamp(2**64 - 1), stamp(0)],  # 48-bit counters: the low bits
        [stamp(0), stamp(-1), stamp(2)],
        [stamp(0), stamp(2**64), stamp(2)],
        [stamp(0), stamp(1, ts=2**63), stamp(2)],
        [stamp(0), stamp(1, ts=-5), stamp(2)],
        [stamp(0), stamp(True), stamp(2)],  # a bool is not an exact int
        [stamp(0), stamp(1, request=None), stamp(2)],
        [stamp(0), stamp(1, request=5), stamp(2)],
        [stamp(0, request=5)] * 3,
        [stamp(0, request="r1"), stamp(1, request="r2"), stamp(2, request="r1")],
        [stamp(0, request="\ud800")] * 3,  # not encodable
        [stamp(0, prefix="")] * 3,
        [stamp(0, prefix="é-"), stamp(1, prefix="é-"), stamp(2, prefix="é-")],
        [batches.Stamp(*stamp(i)) for i in range(3)],  # the NamedTuple layout is a tuple too
        [stamp(0)[:5] + ("r", "extra")] * 3,
    ]
    for case in cases:
        both(cols(1), rows, case)


def test_equal_request_ids_that_are_distinct_objects() -> None:
    """Request ids equal but not the same object are converted as a list, to the same column."""
    ids = ["".join(["req", "-1"]) for _ in range(3)]
    assert ids[0] is not ids[1]
    table, spy = both(cols(1), [(1.0,), (2.0,), (3.0,)], [stamp(i, request=ids[i]) for i in range(3)])
    assert isinstance(spy.returned["stamp_columns"][0][3], list)
    assert table.column(AML_COLUMNS[-1]).to_pylist() == ["req-1"] * 3


def test_multi_row_calls() -> None:
    """Calls of several rows (ids stepping, or shared when step is 0) match, as do mixed runs."""
    takens = [take([[1.0, 2.0], [3.0, 4.0]], 2), take([[5.0, 6.0]], 2), take([[7.0, 8.0], [9.0, 1.5]], 2)]
    stamps = [stamp(0), stamp(10, step=0), stamp(20, request="r")]
    table, spy = both(cols(2), takens, stamps)
    assert table.num_rows == 5
    assert spy.returned["stamp_columns"][0] is not None  # expanded by C, rows per stamp given
    assert table.column(AML_COLUMNS[0]).to_pylist() == [format_id(PREFIX, c, "") for c in (0, 1, 10, 20, 21)]
    assert table.column(AML_COLUMNS[-1]).to_pylist() == [NO_REQUEST_ID] * 3 + ["r"] * 2
    mixed = [(1.0, 2.0), take([[3.0, 4.0], [5.0, 6.0]], 2), (7.0, 8.0)]
    table, _ = both(cols(2), mixed, [stamp(0), stamp(1), stamp(2)])
    assert table.num_rows == 4


def test_rows_carrying_their_aml_columns() -> None:
    """Rows ending with their own eight $aml_ values: the features still go through C."""
    aml = ("id-1", "2026-01-02T03:04:05", 1440, "ws", "svc", "model", "1", "req")
    rows = tuple((float(i), float(i) / 2, *aml) for i in range(4))
    taken = Taken(Kind.ROWS, rows, len(rows), 2, None, True)
    table, spy = both(cols(2), [taken], [("", 0, 0, "", TS, NO_REQUEST_ID)])
    assert spy.returned["float_columns"][0][0] is not None
    assert table.column(AML_COLUMNS[0]).to_pylist() == ["id-1"] * 4


def test_short_and_list_rows_are_left_to_python() -> None:
    """Rows C refuses (a list, too few values) are converted, or refused, as Python does."""
    as_list = Taken(Kind.ROWS, ([1.0, 2.0],), 1, 2, None, False)
    table, _ = both(cols(2), [as_list, as_list], [stamp(0), stamp(1)])
    assert table.column("f1").to_pylist() == [2.0, 2.0]
    short = Taken(Kind.ROWS, ((1.0,),), 1, 2, None, False)
    result, _ = both(cols(2), [(1.0, 2.0), short], [stamp(0), stamp(1)])
    assert result[0] is IndexError
    short_aml = Taken(Kind.ROWS, ((1.0, 2.0, "id"),), 1, 2, None, True)
    result, _ = both(cols(2), [short_aml], [stamp(0)])
    assert result[0] is IndexError


_values = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.floats(allow_nan=True, allow_infinity=True),  # mostly floats: most columns take the C path
    st.integers(min_value=-(2**70), max_value=2**70),
    st.none(),
    st.booleans(),
    st.text(max_size=3),
)


@settings(max_examples=150, deadline=None)
@given(
    width=st.integers(1, 4),
    data=st.data(),
)
def test_any_rows_and_stamps_agree(width: int, data: st.DataObject) -> None:
    """Random rows (floats, ints, None, bools, text) and stamps give the same table or error."""
    n = data.draw(st.integers(1, 30))
    column = st.one_of(st.just("floats"), st.just("any"))
    kinds = data.draw(st.lists(column, min_size=width, max_size=width))
    rows = [
        tuple(data.draw(st.floats() if kind == "floats" else _values) for kind in kinds) for _ in range(n)
    ]
    prefixes = st.sampled_from([PREFIX, PREFIX, "abcdef01-1234-4123-8123-"])
    stamps = [
        stamp(
            data.draw(st.integers(0, 2**64 + 1)),
            prefix=data.draw(prefixes),
            user=data.draw(st.sampled_from(["", "", "u"])),
            request=data.draw(st.sampled_from([NO_REQUEST_ID, NO_REQUEST_ID, "r-1"])),
        )
        for _ in range(n)
    ]
    both(cols(width), rows, stamps)


# --- the C functions themselves ---------------------------------------------------------------


def test_float_columns_values_and_refusals() -> None:
    """Per column: the float64 bytes, or None when a value is not exactly a float."""
    rows = [(1.5, 1, math.nan, 4.0, "extra"), (2.5, 2.0, -0.0, True)]
    got = T.float_columns(rows, 4)
    assert got[0] == struct.pack("=2d", 1.5, 2.5)
    assert got[1] is None and got[3] is None
    assert got[2] == struct.pack("=2d", math.nan, -0.0)
    assert T.float_columns([], 3) == [b"", b"", b""]
    assert T.float_columns([(1.0,)], 0) == []


def test_float_columns_errors() -> None:
    """A row that is not exactly a tuple, a short row, or a bad width is refused."""
    with pytest.raises(TypeError, match="row 1 is list"):
        T.float_columns([(1.0,), [2.0]], 1)
    with pytest.raises(TypeError, match="not a tuple"):
        T.float_columns([Taken(Kind.ROWS, (), 0, 0, None, False)], 1)
    with pytest.raises(TypeError, match="not a tuple"):
        T.float_columns([(1.0,), [2.0]], 0)  # checked even when no column is asked for
    with pytest.raises(ValueError, match="row 1 has 1 values, fewer than 2"):
        T.float_columns([(1.0, 2.0), (1.0,)], 2)
    with pytest.raises(ValueError, match="width"):
        T.float_columns([(1.0,)], -1)
    with pytest.raises(TypeError):
        T.float_columns(5, 1)
    with pytest.raises(TypeError):
        T.float_columns([(1.0,)], "1")


def test_stamp_columns() -> None:
    """The columns of single-row stamps; the one request id when every stamp holds that object."""
    stamps = [stamp(1, ts=5), stamp(2**48 + 2, ts=-(2**63)), stamp(2**64 - 1, ts=2**63 - 1)]
    prefix, counters, times, requests = T.stamp_columns(stamps)
    assert prefix == PREFIX
    assert struct.unpack("=3Q", counters) == (1, 2, 2**48 - 1)
    assert struct.unpack("=3q", times) == (5, -(2**63), 2**63 - 1)
    assert requests is NO_REQUEST_ID
    assert T.stamp_columns([stamp(0, request="a"), stamp(1, request="b")])[3] == ["a", "b"]
    assert T.stamp_columns([stamp(0, request=None)] * 2)[3] == [None, None]


def test_stamp_columns_expands_calls_of_several_rows() -> None:
    """counts[i] rows for stamps[i]: ids stepping by the stamp's step (0: one id), the call's time
    and request id on each row; the shared request id only if every call has it."""
    stamps = [stamp(5, ts=7), stamp(100, step=0, ts=8), stamp(2**48 - 1, ts=9)]
    prefix, counters, times, requests = T.stamp_columns(stamps, [3, 2, 2])
    assert prefix == PREFIX and requests is NO_REQUEST_ID
    assert struct.unpack("=7Q", counters) == (5, 6, 7, 100, 100, 2**48 - 1, 0)  # 48 bits, wrapped
    assert struct.unpack("=7q", times) == (7, 7, 7, 8, 8, 9, 9)
    mixed = T.stamp_columns([stamp(0), stamp(1, request="r"), stamp(2)], [2, 1, 0])
    assert mixed[3] == [NO_REQUEST_ID, NO_REQUEST_ID, "r"]
    assert T.stamp_columns([stamp(0)], [0]) is None  # no rows: Python makes the empty columns
    assert T.stamp_columns([stamp(0, step=-1)], [2]) is None
    with pytest.raises(ValueError, match="one count per stamp"):
        T.stamp_columns([stamp(0)], [1, 2])
    with pytest.raises(ValueError, match="not negative"):
        T.stamp_columns([stamp(0)], [-1])


@pytest.mark.parametrize(
    "stamps",
    [
        [],
        [stamp(0), stamp(1, prefix="other-")],
        [stamp(0), stamp(1, user="u")],
        [stamp(0), stamp(1, user=None)],
        [stamp(-1)],
        [stamp(2**64)],
        [stamp(0, ts=2**63)],
        [stamp(0, ts=-(2**63) - 1)],
        [stamp(0), (PREFIX, 1.0, 1, "", TS, "r")],
        [stamp(0), (PREFIX, 1, 1, "", float(TS), "r")],
        [stamp(0), stamp(1)[:5]],
        [stamp(0), [*stamp(1)]],
        [(b"prefix", 0, 1, "", TS, "r")],
    ],
)
def test_stamp_columns_leaves_the_rest_to_python(stamps: list[Any]) -> None:
    """Anything but one str prefix, no user id and in-range exact ints: None."""
    assert T.stamp_columns(stamps) is None


def test_format_ids() -> None:
    """Arrow string buffers of prefix + 12 hex digits of each counter's low 48 bits."""
    counters = struct.pack("=3Q", 0, 0xABC, 2**64 - 1)
    offsets, data = T.format_ids("é-", counters)
    width = len("é-".encode()) + 12
    assert struct.unpack("=4i", offsets) == (0, width, 2 * width, 3 * width)
    ids = pa.StringArray.from_buffers(3, pa.py_buffer(offsets), pa.py_buffer(data))
    ids.validate(full=True)
    assert ids.to_pylist() == [format_id("é-", c, "") for c in (0, 0xABC, 2**64 - 1)]
    assert T.format_ids("p", b"") == (struct.pack("=i", 0), b"")
    with pytest.raises(ValueError, match="uint64"):
        T.format_ids("p", b"1234567")
    with pytest.raises(UnicodeEncodeError):
        T.format_ids("\ud800", counters)
    with pytest.raises(TypeError):
        T.format_ids(b"p", counters)


def test_all_tuples() -> None:
    """Exactly tuples, so a queued Taken (a tuple subclass) is not taken for a bare row."""
    assert T.all_tuples([]) and T.all_tuples([(1.0,), ()]) and T.all_tuples(((1,),))
    assert not T.all_tuples([(1.0,), take([[1.0]], 1)])
    assert not T.all_tuples([[1.0]])
    with pytest.raises(TypeError):
        T.all_tuples(5)


def test_no_references_leak() -> None:
    """Objects handed back, or dropped on the way to None, are released with the results."""
    request, prefix = "".join(["leak-", "check"]), "".join(["pre", "fix-"])
    row = (1.0, 2.0, "x")
    before = sys.getrefcount(request), sys.getrefcount(prefix), sys.getrefcount(row)
    for _ in range(100):
        T.stamp_columns([stamp(0, prefix=prefix, request=request)] * 3)
        T.stamp_columns([stamp(0, prefix=prefix, request=request), stamp(1, prefix=prefix, user="u")])
        T.stamp_columns([stamp(0, prefix=prefix, request=request), stamp(1, prefix=prefix, request="r")])
        T.stamp_columns([stamp(0, prefix=prefix, request=request), stamp(1, prefix=prefix, request="r")], [3, 2])
        T.stamp_columns([stamp(0, prefix=prefix, request=request)] * 2, [4, 1])
        T.float_columns([row, row], 3)
        with pytest.raises(ValueError):
            T.float_columns([row, row[:1]], 3)
        T.format_ids(prefix, b"\0" * 16)
    assert (sys.getrefcount(request), sys.getrefcount(prefix), sys.getrefcount(row)) == before


def test_pure_python_switch(monkeypatch: pytest.MonkeyPatch) -> None:
    """MDC_PURE_PYTHON=1 turns the module off; otherwise batches uses it when built."""
    monkeypatch.setenv("MDC_PURE_PYTHON", "1")
    assert compiled.load("_transpose") is None
    monkeypatch.delenv("MDC_PURE_PYTHON")
    assert compiled.load("_transpose") is T


def test_stamp_layout_is_the_one_the_c_code_reads() -> None:
    """_transpose.c reads stamps as six fields in Stamp's order."""
    assert batches.Stamp._fields == ("prefix", "start", "step", "user", "ts_us", "request_id")


# --- the CSV format's C loops: ISO text of timestamps, and the NaN check ------------------------

LOW_US, HIGH_US = -30_610_224_000 * 10**6, 253_402_300_800 * 10**6  # 1000-01-01, 10000-01-01


def csv_text(table: pa.Table, compiled_loops: bool, monkeypatch: pytest.MonkeyPatch) -> bytes:
    from mdc_formats import csv as csv_format

    monkeypatch.setattr(csv_format, "_transpose", T if compiled_loops else None)
    encoded = csv_format.CsvFormat().encode(table)
    return encoded.header + encoded.body


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(min_value=LOW_US, max_value=HIGH_US - 1), min_size=1, max_size=50))
def test_iso_text_is_the_text_arrow_gives(values: list[int]) -> None:
    """The C loop against the Python path's kernels, on any microsecond in years 1000-9999."""
    from mdc_formats import csv as csv_format

    column = pa.chunked_array([pa.array(values, pa.timestamp("us", tz="UTC"))])
    fast = csv_format._compiled_iso(column)
    saved, csv_format._transpose = csv_format._transpose, None
    try:
        pure = csv_format._iso(column)
    finally:
        csv_format._transpose = saved
    assert fast is not None and fast.to_pylist() == pure.to_pylist()


def test_iso_text_edges_and_what_it_leaves_to_arrow() -> None:
    from mdc_formats import csv as csv_format

    edges = [0, -1, LOW_US, HIGH_US - 1, 951_782_400_000_000, 1_700_000_000_123_456, -86_400_000_001]
    offsets, data = T.iso_text(struct.pack(f"={len(edges)}q", *edges), 0, len(edges))
    text = pa.StringArray.from_buffers(len(edges), pa.py_buffer(offsets), pa.py_buffer(data)).to_pylist()
    assert text == ["1970-01-01T00:00:00.000000", "1969-12-31T23:59:59.999999", "1000-01-01T00:00:00.000000",
                    "9999-12-31T23:59:59.999999", "2000-02-29T00:00:00.000000", "2023-11-14T22:13:20.123456",
                    "1969-12-30T23:59:59.999999"]
    assert T.iso_text(struct.pack("=2q", 0, HIGH_US), 0, 2) is None  # year 10000: Arrow's path
    assert T.iso_text(struct.pack("=q", LOW_US - 1), 0, 1) is None
    assert T.iso_text(struct.pack("=3q", 5, 6, 7), 1, 2)[1].endswith(b"00.000006" + b"1970-01-01T00:00:00.000007")
    with pytest.raises(ValueError):
        T.iso_text(struct.pack("=2q", 5, 6), 1, 2)  # past the end
    sliced = pa.chunked_array([pa.array([10, 20, 30], pa.timestamp("us")).slice(1, 2)])
    assert csv_format._compiled_iso(sliced).to_pylist() == ["1970-01-01T00:00:00.000020", "1970-01-01T00:00:00.000030"]
    for other in (pa.array([1], pa.timestamp("ms")), pa.array([1], pa.timestamp("us", tz="Europe/Paris")),
                  pa.array([1, None], pa.timestamp("us"))):
        assert csv_format._compiled_iso(pa.chunked_array([other])) is None  # Arrow's kernels, as before


def test_has_nan() -> None:
    values = struct.pack("=4d", 1.0, math.nan, -0.0, math.inf)
    assert T.has_nan(values, 0, 4) and T.has_nan(values, 1, 1)
    assert not T.has_nan(values, 2, 2) and not T.has_nan(values, 0, 0)
    with pytest.raises(ValueError):
        T.has_nan(values, 3, 2)


@pytest.mark.parametrize("with_nan", [False, True])
def test_csv_text_is_the_same_with_and_without_the_c_loops(with_nan: bool, monkeypatch) -> None:
    """Whole CSV bodies, byte for byte: floats with and without NaN (and nulls), sliced chunks,
    the scoring timestamp, a feature timestamp in another zone, and a batch spanning two days."""
    times = [TS + i * 7_000_001 for i in range(20)] + [TS + 86_400_000_000]
    n = len(times)
    floats = pa.chunked_array([pa.array([0.5 * i for i in range(n + 3)]).slice(3, n)])
    if with_nan:
        floats = pa.chunked_array([pa.array([math.nan, None] + [1.5] * (n - 2))])
    table = pa.table({
        "f": floats,
        "g": pa.array([float(i) for i in range(n)], pa.float32()),
        "local": pa.array(times, pa.timestamp("us", tz="Europe/Paris")),
        AML_COLUMNS[1]: pa.array(times, pa.timestamp("us", tz="UTC")),
    })
    assert csv_text(table, True, monkeypatch) == csv_text(table, False, monkeypatch)


def test_many_chunk_columns_reach_write_csv_joined(monkeypatch) -> None:
    """A batch of 1-row Arrow tables has a chunk per call; write_csv takes ~80 µs a chunk, so the
    CSV format joins them first (the NaN check no longer joins them as a side effect)."""
    from mdc_formats import csv as csv_format

    chunks = [pa.array([float(i)]) for i in range(100)]
    times = pa.array([TS] * 100, pa.timestamp("us", tz="UTC"))
    table = pa.table({"f": pa.chunked_array(chunks), AML_COLUMNS[1]: times})
    assert csv_format._printable(table).column("f").num_chunks == 1
    assert csv_text(table, True, monkeypatch) == csv_text(table, False, monkeypatch)
