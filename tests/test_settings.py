"""SPEC.md's precedence table: arguments, mdc's variables, Azure ML's variables, defaults."""

from __future__ import annotations

import os

import pytest

from conftest import data_files
from mdc_core import ConfigurationError, ModelDataCollector
from mdc_core.settings import resolve_storage


def test_storage_argument_beats_environment(tmp_path, monkeypatch) -> None:
    """storage= wins over MDC_STORAGE_URL and AML_MODEL_DC_STORAGE."""
    monkeypatch.setenv("MDC_STORAGE_URL", str(tmp_path / "env"))
    monkeypatch.setenv("AML_MODEL_DC_STORAGE", "DefaultEndpointsProtocol=https;AccountName=x;AccountKey=eA==")
    assert resolve_storage(tmp_path / "arg", None).url == str(tmp_path / "arg")


def test_mdc_storage_url_beats_azure_variable(tmp_path, monkeypatch) -> None:
    """MDC_STORAGE_URL wins over AML_MODEL_DC_STORAGE."""
    monkeypatch.setenv("MDC_STORAGE_URL", str(tmp_path / "env"))
    monkeypatch.setenv("AML_MODEL_DC_STORAGE", "DefaultEndpointsProtocol=https;AccountName=x;AccountKey=eA==")
    assert resolve_storage(None, None).url == str(tmp_path / "env")


def test_azure_connection_string_means_container_modeldata(monkeypatch) -> None:
    """AML_MODEL_DC_STORAGE is a connection string: root = container modeldata, string as an option."""
    secret = "DefaultEndpointsProtocol=https;AccountName=acct;AccountKey=c2VjcmV0;EndpointSuffix=core.windows.net"
    monkeypatch.setenv("AML_MODEL_DC_STORAGE", secret)
    storage = resolve_storage(None, None)
    assert storage.url == "abfs://modeldata"
    assert storage.options["connection_string"] == secret
    assert "c2VjcmV0" not in repr(storage)


def test_default_storage_is_modeldata_in_working_dir(tmp_path, monkeypatch) -> None:
    """With nothing set, rows go to ./modeldata."""
    monkeypatch.chdir(tmp_path)
    dc = ModelDataCollector("m", designation="inputs")
    dc.collect([1])
    assert dc.flush(timeout=30)
    assert data_files(tmp_path / "modeldata")


def test_identity_from_environment_when_arguments_are_default(tmp_path, monkeypatch) -> None:
    """MDC_WORKSPACE, SERVICE_NAME and MDC_MODEL_VERSION fill arguments left at 'default'."""
    monkeypatch.setenv("MDC_WORKSPACE", "sub/rg/ws")
    monkeypatch.setenv("SERVICE_NAME", "aks-svc")
    monkeypatch.setenv("MDC_MODEL_VERSION", "7")
    dc = ModelDataCollector("m", designation="inputs", storage=tmp_path)
    assert (dc.workspace, dc.webservice_name, dc.model_version) == ("sub/rg/ws", "aks-svc", "7")
    dc.collect([1])
    assert dc.flush(timeout=30)
    [path] = data_files(tmp_path)
    assert os.path.relpath(path, tmp_path).startswith(os.path.join("sub", "rg", "ws", "aks-svc", "m", "7", "inputs"))


def test_mdc_service_name_beats_azure_service_name(tmp_path, monkeypatch) -> None:
    """MDC_SERVICE_NAME wins over Azure ML's SERVICE_NAME."""
    monkeypatch.setenv("MDC_SERVICE_NAME", "mine")
    monkeypatch.setenv("SERVICE_NAME", "azure")
    assert ModelDataCollector("m", storage=tmp_path).webservice_name == "mine"


def test_identity_arguments_beat_environment(tmp_path, monkeypatch) -> None:
    """Arguments that are not 'default' win over the environment."""
    monkeypatch.setenv("MDC_WORKSPACE", "env/env/env")
    monkeypatch.setenv("MDC_SERVICE_NAME", "env")
    monkeypatch.setenv("MDC_MODEL_VERSION", "9")
    dc = ModelDataCollector("m", workspace="a/b/c", webservice_name="svc", model_version="3", storage=tmp_path)
    assert (dc.workspace, dc.webservice_name, dc.model_version) == ("a/b/c", "svc", "3")


def test_invalid_identity_from_environment_is_refused(tmp_path, monkeypatch) -> None:
    """A variable that cannot be a path segment is refused like an argument."""
    monkeypatch.setenv("MDC_SERVICE_NAME", "../escape")
    with pytest.raises(ValueError, match="webservice_name"):
        ModelDataCollector("m", storage=tmp_path)


@pytest.mark.parametrize(
    "arg,mdc,aml,expected",
    [
        (None, None, None, "day"),
        (None, None, "hour", "hour"),
        (None, "day", "hour", "day"),
        ("hour", "day", "day", "hour"),
    ],
)
def test_boundary_precedence(tmp_path, monkeypatch, arg, mdc, aml, expected) -> None:
    """boundary= > MDC_BOUNDARY > AML_MODEL_DC_BOUNDARY > day."""
    if mdc:
        monkeypatch.setenv("MDC_BOUNDARY", mdc)
    if aml:
        monkeypatch.setenv("AML_MODEL_DC_BOUNDARY", aml)
    assert ModelDataCollector("m", boundary=arg, storage=tmp_path).boundary == expected


@pytest.mark.parametrize(
    "arg,mdc,aml,expected",
    [
        (None, None, None, True),
        (None, None, "false", False),
        (None, "true", "false", True),
        (False, "true", "true", False),
        (True, "0", "0", True),
    ],
)
def test_enabled_precedence(tmp_path, monkeypatch, arg, mdc, aml, expected) -> None:
    """enabled= > MDC_ENABLED > AML_MODEL_DC_STORAGE_ENABLED > on."""
    if mdc:
        monkeypatch.setenv("MDC_ENABLED", mdc)
    if aml:
        monkeypatch.setenv("AML_MODEL_DC_STORAGE_ENABLED", aml)
    assert ModelDataCollector("m", enabled=arg, storage=tmp_path).enabled is expected


@pytest.mark.parametrize("mdc,aml,expected", [(None, None, False), (None, "true", True), ("false", "true", False)])
def test_debug_precedence(tmp_path, monkeypatch, mdc, aml, expected) -> None:
    """MDC_DEBUG > AML_MODEL_DC_DEBUG > off."""
    if mdc:
        monkeypatch.setenv("MDC_DEBUG", mdc)
    if aml:
        monkeypatch.setenv("AML_MODEL_DC_DEBUG", aml)
    assert ModelDataCollector("m", storage=tmp_path).debug is expected


@pytest.mark.parametrize("name,value", [("MDC_ENABLED", "maybe"), ("MDC_DEBUG", "2"), ("MDC_BOUNDARY", "week")])
def test_nonsense_environment_values_are_refused(tmp_path, monkeypatch, name, value) -> None:
    """A variable with a value that means nothing raises, naming the variable."""
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigurationError, match=name):
        ModelDataCollector("m", storage=tmp_path)


def test_bad_arguments_are_refused(tmp_path) -> None:
    """Wrong argument values raise ValueError at construction."""
    with pytest.raises(ValueError, match="boundary"):
        ModelDataCollector("m", boundary="minute", storage=tmp_path)
    with pytest.raises(ValueError):
        ModelDataCollector("m", enabled="yes", storage=tmp_path)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown format"):
        ModelDataCollector("m", format="xlsx", storage=tmp_path)
    with pytest.raises(ValueError, match="no storage backend serves gopher"):
        ModelDataCollector("m", storage="gopher://x")
