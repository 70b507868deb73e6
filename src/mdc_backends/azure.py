"""Azure Blob Storage: ``abfs://``, ``abfss://`` and ``az://`` URLs, one create-only blob per batch.

URLs: ``abfs://<container>/<optional prefix>`` (``az://`` and ``abfss://`` alike), and adlfs's
``abfs://<container>@<account>.dfs.core.windows.net/<prefix>``, which names the account. The
usual root is ``abfs://modeldata``: the container ``modeldata`` reproduces Azure ML's paths.
Credentials: see ``mdc_backends.azure_credentials`` (options, then environment, then
``DefaultAzureCredential``).

Writes use the synchronous ``azure.storage.blob`` client. ``create`` is one Put Blob with
``If-None-Match: *`` (a large batch is staged in blocks and committed under the same condition),
so a blob appears whole or not at all and is never replaced; "already exists" returns ``False``.
The container is created on the first write that finds it missing, unless
``create_container=False``. Requests time out after ``timeout`` seconds and are retried
``retries`` times about ``retry_backoff`` seconds apart (the SDK's defaults wait up to a minute
and more), and the flusher retries a failed batch on top.

Every SDK error is mapped to ``BackendError`` with a message built here (operation, blob, HTTP
status, error code), never the SDK's text, which may quote request URLs with a SAS query. HTTP
logging of the SDK stays off (``logging_enable=False``), and urllib3's DEBUG lines get their
``sig=`` masked. ``repr`` shows the account and container only.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import logging
import math
import mimetypes
import os
import re
import types
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from mdc_backends.azure_credentials import INSTALL_HINT, guard_http_logs, resolve
from mdc_core import BackendError, BackendPlugin, Capability, ConfigurationError, hookimpl
from mdc_core.redact import redact_url

logger = logging.getLogger("mdc.backends.azure")

SCHEMES = ("abfs", "abfss", "az")
DEFAULT_TIMEOUT = 30.0
DEFAULT_RETRIES = 3
DEFAULT_BACKOFF = 1.0
_CREDENTIAL_OPTIONS = frozenset({"connection_string", "account_name", "account_key", "sas_token", "credential",
                                 "account_url", "blob_endpoint"})
OPTIONS = _CREDENTIAL_OPTIONS | {"create_container", "timeout", "retries", "retry_backoff"}
_CONTAINER = re.compile(r"^(?!.*--)[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$")
_ACCOUNT = re.compile(r"^[a-z0-9]{3,24}$")
_ERRNO = {401: errno.EACCES, 403: errno.EACCES, 404: errno.ENOENT, 408: errno.ETIMEDOUT, 409: errno.EEXIST,
          412: errno.EEXIST, 429: errno.EBUSY, 503: errno.EBUSY}
_HINTS = {401: " (the storage refused the credentials: check the account key, the SAS token's expiry and "
               "permissions, or the identity's role assignment)",
          403: " (the storage refused the credentials: check the account key, the SAS token's expiry and "
               "permissions, or the identity's role assignment)"}
T = TypeVar("T")


@dataclass(frozen=True)
class Location:
    """What a URL names: the container, a key prefix, and the account when adlfs's form is used."""

    container: str
    prefix: str
    account: str | None = None
    endpoint: str | None = None


