"""Rows collected as lists come back from the CSV file exactly, read by independent readers.

The readers are the ``csv`` module and ``pyarrow.csv`` (every column read as text), never mdc's
own code. The written forms the spec promises, and that these tests hold every value to:

* a float is written so that ``float(text) == value`` (``inf`` and ``-inf`` included);
* an int is written as its digits, or (in a column that also holds floats) as a float equal to it;
* a string is written exactly, quoted, so an empty string is ``""``;
* a bool is ``true`` or ``false``;
* None and NaN are empty, unquoted fields: null to a reader that honours quotes (``pyarrow.csv``
  with ``quoted_strings_can_be_null=False``), ``""`` to the ``csv`` module.
"""

from __future__ import annotations

import csv
import math
import re
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from mdc_core import AML_COLUMNS, ModelDataCollector
from mdc_core.shapes import default_names

NOW_NS = 1_764_032_523_123_456_000  # 2025-11-25T01:02:03.123456 UTC
TODAY = ("2025", "11", "25")
MODEL = "roundtrip"



# -- strategies ------------------------------------------------------------------------------

TRICKY_TEXT = st.sampled_from(
    [
        "",
        " ",
        '"',
        '""',
        ",",
        "a,b",
        "\n",
        "\r\n",
        "\r",
        "line1\nline2",
        'say "hi"',
        "\t",
        "\x00",
        "nan",
        "NaN",
        "None",
        "null",
        "NULL",
        "N/A",
        "true",
        "false",
        "1e5",
        "-0",
        "inf",
        "\ufeffbom",
        "naïve",
        "日本語",
        "😀",
        "\u2028",
        "$aml_request_id",
    ]
)
TEXT = st.one_of(TRICKY_TEXT, st.text(max_size=20), st.text(alphabet=st.sampled_from('ab,"\r\n é😀'), max_size=12))
EXTREME_FLOATS = st.sampled_from(
    [
        5e-324,
        -5e-324,
        1.7976931348623157e308,
        -1.7976931348623157e308,
        2.2250738585072014e-308,
        0.1,
        1 / 3,
        -0.0,
        0.0,
        1e16,
        1e-7,
        123456789.12345678,
        9007199254740993.0,
        math.inf,
        -math.inf,
        math.nan,
    ]
)
FLOATS = st.one_of(EXTREME_FLOATS, st.floats(allow_nan=True, allow_infinity=True))
INTS = st.one_of(
    st.sampled_from([0, -1, 2**31, 2**53, 2**53 + 1, 2**63 - 1, -(2**63), 2**63, 2**64, -(2**70)]),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.integers(),
)
NUMPY_SCALARS = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True).map(np.float64),
    st.integers(min_value=-(2**63), max_value=2**63 - 1).map(np.int64),
    st.booleans().map(np.bool_),
)
KINDS = {"float": FLOATS, "int": INTS, "text": TEXT, "bool": st.booleans(), "numpy": NUMPY_SCALARS}
ANY_VALUE = st.one_of(*KINDS.values(), st.none())


@st.composite
def batches(draw: st.DrawFn) -> list[list[list[Any]]]:
    """Rows of 1-4 columns, each column of one kind (with some None) or of mixed kinds, cut
    into 1-3 ``collect()`` calls of one or more rows each."""
    width = draw(st.integers(1, 4))
    cells = []
    for _ in range(width):
        kind = draw(st.sampled_from([*KINDS, "mixed"]))
        cells.append(ANY_VALUE if kind == "mixed" else st.one_of(KINDS[kind], st.none()))
    rows = draw(st.lists(st.tuples(*cells).map(list), min_size=1, max_size=8))
    cuts = sorted(draw(st.sets(st.integers(1, len(rows) - 1), max_size=2))) if len(rows) > 1 else []
    bounds = [0, *cuts, len(rows)]
    return [rows[a:b] for a, b in zip(bounds, bounds[1:], strict=False)]


# -- checking --------------------------------------------------------------------------------

_INT_TEXT = re.compile(r"-?[0-9]+")


def _plain(value: Any) -> Any:
    """A numpy scalar as the Python value it holds (it is written as that value)."""
    return value.item() if isinstance(value, np.generic) else value


def _absent(value: Any) -> bool:
    value = _plain(value)
    return value is None or (isinstance(value, float) and math.isnan(value))


