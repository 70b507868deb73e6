"""Where the Azure backend's credentials come from, and how they are kept out of logs.

The first source that applies wins:

1. ``storage_options``: ``connection_string``; or ``account_key``, ``sas_token`` (a string, or a
   callable returning the current token: asked again when the storage refuses the one in use,
   so short-lived tokens rotate without a restart) or a ``credential`` object, with the
   account from ``account_name``, the URL (``abfs://<container>@<account>.dfs.core.windows.net``)
   or ``account_url``/``blob_endpoint``;
2. ``AZURE_STORAGE_CONNECTION_STRING``, unless the options or the URL name an endpoint or
   another account than the string's;
3. ``AZURE_STORAGE_ACCOUNT_KEY``, then ``AZURE_STORAGE_SAS_TOKEN``, for the account named by
   the options, the URL or ``AZURE_STORAGE_ACCOUNT_NAME``;
4. ``DefaultAzureCredential`` from azure-identity (managed identity in AKS, workload identity,
   ``az login``, ``AZURE_CLIENT_ID``/``AZURE_TENANT_ID``/``AZURE_CLIENT_SECRET``), for that account.

Nothing here logs or formats a secret. ``Credentials`` keeps them out of its ``repr``; its
``source`` names where they came from (safe to log). urllib3 logs request URLs at DEBUG, SAS
query included, so ``guard_http_logs`` puts a filter on its loggers that masks ``sig=`` values.
"""

from __future__ import annotations

import dataclasses
import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from mdc_core import ConfigurationError

logger = logging.getLogger("mdc.backends.azure")

INSTALL_HINT = "pip install 'mdc[azure]'"

_SECRET_OPTIONS = ("connection_string", "account_key", "sas_token", "credential")


@dataclass(frozen=True)
class Credentials:
    """How to reach one storage account. Only ``source``, ``account_name`` and ``account_url``
    (which never holds a query string) may be shown."""

    source: str
    account_name: str | None
    account_url: str | None
    connection_string: str | None = field(default=None, repr=False)
    credential: Any = field(default=None, repr=False)
    default_credential: bool = False
    sas_provider: Callable[[], str] | None = field(default=None, repr=False)
    """Gives the current SAS token; ``credential`` is then an ``AzureSasCredential`` it updates."""

    def refresh(self) -> bool:
        """Ask the SAS provider for a token after a refusal; True if it gave a new one (worth a
        retry). A provider that fails is logged by type only and counts as no new token."""
        if self.sas_provider is None:
            return False
        try:
            token = _provided(self.sas_provider)
        except Exception as exc:  # the user's provider: never let it break the flusher, never echo it
            logger.warning("mdc: the sas_token provider failed (%s); keeping the current token", type(exc).__name__)
            return False
        if token == self.credential.signature:
            return False
        self.credential.update(token)
        logger.info("mdc: the storage refused the SAS token in use; the sas_token provider gave a new one")
        return True

    def container_client(self, blob: Any, container: str, **kwargs: Any) -> Any:
        """A ``ContainerClient`` for ``container`` (no network I/O)."""
        if self.connection_string is not None:
            try:
                return blob.ContainerClient.from_connection_string(self.connection_string, container, **kwargs)
            except ValueError as exc:  # the SDK's messages do not echo the string; ours neither
                raise ConfigurationError(f"the Azure connection string from {self.source} is malformed "
                                         "(expected AccountName=...;AccountKey=... or BlobEndpoint=...)") from exc
        credential = _default_credential() if self.default_credential else self.credential
        return blob.ContainerClient(self.account_url, container, credential=credential, **kwargs)


def resolve(options: Mapping[str, Any], url_account: str | None, url_endpoint: str | None,
            environ: Mapping[str, str]) -> Credentials:
    """Pick the credentials for a backend; ``options`` holds only credential-related keys."""
    account = _text(options, "account_name")
    if account and url_account and account != url_account:
        raise ConfigurationError(f"storage_options account_name={account!r} differs from the URL's account "
                                 f"{url_account!r}")
    account = account or url_account
    endpoint = _endpoint(options)
    given = [name for name in _SECRET_OPTIONS if options.get(name) is not None]
    if len(given) > 1:
        raise ConfigurationError(f"give only one of the storage_options {', '.join(_SECRET_OPTIONS)}; got "
                                 f"{', '.join(given)}")

    if given == ["connection_string"]:
        conn = _text(options, "connection_string") or ""  # never empty: _text refuses that
        if endpoint:
            raise ConfigurationError("a connection string names its own endpoint: drop account_url/blob_endpoint")
        conn_account = _connection_account(conn, "storage_options connection_string")
        if account and conn_account and account != conn_account:
            raise ConfigurationError(f"the connection string is for account {conn_account!r}, not {account!r}")
        return Credentials("storage_options connection_string", conn_account or account, None, connection_string=conn)
    if given == ["sas_token"] and callable(options["sas_token"]):
        provider = options["sas_token"]
        made = _for_account("storage_options sas_token provider", "sas_token", _provided(provider), account,
                            endpoint or url_endpoint)
        return dataclasses.replace(made, credential=_sas_credential(made.credential), sas_provider=provider)
    if given:
        name = given[0]
        secret = options[name] if name == "credential" else _text(options, name)
        return _for_account(f"storage_options {name}", name, secret, account, endpoint or url_endpoint)

    env_conn = environ.get("AZURE_STORAGE_CONNECTION_STRING")
    if env_conn and not endpoint:
        conn_account = _connection_account(env_conn, "AZURE_STORAGE_CONNECTION_STRING")
        if not account or not conn_account or account == conn_account:
            return Credentials("AZURE_STORAGE_CONNECTION_STRING", conn_account or account, None,
                               connection_string=env_conn)

    account = account or environ.get("AZURE_STORAGE_ACCOUNT_NAME") or None
    endpoint = endpoint or url_endpoint
    if environ.get("AZURE_STORAGE_ACCOUNT_KEY"):
        return _for_account("AZURE_STORAGE_ACCOUNT_KEY", "account_key", environ["AZURE_STORAGE_ACCOUNT_KEY"],
                            account, endpoint)
    if environ.get("AZURE_STORAGE_SAS_TOKEN"):
        return _for_account("AZURE_STORAGE_SAS_TOKEN", "sas_token", environ["AZURE_STORAGE_SAS_TOKEN"],
                            account, endpoint)
    if not account and not endpoint:
        raise ConfigurationError(
            "no Azure storage account: give storage_options connection_string (or account_name with "
            "account_key, sas_token or credential), set AZURE_STORAGE_CONNECTION_STRING, or name the "
            "account (abfs://<container>@<account>.dfs.core.windows.net, AZURE_STORAGE_ACCOUNT_NAME) "
            "to use DefaultAzureCredential")
    return Credentials("DefaultAzureCredential", account, endpoint or _default_endpoint(account),
                       default_credential=True)


