"""What ``collect()`` accepts lands in the spec's CSV exactly as collected; what it refuses raises.

Every file is read back by two independent readers (the ``csv`` module and DuckDB), never by
mdc's own code. Collectors get a fixed ``clock`` so the partition folders are known in advance.
"""

from __future__ import annotations

import csv
import math
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from mdc_core import (
    AML_COLUMNS,
    NO_REQUEST_ID,
    ModelDataCollector,
    RowWidthError,
    UnsupportedInputError,
    request_context,
)
from mdc_core.shapes import default_names

NOW_NS = 1_764_032_523_123_456_000
"""2025-11-25T01:02:03.123456 UTC, as epoch nanoseconds (what ``clock=`` returns)."""
NOW_ISO = "2025-11-25T01:02:03.123456"
TODAY = "2025/11/25"
DAY_NS = 86_400 * 10**9
MODEL = "model"
DEPLOYMENT = ["1440", "default/default/default", "default", MODEL, "default"]
"""``$aml_dc_boundary`` .. ``$aml_model_version`` of a collector left at its defaults."""



# -- helpers ---------------------------------------------------------------------------------


def clock_at(ns: int) -> Callable[[], int]:
    return lambda: ns


def collector(
    root: Path, designation: str = "inputs", feature_names: Sequence[str] | None = None, now_ns: int = NOW_NS
) -> ModelDataCollector:
    return ModelDataCollector(MODEL, designation, feature_names=feature_names, storage=root, clock=clock_at(now_ns))


def partition_file(root: Path, designation: str, day: str = TODAY) -> Path:
    return root.joinpath(
        "default", "default", "default", "default", MODEL, "default", designation, *day.split("/"), "data.csv"
    )


def read_back(path: Path) -> tuple[list[str], list[list[str]]]:
    """Header and rows as the ``csv`` module reads them, after checking DuckDB reads the same
    (DuckDB reads an empty field as NULL, the ``csv`` module as ``""``)."""
    with open(path, newline="", encoding="utf-8") as f:
        header, *rows = list(csv.reader(f))
    con = duckdb.connect()
    try:
        result = con.execute(
            "SELECT * FROM read_csv(?, header=true, all_varchar=true, delim=',', quote='\"', escape='\"')",
            [str(path)],
        )
        duck_header = [d[0] for d in result.description]
        duck_rows = [["" if v is None else v for v in row] for row in result.fetchall()]
    finally:
        con.close()
    assert duck_header == header
    assert duck_rows == rows
    return header, rows


def _plain(value: Any) -> Any:
    """numpy scalars as the Python values they hold."""
    return value.item() if isinstance(value, np.generic) else value


def assert_cell(text: str, value: Any) -> None:
    """``text`` is how the spec writes ``value``: floats round-trip, strings are exact, None and
    NaN are empty fields, booleans are ``true``/``false``."""
    value = _plain(value)
    if value is None or (isinstance(value, float) and math.isnan(value)):
        assert text == "", f"{value!r} written as {text!r}"
    elif isinstance(value, bool):
        assert text == ("true" if value else "false")
    elif isinstance(value, float):
        assert float(text) == value, f"{value!r} written as {text!r}"
    elif isinstance(value, int):
        assert int(text) == value, f"{value!r} written as {text!r}"
    else:
        assert text == value


def assert_rows(rows: list[list[str]], expected: Sequence[Sequence[Any]]) -> None:
    assert len(rows) == len(expected)
    for got, want in zip(rows, expected, strict=True):
        width = len(want)
        assert len(got) == width + len(AML_COLUMNS)
        for text, value in zip(got[:width], want, strict=True):
            assert_cell(text, value)


def assert_all_written(c: ModelDataCollector, n: int) -> None:
    stats = c.stats()
    assert (stats["collected"], stats["written"], stats["pending"], stats["dropped"]) == (n, n, 0, {})


def ids_of(correlation: dict[str, Any]) -> list[str]:
    ids = correlation[AML_COLUMNS[0]]
    return [ids] if isinstance(ids, str) else list(ids)


# -- every accepted type ---------------------------------------------------------------------


