"""The S3 backend against a real SeaweedFS: the contract kit, credentials from options and from
the environment, the seed scoring script, retried batches, timeouts, and secrets kept out of
every log line, error, repr and ``stats()``. No mock stands in for the storage."""

from __future__ import annotations

import csv
import errno
import gc
import io
import logging
import os
import re
import socket
import subprocess
import sys
import threading
import traceback
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote, quote_plus

import pytest

from mdc_backends.s3 import S3Backend
from mdc_core import BackendError, Capability, ModelDataCollector
from mdc_core.plugins import get_registry
from mdc_core.testing import BackendContract
from mdc_core.writer import _create
from test_collector import SEED_SCRIPT

boto3 = pytest.importorskip("boto3")
from botocore.config import Config  # noqa: E402
from botocore.exceptions import ClientError  # noqa: E402

BATCH_NAME = re.compile(r"data-[0-9a-f]{16}-\d{10}\.csv")
WRONG_SECRET = "wr0ng/Secret+Key=With%Chars"
SESSION_TOKEN = "IQoJb3JpZ2luX2VjE/Session+Token=="
WORKSPACE = "1a2b3c4d-5e6f-7g8h-9i10-j11k12l13m14/myresourcegrp/myWorkspace"
_AWS_VARS = (
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_S3",
    "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS",
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "AWS_ROLE_ARN",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
)


@pytest.fixture(autouse=True)
def aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    """No credentials, endpoint or profile leak in from the machine; no instance-metadata probes."""
    for name in _AWS_VARS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


def options(server: Any, **extra: Any) -> dict[str, Any]:
    return {
        "endpoint_url": server.endpoint_url,
        "key": server.access_key,
        "secret": server.secret_key,
        "region": server.region,
        **extra,
    }


@pytest.fixture(scope="session")
def s3(seaweedfs):  # noqa: F811
    """A boto3 client of its own, to set up buckets and read back without the backend."""
    return boto3.client(
        "s3",
        endpoint_url=seaweedfs.endpoint_url,
        aws_access_key_id=seaweedfs.access_key,
        aws_secret_access_key=seaweedfs.secret_key,
        region_name=seaweedfs.region,
        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 2}),
    )


def _drop_bucket(s3: Any, bucket: str) -> None:
    try:
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
            for obj in page.get("Contents", []):
                s3.delete_object(Bucket=bucket, Key=obj["Key"])
        s3.delete_bucket(Bucket=bucket)
    except ClientError as exc:
        if exc.response["Error"]["Code"] != "NoSuchBucket":
            raise


@pytest.fixture
def bucket_name(s3) -> Iterator[str]:
    """A fresh bucket name, not created; removed afterwards if something created it."""
    name = f"mdc-{uuid.uuid4().hex[:12]}"
    yield name
    _drop_bucket(s3, name)


@pytest.fixture
def bucket(s3, bucket_name) -> str:
    """A fresh, empty bucket, created with boto3."""
    s3.create_bucket(Bucket=bucket_name)
    return bucket_name


def objects(s3: Any, bucket: str, prefix: str = "") -> dict[str, bytes]:
    """Every object under ``prefix``, read with boto3."""
    found = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            found[obj["Key"]] = s3.get_object(Bucket=bucket, Key=obj["Key"])["Body"].read()
    return found


def csv_rows(data: bytes) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(data.decode("utf-8"), newline="")))


def date_folder(correlation: dict[str, Any]) -> str:
    """``yyyy/mm/dd`` of the rows' scoring time (read from what collect() returned)."""
    stamp = correlation["$aml_dc_scoring_timestamp"]
    return f"{stamp[0:4]}/{stamp[5:7]}/{stamp[8:10]}"


