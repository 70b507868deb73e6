"""The Azure Blob backend against a real Azurite: contract, URLs, credentials, secrets, failures.

No mocks: every write goes to Azurite, and every read-back uses a separate azure-storage-blob
client, not the backend under test.
"""

from __future__ import annotations

import base64
import contextlib
import csv
import datetime as dt
import errno
import io
import logging
import os
import re
import socket
import subprocess
import sys
import threading
import time
import traceback
import urllib.parse
import uuid
from collections.abc import Iterator
from urllib.parse import quote, quote_plus, unquote

import pytest

from mdc_core import BackendError, Capability, ConfigurationError, ModelDataCollector
from mdc_core.plugins import get_registry
from mdc_core.testing import BackendContract
from servers import free_ports
from test_collector import SEED_SCRIPT, run_script

blob = pytest.importorskip("azure.storage.blob")
from azure.core.credentials import AzureNamedKeyCredential  # noqa: E402
from azure.core.exceptions import ResourceNotFoundError  # noqa: E402

from mdc_backends.azure import AzureBlobBackend, parse_url  # noqa: E402

BATCH_NAME = re.compile(r"^data-[0-9a-f]{16}-[0-9]{10}\.csv$")


@pytest.fixture(autouse=True)
def no_azure_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests start without the runner's Azure variables."""
    for name in list(os.environ):
        if name.startswith(("AZURE_STORAGE_", "AZURE_CLIENT_", "AZURE_TENANT_")):
            monkeypatch.delenv(name)


@pytest.fixture
def service(azurite):  # noqa: F811
    """A client of the test's own, independent of the backend."""
    return blob.BlobServiceClient.from_connection_string(azurite.connection_string)


@pytest.fixture
def container(service) -> Iterator[str]:
    """A fresh container name (not created: the backend creates it on first write)."""
    name = f"t-{uuid.uuid4().hex[:16]}"
    yield name
    with contextlib.suppress(ResourceNotFoundError):
        service.delete_container(name)


def reader(service, container: str):
    client = service.get_container_client(container)

    def read(key: str) -> bytes | None:
        try:
            return client.download_blob(key).readall()
        except ResourceNotFoundError:
            return None

    return read


def sas_for(azurite, container: str, **permissions: bool) -> str:  # noqa: F811
    perms = permissions or {"read": True, "write": True, "create": True, "list": True, "delete": True}
    return blob.generate_container_sas(
        azurite.account_name,
        container,
        account_key=azurite.account_key,
        permission=blob.ContainerSasPermissions(**perms),
        expiry=dt.datetime.now(dt.timezone.utc) + dt.timedelta(hours=1),
    )


def wrong_key() -> str:
    return base64.b64encode(os.urandom(64)).decode()


def csv_rows(data: bytes) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(data.decode("utf-8"), newline="")))


class TestAzureContract(BackendContract):
    """The Azure backend honours the contract for what it declares, read back by a separate client."""

    capabilities = frozenset({Capability.CREATE_IF_ABSENT, Capability.MAINTAIN})

    @pytest.fixture
    def backend(self, azurite, container):  # noqa: F811
        backend = AzureBlobBackend(f"abfs://{container}", {"connection_string": azurite.connection_string})
        yield backend
        backend.close()

    @pytest.fixture
    def read(self, service, container):
        return reader(service, container)

    @pytest.fixture
    def storage(self, azurite, container):  # noqa: F811
        return f"abfs://{container}", {"connection_string": azurite.connection_string}


# -- URLs, options, container ---------------------------------------------------------------


def test_registered_for_abfs_az_and_abfss() -> None:
    """The entry point registers the backend for abfs://, abfss:// and az://, create-only plus maintain."""
    registry = get_registry()
    for url in ("abfs://modeldata", "abfss://modeldata", "az://modeldata/prefix"):
        plugin = registry.backend_for_url(url)
        assert plugin.name == "azure" and plugin.factory is AzureBlobBackend
    assert plugin.capabilities == {Capability.CREATE_IF_ABSENT, Capability.MAINTAIN}