def parse_url(root: str) -> Location:
    """``abfs://modeldata/some/prefix`` or ``abfs://modeldata@acct.dfs.core.windows.net/prefix``."""
    scheme, sep, rest = root.partition("://")
    if scheme.lower() not in SCHEMES or not sep:
        raise ConfigurationError(f"Azure URLs look like abfs://<container>/<prefix>, got {redact_url(root)!r}")
    if "?" in rest or "#" in rest:
        raise ConfigurationError(f"an Azure storage URL takes no query string (pass a SAS token as storage_options "
                                 f"sas_token): {redact_url(root)!r}")
    head, _, path = rest.partition("/")
    container, at, host = head.partition("@")
    account = endpoint = None
    if at:
        account, _, suffix = host.partition(".")
        suffix = suffix.split(".", 1)[1] if suffix.startswith(("dfs.", "blob.")) else suffix
        if not _ACCOUNT.match(account) or not suffix:
            raise ConfigurationError(f"expected abfs://<container>@<account>.dfs.core.windows.net, got {root!r}")
        endpoint = f"https://{account}.blob.{suffix}"
    if not _CONTAINER.match(container):
        raise ConfigurationError(f"{container!r} is not an Azure container name: 3-63 lower-case letters, digits "
                                 f"and single hyphens, starting and ending with a letter or digit ({root!r})")
    parts = [p for p in path.split("/") if p]
    if any(p in (".", "..") for p in parts):
        raise ConfigurationError(f"the prefix of {root!r} may not contain '.' or '..'")
    return Location(container, "/".join(parts), account, endpoint)


@functools.cache
def _sdk() -> types.SimpleNamespace:
    """The Azure SDK, imported on first use with an install hint."""
    try:
        from azure.core import exceptions
        from azure.storage import blob
        from azure.storage.blob import ContentSettings, LinearRetry
    except ImportError as exc:
        raise ImportError(f"the Azure backend (abfs://, az://) needs azure-storage-blob: {INSTALL_HINT}") from exc
    return types.SimpleNamespace(blob=blob, errors=exceptions, ContentSettings=ContentSettings,
                                 LinearRetry=LinearRetry)


