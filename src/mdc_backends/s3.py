"""S3 and S3-compatible storage (AWS S3, MinIO, SeaweedFS, Ceph RGW) through s3fs.

The root is ``s3://<bucket>[/<prefix>]`` (``s3a://`` too); keys are relative to the prefix.
S3 has no append, so the flusher writes each batch as an object of its own with a create-only
upload (``If-None-Match: *``, s3fs ``pipe_file(mode="create")``): a single PUT, or a multipart
upload conditioned at completion, so no partial object is ever visible under a final name. A
retried batch that finds its earlier upload gets "already exists" (``create()`` returns False);
s3fs turns the server's 412 PreconditionFailed into ``FileExistsError`` (AWS) or
``OSError(EINVAL)`` caused by a ``PreconditionFailed`` ClientError (SeaweedFS, MinIO), and both
mean the same here.

Credentials are never resolved or copied here: ``key``/``secret``/``token`` or ``profile`` from
``storage_options`` are handed to s3fs, otherwise botocore's own chain runs on first use
(environment, shared files, SSO, container and instance roles), so refreshable credentials stay
refreshable. ``endpoint_url`` comes from the options or ``AWS_ENDPOINT_URL_S3`` /
``AWS_ENDPOINT_URL``; a custom endpoint gets path-style addressing unless ``config_kwargs`` says
otherwise. Timeouts (``timeout``, default 30 s) and retries (``retries``, default 3, botocore's
"standard" mode) are always set: botocore's own defaults can hold a writer for minutes. s3fs's
second retry layer is switched off, so ``retries`` means what it says.

Errors: every exception becomes a ``BackendError`` built from the operation, the object, the S3
error code and the HTTP status (or the kind of network failure), never from a library's text.
Secrets: the secret key only keys the request signature and is never sent or logged, but
botocore's DEBUG logging prints canonical requests and request headers, which carry a session
token; a filter on those loggers masks tokens (and the secrets this backend was given): see
``s3_logs``. ``s3_loop`` keeps the client's event loop sound across fork and at interpreter exit.
"""

from __future__ import annotations

import asyncio
import errno
import inspect
import logging
import math
import os
import re
import threading
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlsplit

from mdc_backends.s3_logs import guard_logs
from mdc_backends.s3_loop import keep_executor_at_exit, owned_here, remember_loop
from mdc_core import BackendError, BackendPlugin, Capability, ConfigurationError, hookimpl

logger = logging.getLogger("mdc.backends.s3")

INSTALL_HINT = "the s3 backend needs s3fs: pip install 'mdc[s3]'"
DEFAULT_TIMEOUT = 30.0
DEFAULT_RETRIES = 3
OPTIONS = frozenset(("key", "secret", "token", "profile", "region", "endpoint_url", "client_kwargs", "config_kwargs",
                     "s3_additional_kwargs", "timeout", "retries", "create_bucket"))  # fmt: skip
"""The ``storage_options`` this backend takes; anything else is refused when the collector is built."""

_BUCKET = re.compile(r"[a-z0-9][a-z0-9._-]{1,61}[a-z0-9]")
_ERRNO_BY_STATUS = {
    400: errno.EINVAL,
    401: errno.EACCES,
    403: errno.EACCES,
    404: errno.ENOENT,
    409: errno.EBUSY,
    412: errno.EEXIST,
    429: errno.EBUSY,
    503: errno.EBUSY,
}
_HINTS = {
    "SignatureDoesNotMatch": "check the secret key",
    "InvalidAccessKeyId": "check the access key id (and session token)",
    "ExpiredToken": "the session token has expired",
    "AccessDenied": "check the credentials and that they may use this bucket",
}


