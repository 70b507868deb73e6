"""Shared fixtures: a clean mdc environment per test, a controllable clock, CSV helpers."""

from __future__ import annotations

import csv
import datetime as dt
import glob
import os
from collections.abc import Iterator

import pytest

from conftest_servers import azurite, seaweedfs  # noqa: F401  (session fixtures: one server per run)
from mdc_core import correlation, ratelimit
from mdc_core.plugins import reset_registry

_ENV_PREFIXES = ("MDC_", "AML_MODEL_DC_")
_ENV_NAMES = ("SERVICE_NAME",)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Every test starts without mdc's or Azure ML's variables, with a fresh registry, and with
    spools in a folder of the test run (never the user's ~/.cache)."""
    for name in list(os.environ):
        if name.startswith(_ENV_PREFIXES) or name in _ENV_NAMES:
            monkeypatch.delenv(name)
    monkeypatch.setenv("MDC_SPOOL_DIR", str(tmp_path_factory.getbasetemp() / "spool"))
    reset_registry()
    ratelimit.reset_all()  # a line one test logged must not be held back in the next
    token = correlation._open.set(None)  # no inputs correlation opened in one test pairs in another
    yield
    correlation._open.reset(token)
    reset_registry()


class SteppingClock:
    """A clock for ``ModelDataCollector(clock=...)``: returns the given instants in turn (the
    last one forever), as epoch nanoseconds."""

    def __init__(self, *instants: dt.datetime):
        self.instants = [to_ns(i) for i in instants]
        self.calls = 0

    def __call__(self) -> int:
        value = self.instants[min(self.calls, len(self.instants) - 1)]
        self.calls += 1
        return value


def to_ns(instant: dt.datetime) -> int:
    delta = instant - dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1_000


def utc(*args: int) -> dt.datetime:
    return dt.datetime(*args, tzinfo=dt.timezone.utc)


@pytest.fixture
def clock() -> SteppingClock:
    """A fixed clock at 2026-03-05 09:30 UTC."""
    return SteppingClock(utc(2026, 3, 5, 9, 30, 0, 123456))


def read_csv(path: str | os.PathLike[str]) -> list[dict[str, str]]:
    """Rows of a CSV file by the standard library's reader (independent of mdc)."""
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def read_raw(path: str | os.PathLike[str]) -> list[list[str]]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.reader(f))


def data_files(root: str | os.PathLike[str], pattern: str = "**/*.csv") -> list[str]:
    return sorted(glob.glob(os.path.join(os.fspath(root), pattern), recursive=True))


def spec_dir(
    root: str | os.PathLike[str],
    designation: str,
    date: str,
    model: str = "best_model",
    workspace: str = "default/default/default",
    service: str = "default",
    version: str = "default",
) -> str:
    return os.path.join(os.fspath(root), *workspace.split("/"), service, model, version, designation, *date.split("/"))
