"""Retries: transient storage errors are retried with backoff, refusals are not."""

from __future__ import annotations

import errno

import pytest

from conftest import data_files, read_csv
from mdc_backends.local import LocalBackend
from mdc_core import BackendError, ModelDataCollector
from mdc_core.writer import is_retryable


class FlakyBackend(LocalBackend):
    """The local backend, failing its first ``failures`` appends with ``error``: real calls, real faults."""

    def __init__(self, root: str, failures: int, error: int):
        super().__init__(root)
        self.failures, self.error, self.attempts = failures, error, 0

    def append(self, key, header, body):
        self.attempts += 1
        if self.attempts <= self.failures:
            raise BackendError(self.error, f"injected {errno.errorcode[self.error]}")
        return super().append(key, header, body)


def collector_with(tmp_path, backend) -> ModelDataCollector:
    dc = ModelDataCollector("m", designation="inputs", storage=tmp_path)
    dc._route.sink.backend = backend
    dc._route.sink.backoff = 0.001
    return dc


@pytest.mark.parametrize("error", [errno.ETIMEDOUT, errno.ECONNRESET, errno.EBUSY, errno.EIO])
def test_transient_errors_are_retried_until_written(tmp_path, error) -> None:
    """Timeouts, resets, throttling and server errors are retried; the batch is written once."""
    backend = FlakyBackend(str(tmp_path), failures=2, error=error)
    dc = collector_with(tmp_path, backend)
    dc.collect([[1], [2]])
    assert dc.flush(timeout=30)
    assert backend.attempts == 3  # two faults really happened, then success
    assert [r["feature_0"] for p in data_files(tmp_path) for r in read_csv(p)] == ["1", "2"]


@pytest.mark.parametrize("error", [errno.EACCES, errno.ENOENT, errno.EINVAL])
def test_refusals_are_not_retried(tmp_path, error) -> None:
    """Refused credentials, a missing container, a bad request: one attempt, counted at once."""
    backend = FlakyBackend(str(tmp_path), failures=10, error=error)
    dc = collector_with(tmp_path, backend)
    dc.collect([1])
    assert not dc.flush(timeout=30)
    assert backend.attempts == 1
    assert dc.stats()["dropped"] == {"storage_error": 1}


def test_classification() -> None:
    """Our own bugs are not retried either; unknown OSErrors are."""
    assert is_retryable(TimeoutError()) and is_retryable(ConnectionResetError())
    assert is_retryable(OSError(errno.EIO, "x"))
    assert not is_retryable(PermissionError(errno.EACCES, "x")) and not is_retryable(ValueError("bug"))
