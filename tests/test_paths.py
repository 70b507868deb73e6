"""The storage layout: folder-name validation and the path template."""

from __future__ import annotations

import os

import pytest

from conftest import SteppingClock, data_files, utc
from mdc_core import InvalidPathSegmentError, Layout, ModelDataCollector, partition_path, validate_segment

LAYOUT = Layout("sub/rg/ws", "svc", "best_model", "10", "inputs")
T = 1_741_167_000  # 2025-03-05T09:30:00Z


def test_template_matches_azure_ml_zero_padded() -> None:
    """Month and day are zero-padded, as Azure ML's collector writes them."""
    assert partition_path(LAYOUT, T, "csv") == "sub/rg/ws/svc/best_model/10/inputs/2025/03/05/data.csv"


def test_template_hourly_adds_padded_hour() -> None:
    """An hourly boundary adds a zero-padded hour level."""
    layout = Layout("sub/rg/ws", "svc", "best_model", "10", "inputs", boundary="hour")
    assert partition_path(layout, T, "csv").endswith("/inputs/2025/03/05/09/data.csv")


def test_template_unpadded_option() -> None:
    """pad=False writes 2025/3/5 for users who filter paths as .../<year>/3; the hour stays padded."""
    layout = Layout("sub/rg/ws", "svc", "m", "1", "inputs", pad=False, boundary="hour")
    assert partition_path(layout, T, "csv").endswith("/inputs/2025/3/5/09/data.csv")


def test_template_uses_stem_and_extension() -> None:
    """The file stem (collection name) and the format's extension name the file."""
    layout = Layout("s/r/w", "svc", "m", "1", "signals", file_stem="latency")
    assert partition_path(layout, T, "parquet").endswith("/signals/2025/03/05/latency.parquet")


@pytest.mark.parametrize(
    "bad",
    [
        "",
        ".",
        "..",
        "_hidden",
        ".dot",
        "a/b",
        "a\\b",
        "a\x00b",
        "tab\tname",
        "new\nline",
        " padded",
        "trailing ",
        "\x7f",
    ],
)
def test_invalid_segments_are_refused(bad: str) -> None:
    """Names that cannot be one folder (or are reserved for mdc's own files) raise ValueError."""
    with pytest.raises(InvalidPathSegmentError) as info:
        validate_segment(bad, "model_name")
    assert isinstance(info.value, ValueError)
    assert "model_name" in str(info.value)


@pytest.mark.parametrize("good", ["best_model", "Model-1.2", "10", "ünïcode", "a b", "a_"])
def test_valid_segments_pass(good: str) -> None:
    """Ordinary names, with dots, dashes, spaces inside and unicode, are accepted as given."""
    assert validate_segment(good, "x") == good


@pytest.mark.parametrize(
    "kwargs",
    [
        {"model_name": "_model"},
        {"model_name": "a/b"},
        {"model_name": "ok", "webservice_name": ".svc"},
        {"model_name": "ok", "model_version": ".."},
        {"model_name": "ok", "workspace": "sub/rg"},
        {"model_name": "ok", "workspace": "sub/rg/ws/extra"},
        {"model_name": "ok", "workspace": "sub//ws"},
        {"model_name": "ok", "workspace": "_sub/rg/ws"},
        {"model_name": "ok", "collection_name": "x/y"},
        {"model_name": ""},
    ],
)
def test_collector_refuses_bad_names_at_construction(tmp_path, kwargs) -> None:
    """A collector with a name that cannot be a path segment is never built."""
    with pytest.raises(ValueError):
        ModelDataCollector(designation="inputs", storage=tmp_path, **kwargs)


def test_spec_path_with_full_identity(tmp_path) -> None:
    """Rows land at <root>/<sub>/<rg>/<ws>/<service>/<model>/<version>/<designation>/<y>/<m>/<d>/data.csv."""
    clock = SteppingClock(utc(2018, 12, 31, 10, 0))
    dc = ModelDataCollector(
        "best_model",
        designation="inputs",
        feature_names=["a"],
        workspace="1a2b3c4d-5e6f-7g8h-9i10-j11k12l13m14/myresourcegrp/myWorkspace",
        webservice_name="aks-w-collv9",
        model_version="10",
        storage=tmp_path,
        clock=clock,
    )
    dc.collect([1])
    assert dc.flush(timeout=30)
    assert data_files(tmp_path) == [
        os.path.join(
            tmp_path,
            "1a2b3c4d-5e6f-7g8h-9i10-j11k12l13m14/myresourcegrp/myWorkspace/aks-w-collv9/best_model/10/inputs/2018/12/31/data.csv",
        )
    ]


@pytest.mark.parametrize(
    "designation,collection,expected",
    [
        ("signals", "latency", "signals/2026/03/05/latency.csv"),
        ("general", "raw_requests", "general/2026/03/05/raw_requests.csv"),
        ("default", "raw_requests", "general/2026/03/05/raw_requests.csv"),
        ("general", "default", "general/2026/03/05/data.csv"),
        ("inputs", "ignored_for_inputs", "inputs/2026/03/05/data.csv"),
    ],
)
def test_collection_name_names_the_file_for_signals_and_general(
    tmp_path, clock, designation, collection, expected
) -> None:
    """Azure ML's rule: for signals and general a non-default collection_name names the file."""
    dc = ModelDataCollector("m", designation=designation, collection_name=collection, storage=tmp_path, clock=clock)
    dc.collect([1, 2])
    assert dc.flush(timeout=30)
    [path] = data_files(tmp_path)
    assert path.endswith(expected)