class S3Backend:
    """Objects under ``s3://<bucket>/<prefix>/``; see the module docstring."""

    multipart_chunksize = 50 * 2**20
    """Objects of twice this size or more are uploaded in parts of this size (s3fs's default)."""

    def __init__(self, root: str, options: Mapping[str, Any] | None = None):
        opts = dict(options or {})
        unknown = sorted(set(opts) - OPTIONS)
        if unknown:
            raise ConfigurationError(f"unknown storage_options for s3: {unknown}; known: {sorted(OPTIONS)}")
        self.bucket, self.prefix = _parse_url(root)
        self._s3fs = _import_s3fs()
        self.timeout = _number(opts.pop("timeout", DEFAULT_TIMEOUT), "timeout")
        self.retries = int(_number(opts.pop("retries", DEFAULT_RETRIES), "retries", integer=True))
        self.create_bucket = _flag(opts.pop("create_bucket", False), "create_bucket")
        client_kwargs = dict(_mapping(opts.pop("client_kwargs", None), "client_kwargs"))
        config_kwargs = dict(_mapping(opts.pop("config_kwargs", None), "config_kwargs"))
        additional = dict(_mapping(opts.pop("s3_additional_kwargs", None), "s3_additional_kwargs"))
        if opts.get("region"):
            client_kwargs["region_name"] = opts.pop("region")
        self.region: str | None = client_kwargs.get("region_name")
        endpoint = opts.pop("endpoint_url", None) or client_kwargs.pop("endpoint_url", None) or _env_endpoint()
        self.endpoint_url: str | None = _check_endpoint(endpoint) if endpoint else None
        if bool(opts.get("key")) != bool(opts.get("secret")):
            raise ConfigurationError("storage_options 'key' and 'secret' go together: give both or neither")
        config: dict[str, Any] = {
            "connect_timeout": self.timeout,
            "read_timeout": self.timeout,
            "retries": {"max_attempts": self.retries, "mode": "standard"},
        }
        if self.endpoint_url:
            config["s3"] = {"addressing_style": "path"}  # S3-compatible servers rarely resolve bucket.host
        config.update(config_kwargs)
        self._fs_kwargs: dict[str, Any] = {
            "endpoint_url": self.endpoint_url,
            "client_kwargs": client_kwargs,
            "config_kwargs": config,
            "s3_additional_kwargs": additional,
            "skip_instance_cache": True,
            **{name: opts[name] for name in ("key", "secret", "token") if opts.get(name)},
        }
        self._profile: str | None = opts.get("profile") or None
        if opts.get("token") and not opts.get("key"):
            raise ConfigurationError("storage_options 'token' needs 'key' and 'secret' too")
        guard_logs(
            opts.get("secret"),
            opts.get("token"),
            client_kwargs.get("aws_secret_access_key"),
            client_kwargs.get("aws_session_token"),
            os.environ.get("AWS_SECRET_ACCESS_KEY"),
            os.environ.get("AWS_SESSION_TOKEN"),
            additional.get("SSECustomerKey"),
        )
        self._lock = threading.Lock()
        self._fs: Any = None
        self._pid = 0
        self._inherited: list[Any] = []

    def __repr__(self) -> str:
        endpoint = _show_endpoint(self.endpoint_url) if self.endpoint_url else None
        return f"S3Backend(bucket={self.bucket!r}, prefix={self.prefix!r}, endpoint={endpoint!r})"

    def create(self, key: str, data: bytes) -> bool:
        path = self._path(key)
        if _PIPE_HAS_MODE:
            return self._write(
                "create", key, lambda fs: fs.pipe_file(path, data, mode="create", chunksize=self.multipart_chunksize)
            )
        bucket, name = path.split("/", 1)
        return self._write(
            "create", key, lambda fs: fs.call_s3("put_object", Bucket=bucket, Key=name, Body=data, IfNoneMatch="*")
        )

    def append(self, key: str, header: bytes, body: bytes) -> str:
        # Never called: without Capability.APPEND every batch is a create-only object.
        raise BackendError(errno.ENOTSUP, "S3 has no append; the s3 backend writes create-only objects")

    def close(self) -> None:
        with self._lock:
            fs, self._fs = self._fs, None
            mine = self._pid == os.getpid()
        creator = getattr(fs, "_s3creator", None)  # s3fs keeps the client's context manager here
        if fs is None or not mine or creator is None:
            return
        try:
            fs.close_session(fs.loop, creator)
        except Exception:  # best effort at exit; the session's finalizer tries again
            logger.debug("closing the S3 session of %r failed", self, exc_info=True)

    # -- Capability.MAINTAIN ----------------------------------------------------------------

    def list(self, prefix: str) -> list[tuple[str, int]]:
        if prefix and not prefix.endswith("/"):
            raise ValueError(f"a list prefix is a folder ending in '/', got {prefix!r}")
        strip = f"{self.prefix}/" if self.prefix else ""
        wanted = self._name(prefix[:-1]) + "/" if prefix else strip
        found: list[tuple[str, int]] = []
        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Prefix": wanted}
        try:
            fs = self._filesystem()
            while True:  # straight to ListObjectsV2: s3fs's listing cache could be stale
                page = fs.call_s3("list_objects_v2", **kwargs)
                found.extend(
                    (item["Key"][len(strip) :], int(item["Size"]))
                    for item in page.get("Contents", ())
                    if not item["Key"].endswith("/")
                )  # folder markers are not objects
                if not page.get("IsTruncated") or not page.get("NextContinuationToken"):
                    return sorted(found)
                kwargs["ContinuationToken"] = page["NextContinuationToken"]
        except Exception as exc:
            raise self._error("list", prefix, exc) from exc

    def read(self, key: str) -> bytes | None:
        path = self._path(key)
        try:
            return bytes(self._filesystem().cat_file(path))
        except Exception as exc:
            if _missing(exc):
                return None
            raise self._error("read", key, exc) from exc

    def size(self, key: str) -> int | None:
        """The object's size; ``None`` when it, or its bucket, is missing (HEAD cannot tell which)."""
        name = self._name(key)
        try:
            return int(self._filesystem().call_s3("head_object", Bucket=self.bucket, Key=name)["ContentLength"])
        except Exception as exc:
            if _missing(exc):
                return None
            raise self._error("size", key, exc) from exc

    def put(self, key: str, data: bytes) -> None:
        path = self._path(key)
        self._write("put", key, lambda fs: fs.pipe_file(path, data, chunksize=self.multipart_chunksize))

    def delete(self, key: str) -> None:
        name = self._name(key)
        try:
            fs = self._filesystem()
            fs.call_s3("delete_object", Bucket=self.bucket, Key=name)
            fs.invalidate_cache(f"{self.bucket}/{name}")
        except Exception as exc:
            if not _missing(exc):
                raise self._error("delete", key, exc) from exc

    # -- internals ------------------------------------------------------------------------

    def _filesystem(self) -> Any:
        """This process's S3FileSystem (built on first use, and again in a forked child)."""
        pid = os.getpid()
        with self._lock:
            if self._fs is None or self._pid != pid:
                if self._fs is not None:
                    self._inherited.append(self._fs)  # the parent's: kept, never closed here
                fs = _FileSystem(session=self._session(), **self._fs_kwargs)
                fs.retries = 1  # botocore retries `retries` times; no second layer on top
                remember_loop(fs.loop, pid)
                self._fs, self._pid = fs, pid
            fs = self._fs
        if not threading.main_thread().is_alive():
            keep_executor_at_exit(fs.loop)
        return fs

    def _session(self) -> Any:
        """A botocore session (its credential chain, refreshable) whose S3 uploads skip
        ``Expect: 100-continue``: aiohttp waits for the interim answer with no timeout at all,
        so a server that accepts the connection and stays silent would hold the flusher forever.
        Without it ``read_timeout`` bounds the wait; a refused batch costs one upload of its bytes."""
        from aiobotocore.session import AioSession  # type: ignore[import-untyped]
        from botocore.handlers import add_expect_header  # type: ignore[import-untyped]

        session = AioSession(profile=self._profile) if self._profile else AioSession()
        session.unregister("before-call.s3", add_expect_header)
        return session

    def _write(self, op: str, key: str, upload: Callable[[Any], Any]) -> bool:
        """Run ``upload``; create the bucket and try again if allowed; True unless it existed."""
        try:
            fs = self._filesystem()
            try:
                upload(fs)
            except Exception as exc:
                if not (self.create_bucket and _code_status(exc)[0] == "NoSuchBucket"):
                    raise
                self._make_bucket(fs)
                upload(fs)
        except BackendError:
            raise
        except Exception as exc:
            if op == "create" and _exists(exc):
                return False
            raise self._error(op, key, exc) from exc
        return True

    def _make_bucket(self, fs: Any) -> None:
        params: dict[str, Any] = {"Bucket": self.bucket}
        region = self.region or getattr(getattr(fs.s3, "meta", None), "region_name", None)
        if region and region != "us-east-1":
            params["CreateBucketConfiguration"] = {"LocationConstraint": region}
        try:
            fs.call_s3("create_bucket", **params)
            logger.info("mdc created the S3 bucket %s", self.bucket)
        except Exception as exc:
            if _code_status(exc)[0] not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                raise self._error("create bucket", "", exc) from exc
        fs.invalidate_cache(self.bucket)

    def _name(self, key: str) -> str:
        """The object name in the bucket for a key relative to the root."""
        if any(part in ("", ".", "..") for part in key.split("/")):
            raise ValueError(f"invalid storage key {key!r}")
        return f"{self.prefix}/{key}" if self.prefix else key

    def _path(self, key: str) -> str:
        return f"{self.bucket}/{self._name(key)}"

    def _error(self, op: str, key: str, exc: BaseException) -> BackendError:
        """A BackendError saying what failed, from codes only: no library text, no credentials."""
        where = f"s3://{self.bucket}/{self.prefix + '/' if self.prefix else ''}{key}"
        code, status = _code_status(exc)
        if code or status:
            number = _ERRNO_BY_STATUS.get(status or 0, errno.EIO)
            named = code and code != str(status)  # a HEAD or bodiless answer has only its status
            detail = f"{code} (HTTP {status})" if named else f"HTTP {status or code}"
            hint = _HINTS.get(code or "", "") or (_HINTS["AccessDenied"] if status == 403 else "")
            if code == "NoSuchBucket":
                hint = (
                    f"the bucket {self.bucket!r} does not exist: create it, or set storage_options create_bucket=True"
                )
        else:
            number, detail, hint = self._network_failure(exc)
        return BackendError(number, f"S3 {op} of {where} failed: {detail}" + (f"; {hint}" if hint else ""))

    def _network_failure(self, exc: BaseException) -> tuple[int, str, str]:
        from botocore import exceptions as bx  # type: ignore[import-untyped]  # present wherever s3fs is

        endpoint = _show_endpoint(self.endpoint_url) if self.endpoint_url else "the AWS S3 endpoint"
        for cause in _chain(exc):
            name = type(cause).__name__
            if isinstance(cause, (bx.ConnectTimeoutError, bx.ReadTimeoutError, TimeoutError, asyncio.TimeoutError)):
                return errno.ETIMEDOUT, name, f"no answer from {endpoint} within {self.timeout:g} s"
            if isinstance(cause, (bx.ConnectionError, bx.HTTPClientError, ConnectionError)):
                return errno.ECONNREFUSED, name, f"cannot reach {endpoint}"
            if isinstance(
                cause,
                (bx.NoCredentialsError, bx.PartialCredentialsError, bx.CredentialRetrievalError, bx.ProfileNotFound),
            ):
                return (
                    errno.EACCES,
                    name,
                    (
                        "no usable credentials: set storage_options key and secret, "
                        "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, a profile or a role"
                    ),
                )
        return errno.EIO, type(exc).__name__, ""