class TestS3Contract(BackendContract):
    """The S3 backend honours the contract for what it declares, read back with boto3."""

    capabilities = frozenset({Capability.CREATE_IF_ABSENT, Capability.MAINTAIN})

    @pytest.fixture
    def backend(self, seaweedfs, bucket) -> Iterator[S3Backend]:  # noqa: F811
        backend = S3Backend(f"s3://{bucket}/contract", options(seaweedfs))
        yield backend
        backend.close()

    @pytest.fixture
    def storage(self, seaweedfs, bucket) -> tuple[str, dict[str, Any]]:  # noqa: F811
        return f"s3://{bucket}/contract", options(seaweedfs)

    @pytest.fixture
    def read(self, s3, bucket):
        def read(key: str) -> bytes | None:
            try:
                return s3.get_object(Bucket=bucket, Key=f"contract/{key}")["Body"].read()
            except ClientError as exc:
                if exc.response["Error"]["Code"] == "NoSuchKey":
                    return None
                raise

        return read


# -- the backend on its own ---------------------------------------------------------------


def test_registered_for_s3_and_s3a_urls() -> None:
    """s3:// and s3a:// reach this backend through its entry point, with the capabilities it has."""
    registry = get_registry()
    for url in ("s3://bucket/prefix", "s3a://bucket"):
        plugin = registry.backend_for_url(url)
        assert plugin.name == "s3" and plugin.factory is S3Backend
        assert plugin.capabilities == {Capability.CREATE_IF_ABSENT, Capability.MAINTAIN}


@pytest.mark.parametrize(
    "url",
    [
        "s3://",
        "s3://ab",
        "s3://Upper",
        "s3://AKIDX:secret-in-url@bucket",
        "s3://bucket/a//b",
        "s3://bucket/../b",
        "s3://bucket?versionId=1",
    ],
)
def test_bad_urls_are_refused_when_built(url: str) -> None:
    """A URL that cannot name a bucket and prefix is refused at once, without echoing credentials."""
    with pytest.raises(ValueError) as info:
        S3Backend(url, {})
    assert "secret-in-url" not in str(info.value)


@pytest.mark.parametrize(
    "bad",
    [
        {"timeout": 0},
        {"timeout": "soon"},
        {"retries": -1},
        {"retries": 1.5},
        {"create_bucket": "maybe"},
        {"key": "AKIDONLY"},
        {"endpoint_url": "ftp://x"},
        {"client_kwargs": "x"},
        {"sekret": WRONG_SECRET},
    ],
)
def test_bad_options_are_refused_when_built(bad: dict[str, Any]) -> None:
    """Unknown options and impossible values raise ValueError naming the option, never its value."""
    with pytest.raises(ValueError) as info:
        S3Backend("s3://bucket", bad)
    assert WRONG_SECRET not in str(info.value) and repr(next(iter(bad.values()))) not in str(info.value)


def test_endpoint_from_options_then_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """storage_options endpoint_url > AWS_ENDPOINT_URL_S3 > AWS_ENDPOINT_URL; the repr shows host only."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://general:9000")
    assert S3Backend("s3://bucket", {}).endpoint_url == "http://general:9000"
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", "https://user:pw@s3only:9001/some/path?x=1")
    backend = S3Backend("s3://bucket/a/b", {})
    assert backend.endpoint_url == "https://user:pw@s3only:9001/some/path?x=1"
    assert repr(backend) == "S3Backend(bucket='bucket', prefix='a/b', endpoint='https://s3only:9001')"
    assert S3Backend("s3://bucket", {"endpoint_url": "http://given:1"}).endpoint_url == "http://given:1"
    monkeypatch.setenv("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS", "true")
    assert S3Backend("s3://bucket", {}).endpoint_url is None


def test_prefix_confines_the_backend(seaweedfs, s3, bucket) -> None:  # noqa: F811
    """Keys are relative to the URL's prefix; objects beside it (even 'contractX/...') stay unseen."""
    s3.put_object(Bucket=bucket, Key="contractX/outside.csv", Body=b"no")
    s3.put_object(Bucket=bucket, Key="top.csv", Body=b"no")
    s3.put_object(Bucket=bucket, Key="contract/folder/", Body=b"")  # a console-made "folder"
    backend = S3Backend(f"s3://{bucket}/contract/", options(seaweedfs))
    assert backend.create("a/data-1.csv", b"yes")
    assert backend.list("") == [("a/data-1.csv", 3)]
    assert backend.read("top.csv") is None and backend.size("top.csv") is None
    assert objects(s3, bucket, "contract/a/") == {"contract/a/data-1.csv": b"yes"}
    with pytest.raises(ValueError):
        backend.read("../top.csv")


