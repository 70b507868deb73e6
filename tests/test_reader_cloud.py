"""The reader on real object stores (Azurite, SeaweedFS): batch objects and compacted files read
back as collected, erase and purge through the backends, an export to an fsspec URL of the
store. Each result is compared with the rows collected; listings are checked with fsspec."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pyarrow.parquet as pq
import pytest

from conftest import utc
from mdc_core import Store, open_store
from mdc_core.cli import main as mdc_main
from mdc_core.compaction import MANIFEST, compact_partition
from mdc_formats.csv import CsvFormat
from test_reader import (
    CID,
    DAYS,
    TS,
    Hooked,
    assert_same,
    collect_days,
    expected_rows,
    inputs_folder,
    joined_expected,
)

adlfs = pytest.importorskip("adlfs")
s3fs = pytest.importorskip("s3fs")


@dataclass
class Cloud:
    kind: str
    url: str
    options: dict[str, Any]
    """The backend's storage options (what a collector and open_store take)."""
    fs: Any
    """An fsspec filesystem of the test's own (adlfs or s3fs), independent of mdc's backend."""
    fs_options: dict[str, Any]
    """The same credentials as fsspec storage options (for export destinations)."""
    name: str

    def cli_options(self) -> list[str]:
        return [arg for k, v in self.options.items() for arg in ("-o", f"{k}={v}")]


@pytest.fixture(params=["azure", "s3"])
def cloud(request, monkeypatch) -> Iterator[Cloud]:
    """A fresh container (Azurite; created by the first write) or bucket (SeaweedFS)."""
    for name in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_PROFILE", "AZURE_STORAGE_CONNECTION_STRING"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    name = f"r-{uuid.uuid4().hex[:16]}"
    if request.param == "azure":
        server = request.getfixturevalue("azurite")
        fs_options: dict[str, Any] = {"connection_string": server.connection_string}
        fs = adlfs.AzureBlobFileSystem(**fs_options)
        cloud = Cloud("azure", f"abfs://{name}", dict(fs_options), fs, fs_options, name)
    else:
        server = request.getfixturevalue("seaweedfs")
        options = {
            "endpoint_url": server.endpoint_url,
            "key": server.access_key,
            "secret": server.secret_key,
            "region": server.region,
        }
        fs_options = {
            "key": server.access_key,
            "secret": server.secret_key,
            "client_kwargs": {"endpoint_url": server.endpoint_url, "region_name": server.region},
        }
        fs = s3fs.S3FileSystem(**fs_options)
        fs.mkdir(name)  # the S3 backend does not create buckets unless told to
        cloud = Cloud("s3", f"s3://{name}", options, fs, fs_options, name)
    yield cloud
    with contextlib.suppress(Exception):
        fs.rm(name, recursive=True)


def collect_on(cloud: Cloud, **kw: Any) -> dict[str, list[dict[str, Any]]]:
    return collect_days(cloud.url, storage_options=cloud.options, compaction="off", **kw)


def test_batches_then_mdc_compact_read_as_collected(cloud) -> None:
    """Batch objects (one per flush) and, after 'mdc compact', data.csv alone read back as collected."""
    collected = collect_on(cloud, days=DAYS[:2])
    store = open_store(cloud.url, **cloud.options)
    parts = store.partitions(designation="inputs")
    assert [len(p.batches) for p in parts] == [2, 2]
    assert [e["rows"] for e in store.ls(designation="inputs")] == [6, 6]
    assert_same(store.read("best_model").to_table(), expected_rows(collected["inputs"]))
    assert mdc_main(["compact", cloud.url, "--include-open", *cloud.cli_options()]) == 0
    names = sorted(p.rpartition("/")[2] for p in cloud.fs.find(cloud.name))
    assert names == ["data.csv"] * 4
    assert all(p.batches == [] for p in store.partitions())
    start = utc(2026, 3, 5)
    assert_same(store.read("best_model", start=start).to_table(), expected_rows(collected["inputs"], start))
    assert_same(store.read("best_model", "predictions").to_table(), expected_rows(collected["predictions"]))
    store.close()