class Case(NamedTuple):
    make: Callable[[], Any]
    names: Sequence[str]
    rows: Sequence[Sequence[Any]]


def _polars(columns: dict[str, list[Any]]) -> Any:
    pl = pytest.importorskip("polars")
    return pl.DataFrame(columns)


ACCEPTED = {
    "list-one-row": Case(lambda: [3, 2.5, "a b", True, None], default_names(5), [(3, 2.5, "a b", True, None)]),
    "list-of-rows": Case(
        lambda: [[1, 0.1, "x"], [2, -1e-300, 'y,"z"'], [3, None, ""]],
        default_names(3),
        [(1, 0.1, "x"), (2, -1e-300, 'y,"z"'), (3, None, "")],
    ),
    "list-of-tuples": Case(lambda: [(1, "a"), (2, "b\nc")], default_names(2), [(1, "a"), (2, "b\nc")]),
    "tuple-one-row": Case(lambda: (1, 2.5, "a"), default_names(3), [(1, 2.5, "a")]),
    "list-of-numpy-rows": Case(
        lambda: [np.array([1.5, 2.5]), np.array([3.5, 4.5])], default_names(2), [(1.5, 2.5), (3.5, 4.5)]
    ),
    "dict-one-row": Case(
        lambda: {"age": 42, "height": 1.75, "name": "Ann"}, ("age", "height", "name"), [(42, 1.75, "Ann")]
    ),
    "dict-of-columns": Case(
        lambda: {"age": [42, 7], "height": [1.75, float("nan")], "name": ["Ann", None]},
        ("age", "height", "name"),
        [(42, 1.75, "Ann"), (7, None, None)],
    ),
    "dict-of-numpy-columns": Case(
        lambda: {"a": np.array([1, 2]), "b": np.array([0.5, 0.25])}, ("a", "b"), [(1, 0.5), (2, 0.25)]
    ),
    "numpy-1d": Case(lambda: np.array([1.5, -2.0, 3e10]), default_names(3), [(1.5, -2.0, 3e10)]),
    "numpy-2d-int": Case(
        lambda: np.arange(6, dtype=np.int64).reshape(3, 2), default_names(2), [(0, 1), (2, 3), (4, 5)]
    ),
    "numpy-2d-str": Case(
        lambda: np.array([["a", "b"], ["c,d", 'e"f']]), default_names(2), [("a", "b"), ("c,d", 'e"f')]
    ),
    "numpy-2d-bool": Case(lambda: np.array([[True, False]]), default_names(2), [(True, False)]),
    "numpy-2d-special-floats": Case(
        lambda: np.array([[np.nan, np.inf], [-np.inf, 5e-324]]),
        default_names(2),
        [(None, math.inf), (-math.inf, 5e-324)],
    ),
    "pandas-dataframe": Case(
        lambda: pd.DataFrame(
            {
                "i": [1, 2],
                "f": [0.5, np.nan],
                "s": ["x", None],
                "b": [True, False],
                "n": pd.array([None, 3], dtype="Int64"),
            }
        ),
        ("i", "f", "s", "b", "n"),
        [(1, 0.5, "x", True, None), (2, None, None, False, 3)],
    ),
    "pandas-series": Case(lambda: pd.Series({"a": 1.5, "b": 2.5}), ("a", "b"), [(1.5, 2.5)]),
    "pyarrow-table": Case(
        lambda: pa.table({"i": [1, None], "s": ["x", "y\r\nz"]}), ("i", "s"), [(1, "x"), (None, "y\r\nz")]
    ),
    "pyarrow-recordbatch": Case(
        lambda: pa.record_batch({"f": [1e308, -0.0], "s": ["é", "😀"]}), ("f", "s"), [(1e308, "é"), (-0.0, "😀")]
    ),
    "polars-dataframe": Case(
        lambda: _polars({"i": [1, 2], "s": ["x", None], "f": [0.5, None]}),
        ("i", "s", "f"),
        [(1, "x", 0.5), (2, None, None)],
    ),
}