def test_url_forms() -> None:
    """Container, prefix, and adlfs's <container>@<account>.dfs... form with its blob endpoint."""
    assert parse_url("abfs://modeldata") == parse_url("az://modeldata/") == parse_url("abfss://modeldata")
    assert parse_url("az://modeldata//a/b/").prefix == "a/b"
    adlfs = parse_url("abfs://modeldata@myacct.dfs.core.windows.net/team/x")
    assert (adlfs.container, adlfs.prefix, adlfs.account) == ("modeldata", "team/x", "myacct")
    assert adlfs.endpoint == "https://myacct.blob.core.windows.net"
    assert parse_url("abfs://c01@acct.dfs.core.chinacloudapi.cn").endpoint == "https://acct.blob.core.chinacloudapi.cn"


@pytest.mark.parametrize(
    "url, options, words",
    [
        ("abfs://Bad_Name", {}, "not an Azure container name"),
        ("abfs://ok-name/../x", {}, "'.' or '..'"),
        ("abfs://ok-name?sv=1&sig=SECRETSIG", {}, "no query string"),
        ("abfs://ok-name", {"connection_string": "x", "sas_token": "SECRETSIG"}, "only one of"),
        ("abfs://ok-name", {"account_name": "acct", "account_key": "k", "timeout": 0}, "timeout"),
        ("abfs://ok-name", {"account_name": "acct", "account_key": "k", "retries": 1.5}, "retries"),
        ("abfs://ok-name", {"account_name": "acct", "account_key": "k", "retry_backoff": "nan"}, "retry_backoff"),
        (
            "abfs://ok-name",
            {"account_name": "acct", "account_key": "k", "create_container": "maybe"},
            "create_container",
        ),
        ("abfs://ok-name", {"account_name": "acct", "account_key": "k", "anon": True}, "unknown storage_options"),
        ("abfs://ok-name", {"connection_string": "not a SECRETSIG connection string"}, "malformed"),
        ("abfs://ok-name", {"account_url": "https://acct.blob.core.windows.net/?sig=SECRETSIG"}, "query string"),
        ("abfs://ok-name", {"account_key": "SECRETSIG"}, "needs the account name"),
        ("abfs://ok-name", {}, "no Azure storage account"),
    ],
)
def test_bad_urls_and_options_refused_without_echoing_secrets(url, options, words) -> None:
    """Mistakes are refused where the backend is built, with a message that names no secret."""
    with pytest.raises(ConfigurationError, match=re.escape(words)) as info:
        AzureBlobBackend(url, options)
    assert "SECRETSIG" not in str(info.value) and "SECRETSIG" not in repr(info.value)


def test_prefix_keeps_keys_relative(azurite, service, container) -> None:  # noqa: F811
    """With abfs://<container>/<prefix>, keys are relative to the prefix and listing sees only them."""
    service.create_container(container).upload_blob("outside.csv", b"o")
    backend = AzureBlobBackend(f"az://{container}/team/rows", {"connection_string": azurite.connection_string})
    assert backend.create("a/2026/03/05/data-1.csv", b"x\n1\n")
    read = reader(service, container)
    assert read("team/rows/a/2026/03/05/data-1.csv") == b"x\n1\n"
    assert backend.list("") == [("a/2026/03/05/data-1.csv", 4)]
    assert backend.list("a/") == backend.list("a")
    assert backend.read("a/2026/03/05/data-1.csv") == b"x\n1\n"
    with pytest.raises(ValueError):
        backend.create("a/../escape.csv", b"x")


def test_container_created_on_first_write(azurite, service, container) -> None:  # noqa: F811
    """A missing container is created by the first write; reading a missing container finds nothing."""
    backend = AzureBlobBackend(f"abfs://{container}", {"connection_string": azurite.connection_string})
    assert backend.list("") == [] and backend.read("k.csv") is None and backend.size("k.csv") is None
    backend.delete("k.csv")
    assert backend.create("k.csv", b"1")
    assert service.get_container_client(container).exists()