def _for_account(source: str, kind: str, secret: Any, account: str | None, endpoint: str | None) -> Credentials:
    if kind == "account_key":
        if not account:
            raise ConfigurationError(f"an account key ({source}) needs the account name: storage_options "
                                     "account_name, the URL's <container>@<account>..., or AZURE_STORAGE_ACCOUNT_NAME")
        credential: Any = {"account_name": account, "account_key": secret}
    elif kind == "sas_token":
        credential = secret.lstrip("?")
    else:
        credential = secret
    if not account and not endpoint:
        raise ConfigurationError(f"{source} needs the account: storage_options account_name or account_url")
    return Credentials(source, account, endpoint or _default_endpoint(account), credential=credential)


def _endpoint(options: Mapping[str, Any]) -> str | None:
    url, blob_endpoint = _text(options, "account_url"), _text(options, "blob_endpoint")
    if url and blob_endpoint and url != blob_endpoint:
        raise ConfigurationError("account_url and blob_endpoint are the same option: give one")
    url = url or blob_endpoint
    if not url:
        return None
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigurationError("account_url must look like https://<account>.blob.core.windows.net "
                                 "or http://127.0.0.1:10000/devstoreaccount1")
    if parts.query or parts.fragment or "@" in parts.netloc:
        raise ConfigurationError("account_url must not carry a query string or user info: pass a SAS token "
                                 "as storage_options sas_token")
    return url.rstrip("/")


def _default_endpoint(account: str | None) -> str | None:
    return f"https://{account}.blob.core.windows.net" if account else None


def _connection_account(conn: str, source: str) -> str | None:
    """The ``AccountName`` of a connection string; refuses one that is not ``key=value;...``."""
    fields: dict[str, str] = {}
    for part in conn.strip().strip(";").split(";"):
        key, sep, value = part.partition("=")
        if not sep or not key.strip():
            raise ConfigurationError(f"the Azure connection string from {source} is malformed "
                                     "(expected key=value pairs separated by ';')")
        fields[key.strip().lower()] = value.strip()
    if "accountname" not in fields and "blobendpoint" not in fields and "usedevelopmentstorage" not in fields:
        raise ConfigurationError(f"the Azure connection string from {source} names no AccountName or BlobEndpoint")
    return fields.get("accountname") or None


def _text(options: Mapping[str, Any], name: str) -> str | None:
    value = options.get(name)
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise ConfigurationError(f"storage_options {name} must be a non-empty string")  # never echo the value
    return value.strip()


def _provided(provider: Callable[[], str]) -> str:
    token = provider()
    if not isinstance(token, str) or not token.strip():
        raise ConfigurationError("the sas_token provider must return a non-empty string")  # never echo it
    return token.strip().lstrip("?")


def _sas_credential(token: str) -> Any:
    try:
        from azure.core.credentials import AzureSasCredential
    except ImportError as exc:
        raise ImportError(f"the Azure backend needs azure-core: {INSTALL_HINT}") from exc
    return AzureSasCredential(token)


def _default_credential() -> Any:
    try:
        from azure.identity import DefaultAzureCredential
    except ImportError as exc:
        raise ImportError(f"DefaultAzureCredential needs azure-identity: {INSTALL_HINT}") from exc
    return DefaultAzureCredential()


# -- keeping SAS signatures out of third-party logs -----------------------------------------------

_SIG = re.compile(r"(?i)\b(sig=)[^&\s'\"]+")
_URL_LOGGERS = ("urllib3.connectionpool", "urllib3.util.retry", "urllib3.poolmanager")


class RedactSasFilter(logging.Filter):
    """Masks ``sig=<value>`` in a record's message (urllib3 logs request URLs at DEBUG)."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a broken record is the logging system's business, not ours
            return True
        if "sig=" in message.lower():
            record.msg, record.args = _SIG.sub(r"\1***", message), None
        return True


_FILTER = RedactSasFilter()


def guard_http_logs() -> None:
    """Put the SAS-masking filter on the loggers that print request URLs (once per process)."""
    for name in _URL_LOGGERS:
        target = logging.getLogger(name)
        if _FILTER not in target.filters:
            target.addFilter(_FILTER)