def test_erase_and_purge_through_the_backend(cloud) -> None:
    """Erase rewrites only the objects with the ids (no lock or manifest left); purge deletes old days."""
    collected = collect_on(cloud, days=DAYS[:2], batches=1)
    store = open_store(cloud.url, **cloud.options)
    victims = [collected["inputs"][1][CID], collected["inputs"][4][CID]]
    result = store.erase(correlation_ids=victims)
    assert result.rows == 4 and len(result.files) == 4  # inputs and predictions, two days
    assert not [p for p in cloud.fs.find(cloud.name) if p.rpartition("/")[2].startswith("_")]
    remaining = [r for r in collected["inputs"] if r[CID] not in victims]
    assert_same(store.read("best_model").to_table(), expected_rows(remaining))
    purged = store.purge(1, now=utc(2026, 3, 6, 12))
    assert len(purged.partitions) == 2
    left = sorted(p.split("/")[-5] + "/" + p.split("/")[-2] for p in cloud.fs.find(cloud.name))
    assert left == ["inputs/05", "predictions/05"]
    start = utc(2026, 3, 5)
    assert_same(store.read("best_model").to_table(), expected_rows(remaining, start))
    store.close()


def test_export_to_an_fsspec_url_on_the_store(cloud) -> None:
    """The joined training set is written to <scheme>://<bucket>/exports/train.parquet and read
    back through the test's own fsspec filesystem."""
    collected = collect_on(cloud, days=DAYS[1:])
    store = open_store(cloud.url, **cloud.options)
    target = f"{cloud.url}/exports/train.parquet"
    result = store.export(target, "best_model", storage_options=cloud.fs_options)
    want = joined_expected(collected)
    assert result.rows == len(want)
    with cloud.fs.open(f"{cloud.name}/exports/train.parquet", "rb") as f:
        table = pq.read_table(f)
    got = sorted(zip(table.column(CID).to_pylist(), table.column("score").to_pylist(), table.column(TS).to_pylist()))
    assert got == [(r[CID], r["score"], r[TS]) for r in want]
    store.close()
    dest_options = [
        a for k, v in cloud.fs_options.items() for a in ("-O", f"{k}={json.dumps(v) if isinstance(v, dict) else v}")
    ]
    csv_target = f"{cloud.url}/exports/inputs.csv"
    args = ["export", cloud.url, csv_target, "--designation", "inputs", *cloud.cli_options(), *dest_options]
    assert mdc_main([*args, "--json"]) == 0
    with cloud.fs.open(f"{cloud.name}/exports/inputs.csv", "rb") as f:
        rows = list(csv.DictReader(io.TextIOWrapper(f, encoding="utf-8")))
    assert sorted(r[CID] for r in rows) == sorted(r[CID] for r in collected["inputs"])


def test_missing_container_or_bucket_is_no_data(cloud, capsys) -> None:
    """'mdc ls' on a container or bucket that does not exist says so (exit 3) or names the error."""
    missing = f"{cloud.url.partition('://')[0]}://missing-{uuid.uuid4().hex[:12]}"
    code = mdc_main(["ls", missing, *cloud.cli_options()])
    err = capsys.readouterr().err
    assert code in (1, 3) and "mdc:" in err, err
    if code == 3:
        assert "does the container or bucket exist" in err
    for secret in (cloud.options.get("secret"), cloud.options.get("connection_string")):
        assert not secret or secret not in err


def test_every_row_once_while_compaction_races_or_died(cloud) -> None:
    """On the real store: a compaction that runs between the reader's listing and its reads, and
    one that died after replacing data.csv (batches and manifest left), never double a row."""
    collected = collect_on(cloud, days=DAYS[:1], batches=3)
    store = open_store(cloud.url, **cloud.options)
    inner = store.backend
    folder = inputs_folder("")
    fired: list[str] = []

    def race(op: str, key: str) -> None:
        if op == "read" and key.startswith(folder) and "/data-" in key and not fired:
            fired.append(key)
            compact_partition(inner, CsvFormat(), folder, "data", "csv")

    racing = Store(cloud.url, Hooked(inner, race), store.backend_name)
    assert_same(racing.read("best_model").to_table(), expected_rows(collected["inputs"]))
    assert fired

    late = collect_on(cloud, days=DAYS[:1], batches=2)  # new batches beside the compacted data.csv

    def crash(op: str, key: str) -> None:
        if op == "delete" and "/data-" in key:
            raise OSError("killed")

    with pytest.raises(OSError, match="killed"):
        compact_partition(Hooked(inner, crash), CsvFormat(), folder, "data", "csv")
    assert MANIFEST in [k.rpartition("/")[2] for k, _ in inner.list(folder)]
    everything = collected["inputs"] + late["inputs"]
    assert_same(store.read("best_model").to_table(), expected_rows(everything))
    assert mdc_main(["compact", cloud.url, "--include-open", *cloud.cli_options()]) == 0  # resumes
    assert_same(store.read("best_model").to_table(), expected_rows(everything))
    store.close()