def test_missing_container_without_create_container_is_a_clear_error(azurite, service, container) -> None:  # noqa: F811
    """create_container=False turns a missing container into a BackendError naming it; nothing is created."""
    backend = AzureBlobBackend(
        f"abfs://{container}", {"connection_string": azurite.connection_string, "create_container": False}
    )
    with pytest.raises(BackendError) as info:
        backend.create("k.csv", b"1")
    assert info.value.errno == errno.ENOENT
    assert f"container {container!r} does not exist" in str(info.value) and "create_container" in str(info.value)
    assert not service.get_container_client(container).exists()


def test_repr_shows_account_and_container_only(azurite, container) -> None:  # noqa: F811
    """repr names the account and container, nothing of the connection string."""
    backend = AzureBlobBackend(f"abfs://{container}/p", {"connection_string": azurite.connection_string})
    assert repr(backend) == f"AzureBlobBackend(account='devstoreaccount1', container='{container}')"


def test_forked_child_uses_its_own_connection(azurite, service, container) -> None:  # noqa: F811
    """A backend inherited through fork() writes from both processes at once without mixing replies."""
    backend = AzureBlobBackend(f"abfs://{container}", {"connection_string": azurite.connection_string})
    assert backend.create("fork/parent-0.csv", b"p")  # the parent now holds a pooled connection
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        code = 1
        try:
            code = 0 if all(backend.create(f"fork/child-{i}.csv", b"c") for i in range(20)) else 2
        finally:
            os._exit(code)
    parent_ok = all(backend.create(f"fork/parent-{i}.csv", b"p") for i in range(1, 21))
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0 and parent_ok
    assert len(backend.list("fork/")) == 41


# -- timeouts and retries ---------------------------------------------------------------------


class Listener:
    """A loopback TCP server that never answers HTTP: it counts connections, then closes each at
    once (``hang=False``) or holds it open until stopped (``hang=True``)."""

    def __init__(self, hang: bool):
        self.hang = hang
        self.accepted = 0
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.held: list[socket.socket] = []
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        self.sock.settimeout(0.05)
        while not self.stopped.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.accepted += 1
            if self.hang:
                self.held.append(conn)
            else:
                conn.close()

    def stop(self) -> None:
        self.stopped.set()
        self.thread.join()
        for conn in self.held:
            conn.close()
        self.sock.close()


def test_retries_option_sets_the_number_of_attempts(azurite) -> None:  # noqa: F811
    """retries=2 means three connections per request, then a BackendError; no minute-long back-off."""
    server = Listener(hang=False)
    try:
        backend = AzureBlobBackend(
            "abfs://retries",
            {
                "account_name": azurite.account_name,
                "account_key": azurite.account_key,
                "account_url": f"http://127.0.0.1:{server.port}/{azurite.account_name}",
                "retries": 2,
                "retry_backoff": 0,
            },
        )
        started = time.monotonic()
        with pytest.raises(BackendError) as info:
            backend.create("k.csv", b"1")
        elapsed = time.monotonic() - started
    finally:
        server.stop()
    assert server.accepted == 3
    assert "lost the connection to" in str(info.value) and elapsed < 10


def test_timeout_option_bounds_a_silent_server(azurite) -> None:  # noqa: F811
    """A server that accepts and never answers costs `timeout` seconds per try, then an ETIMEDOUT."""
    server = Listener(hang=True)
    try:
        backend = AzureBlobBackend(
            "abfs://silent",
            {
                "account_name": azurite.account_name,
                "account_key": azurite.account_key,
                "account_url": f"http://127.0.0.1:{server.port}/{azurite.account_name}",
                "retries": 0,
                "timeout": 0.5,
            },
        )
        started = time.monotonic()
        with pytest.raises(BackendError) as info:
            backend.create("k.csv", b"1")
        elapsed = time.monotonic() - started
    finally:
        server.stop()
    assert info.value.errno == errno.ETIMEDOUT and "timed out" in str(info.value)
    assert server.accepted == 1 and 0.4 < elapsed < 5


# -- credential paths -----------------------------------------------------------------------


def roundtrip(backend: AzureBlobBackend, read) -> None:
    key = f"cred/{uuid.uuid4().hex}.csv"
    assert backend.create(key, b"a\n1\n")
    assert read(key) == b"a\n1\n" and backend.size(key) == 4