@pytest.mark.parametrize("case", ACCEPTED.values(), ids=ACCEPTED.keys())
def test_accepted_input_is_written_as_collected(tmp_path: Path, case: Case):
    """Each accepted input type is written under the partition of its scoring day, with its
    feature names and Azure ML's eight columns as header and every value as collected."""
    data = case.make()
    c = collector(tmp_path)
    correlation = c.collect(data)
    assert bool(c.flush(timeout=30))

    header, rows = read_back(partition_file(tmp_path, "inputs"))
    assert header == [*case.names, *AML_COLUMNS]
    assert_rows(rows, case.rows)
    assert_all_written(c, len(case.rows))

    assert set(correlation) == set(AML_COLUMNS)
    ids = ids_of(correlation)
    assert len(set(ids)) == len(case.rows)
    width = len(case.names)
    assert [row[width] for row in rows] == ids
    for row in rows:
        assert row[width + 1 :] == [NOW_ISO, *DEPLOYMENT, NO_REQUEST_ID]


def test_calls_of_several_types_append_to_one_file(tmp_path: Path):
    """Rows of different input types collected by one collector share one file and one header."""
    c = collector(tmp_path, feature_names=["a", "b"])
    c.collect([1, "x"])
    c.collect({"a": 2, "b": "y"})
    c.collect(pd.DataFrame({"a": [3], "b": ["z"]}))
    c.collect(pa.table({"a": [4], "b": ["w"]}))
    c.collect(np.array([[5, 6]]))
    assert bool(c.flush(timeout=30))
    header, rows = read_back(partition_file(tmp_path, "inputs"))
    assert header == ["a", "b", *AML_COLUMNS]
    assert_rows(rows, [(1, "x"), (2, "y"), (3, "z"), (4, "w"), (5, "6")])
    assert_all_written(c, 5)


# -- names -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda: pd.DataFrame({"x": [1, 2], "y": ["p", "q"]}), id="pandas"),
        pytest.param(lambda: pa.table({"x": [1, 2], "y": ["p", "q"]}), id="pyarrow"),
        pytest.param(lambda: _polars({"x": [1, 2], "y": ["p", "q"]}), id="polars"),
    ],
)
def test_feature_names_win_over_column_names(tmp_path: Path, make: Callable[[], Any]):
    """``feature_names`` renames a frame's differently named columns by position."""
    c = collector(tmp_path, feature_names=["a", "b"])
    c.collect(make())
    assert bool(c.flush(timeout=30))
    header, rows = read_back(partition_file(tmp_path, "inputs"))
    assert header == ["a", "b", *AML_COLUMNS]
    assert_rows(rows, [(1, "p"), (2, "q")])


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda: {"c": 3, "a": 1, "b": "two"}, id="dict-row"),
        pytest.param(lambda: {"c": [3], "a": [1], "b": ["two"]}, id="dict-columns"),
        pytest.param(lambda: pd.Series({"c": 3, "a": 1, "b": "two"}), id="pandas-series"),
        pytest.param(lambda: pd.DataFrame({"c": [3], "a": [1], "b": ["two"]}), id="pandas"),
        pytest.param(lambda: pa.table({"c": [3], "a": [1], "b": ["two"]}), id="pyarrow"),
        pytest.param(lambda: _polars({"c": [3], "a": [1], "b": ["two"]}), id="polars"),
    ],
)
def test_named_data_in_another_order_is_reordered_by_name(tmp_path: Path, make: Callable[[], Any]):
    """Data whose names are the collector's feature names in another order is reordered by name."""
    c = collector(tmp_path, feature_names=["a", "b", "c"])
    c.collect(make())
    assert bool(c.flush(timeout=30))
    header, rows = read_back(partition_file(tmp_path, "inputs"))
    assert header == ["a", "b", "c", *AML_COLUMNS]
    assert_rows(rows, [(1, "two", 3)])


def test_names_fixed_by_the_first_dict_reorder_later_dicts(tmp_path: Path):
    """Without ``feature_names`` the first dict's keys name the columns; later dicts are matched by name."""
    c = collector(tmp_path)
    c.collect({"a": 1, "b": 2})
    c.collect({"b": 4, "a": 3})
    c.collect({"b": [6, 8], "a": [5, 7]})
    assert bool(c.flush(timeout=30))
    header, rows = read_back(partition_file(tmp_path, "inputs"))
    assert header == ["a", "b", *AML_COLUMNS]
    assert_rows(rows, [(1, 2), (3, 4), (5, 6), (7, 8)])