# -- helpers ------------------------------------------------------------------------------

_PIPE_HAS_MODE = False
_FileSystem: Any = None


def _import_s3fs() -> Any:
    global _PIPE_HAS_MODE, _FileSystem
    try:
        import s3fs  # type: ignore[import-untyped]
    except ImportError as exc:
        raise ImportError(INSTALL_HINT) from exc
    # Newer s3fs releases create-only through pipe_file (single and multipart uploads); older
    # ones still reach PutObject's IfNoneMatch through call_s3.
    _PIPE_HAS_MODE = "mode" in inspect.signature(s3fs.S3FileSystem._pipe_file).parameters
    if _FileSystem is None:

        class ForkSafeS3FileSystem(s3fs.S3FileSystem):  # type: ignore[misc]
            """Whose finalizer leaves a forked parent's session alone (see ``s3_loop``)."""

            @staticmethod
            def close_session(loop: Any, s3: Any) -> None:
                if owned_here(loop):
                    s3fs.S3FileSystem.close_session(loop, s3)

        _FileSystem = ForkSafeS3FileSystem
    return s3fs


def _parse_url(root: str) -> tuple[str, str]:
    parts = urlsplit(root)
    if parts.scheme.lower() not in ("s3", "s3a"):
        raise ConfigurationError("an S3 storage URL looks like s3://bucket/optional/prefix")
    if "@" in parts.netloc:
        raise ConfigurationError(
            "credentials do not belong in the S3 URL: pass them in storage_options or the environment"
        )
    if parts.query or parts.fragment:
        raise ConfigurationError("an S3 storage URL takes no query or fragment: s3://bucket/optional/prefix")
    bucket, prefix = parts.netloc, parts.path.strip("/")
    if not _BUCKET.fullmatch(bucket):
        raise ConfigurationError(
            f"{bucket!r} is not an S3 bucket name (3-63 lower-case letters, digits, "
            "dots and hyphens): use s3://bucket/optional/prefix"
        )
    if prefix and any(part in ("", ".", "..") for part in prefix.split("/")):
        raise ConfigurationError(f"the S3 prefix {prefix!r} has an empty, '.' or '..' segment")
    return bucket, prefix


