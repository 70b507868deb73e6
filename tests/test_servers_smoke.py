"""Smoke tests for the real storage servers used by integration tests.

They check that Azurite and SeaweedFS start, that the official clients
(azure-storage-blob, boto3) can round-trip bytes, and that both servers offer
the create-if-absent primitive (If-None-Match: *) that the library relies on.
"""

from __future__ import annotations

import concurrent.futures
import os
import uuid

import pytest

# Concurrent create-if-absent writers per key, and keys tried.  Kept small: on
# SeaweedFS each losing conditional PUT may wait ~1 s on a server-side lock.
RACERS = 6
RACE_TRIALS = 3

PAYLOAD = b"mdc smoke \x00\x01\x02\xff" + os.urandom(64 * 1024)


def _name(prefix: str) -> str:
    # Valid as both an Azure container name and an S3 bucket name.
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


# --------------------------------------------------------------------------
# Azurite
# --------------------------------------------------------------------------


@pytest.fixture
def blob_container(azurite):  # noqa: F811
    blob = pytest.importorskip("azure.storage.blob")
    svc = blob.BlobServiceClient.from_connection_string(azurite.connection_string)
    container = svc.create_container(_name("smoke"))
    try:
        yield container
    finally:
        container.delete_container()


def test_azurite_roundtrip(azurite, blob_container):  # noqa: F811
    assert azurite.account_name == "devstoreaccount1"
    assert azurite.blob_endpoint.startswith("http://127.0.0.1:")
    blob_container.upload_blob("dir/obj.bin", PAYLOAD)
    got = blob_container.download_blob("dir/obj.bin").readall()
    assert got == PAYLOAD
    assert [b.name for b in blob_container.list_blobs(name_starts_with="dir/")] == ["dir/obj.bin"]


def test_azurite_create_if_absent(blob_container):
    from azure.core.exceptions import ResourceExistsError

    blob = blob_container.get_blob_client("once")
    # overwrite=False sends `If-None-Match: *`.
    blob.upload_blob(b"first", overwrite=False)
    with pytest.raises(ResourceExistsError) as exc_info:
        blob.upload_blob(b"second", overwrite=False)
    assert exc_info.value.status_code == 409
    assert blob.download_blob().readall() == b"first"


def test_azurite_create_if_absent_race(blob_container):
    from azure.core.exceptions import ResourceExistsError

    def attempt(blob_name: str, i: int):
        try:
            blob_container.get_blob_client(blob_name).upload_blob(f"v{i}".encode(), overwrite=False)
            return i
        except ResourceExistsError:
            return None

    with concurrent.futures.ThreadPoolExecutor(RACERS) as pool:
        for trial in range(RACE_TRIALS):
            name = f"race/{trial}"
            results = list(pool.map(attempt, [name] * RACERS, range(RACERS)))
            winners = [r for r in results if r is not None]
            assert len(winners) == 1, results
            assert blob_container.download_blob(name).readall() == f"v{winners[0]}".encode()


# --------------------------------------------------------------------------
# SeaweedFS (S3)
# --------------------------------------------------------------------------


def _s3_client(server, secret_key=None):
    boto3 = pytest.importorskip("boto3")
    from botocore.config import Config

    return boto3.client(
        "s3",
        endpoint_url=server.endpoint_url,
        aws_access_key_id=server.access_key,
        aws_secret_access_key=secret_key or server.secret_key,
        region_name=server.region,
        config=Config(
            s3={"addressing_style": "path"},
            retries={"max_attempts": 2, "mode": "standard"},
            max_pool_connections=16,
        ),
    )


@pytest.fixture
def s3_bucket(seaweedfs):  # noqa: F811
    s3 = _s3_client(seaweedfs)
    bucket = _name("smoke")
    s3.create_bucket(Bucket=bucket)
    try:
        yield s3, bucket
    finally:
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
            for obj in page.get("Contents", []):
                s3.delete_object(Bucket=bucket, Key=obj["Key"])
        s3.delete_bucket(Bucket=bucket)


