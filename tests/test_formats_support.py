"""Shared pieces of the format tests: one storage root per backend (local disk, Azurite,
SeaweedFS), copied to a local folder with the servers' own clients so that pyarrow, DuckDB and
pandas read exactly the objects that were published, and rows normalised for comparison."""

from __future__ import annotations

import contextlib
import datetime as dt
import math
import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from mdc_core.plugins import get_registry

STORES = ["local", "azurite", "seaweedfs"]


@dataclass
class Store:
    """A storage root for collectors, and a way to see what it holds."""

    name: str
    url: str
    options: dict[str, Any]
    download: Callable[[Path], Path]
    """Copies every published object to a local folder (keys as paths) and returns it."""

    def backend(self) -> Any:
        """A backend of mdc's for the root (for compaction), separate from the collectors'."""
        return get_registry().backend_for_url(self.url).factory(self.url, dict(self.options))


def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    kind = request.param
    if kind == "local":
        root = tmp_path / "rows"
        yield Store(kind, str(root), {"append": False}, lambda _dest: root)
    elif kind == "azurite":
        yield from _azurite(request.getfixturevalue("azurite"), tmp_path)
    else:
        yield from _seaweed(request.getfixturevalue("seaweedfs"), tmp_path)


def _azurite(server: Any, tmp_path: Path) -> Iterator[Store]:
    blob = pytest.importorskip("azure.storage.blob")
    service = blob.BlobServiceClient.from_connection_string(server.connection_string)
    container = f"f-{uuid.uuid4().hex[:16]}"

    def download(dest: Path) -> Path:
        client = service.get_container_client(container)
        _fresh(dest)
        for item in client.list_blobs():
            _save(dest, item.name, client.download_blob(item.name).readall())
        return dest

    yield Store("azurite", f"abfs://{container}", {"connection_string": server.connection_string}, download)
    with contextlib.suppress(Exception):  # never created, or already gone
        service.delete_container(container)


def _seaweed(server: Any, tmp_path: Path) -> Iterator[Store]:
    boto3 = pytest.importorskip("boto3")
    from botocore.config import Config

    s3 = boto3.client(
        "s3",
        endpoint_url=server.endpoint_url,
        aws_access_key_id=server.access_key,
        aws_secret_access_key=server.secret_key,
        region_name=server.region,
        config=Config(s3={"addressing_style": "path"}),
    )
    bucket = f"f-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=bucket)

    def download(dest: Path) -> Path:
        _fresh(dest)
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
            for obj in page.get("Contents", []):
                _save(dest, obj["Key"], s3.get_object(Bucket=bucket, Key=obj["Key"])["Body"].read())
        return dest

    options = {"endpoint_url": server.endpoint_url, "key": server.access_key, "secret": server.secret_key,
               "region": server.region}
    yield Store("seaweedfs", f"s3://{bucket}", options, download)
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for obj in page.get("Contents", []):
            s3.delete_object(Bucket=bucket, Key=obj["Key"])
    s3.delete_bucket(Bucket=bucket)


def _fresh(dest: Path) -> None:
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)


def _save(dest: Path, key: str, data: bytes) -> None:
    path = dest.joinpath(*key.split("/"))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def files(root: Path, pattern: str) -> list[str]:
    """Published files matching ``pattern`` (mdc's hidden files and folders excluded)."""
    return sorted(
        str(p) for p in Path(root).glob(pattern)
        if not any(part.startswith((".", "_")) for part in p.relative_to(root).parts)
    )


def plain(value: Any) -> Any:
    """A reader's value as plain Python: NaN/NaT/NA as None, numpy scalars unwrapped,
    timestamps as aware UTC datetimes."""
    if value is None:
        return None
    if hasattr(value, "to_pydatetime"):
        value = value.to_pydatetime()
    elif hasattr(value, "item") and not isinstance(value, (str, bytes)):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    if type(value).__name__ in ("NAType", "NaTType"):
        return None
    if isinstance(value, dt.datetime):
        value = value.replace(tzinfo=dt.timezone.utc) if value.tzinfo is None else value.astimezone(dt.timezone.utc)
    return value


def env_for_subprocess() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [os.path.dirname(__file__), env.get("PYTHONPATH", "")]))
    return env


def test_csv_encodes_the_same_with_a_pyarrow_that_has_no_eol_option(monkeypatch) -> None:
    """pyarrow before 26 has no WriteOptions(eol=...): passing it raised TypeError and no CSV was
    written at all. Its writer ends lines with "\\n" anyway: the bytes must be the same."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    from mdc_formats import csv as csv_format

    table = pa.table({"a": [1.5, None], "b": ["x,y", "z"]})
    expected = csv_format.CsvFormat().encode(table)
    real = pacsv.WriteOptions
    refused = []

    def old_write_options(*args: Any, **kwargs: Any) -> Any:
        if "eol" in kwargs:
            refused.append(kwargs["eol"])
            raise TypeError("__init__() got an unexpected keyword argument 'eol'")
        return real(*args, **kwargs)

    monkeypatch.setattr(pacsv, "WriteOptions", old_write_options)
    assert csv_format.CsvFormat().encode(table) == expected
    assert refused == ["\n"]  # the old signature really was exercised
    assert expected.body == b'1.5,"x,y"\n,"z"\n'