def test_connection_string_option(azurite, service, container, monkeypatch) -> None:  # noqa: F811
    """storage_options connection_string is used, and beats a wrong key in the environment."""
    monkeypatch.setenv(
        "AZURE_STORAGE_CONNECTION_STRING", azurite.connection_string.replace(azurite.account_key, wrong_key())
    )
    backend = AzureBlobBackend(f"abfs://{container}", {"connection_string": azurite.connection_string})
    assert backend.credential_source == "storage_options connection_string"
    roundtrip(backend, reader(service, container))


def test_connection_string_from_environment(azurite, service, container, monkeypatch) -> None:  # noqa: F811
    """AZURE_STORAGE_CONNECTION_STRING is used when no option names credentials, before an env key."""
    monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", azurite.connection_string)
    monkeypatch.setenv("AZURE_STORAGE_ACCOUNT_KEY", wrong_key())
    backend = AzureBlobBackend(f"az://{container}", {})
    assert backend.credential_source == "AZURE_STORAGE_CONNECTION_STRING"
    roundtrip(backend, reader(service, container))


def test_account_name_and_key(azurite, service, container) -> None:  # noqa: F811
    """account_name + account_key, with account_url pointing at Azurite."""
    backend = AzureBlobBackend(
        f"abfs://{container}",
        {
            "account_name": azurite.account_name,
            "account_key": azurite.account_key,
            "account_url": azurite.blob_endpoint,
        },
    )
    assert backend.credential_source == "storage_options account_key"
    roundtrip(backend, reader(service, container))


def test_adlfs_url_names_the_account(azurite, service, container) -> None:  # noqa: F811
    """abfs://<container>@<account>.dfs.core.windows.net/<prefix> takes the account from the URL."""
    backend = AzureBlobBackend(
        f"abfs://{container}@{azurite.account_name}.dfs.core.windows.net/p",
        {"account_key": azurite.account_key, "blob_endpoint": azurite.blob_endpoint},
    )
    assert backend.account == azurite.account_name
    assert backend.create("k.csv", b"1") and reader(service, container)("p/k.csv") == b"1"


def test_account_name_and_key_from_environment(azurite, service, container, monkeypatch) -> None:  # noqa: F811
    """AZURE_STORAGE_ACCOUNT_NAME + AZURE_STORAGE_ACCOUNT_KEY (endpoint from the options)."""
    monkeypatch.setenv("AZURE_STORAGE_ACCOUNT_NAME", azurite.account_name)
    monkeypatch.setenv("AZURE_STORAGE_ACCOUNT_KEY", azurite.account_key)
    backend = AzureBlobBackend(f"abfs://{container}", {"account_url": azurite.blob_endpoint})
    assert backend.credential_source == "AZURE_STORAGE_ACCOUNT_KEY"
    roundtrip(backend, reader(service, container))


def test_sas_token_option_and_environment(azurite, service, container, monkeypatch) -> None:  # noqa: F811
    """A container SAS token works as an option and from AZURE_STORAGE_SAS_TOKEN."""
    service.create_container(container)
    token = sas_for(azurite, container)
    backend = AzureBlobBackend(
        f"abfs://{container}",
        {"account_name": azurite.account_name, "sas_token": "?" + token, "account_url": azurite.blob_endpoint},
    )
    assert backend.credential_source == "storage_options sas_token"
    roundtrip(backend, reader(service, container))
    monkeypatch.setenv("AZURE_STORAGE_SAS_TOKEN", token)
    from_env = AzureBlobBackend(f"abfs://{container}", {"account_url": azurite.blob_endpoint})
    assert from_env.credential_source == "AZURE_STORAGE_SAS_TOKEN"
    roundtrip(from_env, reader(service, container))


def test_credential_object(azurite, service, container) -> None:  # noqa: F811
    """Any azure-core credential object is accepted as storage_options credential."""
    backend = AzureBlobBackend(
        f"abfs://{container}",
        {
            "credential": AzureNamedKeyCredential(azurite.account_name, azurite.account_key),
            "account_url": azurite.blob_endpoint,
        },
    )
    roundtrip(backend, reader(service, container))