def test_seaweedfs_roundtrip(seaweedfs, s3_bucket):  # noqa: F811
    assert seaweedfs.endpoint_url.startswith("http://127.0.0.1:")
    s3, bucket = s3_bucket
    s3.put_object(Bucket=bucket, Key="dir/obj.bin", Body=PAYLOAD)
    got = s3.get_object(Bucket=bucket, Key="dir/obj.bin")["Body"].read()
    assert got == PAYLOAD
    listed = s3.list_objects_v2(Bucket=bucket, Prefix="dir/")
    assert [o["Key"] for o in listed["Contents"]] == ["dir/obj.bin"]


def test_seaweedfs_rejects_wrong_credentials(seaweedfs, s3_bucket):  # noqa: F811
    from botocore.exceptions import ClientError

    _, bucket = s3_bucket
    bad = _s3_client(seaweedfs, secret_key="not-the-secret")
    with pytest.raises(ClientError) as exc_info:
        bad.put_object(Bucket=bucket, Key="nope", Body=b"x")
    assert exc_info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403


def test_seaweedfs_create_if_absent(s3_bucket):
    from botocore.exceptions import ClientError

    s3, bucket = s3_bucket
    s3.put_object(Bucket=bucket, Key="once", Body=b"first", IfNoneMatch="*")
    with pytest.raises(ClientError) as exc_info:
        s3.put_object(Bucket=bucket, Key="once", Body=b"second", IfNoneMatch="*")
    err = exc_info.value.response
    assert err["ResponseMetadata"]["HTTPStatusCode"] == 412
    assert err["Error"]["Code"] == "PreconditionFailed"
    assert s3.get_object(Bucket=bucket, Key="once")["Body"].read() == b"first"


def test_seaweedfs_create_if_absent_race(s3_bucket):
    from botocore.exceptions import ClientError

    s3, bucket = s3_bucket

    def attempt(key: str, i: int):
        try:
            s3.put_object(Bucket=bucket, Key=key, Body=f"v{i}".encode(), IfNoneMatch="*")
            return i
        except ClientError as e:
            if e.response["ResponseMetadata"]["HTTPStatusCode"] == 412:
                return None
            raise

    with concurrent.futures.ThreadPoolExecutor(RACERS) as pool:
        for trial in range(RACE_TRIALS):
            key = f"race/{trial}"
            results = list(pool.map(attempt, [key] * RACERS, range(RACERS)))
            winners = [r for r in results if r is not None]
            assert len(winners) == 1, results
            assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == f"v{winners[0]}".encode()


def test_seaweedfs_many_buckets(seaweedfs):  # noqa: F811
    """Each bucket is a SeaweedFS collection with its own volumes; make sure
    the server is configured so that many buckets can be written to."""
    s3 = _s3_client(seaweedfs)
    buckets = [_name("many") for _ in range(10)]
    try:
        for b in buckets:
            s3.create_bucket(Bucket=b)
            s3.put_object(Bucket=b, Key="k", Body=b.encode())
        for b in buckets:
            assert s3.get_object(Bucket=b, Key="k")["Body"].read() == b.encode()
    finally:
        for b in buckets:
            try:
                s3.delete_object(Bucket=b, Key="k")
                s3.delete_bucket(Bucket=b)
            except Exception:
                pass


def test_seaweedfs_put_into_missing_bucket_fails(seaweedfs):  # noqa: F811
    """Like real S3 (weed is started with -s3.autoCreateBucket=false)."""
    from botocore.exceptions import ClientError

    s3 = _s3_client(seaweedfs)
    with pytest.raises(ClientError) as exc_info:
        s3.put_object(Bucket=_name("missing"), Key="k", Body=b"x")
    assert exc_info.value.response["Error"]["Code"] == "NoSuchBucket"