@pytest.mark.parametrize(
    "data",
    [
        pytest.param([10, 20, 30], id="list"),
        pytest.param([[10, 20, 30]], id="list-of-rows"),
        pytest.param(np.array([[10, 20, 30]]), id="numpy"),
    ],
)
def test_unnamed_data_gets_the_documented_default_names(tmp_path: Path, data: Any):
    """Unnamed data without ``feature_names`` gets the columns ``feature_0``, ``feature_1``, ..."""
    c = collector(tmp_path)
    c.collect(data)
    assert bool(c.flush(timeout=30))
    header, rows = read_back(partition_file(tmp_path, "inputs"))
    assert header == ["feature_0", "feature_1", "feature_2", *AML_COLUMNS]
    assert list(default_names(3)) == header[:3]
    assert_rows(rows, [(10, 20, 30)])


# -- bad inputs ------------------------------------------------------------------------------


def _polars_binary() -> Any:
    pl = pytest.importorskip("polars")
    return pl.DataFrame({"image": [b"\x89PNG"]})


UNSUPPORTED = {
    "bytes": lambda: b"1,2,3",
    "str": lambda: "1,2,3",
    "bytearray": lambda: bytearray(b"\x00\x01"),
    "memoryview": lambda: memoryview(b"\x00\x01"),
    "numpy-3d-image": lambda: np.zeros((32, 32, 3), dtype=np.uint8),
    "numpy-bytes-dtype": lambda: np.array([b"ab", b"cd"]),
    "numpy-0d": lambda: np.array(1.5),
    "object": object,
    "none": lambda: None,
    "int": lambda: 42,
    "set": lambda: {1, 2},
    "list-of-strings-as-rows": lambda: [[1, 2], "ab"],
    "pyarrow-binary-column": lambda: pa.table({"image": pa.array([b"\x89PNG"], pa.binary())}),
    "polars-binary-column": _polars_binary,
}


@pytest.mark.parametrize("make", UNSUPPORTED.values(), ids=UNSUPPORTED.keys())
def test_unsupported_input_raises_type_error_naming_accepted_types(tmp_path: Path, make: Callable[[], Any]):
    """Text, binary buffers, images and other types raise ``TypeError`` naming what is accepted,
    and nothing is queued."""
    data = make()
    c = collector(tmp_path)
    with pytest.raises(TypeError) as info:
        c.collect(data)
    assert isinstance(info.value, UnsupportedInputError)
    message = str(info.value)
    for accepted in ("list", "dict", "numpy", "DataFrame", "pyarrow"):
        assert accepted in message
    assert c.stats()["collected"] == 0
    assert bool(c.flush(timeout=30))
    assert not partition_file(tmp_path, "inputs").exists()


WRONG_WIDTH = {
    "list": lambda: [1, 2, 3, 4, 5],
    "list-of-rows": lambda: [[1, 2, 3, 4, 5]],
    "tuple": lambda: (1, 2, 3, 4, 5),
    "dict": lambda: dict(zip("vwxyz", range(5), strict=True)),
    "dict-of-columns": lambda: {k: [1] for k in "vwxyz"},
    "numpy-1d": lambda: np.ones(5),
    "numpy-2d": lambda: np.ones((2, 5)),
    "pandas": lambda: pd.DataFrame([[1, 2, 3, 4, 5]], columns=list("vwxyz")),
    "pandas-series": lambda: pd.Series(dict(zip("vwxyz", range(5), strict=True))),
    "pyarrow": lambda: pa.table({k: [1] for k in "vwxyz"}),
    "polars": lambda: _polars({k: [1] for k in "vwxyz"}),
}