def _env_endpoint() -> str | None:
    """The endpoint botocore's convention names: service-specific variable first."""
    if os.environ.get("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS", "").lower() == "true":
        return None
    return os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL") or None


def _check_endpoint(url: Any) -> str:
    parts = urlsplit(url) if isinstance(url, str) else None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigurationError("endpoint_url must be an http:// or https:// URL, such as http://127.0.0.1:8333")
    return url


def _show_endpoint(url: str) -> str:
    """``scheme://host[:port]``: never a user, password, path or query."""
    parts = urlsplit(url)
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{parts.hostname}{port}"


def _number(value: Any, what: str, integer: bool = False) -> float:
    try:
        number = float(value) if not isinstance(value, bool) else math.nan
    except (TypeError, ValueError):
        number = math.nan
    if not (math.isfinite(number) and number >= 0 and (number.is_integer() if integer else number > 0)):
        kind = "a whole number >= 0" if integer else "a positive number of seconds"
        raise ConfigurationError(f"storage_options {what!r} must be {kind}")
    return number


def _flag(value: Any, what: str) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "1", "yes", "on"):
        return True
    if text in ("false", "0", "no", "off"):
        return False
    raise ConfigurationError(f"storage_options {what!r} must be true or false")


def _mapping(value: Any, what: str) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ConfigurationError(f"storage_options {what!r} must be a dict")
    return value


