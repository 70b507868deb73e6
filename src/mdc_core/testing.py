"""Tools for testing code that uses mdc, and for testing backends.

* ``MemoryBackend`` (from ``mdc_core.memory``): a fake that keeps objects in a dict, served for
  ``memory://<name>`` URLs, so a scoring script's unit test can collect and read back without
  touching disk: ``memory_objects("name")``.
* ``BackendContract``: the behaviour every backend owes the flusher, as pytest tests. A
  backend's test module subclasses it and supplies two fixtures, ``backend`` (a fresh, empty
  backend) and ``read`` (a function ``key -> bytes | None`` that reads an object back *without*
  the backend, e.g. with the storage's own client). Tests run per declared capability.

A fake is evidence for the core, never for a real backend: run the contract against the real
storage (a local folder, Azurite, SeaweedFS).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from mdc_core.memory import MemoryBackend, clear_memory, memory_objects
from mdc_core.records import Backend, Capability

try:  # the contract kit is for pytest; the in-memory backend works without it
    import pytest as _pytest
except ImportError:  # pragma: no cover
    _pytest = None

class BackendContract:
    """Subclass in a test module and provide the ``backend`` and ``read`` fixtures."""

    capabilities: frozenset[Capability] = frozenset(
        {Capability.APPEND, Capability.CREATE_IF_ABSENT, Capability.MAINTAIN}
    )
    """What the backend under test declares; tests of other capabilities are skipped."""

    if _pytest is not None:

        @_pytest.fixture
        def storage(self) -> Any:
            """Override with ``(url, storage_options)`` to run the tests that go through a collector."""
            _pytest.skip("this contract subclass supplies no storage fixture")

    def _needs(self, capability: Capability) -> None:
        import pytest

        if capability not in self.capabilities:
            pytest.skip(f"backend does not declare {capability.value}")

    def test_create_publishes_once(self, backend: Backend, read: Callable[[str], bytes | None]) -> None:
        """create() publishes an object, and refuses to replace it."""
        self._needs(Capability.CREATE_IF_ABSENT)
        key = "ws/svc/m/1/inputs/2026/03/05/data-0001.bin"
        assert backend.create(key, b"first") is True
        assert backend.create(key, b"second") is False
        assert read(key) == b"first"

    def test_create_keeps_bytes_exactly(self, backend: Backend, read: Callable[[str], bytes | None]) -> None:
        """Every byte value, and an empty object, survives create()."""
        self._needs(Capability.CREATE_IF_ABSENT)
        payload = bytes(range(256)) * 64
        assert backend.create("x/all-bytes.bin", payload)
        assert backend.create("x/empty.bin", b"")
        assert read("x/all-bytes.bin") == payload and read("x/empty.bin") == b""

    def test_append_writes_header_once(self, backend: Backend, read: Callable[[str], bytes | None]) -> None:
        """The first append starts the object with the header; later ones add rows only."""
        self._needs(Capability.APPEND)
        key = "ws/svc/m/1/inputs/2026/03/05/data.csv"
        assert backend.append(key, b"a,b\n", b"1,2\n") == key
        assert backend.append(key, b"a,b\n", b"3,4\n5,6\n") == key
        assert read(key) == b"a,b\n1,2\n3,4\n5,6\n"

    def test_append_under_another_header_goes_elsewhere(
        self, backend: Backend, read: Callable[[str], bytes | None]
    ) -> None:
        """Rows are never appended under a different header; the sibling keeps the extension."""
        self._needs(Capability.APPEND)
        key = "p/data.csv"
        backend.append(key, b"a,b\n", b"1,2\n")
        other = backend.append(key, b"a,b,c\n", b"1,2,3\n")
        assert other != key and other.startswith("p/data") and other.endswith(".csv")
        assert read(key) == b"a,b\n1,2\n" and read(other) == b"a,b,c\n1,2,3\n"

    def test_concurrent_appends_lose_nothing(self, backend: Backend, read: Callable[[str], bytes | None]) -> None:
        """Appends from 8 threads to one key keep every body whole and present once."""
        self._needs(Capability.APPEND)
        key = "c/data.csv"

        def work(t: int) -> None:
            for i in range(25):
                backend.append(key, b"t,i\n", f"{t},{i}\n".encode())

        threads = [threading.Thread(target=work, args=(t,)) for t in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        data = read(key)
        assert data is not None
        lines = data.decode().splitlines()
        assert lines[0] == "t,i"
        assert sorted(lines[1:]) == sorted(f"{t},{i}" for t in range(8) for i in range(25))

    def test_maintain_list_read_put_delete(self, backend: Any, read: Callable[[str], bytes | None]) -> None:
        """list() finds objects under a folder with their sizes; put() replaces whole; delete() removes."""
        self._needs(Capability.MAINTAIN)
        backend.create(
            "m/a/2026/03/05/data-1.csv", b"a\n1\n"
        ) if Capability.CREATE_IF_ABSENT in self.capabilities else backend.put("m/a/2026/03/05/data-1.csv", b"a\n1\n")
        backend.put("m/a/2026/03/05/data.csv", b"a\n0\n")
        backend.put("m/b/other.csv", b"zz")
        assert backend.list("m/a/") == [("m/a/2026/03/05/data-1.csv", 4), ("m/a/2026/03/05/data.csv", 4)]
        assert ("m/b/other.csv", 2) in backend.list("")
        assert backend.read("m/a/2026/03/05/data.csv") == b"a\n0\n" and backend.read("m/missing") is None
        assert backend.size("m/b/other.csv") == 2 and backend.size("m/missing") is None
        backend.put("m/a/2026/03/05/data.csv", b"a\n0\n1\n")
        assert read("m/a/2026/03/05/data.csv") == b"a\n0\n1\n"
        backend.delete("m/a/2026/03/05/data-1.csv")
        backend.delete("m/a/2026/03/05/data-1.csv")  # deleting twice is fine
        assert read("m/a/2026/03/05/data-1.csv") is None
        assert backend.list("m/a/") == [("m/a/2026/03/05/data.csv", 6)]

    def test_compaction_merges_batches_exactly(self, backend: Any, read: Callable[[str], bytes | None]) -> None:
        """Batch objects of a partition become one data.csv: header once, every record once, in
        scoring-time order, byte for byte; the batches are gone; a re-run changes nothing."""
        self._needs(Capability.MAINTAIN)
        self._needs(Capability.CREATE_IF_ABSENT)
        from mdc_core.compaction import compact_partition
        from mdc_formats.csv import CsvFormat

        folder = "w/s/m/1/inputs/2026/03/05"
        header = b"a,$aml_dc_scoring_timestamp\n"
        batches = {
            f"{folder}/data-{'a' * 16}-0000000001.csv": (
                b'2,2026-03-05T10:00:00.000002\n"x\ny",2026-03-05T10:00:00.000004\n'
            ),
            f"{folder}/data-{'b' * 16}-0000000001.csv": (
                b'1,2026-03-05T10:00:00.000001\n"",2026-03-05T10:00:00.000003\n'
            ),
        }
        for key, body in batches.items():
            assert backend.create(key, header + body)
        result = compact_partition(backend, CsvFormat(), folder, "data", "csv")
        assert sorted(result.merged) == sorted(batches) and result.outputs == [f"{folder}/data.csv"]
        assert read(f"{folder}/data.csv") == header + (
            b"1,2026-03-05T10:00:00.000001\n2,2026-03-05T10:00:00.000002\n"
            b'"",2026-03-05T10:00:00.000003\n"x\ny",2026-03-05T10:00:00.000004\n'
        )
        assert [k for k, _ in backend.list(folder + "/")] == [f"{folder}/data.csv"]
        again = compact_partition(backend, CsvFormat(), folder, "data", "csv")
        assert again.merged == [] and read(f"{folder}/data.csv").count(b"\n") == 6

    # -- through a collector: needs a ``storage`` fixture, ``(url, storage_options)`` of the
    # -- same root as ``backend`` (options must be JSON-serialisable for the multi-process test)

    FOLDER = "sub/rg/ws/svc/contract/3/inputs/2026/03/05/"
    CLOCK_NS = 1_772_704_800_000_000_000  # 2026-03-05T10:00:00Z

    def _collector(self, storage: tuple[str, dict[str, Any]], designation: str = "inputs") -> Any:
        from mdc_core import ModelDataCollector

        url, options = storage
        ticks = iter(range(self.CLOCK_NS, self.CLOCK_NS + 10**12, 1000))
        return ModelDataCollector("contract", designation=designation, feature_names=["a", "b"], workspace="sub/rg/ws",
                                  webservice_name="svc", model_version="3", storage=url, storage_options=options,
                                  clock=lambda: next(ticks), compaction="off")

    def _rows(self, backend: Any, read: Callable[[str], bytes | None]) -> list[dict[str, str]]:
        """Every row under the contract partition, by the csv module, from every .csv object."""
        import csv
        import io

        rows = []
        for key, _ in backend.list(self.FOLDER):
            name = key.rpartition("/")[2]
            if name.endswith(".csv") and not name.startswith(("_", ".")):
                rows.extend(csv.DictReader(io.StringIO(read(key).decode("utf-8"), newline="")))
        return rows

    def test_collected_rows_land_at_spec_path(self, storage: Any, backend: Any, read: Any) -> None:
        """Rows of every input type land under the spec's folders and read back equal."""
        self._needs(Capability.MAINTAIN)
        import pyarrow as pa

        dc = self._collector(storage)
        dc.collect([[1, "x"], [2, 'y,"z"\nw']])
        dc.collect((3, "tuple"))
        dc.collect({"b": "é", "a": 4})
        dc.collect(pa.table({"a": [5], "b": ["arrow"]}))
        expected = {("1", "x"), ("2", 'y,"z"\nw'), ("3", "tuple"), ("4", "é"), ("5", "arrow")}
        try:
            import numpy as np

            dc.collect(np.array([[6, 7]]))
            expected.add(("6", "7"))
        except ImportError:
            pass
        assert dc.flush(timeout=60)
        keys = [k for k, _ in backend.list("")]
        assert keys and all(k.startswith(self.FOLDER) for k in keys), keys
        rows = self._rows(backend, read)
        assert sorted((r["a"], r["b"]) for r in rows) == sorted(expected)
        assert {r["$aml_workspace"] for r in rows} == {"sub/rg/ws"}

    def test_retry_of_a_delivered_batch(self, backend: Backend, read: Callable[[str], bytes | None]) -> None:
        """Re-sending a batch whose upload succeeded (answer lost) finds it and writes nothing twice;
        other bytes under that name are refused."""
        self._needs(Capability.CREATE_IF_ABSENT)
        from mdc_core.errors import BackendError
        from mdc_core.writer import _create

        key, data = f"{self.FOLDER}data-{'c' * 16}-0000000007.csv", b"a,b\n1,2\n"
        assert _create(backend, key, data) == key
        assert _create(backend, key, data) == key
        assert read(key) == data
        if not hasattr(backend, "size"):
            return  # without size() the writer cannot tell a delivered batch from a name clash
        try:
            _create(backend, key, b"a,b\n9,9,9\n")
        except BackendError:
            pass
        else:
            raise AssertionError("different bytes under an existing batch name were accepted")
        assert read(key) == data

    def test_many_writers_one_partition(self, storage: Any, backend: Any, read: Any) -> None:
        """2 processes x 8 threads collect into one partition: every row exactly once, one header per file."""
        self._needs(Capability.MAINTAIN)
        import json
        import os
        import subprocess
        import sys

        url, options = storage
        env = {**os.environ, "MDC_FLUSH_INTERVAL": "0.05"}
        procs = [subprocess.Popen([sys.executable, "-c", _WRITERS, str(p), url, json.dumps(dict(options))],
                                  env=env, stderr=subprocess.PIPE, text=True) for p in range(2)]
        for proc in procs:
            _, err = proc.communicate(timeout=300)
            assert proc.returncode == 0, err
        got = sorted((r["a"], r["b"]) for r in self._rows(backend, read))
        assert got == sorted((f"{p}-{t}", str(i)) for p in range(2) for t in range(8) for i in range(40))

    def test_collected_rows_compact_into_data_csv(self, storage: Any, backend: Any, read: Any) -> None:
        """Compaction of collected batches gives one data.csv holding exactly the rows collected."""
        self._needs(Capability.MAINTAIN)
        self._needs(Capability.CREATE_IF_ABSENT)
        from mdc_core.compaction import compact_partition
        from mdc_formats.csv import CsvFormat

        dc = self._collector(storage)
        for i in range(4):
            dc.collect([[i, f"batch {i}"], [i, "second"]])
            assert dc.flush(timeout=60)
        compact_partition(backend, CsvFormat(), self.FOLDER, "data", "csv")
        assert [k for k, _ in backend.list(self.FOLDER)] == [self.FOLDER + "data.csv"]
        rows = self._rows(backend, read)
        assert [(r["a"], r["b"]) for r in rows] == [(str(i), t) for i in range(4) for t in (f"batch {i}", "second")]


_WRITERS = """
import json, sys, threading
from mdc_core import ModelDataCollector
proc, url, options = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
dc = ModelDataCollector("contract", designation="inputs", feature_names=["a", "b"], workspace="sub/rg/ws",
                        webservice_name="svc", model_version="3", storage=url, storage_options=options,
                        clock=lambda: 1_772_704_800_000_000_000, compaction="off")
start = threading.Barrier(8)
def work(t):
    start.wait()
    for i in range(40):
        dc.collect([f"{proc}-{t}", i])
threads = [threading.Thread(target=work, args=(t,)) for t in range(8)]
[t.start() for t in threads]; [t.join() for t in threads]
assert dc.flush(timeout=120), dc.stats()
"""


__all__ = ["BackendContract", "MemoryBackend", "clear_memory", "memory_objects"]