@pytest.mark.parametrize("make", WRONG_WIDTH.values(), ids=WRONG_WIDTH.keys())
def test_wrong_width_raises_value_error_with_both_widths(tmp_path: Path, make: Callable[[], Any]):
    """Data of 5 columns given to a 3-column collector raises ``ValueError`` saying 5 and 3."""
    data = make()
    c = collector(tmp_path, feature_names=["a", "b", "c"])
    with pytest.raises(ValueError) as info:
        c.collect(data)
    assert isinstance(info.value, RowWidthError)
    assert re.search(r"\b5\b", str(info.value)) and re.search(r"\b3\b", str(info.value))
    assert c.stats()["collected"] == 0


def test_width_is_fixed_by_the_first_collect(tmp_path: Path):
    """Without ``feature_names`` the first call fixes the width; a later call of another width raises."""
    c = collector(tmp_path)
    c.collect([1, 2])
    with pytest.raises(RowWidthError, match=r"3 columns.*has 2"):
        c.collect([1, 2, 3])
    with pytest.raises(RowWidthError):
        c.collect([1])
    assert c.stats()["collected"] == 1


@pytest.mark.parametrize(
    "data",
    [
        pytest.param([[1, 2], [3]], id="shorter"),
        pytest.param([[1, 2], [3, 4, 5]], id="longer"),
        pytest.param([(1, 2), [3, 4], np.array([5])], id="numpy-row"),
    ],
)
def test_ragged_rows_raise_value_error(tmp_path: Path, data: Any):
    """Rows of one call with different widths raise ``ValueError`` and queue nothing."""
    c = collector(tmp_path)
    with pytest.raises(RowWidthError) as info:
        c.collect(data)
    assert isinstance(info.value, ValueError)
    assert "row" in str(info.value)
    assert c.stats()["collected"] == 0


@pytest.mark.parametrize(
    "data",
    [
        pytest.param({"a": [1, 2], "b": [1]}, id="shorter"),
        pytest.param({"a": [1], "b": np.array([1, 2])}, id="numpy-longer"),
        pytest.param({"a": [1, 2], "b": "xy"}, id="string-among-columns"),
        pytest.param({"a": [1, 2], "b": 3}, id="scalar-among-columns"),
    ],
)
def test_unequal_dict_columns_raise_value_error(tmp_path: Path, data: Any):
    """A dict of columns whose values are not equally long lists raises ``ValueError``
    (a string is never split into characters)."""
    c = collector(tmp_path)
    with pytest.raises(RowWidthError) as info:
        c.collect(data)
    assert isinstance(info.value, ValueError)
    assert "'b'" in str(info.value)
    assert c.stats()["collected"] == 0


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda: [[]], id="empty-row"),
        pytest.param(lambda: [()], id="empty-tuple-row"),
        pytest.param(lambda: {}, id="empty-dict"),
        pytest.param(lambda: np.empty((1, 0)), id="numpy-no-columns"),
        pytest.param(lambda: pd.DataFrame(index=[0, 1]), id="pandas-no-columns"),
    ],
)
def test_data_without_columns_raises_value_error(tmp_path: Path, make: Callable[[], Any]):
    """A row with no values raises ``RowWidthError`` instead of fixing an empty header."""
    c = collector(tmp_path)
    with pytest.raises(RowWidthError):
        c.collect(make())
    assert c.stats()["collected"] == 0


def test_empty_input_collects_nothing(tmp_path: Path):
    """An empty list or frame is no rows: ``collect()`` returns ``{}`` and writes nothing."""
    c = collector(tmp_path, feature_names=["a"])
    assert c.collect([]) == {}
    assert c.collect(pd.DataFrame({"a": []})) == {}
    assert bool(c.flush(timeout=30))
    assert c.stats()["collected"] == 0
    assert not partition_file(tmp_path, "inputs").exists()


@pytest.mark.parametrize("designation", ["outputs", "input", "", "prediction"])
def test_unknown_designation_raises_at_construction(tmp_path: Path, designation: str):
    """A designation outside Azure ML's list raises ``ValueError`` listing the valid ones."""
    with pytest.raises(ValueError, match="inputs, predictions, labels, signals, general"):
        ModelDataCollector(MODEL, designation, storage=tmp_path)