def test_missing_bucket_is_a_clear_error(seaweedfs, s3, bucket_name) -> None:  # noqa: F811
    """Without create_bucket, writing to a missing bucket says so and how to fix it; nothing is created."""
    backend = S3Backend(f"s3://{bucket_name}/p", options(seaweedfs))
    with pytest.raises(BackendError) as info:
        backend.create("k/data-1.csv", b"x")
    assert info.value.errno == errno.ENOENT
    assert "NoSuchBucket" in str(info.value) and "create_bucket" in str(info.value)
    assert bucket_name not in [b["Name"] for b in s3.list_buckets()["Buckets"]]


def test_create_bucket_option_creates_it_on_first_write(seaweedfs, s3, bucket_name) -> None:  # noqa: F811
    """With create_bucket=True the first write creates the bucket, then stores the object."""
    backend = S3Backend(f"s3://{bucket_name}/p", options(seaweedfs, create_bucket="true"))
    assert backend.create("k/data-1.csv", b"x") is True
    assert objects(s3, bucket_name) == {"p/k/data-1.csv": b"x"}
    other = S3Backend(f"s3://{bucket_name}", options(seaweedfs, create_bucket=True))
    other.put("again.csv", b"y")  # the bucket exists now: nothing to create, nothing fails
    assert objects(s3, bucket_name, "again") == {"again.csv": b"y"}


def test_multipart_upload_is_create_only_too(seaweedfs, s3, bucket) -> None:  # noqa: F811
    """A batch big enough for a multipart upload is conditioned at completion: the second loses, whole."""
    backend = S3Backend(f"s3://{bucket}", options(seaweedfs))
    backend.multipart_chunksize = 5 * 2**20  # S3's smallest part, so 10 MiB goes in parts
    first, second = os.urandom(10 * 2**20 + 1), os.urandom(10 * 2**20 + 1)
    assert backend.create("big/data-1.csv", first) is True
    assert backend.create("big/data-1.csv", second) is False
    assert objects(s3, bucket) == {"big/data-1.csv": first}
    assert not s3.list_multipart_uploads(Bucket=bucket).get("Uploads")  # the losing upload was aborted


def test_missing_credentials_are_a_clear_error(bucket) -> None:
    """With no credentials anywhere (options, environment, files, roles) a write says how to give them."""
    backend = S3Backend(f"s3://{bucket}", {"endpoint_url": "http://127.0.0.1:9", "retries": 0})
    with pytest.raises(BackendError) as info:
        backend.create("k/data-1.csv", b"x")
    assert info.value.errno == errno.EACCES and "NoCredentialsError" in str(info.value)
    assert "AWS_ACCESS_KEY_ID" in str(info.value)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork (POSIX)")
def test_forked_child_uses_its_own_client(seaweedfs, s3, bucket) -> None:  # noqa: F811
    """A backend inherited through fork() (gunicorn --preload) writes from both processes at once,
    and the child never disturbs the parent's connections (a short timeout, no retries: a parent
    request stuck on a connection the child closed would fail)."""
    backend = S3Backend(f"s3://{bucket}", options(seaweedfs, timeout=3, retries=0))
    assert backend.create("fork/parent-0.csv", b"p")  # the parent now holds a client and connections
    assert backend.list("fork/") and backend.read("fork/parent-0.csv") == b"p"
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        code = 1
        try:
            code = 0 if all(backend.create(f"fork/child-{i}.csv", b"c") for i in range(10)) else 2
            gc.collect()  # what the child dropped of the parent's is finalized now, as it would be later
        finally:
            os._exit(code)
    parent_ok = all(backend.create(f"fork/parent-{i}.csv", b"p") for i in range(1, 11))
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0 and parent_ok
    assert len(backend.list("fork/")) == 21