def assert_written_as(text: str, value: Any) -> None:
    """``text`` (as the ``csv`` module read it) is the spec's form of ``value``."""
    value = _plain(value)
    if _absent(value):
        assert text == "", f"{value!r} written as {text!r}"
    elif isinstance(value, bool):
        assert text == ("true" if value else "false"), f"{value!r} written as {text!r}"
    elif isinstance(value, int):
        if _INT_TEXT.fullmatch(text):
            assert int(text) == value, f"{value!r} written as {text!r}"
        else:  # an int in a column of floats: exact, since only ints up to 2**53 become floats
            assert float(text) == value, f"{value!r} written as {text!r}"
    elif isinstance(value, float):
        assert float(text) == value, f"{value!r} written as {text!r}"
    else:
        assert text == value, f"{value!r} written as {text!r}"


def assert_null_semantics(arrow_text: str | None, value: Any) -> None:
    """None and NaN are unquoted empty fields (null); an empty string is a quoted ``""``."""
    if _absent(value):
        assert arrow_text is None, f"{value!r} read by pyarrow as {arrow_text!r}"
    else:
        assert arrow_text is not None, f"{value!r} read by pyarrow as null"
        if isinstance(value, str):
            assert arrow_text == value, f"{value!r} read by pyarrow as {arrow_text!r}"


def csv_file(root: str) -> Path:
    return Path(root, "default", "default", "default", "default", MODEL, "default", "inputs", *TODAY, "data.csv")


def read_with_csv_module(path: Path) -> tuple[list[str], list[list[str]]]:
    with open(path, newline="", encoding="utf-8") as f:
        header, *rows = list(csv.reader(f))
    return header, rows


def read_with_pyarrow(path: Path, header: Sequence[str]) -> list[list[str | None]]:
    table = pacsv.read_csv(
        path,
        parse_options=pacsv.ParseOptions(newlines_in_values=True),
        convert_options=pacsv.ConvertOptions(
            column_types={name: pa.string() for name in header},
            null_values=[""],
            strings_can_be_null=True,
            quoted_strings_can_be_null=False,
        ),
    )
    assert table.column_names == list(header)
    columns = [table.column(i).to_pylist() for i in range(table.num_columns)]
    return [list(row) for row in zip(*columns, strict=True)]


def collect_and_read(root: str, calls: Sequence[Any]) -> tuple[list[str], list[list[str]], list[list[str | None]]]:
    c = ModelDataCollector(MODEL, "inputs", storage=root, clock=lambda: NOW_NS)
    for call in calls:
        c.collect(call)
    assert bool(c.flush(timeout=30))
    n = sum(len(call) for call in calls)
    stats = c.stats()
    assert (stats["collected"], stats["written"], stats["pending"], stats["dropped"]) == (n, n, 0, {})
    path = csv_file(root)
    raw = path.read_bytes()
    raw.decode("utf-8")  # strict: the file is UTF-8
    header, rows = read_with_csv_module(path)
    return header, rows, read_with_pyarrow(path, header)


# -- tests -----------------------------------------------------------------------------------


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(calls=batches())
@example(calls=[[[math.nan, None, "", True, 1.5, 'a,"b"\r\n']], [[math.inf, "x", "\n", None, 2**60 + 1, ""]]])
@example(calls=[[[5e-324, None], [False, 1.7976931348623157e308]]])
def test_generated_rows_round_trip(calls: list[list[list[Any]]]):
    """Every generated value reads back, from both readers, in the form the module docstring states."""
    expected = [row for call in calls for row in call]
    width = len(expected[0])
    with tempfile.TemporaryDirectory() as root:
        header, rows, arrow_rows = collect_and_read(root, calls)
    assert header == [*default_names(width), *AML_COLUMNS]
    assert len(rows) == len(arrow_rows) == len(expected)
    for got, arrow_got, want in zip(rows, arrow_rows, expected, strict=True):
        assert len(got) == width + len(AML_COLUMNS)
        for text, arrow_text, value in zip(got[:width], arrow_got[:width], want, strict=True):
            assert_written_as(text, value)
            assert_null_semantics(arrow_text, value)
            if arrow_text is not None:
                assert arrow_text == text
        assert all(v not in (None, "") for v in arrow_got[width:])


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    values=st.lists(st.floats(allow_nan=True, allow_infinity=True), min_size=1, max_size=6), columns=st.integers(1, 3)
)
@example(values=[math.nan, -math.inf, 5e-324, -0.0], columns=2)
def test_generated_numpy_floats_round_trip(values: list[float], columns: int):
    """A float64 numpy array's values read back with ``float(text) == value`` (NaN as empty)."""
    array = np.array([[v] * columns for v in values], dtype=np.float64)
    with tempfile.TemporaryDirectory() as root:
        _, rows, arrow_rows = collect_and_read(root, [array])
    for got, arrow_got, value in zip(rows, arrow_rows, values, strict=True):
        for j in range(columns):
            assert_written_as(got[j], value)
            assert_null_semantics(arrow_got[j], value)