def test_default_azure_credential_is_the_last_resort(monkeypatch) -> None:
    """With only the account named, DefaultAzureCredential (managed identity) is chosen; no network."""
    monkeypatch.setenv("AZURE_STORAGE_ACCOUNT_NAME", "myacct")
    backend = AzureBlobBackend("abfs://modeldata", {})
    assert backend.credential_source == "DefaultAzureCredential"
    assert repr(backend) == "AzureBlobBackend(account='myacct', container='modeldata')"
    backend.close()


def test_aml_model_dc_storage_writes_to_modeldata(azurite, service, monkeypatch) -> None:  # noqa: F811
    """AML_MODEL_DC_STORAGE alone sends rows to the container modeldata, at the spec's path."""
    monkeypatch.setenv("AML_MODEL_DC_STORAGE", azurite.connection_string)
    svc = f"svc-{uuid.uuid4().hex[:8]}"
    dc = ModelDataCollector(
        "best_model",
        designation="inputs",
        feature_names=["a", "b"],
        workspace="sub1/rg1/ws1",
        webservice_name=svc,
        model_version="3",
    )
    dc.collect([[1, 2], [3, 4]])
    assert dc.flush(timeout=30)
    prefix = f"sub1/rg1/ws1/{svc}/best_model/3/inputs/"
    [item] = list(service.get_container_client("modeldata").list_blobs(name_starts_with=prefix))
    rows = csv_rows(service.get_container_client("modeldata").download_blob(item.name).readall())
    day = rows[0]["$aml_dc_scoring_timestamp"][:10].replace("-", "/")
    folder, _, name = item.name.rpartition("/")
    assert folder == prefix + day and BATCH_NAME.match(name)
    assert [(r["a"], r["b"]) for r in rows] == [("1", "2"), ("3", "4")]


# -- the seed's scoring script --------------------------------------------------------------


def run_seed(azurite, tmp_path) -> str:  # noqa: F811
    """Run the seed's script with root abfs://modeldata (credentials from the environment); return
    the model's folder in the container."""
    svc = f"aks-{uuid.uuid4().hex[:8]}"
    env = {
        "MDC_STORAGE_URL": "abfs://modeldata",
        "AZURE_STORAGE_CONNECTION_STRING": azurite.connection_string,
        "MDC_WORKSPACE": "1a2b3c4d/myresourcegrp/myWorkspace",
        "MDC_SERVICE_NAME": svc,
        "MDC_MODEL_VERSION": "10",
    }
    result = run_script(tmp_path, SEED_SCRIPT, env)
    assert result.returncode == 0, result.stderr
    assert "could not write" not in result.stderr
    assert azurite.account_key not in result.stdout + result.stderr
    return f"1a2b3c4d/myresourcegrp/myWorkspace/{svc}/best_model/10/"


def check_seed_rows(rows: dict[str, list[dict[str, str]]]) -> None:
    """All seven requests' rows, inputs and predictions joining on $aml_dc_correlation_id."""
    inputs, predictions = rows["inputs"], rows["predictions"]
    assert sorted(float(r["feat1"]) for r in inputs) == [0, 1, 2, 3, 4, 10, 20]
    assert list(inputs[0])[:6] == [f"feat{i}" for i in range(1, 7)] and len(predictions) == 7
    by_id = {r["$aml_dc_correlation_id"]: r for r in inputs}
    assert len(by_id) == 7
    for out in predictions:
        src = by_id[out["$aml_dc_correlation_id"]]
        assert float(out["prediction1"]) == sum(float(src[f"feat{i}"]) for i in range(1, 7))
        assert out["$aml_request_id"] == src["$aml_request_id"]


def test_seed_script_against_azurite(azurite, service, tmp_path) -> None:  # noqa: F811
    """SPEC.md's scoring script, root abfs://modeldata, writes every row as joinable data-*.csv batches
    under <sub>/<rg>/<ws>/<svc>/<model>/<version>/<designation>/<yyyy>/<mm>/<dd>/."""
    prefix = run_seed(azurite, tmp_path)
    client = service.get_container_client("modeldata")
    rows: dict[str, list[dict[str, str]]] = {"inputs": [], "predictions": []}
    for item in client.list_blobs(name_starts_with=prefix):
        designation, year, month, day, name = item.name[len(prefix) :].split("/")
        assert BATCH_NAME.match(name), item.name
        batch = csv_rows(client.download_blob(item.name).readall())
        assert {r["$aml_dc_scoring_timestamp"][:10] for r in batch} == {f"{year}-{month}-{day}"}
        rows[designation] += batch
    check_seed_rows(rows)