class AzureBlobBackend:
    """Blobs under ``<container>/<prefix>/`` in one storage account."""

    def __init__(self, root: str, options: Mapping[str, Any] | None = None):
        location = parse_url(root)
        opts = dict(options or {})
        unknown = sorted(set(opts) - OPTIONS)
        if unknown:
            raise ConfigurationError(f"unknown storage_options for the Azure backend: {', '.join(unknown)}; "
                                     f"known: {', '.join(sorted(OPTIONS))}")
        create_container = _flag(opts.get("create_container", True), "create_container")
        timeout = _number(opts.get("timeout", DEFAULT_TIMEOUT), "timeout", positive=True)
        retries = int(_number(opts.get("retries", DEFAULT_RETRIES), "retries", integer=True))
        backoff = _number(opts.get("retry_backoff", DEFAULT_BACKOFF), "retry_backoff")
        self._credentials = resolve({k: v for k, v in opts.items() if k in _CREDENTIAL_OPTIONS},
                                    location.account, location.endpoint, os.environ)
        self._sdk = _sdk()
        retry = self._sdk.LinearRetry(backoff=backoff, random_jitter_range=backoff / 2, retry_total=retries,
                                      retry_connect=retries, retry_read=retries, retry_status=retries)
        self._client_options = {"connection_timeout": timeout, "read_timeout": timeout, "retry_policy": retry,
                                "logging_enable": False}
        self.container = location.container
        self.prefix = location.prefix
        self.create_container = create_container
        self.credential_source = self._credentials.source
        """Where the credentials came from (e.g. ``AZURE_STORAGE_CONNECTION_STRING``); safe to show."""
        guard_http_logs()
        self._client: Any = None
        self._pid = -1
        client = self._container()  # builds the client now: a malformed connection string fails here
        self.account = client.account_name or self._credentials.account_name or "?"
        self._endpoint = redact_url(client.primary_endpoint)
        logger.debug("azure backend: account %s, container %s, credentials from %s",
                     self.account, self.container, self.credential_source)

    def __repr__(self) -> str:
        return f"AzureBlobBackend(account={self.account!r}, container={self.container!r})"

    def append(self, key: str, header: bytes, body: bytes) -> str:
        # Never called: without Capability.APPEND every batch is a create-only blob.
        raise BackendError(errno.ENOTSUP, "the Azure backend does not append; batches are create-only blobs")

    def create(self, key: str, data: bytes) -> bool:
        name = self._name(key)
        errors = self._sdk.errors
        try:
            self._upload(name, data, overwrite=False)
        except errors.ResourceExistsError as exc:
            if _code(exc) in ("BlobAlreadyExists", "ConditionNotMet"):
                return False
            raise self._error("create", key, exc) from exc
        except errors.AzureError as exc:
            raise self._error("create", key, exc) from exc
        return True

    def close(self) -> None:
        client, self._client = self._client, None
        if client is not None and self._pid == os.getpid():
            try:
                client.close()
            except Exception:  # closing is best effort
                logger.debug("closing the Azure client of %r failed", self)

    # -- Capability.MAINTAIN ----------------------------------------------------------------

    def list(self, prefix: str) -> list[tuple[str, int]]:
        folder = self._name(prefix.rstrip("/")) + "/" if prefix.strip("/") else self._root()
        strip = len(self._root())

        def listing(client: Any) -> list[tuple[str, int]]:
            blobs = client.list_blobs(name_starts_with=folder or None, include=["metadata"])
            # On accounts with a hierarchical namespace, folders are listed as empty marker blobs.
            return [(b.name[strip:], b.size) for b in blobs if (b.metadata or {}).get("hdi_isfolder") != "true"]

        nothing: list[tuple[str, int]] = []  # a missing container holds nothing
        return sorted(self._call("list", prefix, listing, missing=nothing))

    def read(self, key: str) -> bytes | None:
        name = self._name(key)
        return self._call("read", key, lambda c: c.get_blob_client(name).download_blob().readall(), missing=None)

    def size(self, key: str) -> int | None:
        name = self._name(key)
        return self._call("stat", key, lambda c: c.get_blob_client(name).get_blob_properties().size, missing=None)

    def put(self, key: str, data: bytes) -> None:
        name = self._name(key)
        try:
            self._upload(name, data, overwrite=True)
        except self._sdk.errors.AzureError as exc:
            raise self._error("replace", key, exc) from exc

    def delete(self, key: str) -> None:
        name = self._name(key)
        self._call("delete", key, lambda c: c.get_blob_client(name).delete_blob(delete_snapshots="include"),
                   missing=None)

    # -- internals ------------------------------------------------------------------------

    def _container(self) -> Any:
        """The client; rebuilt after close() and in a forked child (never share a parent's sockets)."""
        client = self._client
        if client is None or self._pid != os.getpid():
            client = self._credentials.container_client(self._sdk.blob, self.container, **self._client_options)
            self._client, self._pid = client, os.getpid()
        return client

    def _root(self) -> str:
        return f"{self.prefix}/" if self.prefix else ""

    def _name(self, key: str) -> str:
        parts = key.split("/")
        if any(p in ("", ".", "..") for p in parts):
            raise ValueError(f"invalid storage key {key!r}")
        return self._root() + key

    def _upload(self, name: str, data: bytes, overwrite: bool) -> None:
        """One whole-blob upload; creates a missing container first when allowed."""
        blob = self._container().get_blob_client(name)
        content_type = mimetypes.guess_type(name)[0] or "application/octet-stream"
        settings = self._sdk.ContentSettings(content_type=content_type)
        upload = functools.partial(blob.upload_blob, data, overwrite=overwrite, content_settings=settings)
        try:
            self._refreshing(upload)
        except self._sdk.errors.ResourceNotFoundError as exc:
            if _code(exc) != "ContainerNotFound":
                raise
            self._make_container(exc)
            self._refreshing(upload)

    def _refreshing(self, fn: Callable[[], T]) -> T:
        """Run ``fn``; if the storage refuses the SAS token and its provider gives a new one
        (an expired short-lived token), run it once more with that."""
        try:
            return fn()
        except self._sdk.errors.HttpResponseError as exc:
            if exc.status_code != 403 or not self._credentials.refresh():
                raise
        return fn()

    def _make_container(self, cause: BaseException) -> None:
        if not self.create_container:
            raise BackendError(errno.ENOENT, f"azure: container {self.container!r} does not exist in account "
                                             f"{self.account!r}; create it, or allow create_container=True") from cause
        try:
            self._refreshing(self._container().create_container)
            logger.info("mdc created the container %s in the Azure storage account %s", self.container, self.account)
        except self._sdk.errors.ResourceExistsError:
            pass  # another writer created it a moment ago

    def _call(self, op: str, key: str, fn: Callable[[Any], T], missing: T) -> T:
        """Run ``fn(client)``; a missing blob or container gives ``missing``, other errors map."""
        errors = self._sdk.errors
        try:
            return self._refreshing(lambda: fn(self._container()))
        except errors.ResourceNotFoundError:
            return missing
        except errors.AzureError as exc:
            raise self._error(op, key, exc) from exc

    def _error(self, op: str, key: str, exc: BaseException) -> BackendError:
        """A ``BackendError`` from what is known to be safe: never the SDK's text."""
        where = f"azure: cannot {op} {self.account}/{self.container}/{self._root()}{key}"
        status = getattr(exc, "status_code", None)
        if isinstance(status, int) and status:
            code = _code(exc)
            return BackendError(_ERRNO.get(status, errno.EIO),
                                f"{where}: HTTP {status}{' ' + code if code else ''}{_HINTS.get(status, '')}")
        errors = self._sdk.errors
        if isinstance(exc, errors.ClientAuthenticationError):
            return BackendError(errno.EACCES, f"{where}: no access token from {self.credential_source} "
                                              f"({type(exc).__name__})")
        if isinstance(exc, (errors.ServiceRequestError, errors.ServiceResponseError)):
            number, reason = _network_reason(exc)
            verb = "cannot reach" if isinstance(exc, errors.ServiceRequestError) else "lost the connection to"
            return BackendError(number, f"{where}: {verb} {self._endpoint}: {reason} ({type(exc).__name__})")
        return BackendError(errno.EIO, f"{where}: {type(exc).__name__}")