def test_default_designation_means_general(tmp_path: Path):
    """``designation="default"`` writes under ``general``, as Azure ML did."""
    c = ModelDataCollector(MODEL, "default", storage=tmp_path, clock=clock_at(NOW_NS))
    c.collect([1])
    assert bool(c.flush(timeout=30))
    assert partition_file(tmp_path, "general").exists()


def test_duplicate_feature_names_raise_at_construction(tmp_path: Path):
    """``feature_names`` with a repeated name raises ``ValueError`` naming it."""
    with pytest.raises(ValueError, match="duplicates: b"):
        ModelDataCollector(MODEL, "inputs", feature_names=["a", "b", "b"], storage=tmp_path)


def test_duplicate_column_names_in_data_raise(tmp_path: Path):
    """A frame with a repeated column name cannot name the columns: ``ValueError``, nothing queued."""
    c = collector(tmp_path)
    with pytest.raises(ValueError, match="duplicates: a"):
        c.collect(pd.DataFrame([[1, 2]], columns=["a", "a"]))
    assert c.stats()["collected"] == 0


# -- add_correlations and carried $aml_ columns ----------------------------------------------

REQUEST_ID = "Req-ABC-123"

CORRELATED = {
    "list-one-row": (lambda: [0.5], 1),
    "list-of-rows": (lambda: [[0.5], [0.25]], 2),
    "tuple-one-row": (lambda: (0.5,), 1),
    "dict-one-row": (lambda: {"p": 0.5}, 1),
    "dict-of-columns": (lambda: {"p": [0.5, 0.25]}, 2),
    "numpy-1d": (lambda: np.array([0.5]), 1),
    "numpy-2d": (lambda: np.array([[0.5], [0.25]]), 2),
    "pandas-dataframe": (lambda: pd.DataFrame({"p": [0.5, 0.25]}), 2),
    "pandas-series": (lambda: pd.Series({"p": 0.5}), 1),
    "pyarrow-table": (lambda: pa.table({"p": [0.5, 0.25]}), 2),
    "pyarrow-recordbatch": (lambda: pa.record_batch({"p": [0.5, 0.25]}), 2),
    "polars-dataframe": (lambda: _polars({"p": [0.5, 0.25]}), 2),
}


@pytest.mark.parametrize("case", CORRELATED.values(), ids=CORRELATED.keys())
def test_add_correlations_keeps_the_inputs_correlation(tmp_path: Path, case: tuple[Callable[[], Any], int]):
    """Predictions collected through ``add_correlations`` carry their inputs' ids, timestamp and
    request id exactly, even when collected later and outside the request."""
    make, n = case
    inputs = collector(tmp_path, feature_names=["x1", "x2"])
    with request_context(request_id=REQUEST_ID):
        correlation = inputs.collect([[1.0, 2.0], [3.0, 4.0]][:n])
    predictions = collector(tmp_path, "predictions", ["p"], now_ns=NOW_NS + 3_600 * 10**9)
    predictions.collect(predictions.add_correlations(make(), correlation))
    assert bool(inputs.flush(timeout=30))

    _, input_rows = read_back(partition_file(tmp_path, "inputs"))
    header, rows = read_back(partition_file(tmp_path, "predictions"))
    assert header == ["p", *AML_COLUMNS]
    assert_rows(rows, [(0.5,), (0.25,)][:n])
    ids = ids_of(correlation)
    assert [row[1] for row in rows] == ids
    for row in rows:
        assert row[2:] == [NOW_ISO, *DEPLOYMENT, REQUEST_ID]
    assert [row[1:] for row in rows] == [row[2:] for row in input_rows]
    assert_all_written(predictions, n)