def test_a_silent_server_times_out() -> None:
    """A server that takes the connection and never answers costs ``timeout`` per attempt, not forever."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)  # connections complete in the kernel's backlog; nobody ever answers
        backend = S3Backend(
            "s3://silent",
            {
                "endpoint_url": f"http://127.0.0.1:{silent.getsockname()[1]}",
                "key": "AKIDSILENT",
                "secret": WRONG_SECRET,
                "timeout": 0.5,
                "retries": 1,
            },
        )
        outcome: list[BaseException] = []
        worker = threading.Thread(target=lambda: _capture(outcome, backend.create, "k/data-1.csv", b"x" * 4096))
        worker.start()
        worker.join(60)
        assert not worker.is_alive(), "the upload hung past its timeout"
    [error] = outcome
    assert isinstance(error, BackendError) and error.errno == errno.ETIMEDOUT
    assert "ReadTimeoutError" in str(error) and WRONG_SECRET not in str(error)


def _capture(into: list[BaseException], call: Any, *args: Any) -> None:
    try:
        call(*args)
    except BaseException as exc:  # noqa: BLE001 - handed to the test thread
        into.append(exc)


# -- a retried batch ----------------------------------------------------------------------


def test_a_retried_batch_is_stored_once(seaweedfs, s3, bucket) -> None:  # noqa: F811
    """create() twice stores one object; the writer's retry path calls the second try delivered,
    and refuses a different batch under a name that is taken."""
    backend = S3Backend(f"s3://{bucket}/root", options(seaweedfs))
    folder = "s/rg/ws/svc/m/1/inputs/2026/03/05/"
    data = b"a,b\n1,2\n"
    assert backend.create(folder + "data-00000000000000aa-0000000001.csv", data) is True
    assert backend.create(folder + "data-00000000000000aa-0000000001.csv", data) is False
    key = folder + "data-00000000000000aa-0000000002.csv"
    assert _create(backend, key, data) == key
    assert _create(backend, key, data) == key  # the answer was lost, the upload was not: delivered
    with pytest.raises(BackendError) as info:
        _create(backend, key, b"a,b\n9,9,9\n")
    assert info.value.errno == errno.EEXIST
    assert objects(s3, bucket) == {"root/" + folder + "data-00000000000000aa-0000000001.csv": data, "root/" + key: data}


def test_connection_reset_mid_upload_leaves_nothing(seaweedfs, s3, bucket) -> None:  # noqa: F811
    """A connection reset in the middle of a batch upload publishes nothing under the final name;
    the flusher's retry of the same batch then writes it exactly once. (aiohttp itself resends
    an idempotent PUT once after a reset, so two resets make the upload fail.)"""
    from faultproxy import FaultProxy

    port = int(seaweedfs.endpoint_url.rsplit(":", 1)[1])
    data = b"a,b\n" + b"".join(b"%d,%s\n" % (i, b"x" * 200) for i in range(4000))  # ~800 kB, one PUT
    key = "sub/rg/ws/svc/m/1/inputs/2026/03/05/data-00000000000000aa-0000000001.csv"
    with FaultProxy("127.0.0.1", port, cut_after=300_000, cuts=2) as proxy:
        backend = S3Backend(
            f"s3://{bucket}", options(seaweedfs, endpoint_url=f"http://127.0.0.1:{proxy.port}", retries=0, timeout=10)
        )
        with pytest.raises(BackendError):
            backend.create(key, data)
        assert proxy.cut == 2  # the faults really happened
        assert objects(s3, bucket) == {}
        assert _create(backend, key, data) == key
        assert objects(s3, bucket) == {key: data}
        backend.close()


# -- through the collector ----------------------------------------------------------------


def _collect_three(model: str, **kwargs: Any) -> tuple[ModelDataCollector, dict[str, Any]]:
    dc = ModelDataCollector(model, designation="inputs", feature_names=["a", "b"], **kwargs)
    correlation = dc.collect([[1, "x"], [2, "y, with comma"], [3, None]])
    assert dc.flush(timeout=60), dc.stats()
    return dc, correlation


def _assert_three_rows_at(s3: Any, bucket: str, root: str, model: str, correlation: dict[str, Any]) -> None:
    folder = f"{root}default/default/default/default/{model}/default/inputs/{date_folder(correlation)}/"
    found = objects(s3, bucket)
    assert found and all(k.startswith(folder) and BATCH_NAME.fullmatch(k[len(folder) :]) for k in found), found
    rows = [row for data in found.values() for row in csv_rows(data)]
    assert [(r["a"], r["b"]) for r in rows] == [("1", "x"), ("2", "y, with comma"), ("3", "")]
    assert [r["$aml_dc_correlation_id"] for r in rows] == list(correlation["$aml_dc_correlation_id"])


def test_collector_with_credentials_in_storage_options(seaweedfs, s3, bucket) -> None:  # noqa: F811
    """storage='s3://bucket/prefix' with storage_options writes the spec path under the prefix."""
    model = f"m{uuid.uuid4().hex[:8]}"
    dc, correlation = _collect_three(model, storage=f"s3://{bucket}/team/models", storage_options=options(seaweedfs))
    assert dc.stats()["written"] == 3
    _assert_three_rows_at(s3, bucket, "team/models/", model, correlation)


def test_collector_with_credentials_from_the_environment(seaweedfs, s3, bucket, monkeypatch) -> None:  # noqa: F811
    """AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and AWS_ENDPOINT_URL alone are enough (botocore's chain)."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", seaweedfs.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", seaweedfs.secret_key)
    monkeypatch.setenv("AWS_ENDPOINT_URL", seaweedfs.endpoint_url)
    model = f"m{uuid.uuid4().hex[:8]}"
    dc, correlation = _collect_three(model, storage=f"s3://{bucket}/env")
    assert dc.stats()["written"] == 3
    _assert_three_rows_at(s3, bucket, "env/", model, correlation)


@pytest.fixture
def modeldata(s3) -> Iterator[str]:
    _drop_bucket(s3, "modeldata")
    s3.create_bucket(Bucket="modeldata")
    yield "modeldata"
    _drop_bucket(s3, "modeldata")


def test_seed_script_writes_joinable_rows_to_seaweedfs(seaweedfs, s3, modeldata, tmp_path) -> None:  # noqa: F811
    """SPEC.md's scoring script, unchanged, with root s3://modeldata and credentials from the
    environment, leaves every row under <sub>/<rg>/<ws>/<svc>/<model>/<version>/<designation>/<date>/."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MDC_", "AML_MODEL_DC_", "AWS_"))}
    env.update(
        {
            "MDC_STORAGE_URL": "s3://modeldata",
            "MDC_WORKSPACE": WORKSPACE,
            "MDC_SERVICE_NAME": "aks-w-collv9",
            "MDC_MODEL_VERSION": "10",
            "AWS_ACCESS_KEY_ID": seaweedfs.access_key,
            "AWS_SECRET_ACCESS_KEY": seaweedfs.secret_key,
            "AWS_ENDPOINT_URL": seaweedfs.endpoint_url,
            "AWS_EC2_METADATA_DISABLED": "true",
            "AWS_CONFIG_FILE": str(tmp_path / "none"),
            "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none"),
        }
    )
    result = subprocess.run(
        [sys.executable, "-c", SEED_SCRIPT],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "could not write" not in result.stderr, result.stderr
    assert not (tmp_path / "modeldata").exists()
    found = objects(s3, modeldata)
    shape = re.compile(
        rf"{re.escape(WORKSPACE)}/aks-w-collv9/best_model/10/(inputs|predictions)/"
        r"(\d{4})/(\d{2})/(\d{2})/(data-[0-9a-f]{16}-\d{10}\.csv)"
    )
    assert found and all(shape.fullmatch(key) for key in found), sorted(found)
    ins = [r for k, v in sorted(found.items()) if "/inputs/" in k for r in csv_rows(v)]
    outs = [r for k, v in sorted(found.items()) if "/predictions/" in k for r in csv_rows(v)]
    features = [[float(r[f"feat{i}"]) for i in range(1, 7)] for r in ins]
    expected = [[i, 1, 2, 3, 4, 5.5] for i in range(5)] + [[10, 11, 12, 13, 14, 15], [20, 21, 22, 23, 24, 25]]
    assert sorted(features) == sorted(expected)
    assert len(outs) == 7
    by_id = {r["$aml_dc_correlation_id"]: r for r in ins}
    assert len(by_id) == 7
    for out in outs:
        src = by_id[out["$aml_dc_correlation_id"]]
        values = [float(src[f"feat{i}"]) for i in range(1, 7)]
        assert float(out["prediction1"]) == pytest.approx(sum(values))
        assert float(out["prediction2"]) == pytest.approx(sum(values) / 6)
        assert out["$aml_request_id"] == src["$aml_request_id"]
    for row in ins + outs:
        assert (row["$aml_workspace"], row["$aml_service_name"], row["$aml_model_version"]) == (
            WORKSPACE,
            "aks-w-collv9",
            "10",
        )
    # `mdc compact` (the day is still open, hence --include-open) leaves exactly one data.csv per folder
    mdc = os.path.join(os.path.dirname(sys.executable), "mdc")
    done = subprocess.run(
        [mdc, "compact", "s3://modeldata", "--include-open", "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    compacted = objects(s3, modeldata)
    assert sorted(k.rsplit("/", 1)[1] for k in compacted) == ["data.csv", "data.csv"]
    for data in compacted.values():
        assert len(csv_rows(data)) == 7 and data.count(b"feat1,") + data.count(b"prediction1,") == 1


# -- failures, and secrets ----------------------------------------------------------------


def test_failing_storage_never_raises_into_collect(seaweedfs, bucket, caplog) -> None:  # noqa: F811
    """With a wrong secret, collect() still returns; the rows are kept in the local spool for replay,
    flush() says False, and the log says what the server refused."""
    caplog.set_level(logging.WARNING, logger="mdc")
    model = f"m{uuid.uuid4().hex[:8]}"
    dc = ModelDataCollector(
        model,
        designation="inputs",
        feature_names=["a"],
        storage=f"s3://{bucket}",
        storage_options=options(seaweedfs, secret=WRONG_SECRET),
    )
    assert dc.collect([[1], [2]])["$aml_dc_correlation_id"]
    assert not dc.flush(timeout=60)
    dc.collect([3])  # still no exception after a failure
    assert not dc.flush(timeout=60)
    stats = dc.stats()
    assert stats["written"] == 0 and stats["spooled"] == 3 and stats["dropped"] == {} and stats["pending"] == 0
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING and model in r.getMessage()]
    assert errors and "SignatureDoesNotMatch (HTTP 403)" in errors[0], errors


def test_no_secret_in_logs_errors_reprs_or_stats(seaweedfs, s3, bucket, caplog, capsys, monkeypatch) -> None:  # noqa: F811
    """Runs that use the secret key or a session token (succeeding, refused, unreachable), with every
    logger at DEBUG (botocore prints canonical requests and headers there), leave no secret, raw or
    URL-encoded, in any log record, output, exception (with its causes), repr or stats()."""
    for name in ("", "botocore", "aiobotocore", "s3fs", "mdc"):
        caplog.set_level(logging.DEBUG, logger=name or None)
    texts: list[str] = []
    errors: list[BaseException] = []
    model = f"m{uuid.uuid4().hex[:8]}"

    def attempt(call: Any, *args: Any) -> Any:
        try:
            return call(*args)
        except Exception as exc:
            errors.append(exc)
            return None

    # 1. succeeding, credentials in storage_options, through the collector and directly
    good = options(seaweedfs)
    dc = ModelDataCollector(
        model, designation="inputs", feature_names=["a"], storage=f"s3://{bucket}/ok", storage_options=good
    )
    dc.collect([[1], [2]])
    assert dc.flush(timeout=60)
    backend = S3Backend(f"s3://{bucket}/direct", good)
    assert backend.create("x/data-1.csv", b"a\n1\n") and backend.create("x/data-1.csv", b"a\n1\n") is False
    backend.put("x/data.csv", b"a\n")
    assert backend.list("x/") and backend.read("x/data.csv") == b"a\n" and backend.size("x/data.csv") == 2
    backend.delete("x/data.csv")
    texts += [repr(dc), str(dc.stats()), repr(backend)]

    # 2. succeeding, credentials from the environment
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", seaweedfs.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", seaweedfs.secret_key)
    monkeypatch.setenv("AWS_ENDPOINT_URL", seaweedfs.endpoint_url)
    env_dc = ModelDataCollector(model, designation="predictions", feature_names=["p"], storage=f"s3://{bucket}/env")
    env_dc.collect([[0.5]])
    assert env_dc.flush(timeout=60)
    texts += [repr(env_dc), str(env_dc.stats())]
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(name)

    # 3. refused: a wrong secret (SignatureDoesNotMatch), through the collector and directly
    wrong = options(seaweedfs, secret=WRONG_SECRET)
    bad_dc = ModelDataCollector(
        model, designation="labels", feature_names=["y"], storage=f"s3://{bucket}/bad", storage_options=wrong
    )
    bad_dc.collect([[1]])
    assert not bad_dc.flush(timeout=60)
    bad = S3Backend(f"s3://{bucket}/bad", wrong)
    for call, args in (
        (bad.create, ("k/data-1.csv", b"1")),
        (bad.put, ("k/data.csv", b"1")),
        (bad.list, ("",)),
        (bad.read, ("k/data.csv",)),
        (bad.delete, ("k/data.csv",)),
    ):
        attempt(call, *args)
    texts += [repr(bad_dc), str(bad_dc.stats()), repr(bad)]

    # 4. refused: a session token the server does not know (InvalidAccessKeyId)
    token = S3Backend(f"s3://{bucket}/token", options(seaweedfs, secret=WRONG_SECRET, token=SESSION_TOKEN, retries=0))
    attempt(token.create, "k/data-1.csv", b"1")
    texts.append(repr(token))

    # 5. unreachable: nothing listens on the endpoint's port
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    gone = S3Backend(f"s3://{bucket}", options(seaweedfs, endpoint_url=f"http://127.0.0.1:{port}", retries=0))
    attempt(gone.create, "k/data-1.csv", b"1")
    texts.append(repr(gone))

    # everything that was said
    formatter = logging.Formatter("%(name)s %(levelname)s %(message)s")
    texts += [formatter.format(record) for record in caplog.records]
    out, err = capsys.readouterr()
    texts += [out, err]
    for exc in errors:
        texts += [str(exc), repr(exc), "".join(traceback.format_exception(exc))]
    everything = "\n".join(texts)

    # the runs did what they were meant to, with botocore's DEBUG output captured
    codes = [str(e) for e in errors]
    assert len(errors) == 7 and all(isinstance(e, BackendError) for e in errors), codes
    assert all(e.errno == errno.EACCES and "HTTP 403" in str(e) for e in errors[:6]), codes
    assert all("SignatureDoesNotMatch" in c for c in (codes[0], codes[1], codes[2], codes[4])), codes
    assert "InvalidAccessKeyId (HTTP 403)" in codes[5] and "EndpointConnectionError" in codes[6], codes
    assert "CanonicalRequest" in everything and "Sending http request" in everything
    assert "x-amz-security-token:***" in everything  # botocore printed the token's line, masked
    assert "could not write 1 rows" in everything and "SignatureDoesNotMatch" in everything
    for secret in (seaweedfs.secret_key, WRONG_SECRET, SESSION_TOKEN):
        for form in {secret, quote(secret, safe=""), quote(secret), quote_plus(secret)}:
            assert form not in everything, f"a form of a secret leaked: {form[:4]}..."
    for backend_ in (backend, bad, token, gone):
        backend_.close()