def test_extreme_floats_round_trip_in_one_float_column(tmp_path: Path):
    """The smallest subnormal, the largest double, signed zeros and infinities round-trip exactly."""
    values = [
        5e-324,
        -5e-324,
        1.7976931348623157e308,
        -1.7976931348623157e308,
        2.2250738585072014e-308,
        -0.0,
        0.1,
        1 / 3,
        1e-7,
        1e16,
        9007199254740993.0,
        math.inf,
        -math.inf,
    ]
    _, rows, _ = collect_and_read(str(tmp_path), [[[v] for v in values]])
    for row, value in zip(rows, values, strict=True):
        assert float(row[0]) == value
        assert math.copysign(1.0, float(row[0])) == math.copysign(1.0, value)


def test_null_nan_and_empty_string_are_written_as_documented(tmp_path: Path):
    """None and NaN become empty unquoted fields and an empty string a quoted ``""``, on ``\\n`` lines."""
    collect_and_read(str(tmp_path), [[[None, "", math.nan, "a\r\nb"], [1, "x", 1.5, ""]]])
    raw = csv_file(str(tmp_path)).read_bytes()
    assert raw.startswith(b"feature_0,feature_1,feature_2,feature_3,$aml_dc_correlation_id,")
    assert b'\n,"",,"a\r\nb",' in raw
    assert b'\n1,"x",1.5,"",' in raw
    assert raw.endswith(b"\n") and not raw.endswith(b"\r\n")
    assert raw.count(b"\r") == 1  # only inside the quoted value


def test_big_ints_and_floats_across_calls_keep_every_digit(tmp_path: Path):
    """An int beyond 2**53 and a float in one column, from separate calls, are both written exactly."""
    calls = [[[2**60 + 1]], [[0.5]], [[2**64 + 3]], [[True]], [[-(2**63)]]]
    _, rows, _ = collect_and_read(str(tmp_path), calls)
    assert [row[0] for row in rows] == [str(2**60 + 1), "0.5", str(2**64 + 3), "true", str(-(2**63))]


@pytest.mark.parametrize(
    ("calls", "texts"),
    [
        pytest.param([[[1.5], [True]]], ["1.5", "true"], id="bool-after-float"),
        pytest.param([[[1], [np.True_]]], ["1", "true"], id="numpy-bool-after-int"),
        pytest.param([[[np.float64(0.1)], ["x"]]], ["0.1", "x"], id="numpy-float-among-text"),
        pytest.param([[[np.True_], [np.int64(7)], ["x"]]], ["true", "7", "x"], id="numpy-scalars-among-text"),
        pytest.param([[[1.5]], [[True]]], ["1.5", "true"], id="bool-and-float-in-separate-calls"),
    ],
)
def test_mixed_columns_write_each_value_in_its_own_form(tmp_path: Path, calls: Any, texts: list[str]):
    """A column mixing kinds is written value by value, never turning a bool into 1 or a numpy
    scalar into its repr."""
    _, rows, _ = collect_and_read(str(tmp_path), calls)
    assert [row[0] for row in rows] == texts


@pytest.mark.parametrize("unit", ["s", "ms", "us", "ns"])
@pytest.mark.parametrize("tz", [None, "UTC", "Europe/Paris"])
@given(values=st.lists(st.one_of(st.none(), st.integers(-(10**15), 10**15)), min_size=1, max_size=60))
@settings(max_examples=25, deadline=None)
def test_csv_timestamp_text_equals_strftime_of_every_value(unit: str, tz: str | None, values: list) -> None:
    """The CSV format formats each distinct second once and appends the microseconds; the text
    must be what Arrow's strftime gives value by value, before 1970 and across zones too."""
    import pyarrow.compute as pc

    from mdc_formats.csv import ISO_SECONDS, _iso

    column = pa.chunked_array([pa.array(values, pa.timestamp(unit, tz=tz))])
    assert _iso(column).to_pylist() == pc.strftime(column, format=ISO_SECONDS).to_pylist()