def test_carried_values_are_written_as_given(tmp_path: Path):
    """Every carried ``$aml_`` value, even one naming another deployment, is written unchanged."""
    given = {
        "$aml_dc_correlation_id": ["Caller-Id-1", "caller-id-2"],
        "$aml_dc_scoring_timestamp": "2024-02-29T23:59:59.999999",
        "$aml_dc_boundary": 1440,
        "$aml_workspace": "Sub-1/RG/Ws",
        "$aml_service_name": "svc-A",
        "$aml_model_name": "Other",
        "$aml_model_version": "7",
        "$aml_request_id": "ABCDEF01-2345-6789-abcd-ef0123456789",
    }
    c = collector(tmp_path, "predictions", ["p"])
    c.collect(c.add_correlations([[1], [2]], given))
    c.collect(c.add_correlations(pd.DataFrame({"p": [3, 4]}), given))
    assert bool(c.flush(timeout=30))
    _, rows = read_back(partition_file(tmp_path, "predictions", "2024/02/29"))
    tail = [
        "2024-02-29T23:59:59.999999",
        "1440",
        "Sub-1/RG/Ws",
        "svc-A",
        "Other",
        "7",
        "ABCDEF01-2345-6789-abcd-ef0123456789",
    ]
    ids = ["Caller-Id-1", "caller-id-2"] * 2
    assert rows == [[str(p), cid, *tail] for p, cid in zip([1, 2, 3, 4], ids, strict=True)]
    assert_all_written(c, 4)


def test_late_labels_land_beside_their_inputs(tmp_path: Path):
    """Labels collected days after their inputs, carrying the inputs' timestamp, go to the
    inputs' day folder, each row by its own timestamp."""
    inputs = collector(tmp_path, feature_names=["x"])
    first = inputs.collect([1.0])
    later_inputs = collector(tmp_path, feature_names=["x"], now_ns=NOW_NS - 5 * DAY_NS)
    earlier = later_inputs.collect([2.0])
    labels = collector(tmp_path, "labels", ["y"], now_ns=NOW_NS + 3 * DAY_NS)
    labels.collect(labels.add_correlations([1], first))
    frame = pd.DataFrame({"y": [0, 1]})
    for name in AML_COLUMNS:
        frame[name] = [earlier[name], first[name]]
    labels.collect(frame)
    assert bool(labels.flush(timeout=30))

    _, today = read_back(partition_file(tmp_path, "labels", TODAY))
    assert [(r[0], r[1], r[2]) for r in today] == [
        ("1", first[AML_COLUMNS[0]], NOW_ISO),
        ("1", first[AML_COLUMNS[0]], NOW_ISO),
    ]
    _, before = read_back(partition_file(tmp_path, "labels", "2025/11/20"))
    assert [(r[0], r[1], r[2]) for r in before] == [("0", earlier[AML_COLUMNS[0]], "2025-11-20T01:02:03.123456")]
    assert not partition_file(tmp_path, "labels", "2025/11/28").exists()
    assert_all_written(labels, 3)


def test_add_correlations_refuses_mismatched_row_counts(tmp_path: Path):
    """A correlation of 2 rows attached to 3 rows raises ``ValueError`` saying both counts."""
    inputs = collector(tmp_path, feature_names=["x"])
    correlation = inputs.collect([[1], [2]])
    predictions = collector(tmp_path, "predictions", ["p"])
    with pytest.raises(ValueError, match=r"2 values for 3 rows"):
        predictions.add_correlations([[1], [2], [3]], correlation)


def test_add_correlations_refuses_an_incomplete_correlation(tmp_path: Path):
    """A correlation dict lacking ``$aml_`` keys raises ``ValueError`` naming them."""
    predictions = collector(tmp_path, "predictions", ["p"])
    with pytest.raises(ValueError, match=r"\$aml_request_id"):
        predictions.add_correlations([1], {"$aml_dc_correlation_id": "x"})


def test_carried_columns_with_the_wrong_feature_count_raise(tmp_path: Path):
    """Carried ``$aml_`` columns after 2 features, given to a 1-feature collector, raise with both widths."""
    inputs = collector(tmp_path, feature_names=["x"])
    correlation = inputs.collect([1])
    predictions = collector(tmp_path, "predictions", ["p"])
    data = predictions.add_correlations(pd.DataFrame({"p": [1], "q": [2]}), correlation)
    with pytest.raises(RowWidthError, match=r"2 feature columns.*has 1"):
        predictions.collect(data)


