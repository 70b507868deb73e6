"""The backend contract kit (mdc_core.testing) run against the local disk and the in-memory fake."""

from __future__ import annotations

import os

import pytest

from conftest import read_csv
from mdc_backends.local import LocalBackend
from mdc_core import Capability, ModelDataCollector
from mdc_core.testing import BackendContract, MemoryBackend, clear_memory, memory_objects


class TestLocalBackendContract(BackendContract):
    """The local-disk backend honours the whole contract, read back with plain file reads."""

    @pytest.fixture
    def backend(self, tmp_path):
        return LocalBackend(str(tmp_path))

    @pytest.fixture
    def storage(self, tmp_path):
        return str(tmp_path), {}

    @pytest.fixture
    def read(self, tmp_path):
        def read(key):
            path = os.path.join(tmp_path, *key.split("/"))
            return open(path, "rb").read() if os.path.exists(path) else None

        return read


class TestLocalObjectStoreContract(TestLocalBackendContract):
    """The local backend with append=False behaves like an object store: create-only batches."""

    capabilities = frozenset({Capability.CREATE_IF_ABSENT, Capability.MAINTAIN})

    @pytest.fixture
    def backend(self, tmp_path):
        return LocalBackend(str(tmp_path), {"append": False})

    @pytest.fixture
    def storage(self, tmp_path):
        return str(tmp_path), {"append": False}


class TestMemoryBackendContract(BackendContract):
    """The in-memory fake behaves like a real backend, so unit tests of scoring code can trust it."""

    @pytest.fixture
    def backend(self):
        clear_memory("contract")
        return MemoryBackend("memory://contract")

    @pytest.fixture
    def read(self):
        return lambda key: memory_objects("contract").get(key)

    @pytest.fixture
    def storage(self):
        return "memory://contract", {}

    def test_many_writers_one_partition(self):
        """Not applicable: a process-local fake cannot be shared by two processes."""
        pytest.skip("memory:// lives in one process")


def test_memory_url_works_through_the_registry(tmp_path) -> None:
    """memory:// is served by an entry-point plug-in like any other; rows can be read back."""
    clear_memory("unit")
    dc = ModelDataCollector("m", designation="inputs", feature_names=["a"], storage="memory://unit")
    dc.collect([[1], [2]])
    assert dc.flush(timeout=30)
    [(key, data)] = memory_objects("unit").items()
    assert key.startswith("default/default/default/default/m/default/inputs/") and key.endswith("/data.csv")
    path = tmp_path / "copy.csv"
    path.write_bytes(data)
    assert [r["a"] for r in read_csv(path)] == ["1", "2"]


class TestThirdPartyMemdirContract(BackendContract):
    """The example third-party plug-in (tests/plugin_pkg) passes the kit for what it declares."""

    capabilities = frozenset({Capability.CREATE_IF_ABSENT})

    @pytest.fixture
    def backend(self, tmp_path, monkeypatch):
        monkeypatch.syspath_prepend(os.path.join(os.path.dirname(__file__), "plugin_pkg", "src"))
        from mdc_example_plugin.memdir import MemdirBackend

        return MemdirBackend(f"memdir://{tmp_path}", {})

    @pytest.fixture
    def read(self, tmp_path):
        def read(key):
            path = os.path.join(tmp_path, *key.split("/"))
            return open(path, "rb").read() if os.path.exists(path) else None

        return read