def _code(exc: BaseException) -> str:
    """The storage error code (``BlobAlreadyExists``), letters and digits only."""
    code = getattr(exc, "error_code", None)
    code = getattr(code, "value", code)
    return re.sub(r"[^A-Za-z0-9]", "", str(code))[:64] if code else ""


def _network_reason(exc: BaseException) -> tuple[int, str]:
    """An errno and a few words for a failed connection, from the exception chain's types."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if "timeout" in type(current).__name__.lower() or isinstance(current, TimeoutError):
            return errno.ETIMEDOUT, "timed out"
        if isinstance(current, OSError) and current.errno:
            return current.errno, os.strerror(current.errno).lower()
        current = getattr(current, "inner_exception", None) or current.__cause__ or current.__context__
    return errno.ECONNABORTED, "connection failed"


def _flag(value: Any, name: str) -> bool:
    """A boolean option; ``"true"``/``"false"`` too (``mdc compact -o``, environment)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise ConfigurationError(f"storage_options {name} must be True or False, got {value!r}")


def _number(value: Any, name: str, positive: bool = False, integer: bool = False) -> float:
    """A number option; numeric strings too (``mdc compact -o timeout=10``)."""
    if isinstance(value, str):
        with contextlib.suppress(ValueError):
            value = int(value) if integer else float(value)
    ok = isinstance(value, int) if integer else isinstance(value, (int, float))
    if isinstance(value, bool) or not ok or not math.isfinite(value) or value < 0 or (positive and not value > 0):
        kind = "a whole number" if integer else "a number of seconds"
        raise ConfigurationError(f"storage_options {name} must be {kind}{' above 0' if positive else ' (0 or more)'}, "
                                 f"got {value!r}")
    return value


@hookimpl
def mdc_backends() -> list[BackendPlugin]:
    return [BackendPlugin(
        name="azure",
        schemes=SCHEMES,
        factory=AzureBlobBackend,
        capabilities=frozenset({Capability.CREATE_IF_ABSENT, Capability.MAINTAIN}),
        description="Azure Blob Storage (abfs://, az://): one create-only blob per batch",
    )]