def test_seed_script_then_mdc_compact_leaves_one_data_csv(azurite, service, tmp_path) -> None:  # noqa: F811
    """After `mdc compact` (the day still open, so --include-open), each folder holds exactly one
    data.csv with every row: the backend's list/read/put/delete serve compaction."""
    prefix = run_seed(azurite, tmp_path)
    env = {**os.environ, "AZURE_STORAGE_CONNECTION_STRING": azurite.connection_string}
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "from mdc_core.cli import main; raise SystemExit(main())",
            "compact",
            "abfs://modeldata",
            "--prefix",
            prefix,
            "--include-open",
            "-o",
            "timeout=10",
            "-o",
            "retries=1",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert azurite.account_key not in done.stdout + done.stderr
    client = service.get_container_client("modeldata")
    names = [item.name[len(prefix) :] for item in client.list_blobs(name_starts_with=prefix)]
    assert len(names) == 2 and all(re.fullmatch(r"(inputs|predictions)/\d{4}/\d{2}/\d{2}/data\.csv", n) for n in names)
    check_seed_rows({n.split("/")[0]: csv_rows(client.download_blob(prefix + n).readall()) for n in names})


# -- secrets never shown ----------------------------------------------------------------------


def secret_forms(*secrets: str) -> set[str]:
    """Each secret raw, URL-decoded and URL-encoded (quote and quote_plus)."""
    forms = set()
    for secret in secrets:
        for value in (secret, unquote(secret)):
            forms |= {value, quote(value), quote(value, safe=""), quote_plus(value)}
    return {f for f in forms if len(f) >= 8}


def exception_texts(exc: BaseException) -> list[str]:
    texts = ["".join(traceback.format_exception(exc))]
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        texts += [str(current), repr(current), *map(str, current.args)]
        current = current.__cause__ or current.__context__
    return texts


def test_no_secret_in_logs_errors_reprs_or_stats(azurite, service, capsys, caplog) -> None:  # noqa: F811
    """Successful and failing runs with an account key and a SAS token show no secret anywhere."""
    for name in ("", "azure", "urllib3", "mdc"):
        caplog.set_level(logging.DEBUG, logger=name)
    run = uuid.uuid4().hex[:8]
    sas_container = f"sas-{run}"
    service.create_container(sas_container)
    token = sas_for(azurite, sas_container)
    sig = dict(p.split("=", 1) for p in token.split("&"))["sig"]
    bad_key = wrong_key()
    endpoint = azurite.blob_endpoint
    refused = f"http://127.0.0.1:{free_ports(1)[0]}/{azurite.account_name}"  # nothing listens there
    runs = {  # name: (url, options, written?)
        "key-ok": (f"abfs://key-{run}", {"connection_string": azurite.connection_string}, True),
        "sas-ok": (
            f"abfs://{sas_container}",
            {"account_name": azurite.account_name, "sas_token": token, "account_url": endpoint},
            True,
        ),
        "key-403": (
            f"abfs://key-{run}",
            {"account_name": azurite.account_name, "account_key": bad_key, "account_url": endpoint},
            False,
        ),
        "sas-refused": (
            f"abfs://{sas_container}",
            {
                "account_name": azurite.account_name,
                "sas_token": token,
                "account_url": refused,
                "retries": 1,
                "retry_backoff": 0,
            },
            False,
        ),
    }
    texts: list[str] = []
    for label, (url, options, ok) in runs.items():
        dc = ModelDataCollector(
            f"model-{label}-{run}", designation="inputs", feature_names=["x"], storage=url, storage_options=options
        )
        dc.collect([[1], [2]])
        assert bool(dc.flush(timeout=30)) is ok, label
        texts += [repr(dc), str(dc.stats())]
        dc.close()
        backend = AzureBlobBackend(url, options)
        texts.append(repr(backend))
        for method, args in (
            ("create", (f"direct/{uuid.uuid4().hex}.csv", b"1")),
            ("list", ("",)),
            ("read", ("direct/x.csv",)),
        ):
            try:
                getattr(backend, method)(*args)
            except BackendError as exc:
                assert not ok, label
                texts += exception_texts(exc)
    captured = capsys.readouterr()
    formatter = logging.Formatter("%(name)s %(levelname)s %(message)s")
    records = caplog.records
    texts += [captured.out, captured.err, *(formatter.format(r) for r in records)]

    # The logs really hold what could leak: the SDK's request lines and urllib3's URLs, and the failures.
    assert any(r.name.startswith("azure.") for r in records)
    assert any(r.name.startswith("urllib3.") and "sig=***" in r.getMessage() for r in records)
    assert any("HTTP 403" in r.getMessage() for r in records if r.name == "mdc")
    assert any("connection refused" in r.getMessage() for r in records if r.name == "mdc")

    secrets = secret_forms(azurite.account_key, bad_key, token, sig, azurite.connection_string)
    everything = "\n".join(texts)
    leaks = sorted(s[:12] + "..." for s in secrets if s in everything)
    assert not leaks, f"secrets shown: {leaks}"