def _chain(exc: BaseException | None) -> list[BaseException]:
    """``exc`` and its causes, outermost first."""
    found: list[BaseException] = []
    while exc is not None and all(exc is not seen for seen in found):
        found.append(exc)
        exc = exc.__cause__ or exc.__context__
    return found


def _code_status(exc: BaseException) -> tuple[str | None, int | None]:
    """The S3 error code and HTTP status of the ClientError behind ``exc``, if there is one."""
    for cause in _chain(exc):
        response = getattr(cause, "response", None)
        if isinstance(response, Mapping) and ("Error" in response or "ResponseMetadata" in response):
            code = (response.get("Error") or {}).get("Code")
            return (str(code) if code else None), (response.get("ResponseMetadata") or {}).get("HTTPStatusCode")
    return None, None


def _exists(exc: BaseException) -> bool:
    """A create-only upload found an object: s3fs's FileExistsError, or a bare 412."""
    code, status = _code_status(exc)
    return isinstance(exc, FileExistsError) or code == "PreconditionFailed" or status == 412


def _missing(exc: BaseException) -> bool:
    """No such object (a missing bucket is an error, except where HEAD cannot tell)."""
    code, status = _code_status(exc)
    if code == "NoSuchBucket":
        return False
    return code in ("NoSuchKey", "404") or status == 404 or (code is None and isinstance(exc, FileNotFoundError))


@hookimpl
def mdc_backends() -> list[BackendPlugin]:
    return [
        BackendPlugin(
            name="s3",
            schemes=("s3", "s3a"),
            factory=S3Backend,
            capabilities=frozenset({Capability.CREATE_IF_ABSENT, Capability.MAINTAIN}),
            description="S3 and S3-compatible servers (MinIO, SeaweedFS, Ceph) via s3fs",
        )
    ]
