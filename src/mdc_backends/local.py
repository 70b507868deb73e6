"""Local disk (plain paths and ``file://``): the embedded default and the mode for tests.

Appends are safe with other processes writing the same file: each append runs under an
exclusive ``flock`` on the file, and a hidden marker beside it (``.<name>.committed``) records
the length of the last complete append. A writer that died mid-append leaves bytes past that
length; the next writer cuts them off before it appends, so later rows are never corrupted
(a line-based repair could not be trusted: quoted CSV fields may hold newlines).

A file whose header differs from the batch's is never appended to: the batch goes to
``<stem>-<hash of header>.<ext>`` in the same folder, and a warning says so.
Create-only writes go to a temporary file that is linked into place, so readers never see a
partial object and an existing one is never replaced.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import logging
import os
import secrets
import tempfile
from collections.abc import Callable, Mapping
from typing import Any

from mdc_core import BackendError, BackendPlugin, Capability, compiled, hookimpl

logger = logging.getLogger("mdc.backends.local")

_durable = compiled.load("_durable")
"""The same appends and creates in C, with the GIL released once per write instead of a dozen
times: beside scoring threads that never let go of it, each release can cost 5 ms."""


class LocalBackend:
    """Writes under a root folder, created on first write."""

    def __init__(self, root: str, options: Mapping[str, Any] | None = None):
        options = dict(options or {})
        append = options.pop("append", True)
        if options or not isinstance(append, bool):
            raise ValueError(
                f"the local backend takes only the storage option append=True/False, got {sorted(options)}"
            )
        self.capabilities = ALL if append else ALL - {Capability.APPEND}
        """Without ``append`` (for network shares where ``flock`` is not to be trusted) every
        batch is its own file and closed partitions are compacted, as on object stores."""
        path = root[len("file://") :] if root.startswith("file://") else root
        self.root = os.path.abspath(os.path.expanduser(path))
        self._warned: set[str] = set()

    def __repr__(self) -> str:
        return f"LocalBackend(root={self.root!r})"

    def append(self, key: str, header: bytes, body: bytes) -> str:
        path = self._path(key)
        try:
            written = self._append(path, header, body)
        except OSError as exc:
            raise BackendError(exc.errno, f"cannot append to {path}: {exc.strerror or exc}") from exc
        return key if written == path else self._key(written)

    def create(self, key: str, data: bytes) -> bool:
        path = self._path(key)
        folder = os.path.dirname(path)
        if _durable is not None:
            return self._create_natively(path, data)
        try:
            tmp = _durable_temp(folder, data)
            try:
                try:
                    os.link(tmp, path)
                except FileExistsError:
                    return False
            finally:
                os.unlink(tmp)
            _fsync_dir(folder)
            return True
        except OSError as exc:
            raise BackendError(exc.errno, f"cannot create {path}: {exc.strerror or exc}") from exc

    def _create_natively(self, path: str, data: bytes) -> bool:
        folder = os.path.dirname(path)
        tmp = os.path.join(folder, f".{secrets.token_hex(8)}.tmp")  # mode 0o600, as mkstemp's
        try:
            return _in_folder(folder, _durable.write_new, tmp, path, (data,), 0o600, True, True)
        except OSError as exc:
            raise BackendError(exc.errno, f"cannot create {path}: {exc.strerror or exc}") from exc

    def close(self) -> None:
        pass

    # -- Capability.MAINTAIN ----------------------------------------------------------------

    def list(self, prefix: str) -> list[tuple[str, int]]:
        top = self._path(prefix.rstrip("/")) if prefix.strip("/") else self.root
        found = []
        for folder, dirs, files in os.walk(top):
            dirs[:] = [d for d in dirs if not d.startswith(".")]
            for name in files:
                if name.startswith(".") and name.endswith((".tmp", ".committed")):
                    continue  # this backend's own bookkeeping, not objects
                path = os.path.join(folder, name)
                try:
                    found.append((self._key(path), os.stat(path).st_size))
                except FileNotFoundError:
                    continue
        return sorted(found)

    def read(self, key: str) -> bytes | None:
        try:
            with open(self._path(key), "rb") as f:
                return f.read()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise BackendError(exc.errno, f"cannot read {key}: {exc.strerror or exc}") from exc

    def size(self, key: str) -> int | None:
        try:
            return os.stat(self._path(key)).st_size
        except FileNotFoundError:
            return None

    def put(self, key: str, data: bytes) -> None:
        path = self._path(key)
        folder = os.path.dirname(path)
        try:
            os.replace(_durable_temp(folder, data), path)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(_marker_path(path))  # a replaced file is no longer an append log
            _fsync_dir(folder)
        except OSError as exc:
            raise BackendError(exc.errno, f"cannot replace {path}: {exc.strerror or exc}") from exc

    def delete(self, key: str) -> None:
        path = self._path(key)
        for victim in (path, _marker_path(path)):
            try:
                os.unlink(victim)
            except FileNotFoundError:
                pass
            except OSError as exc:
                raise BackendError(exc.errno, f"cannot delete {key}: {exc.strerror or exc}") from exc

    # -- internals ------------------------------------------------------------------------

    def _path(self, key: str) -> str:
        parts = key.split("/")
        if any(p in ("", ".", "..") for p in parts):
            raise ValueError(f"invalid storage key {key!r}")
        return os.path.join(self.root, *parts)

    def _key(self, path: str) -> str:
        return os.path.relpath(path, self.root).replace(os.sep, "/")

    def _append(self, path: str, header: bytes, body: bytes) -> str:
        if _durable is None:
            appended, cut = self._append_steps(path, header, body)
        else:
            appended, cut = _in_folder(os.path.dirname(path), _durable.append_log, path, _marker_path(path), header,
                                       body)
        if cut:
            logger.warning("mdc cut %d bytes of an interrupted write from the end of %s", cut, path)
        if appended:
            return path
        other = _alternative(path, header)
        if path not in self._warned:
            self._warned.add(path)
            logger.warning(
                "%s has other columns than this collector's; writing to %s instead", path, os.path.basename(other)
            )
        return self._append(other, header, body)

    @staticmethod
    def _append_steps(path: str, header: bytes, body: bytes) -> tuple[bool, int]:
        """(appended, bytes cut): appended is False when the file has another header (nothing written)."""
        folder = os.path.dirname(path)
        os.makedirs(folder, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            marker = _marker_path(path)
            committed = _read_marker(marker)
            size = os.fstat(fd).st_size
            cut = 0
            if committed is None:
                committed = size  # a file mdc did not start: trust it as it is
                if size == 0:
                    _write_marker(marker, 0)  # so a crash in this first append is cut off too
            if size > committed:
                os.ftruncate(fd, committed)
                cut = size - committed
            elif size < committed:
                committed = size  # the marker is ahead of the data (a crash between the two fsyncs)
            if committed == 0:
                data = header + body
            elif header and os.pread(fd, len(header), 0) != header:
                return False, cut
            else:
                data = body
            _write_all(fd, data, committed)
            os.fsync(fd)
            _write_marker(marker, committed + len(data))
            if committed == 0:
                _fsync_dir(folder)
            return True, cut
        finally:
            os.close(fd)  # closing releases the lock


def _in_folder(folder: str, write: Callable[..., Any], *args: Any) -> Any:
    """``write(*args)``, making ``folder`` first if the write found it missing (the first write to a
    partition): one system call less than making sure of it before every write."""
    try:
        return write(*args)
    except FileNotFoundError:
        os.makedirs(folder, exist_ok=True)
        return write(*args)


def _durable_temp(folder: str, data: bytes) -> str:
    """``data`` fsynced in a hidden temporary file of ``folder``, ready to be linked or renamed."""
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        os.unlink(tmp)
        raise
    return tmp


def _alternative(path: str, header: bytes) -> str:
    """``data.csv`` -> ``data-1a2b3c4d.csv``: same folder and extension, so globs still match."""
    stem, ext = os.path.splitext(path)
    return f"{stem}-{hashlib.sha256(header).hexdigest()[:8]}{ext}"


def _marker_path(path: str) -> str:
    folder, name = os.path.split(path)
    return os.path.join(folder, f".{name}.committed")


def _read_marker(marker: str) -> int | None:
    try:
        with open(marker, "rb") as f:
            return int(f.read().strip() or b"0")
    except FileNotFoundError:
        return None
    except ValueError:
        return None


def _write_marker(marker: str, length: int) -> None:
    tmp = f"{marker}.{os.getpid()}.tmp"
    with open(tmp, "wb") as f:
        f.write(str(length).encode("ascii"))
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, marker)


def _write_all(fd: int, data: bytes, offset: int) -> None:
    view = memoryview(data)
    while view:
        n = os.pwrite(fd, view, offset)
        if n == 0:
            raise OSError(errno.EIO, "short write")
        view = view[n:]
        offset += n


def _fsync_dir(folder: str) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


ALL = frozenset({Capability.APPEND, Capability.CREATE_IF_ABSENT, Capability.MAINTAIN})


@hookimpl
def mdc_backends() -> list[BackendPlugin]:
    return [
        BackendPlugin(
            name="local",
            schemes=("", "file"),
            factory=LocalBackend,
            capabilities=ALL,
            description="local disk: plain paths and file:// URLs",
        )
    ]