def test_failing_storage_never_raises_into_collect(azurite, service, caplog) -> None:  # noqa: F811
    """A wrong key: collect() returns normally, flush() is False, the rows are kept in the local
    spool for replay (nothing dropped), the log says 403, and nothing was written."""
    name = f"bad-{uuid.uuid4().hex[:8]}"
    service.create_container(name)
    dc = ModelDataCollector(
        f"model-{name}",
        designation="inputs",
        feature_names=["x", "y"],
        storage=f"abfs://{name}",
        storage_options={
            "account_name": azurite.account_name,
            "account_key": wrong_key(),
            "account_url": azurite.blob_endpoint,
        },
    )
    correlation = dc.collect([[1, 2], [3, 4], [5, 6]])
    assert len(correlation["$aml_dc_correlation_id"]) == 3
    assert not dc.flush(timeout=30)
    stats = dc.stats()
    assert stats["spooled"] == 3 and stats["dropped"] == {} and stats["written"] == 0 and stats["pending"] == 0
    [line] = [m for r in caplog.records if r.name == "mdc" and "could not write" in (m := r.getMessage())]
    assert f"model-{name}" in line and "could not write 3 rows" in line and "HTTP 403" in line
    assert re.search(r"Authori[sz]ationFailure|AuthenticationFailed", line)
    assert list(service.get_container_client(name).list_blobs()) == []


# -- a connection dropped mid-upload ---------------------------------------------------------


def test_connection_reset_mid_upload_leaves_nothing_and_the_retry_delivers_once(azurite, service, container) -> None:  # noqa: F811
    """A connection reset in the middle of a batch upload publishes nothing under the final name;
    the flusher's retry of the same batch then writes it exactly once."""
    from faultproxy import FaultProxy
    from mdc_core.writer import _create

    port = urllib.parse.urlsplit(azurite.blob_endpoint).port
    data = b"a,b\n" + b"".join(b"%d,%s\n" % (i, b"x" * 200) for i in range(4000))  # ~800 kB, one request
    key = "sub/rg/ws/svc/m/1/inputs/2026/03/05/data-00000000000000aa-0000000001.csv"
    with FaultProxy("127.0.0.1", port, cut_after=300_000, cuts=1) as proxy:
        cs = azurite.connection_string.replace(f":{port}/", f":{proxy.port}/")
        backend = AzureBlobBackend(f"abfs://{container}", {"connection_string": cs, "retries": 0, "timeout": 10})
        service.create_container(container)
        with pytest.raises(BackendError):
            backend.create(key, data)
        assert proxy.cut == 1  # the fault really happened
        read = reader(service, container)
        assert read(key) is None
        assert [b.name for b in service.get_container_client(container).list_blobs()] == []
        assert _create(backend, key, data) == key
        assert read(key) == data
        backend.close()