def test_carried_row_without_timestamp_is_counted_as_dropped(tmp_path: Path):
    """A carried row whose scoring timestamp is empty has no folder: it is counted as dropped and
    ``flush()`` says so, instead of the flusher losing it silently."""
    labels = collector(tmp_path, "labels", ["y"])
    labels.collect([1, "some-id", None, 1440, "a/b/c", "svc", MODEL, "1", "req"])
    assert not labels.flush(timeout=30)
    stats = labels.stats()
    assert (stats["collected"], stats["written"], stats["pending"]) == (1, 0, 0)
    assert stats["dropped"] == {"unconvertible": 1}


def test_dict_keys_must_name_the_features(tmp_path) -> None:
    """A dict's keys are its meaning: keys other than the collector's features raise, naming both."""
    dc = ModelDataCollector("m", designation="inputs", feature_names=["a", "b"], storage=tmp_path)
    with pytest.raises(ValueError, match="lacks b"):
        dc.collect({"a": 1, "c": 2})
    with pytest.raises(ValueError, match="names c"):
        dc.collect({"a": [1], "c": [2]})
    assert dc.stats()["collected"] == 0


@pytest.mark.parametrize(
    "array",
    [
        np.arange(600, dtype=np.float64).reshape(100, 6),  # large enough that ndarray.copy() drops the GIL
        np.arange(600, dtype=np.float64).reshape(6, 100).T,  # not C-contiguous
        np.array([["a", "b"], ["c", "d"]], dtype=object),  # objects: copied with references held
    ],
)
def test_numpy_input_is_copied_so_later_changes_do_not_reach_storage(tmp_path: Path, array: np.ndarray) -> None:
    """README: numpy arrays are copied by collect(). Overwriting the array right after the call
    must not change what is written (read back by the csv module)."""
    width = array.shape[1]
    dc = ModelDataCollector("m", designation="inputs", feature_names=[f"f{i}" for i in range(width)],
                            storage=tmp_path)
    expected = array.tolist()
    dc.collect(array)
    array[...] = 7 if array.dtype != object else "changed"
    assert dc.flush(timeout=30)
    [path] = list(tmp_path.rglob("*.csv"))
    with open(path, newline="") as f:
        rows = [row[:width] for row in csv.reader(f)][1:]
    parse = str if array.dtype == object else float
    assert [[parse(v) for v in row] for row in rows] == expected


@pytest.mark.parametrize("dtype", ["float64", "int64", "float32", "int32", "bool"])
def test_one_row_numpy_arrays_keep_their_type(tmp_path: Path, dtype: str) -> None:
    """A (1, n) float64 or int64 array is queued as a Python row (the cheap path); every dtype
    must still reach Parquet as the Arrow type of its numpy dtype, values exact (read by pyarrow)."""
    import pyarrow.dataset as ds

    dc = ModelDataCollector("m", designation="inputs", feature_names=["a", "b"], storage=tmp_path,
                            format="parquet", compaction="off")
    rows = [np.array([[1, 0]], dtype=dtype), np.array([[0, 1]], dtype=dtype)]
    for row in rows:
        dc.collect(row)
    assert dc.flush(timeout=30)
    table = ds.dataset(str(tmp_path), format="parquet").to_table(columns=["a", "b"])
    assert table.schema.field("a").type == pa.from_numpy_dtype(np.dtype(dtype))
    assert table.to_pydict() == {"a": [r[0, 0].item() for r in rows], "b": [r[0, 1].item() for r in rows]}


def test_frame_with_multiindex_columns_is_collected_by_position(tmp_path: Path) -> None:
    """Column names are read through Arrow when pandas keeps them there; a MultiIndex has no
    single array and must still be accepted (renamed by position to feature_names)."""
    frame = pd.DataFrame([[1.5, 2.5]], columns=pd.MultiIndex.from_tuples([("a", "x"), ("b", "y")]))
    dc = ModelDataCollector("m", designation="inputs", feature_names=["a", "b"], storage=tmp_path)
    dc.collect(frame)
    assert dc.flush(timeout=30)
    [path] = list(tmp_path.rglob("*.csv"))
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    assert [(r["a"], r["b"]) for r in rows] == [("1.5", "2.5")]
