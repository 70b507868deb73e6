"""A durable local spool of sealed batches, so a process killed mid-upload loses nothing sealed.

The flusher ``put``s a sealed batch here before its upload starts and ``remove``s it once the
upload is confirmed. Whatever is still here when storage returns, or when a process restarts,
is replayed oldest first; create-only object names make replaying a delivered batch harmless.

One file holds one sealed batch (integers big-endian)::

    header   b"MDCSPOOL" | version u16 | record count u32 | row total u64 | crc32 of those 22 bytes u32
    record   payload length u32 | crc32 of (length field, payload) u32 | payload     (repeated)
    payload  JSON line {"key", "route", "rows", "storage"} + b"\\n" + the encoded batch bytes

``put`` writes a '.'-prefixed temp file, fsyncs it, renames it to its final name and fsyncs the
directory, so a final name never holds a partial file. Final names
``<time_ns>-<seq>-<origin>+<owner>.spool`` sort in creation order; ``origin`` is the token of
the process that wrote the file, ``owner`` that of the process now responsible for it.

Ownership between processes on one host: a live ``Spool`` holds an exclusive ``flock`` on
``.owner-<owner>.lock`` for its lifetime. If another process can take that lock, the owner is
dead: ``claim_orphans`` takes it, renames the owner's entries to its own token (``rename`` is
atomic, so two claimers never both get an entry), then deletes the dead owner's temp files and
lock file. ``flock`` (not ``fcntl`` record locks) because it belongs to the open file, so probing
another owner's lock from the same process never releases anything.

Reading stops at the first record that runs past the end of the file or fails its checksum: the
records before it are recovered and the rest counted as lost (``Damaged``). The header's record
count catches a file cut exactly at a record boundary, and its row total says how many rows were lost.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import re
import secrets
import struct
import threading
import time
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import IO, Any

from mdc_core import compiled
from mdc_core.errors import MdcError

MAGIC = b"MDCSPOOL"
VERSION = 1
_HEADER = struct.Struct(">8sHIQ")  # magic, version, record count, row total
_U32 = struct.Struct(">I")
_FRAME = struct.Struct(">II")  # payload length, crc32 of (length field, payload)
HEADER_SIZE = _HEADER.size + _U32.size
_FULL = frozenset({errno.ENOSPC, errno.EDQUOT})
_durable = compiled.load("_durable")  # put() in one release of the GIL (see _durable.c)

_TOKEN = r"\d+-[0-9a-f]{12}"
_ENTRY = re.compile(rf"(\d{{20}})-(\d{{10}})-({_TOKEN})\+({_TOKEN})\.spool")
_TEMP = re.compile(rf"\.\d{{20}}-\d{{10}}-{_TOKEN}\+({_TOKEN})\.spool\.tmp")
_LOCK = re.compile(rf"\.owner-({_TOKEN})\.lock")


class SpoolFull(MdcError, OSError):
    """The spool cannot take a batch: its byte cap is reached or its disk is full (``errno`` set)."""


@dataclass(frozen=True)
class SpoolRecord:
    """One encoded batch object awaiting upload: where it goes and what it counts for.

    ``storage`` is the redacted root URL: the spool never sees credentials."""

    storage: str
    key: str
    data: bytes = field(repr=False)
    rows: int
    route: str


@dataclass(frozen=True)
class SpoolEntry:
    """One spool file: a sealed batch of one or more records, durable until removed."""

    path: str
    records: tuple[SpoolRecord, ...]
    created: float


@dataclass(frozen=True)
class Damaged:
    """A torn or corrupt spool file: the complete records before the damage, and the bytes lost."""

    path: str
    recovered: tuple[SpoolRecord, ...]
    lost_bytes: int
    reason: str
    created: float = 0.0
    lost_rows: int | None = None
    """Rows in the records lost, from the header's row total; None when the header is unreadable."""


def load(path: str) -> SpoolEntry | Damaged:
    """Read one spool file; a torn or corrupt one comes back as ``Damaged`` with what survived."""
    with open(path, "rb") as f:
        buf = f.read()
    m = _ENTRY.fullmatch(os.path.basename(path))
    created = int(m[1]) / 1e9 if m else 0.0
    records, lost, reasons, rows = _decode(buf)
    if not reasons:
        return SpoolEntry(path, records, created)
    lost_rows = None if rows is None else rows - sum(r.rows for r in records)
    return Damaged(path, records, lost, "; ".join(reasons), created, lost_rows)


def _encode(records: Sequence[SpoolRecord]) -> tuple[list[Any], int]:
    """The file's chunks (no copy of the batch bytes) and its total size."""
    head = _HEADER.pack(MAGIC, VERSION, len(records), sum(r.rows for r in records))
    chunks: list[Any] = [head, _U32.pack(zlib.crc32(head))]
    for r in records:
        meta = json.dumps({"key": r.key, "route": r.route, "rows": r.rows, "storage": r.storage}).encode() + b"\n"
        length = _U32.pack(len(meta) + len(r.data))
        crc = zlib.crc32(r.data, zlib.crc32(meta, zlib.crc32(length)))
        chunks += [length, _U32.pack(crc), meta, r.data]
    return chunks, sum(len(c) for c in chunks)


def _decode(buf: bytes) -> tuple[tuple[SpoolRecord, ...], int, list[str], int | None]:
    """``(complete records, bytes after them, reasons the file is damaged, the header's row total)``."""
    if len(buf) < HEADER_SIZE:
        return (), len(buf), [f"torn header: {len(buf)} of {HEADER_SIZE} bytes"], None
    magic, version, count, rows = _HEADER.unpack_from(buf)
    if magic != MAGIC:
        return (), len(buf), ["not a spool file"], None
    reasons: list[str] = []
    expected: int | None = count
    if zlib.crc32(buf[: _HEADER.size]) != _U32.unpack_from(buf, _HEADER.size)[0]:
        expected = rows = None  # counts unknown; every record still has its own checksum
        reasons.append("header checksum mismatch")
    elif version != VERSION:
        return (), len(buf), [f"spool format version {version}, this mdc reads {VERSION}"], None
    view, size, pos = memoryview(buf), len(buf), HEADER_SIZE
    records: list[SpoolRecord] = []
    while pos < size and (expected is None or len(records) < expected):
        i = len(records)
        if size - pos < _FRAME.size:
            reasons.append(f"record {i} torn in its frame")
            break
        length, crc = _FRAME.unpack_from(buf, pos)
        start, end = pos + _FRAME.size, pos + _FRAME.size + length
        if end > size:
            reasons.append(f"record {i} runs past the end of the file")
            break
        if zlib.crc32(view[start:end], zlib.crc32(view[pos : pos + 4])) != crc:
            reasons.append(f"record {i} checksum mismatch")
            break
        record = _parse(buf, start, end)
        if record is None:
            reasons.append(f"record {i} undecodable")
            break
        records.append(record)
        pos = end
    lost = size - pos
    if not reasons and expected is not None and len(records) < expected:
        reasons.append(f"{len(records)} of {expected} records")
    elif not reasons and lost:
        reasons.append(f"{lost} bytes after the last record")
    return tuple(records), lost, reasons, rows


def _parse(buf: bytes, start: int, end: int) -> SpoolRecord | None:
    nl = buf.find(b"\n", start, end)
    if nl < 0:
        return None
    try:
        meta = json.loads(buf[start:nl])
    except ValueError:
        return None
    if not isinstance(meta, dict):
        return None
    storage, key, rows, route = (meta.get(k) for k in ("storage", "key", "rows", "route"))
    if not (isinstance(storage, str) and isinstance(key, str) and isinstance(route, str) and type(rows) is int):
        return None
    return SpoolRecord(storage, key, buf[nl + 1 : end], rows, route)


def _check(record: SpoolRecord) -> None:
    """Refuse what could not be read back, before anything is written."""
    if not isinstance(record, SpoolRecord):
        raise TypeError(f"expected SpoolRecord, got {type(record).__name__}")
    if not (isinstance(record.storage, str) and isinstance(record.key, str) and isinstance(record.route, str)):
        raise TypeError("SpoolRecord storage, key and route must be str")
    if type(record.rows) is not int or record.rows < 0:
        raise TypeError(f"SpoolRecord rows must be an int >= 0, got {record.rows!r}")
    if not isinstance(record.data, (bytes, bytearray)):
        raise TypeError(f"SpoolRecord data must be bytes, got {type(record.data).__name__}")


def _fsync_dir(directory: str) -> None:
    fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _unlink(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


class Spool:
    """Sealed batches on local disk until their upload is confirmed; see the module docstring.

    Thread-safe. The byte cap and the counters are per process: after a fork, the child starts
    empty under its own owner token (``reopen_after_fork``)."""

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        max_bytes: int = 1 << 30,
        opener: Callable[..., IO[bytes]] = open,
        fsync: bool = True,
    ):
        if max_bytes <= 0:
            raise ValueError(f"max_bytes must be positive, got {max_bytes}")
        self.directory = os.path.abspath(os.fspath(directory))
        self.max_bytes = max_bytes
        self._opener = opener
        self._fsync = fsync
        self._closed = False
        os.makedirs(self.directory, mode=0o700, exist_ok=True)
        self._own()

    def _own(self) -> None:
        """Start as a new owner: fresh token, fresh lock, nothing held."""
        self._mutex = threading.Lock()
        self._held: dict[str, tuple[int, float]] = {}  # path -> (size, created)
        self._bytes = 0
        self._seq = 0
        self._last_ns = 0
        self._pid = os.getpid()
        self.token = f"{self._pid}-{secrets.token_hex(6)}"
        self._lock_path = os.path.join(self.directory, f".owner-{self.token}.lock")
        # Locked before it appears under its name, so no claimer can mistake it for a dead owner's.
        new = self._lock_path + ".new"
        fd = os.open(new, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            os.rename(new, self._lock_path)
        except BaseException:
            os.close(fd)
            _unlink(new)
            raise
        self._lock_fd = fd

    def reopen_after_fork(self) -> None:
        """In a forked child, become a new owner so the parent's entries stay the parent's.

        The child closes its inherited copy of the parent's lock (the parent keeps holding it) and
        starts with no entries. Does nothing in the process that made the spool, so it is safe to
        call from an at-fork hook and again by hand."""
        if self._closed or os.getpid() == self._pid:
            return
        os.close(self._lock_fd)
        self._own()

    def _check_pid(self) -> None:
        if os.getpid() != self._pid:
            self.reopen_after_fork()

    def put(self, records: Sequence[SpoolRecord]) -> SpoolEntry:
        """Store one sealed batch; it is on disk (file and name fsynced) when this returns.

        Raises ``SpoolFull`` when the cap would be exceeded or the disk is full (nothing left
        behind); other ``OSError``s also leave nothing behind."""
        records = tuple(records)
        if not records:
            raise ValueError("a spool entry needs at least one record")
        for record in records:
            _check(record)
        self._check_pid()
        chunks, size = _encode(records)
        with self._mutex:
            if self._closed:
                raise ValueError("spool is closed")
            if self._bytes + size > self.max_bytes:
                raise SpoolFull(
                    errno.ENOSPC,
                    f"spool cap of {self.max_bytes} bytes reached ({self._bytes} held, {size} more)",
                    self.directory,
                )
            self._bytes += size  # reserved now, so concurrent puts cannot overshoot the cap
            self._seq += 1
            ns = self._last_ns = max(time.time_ns(), self._last_ns + 1)  # names keep put order
            name = f"{ns:020d}-{self._seq:010d}-{self.token}+{self.token}.spool"
        path = os.path.join(self.directory, name)
        temp = os.path.join(self.directory, f".{name}.tmp")
        try:
            if _durable is not None and self._opener is open:
                _durable.write_new(temp, path, chunks, 0o666, self._fsync, False)
            else:
                self._write(temp, chunks)
                os.rename(temp, path)
                if self._fsync:
                    _fsync_dir(self.directory)
        except BaseException as exc:
            _unlink(temp)
            _unlink(path)
            with self._mutex:
                self._bytes -= size
            if isinstance(exc, OSError) and exc.errno in _FULL:
                raise SpoolFull(exc.errno, f"spool disk full: {exc.strerror}", self.directory) from exc
            raise
        with self._mutex:
            self._held[path] = (size, ns / 1e9)
        return SpoolEntry(path, records, ns / 1e9)

    def _write(self, temp: str, chunks: list[Any]) -> None:
        with self._opener(temp, "xb") as f:
            for chunk in chunks:
                view = memoryview(chunk)
                while view:  # an unbuffered opener may write short
                    n = f.write(view)
                    if not n:
                        raise OSError(errno.EIO, "spool file accepted no bytes", temp)
                    view = view[n:]
            f.flush()
            if self._fsync:
                os.fsync(f.fileno())

    def remove(self, entry: SpoolEntry | Damaged) -> None:
        """Delete an entry once its upload is confirmed; one already gone, or not ours, is left be.

        No directory fsync: an entry a power cut brings back is replayed under its create-only
        name and found already delivered."""
        self._check_pid()
        with self._mutex:
            if entry.path not in self._held:
                return
        _unlink(entry.path)
        with self._mutex:
            held = self._held.pop(entry.path, None)
            if held is not None:
                self._bytes -= held[0]

    def entries(self) -> list[SpoolEntry | Damaged]:
        """This process's entries (its own and those it claimed), oldest first, read from disk.

        For replay, not the hot path: each call reads every file. A file damaged since it was
        written comes back as ``Damaged``."""
        self._check_pid()
        with self._mutex:
            paths = sorted(self._held, key=os.path.basename)
        found = []
        for path in paths:
            try:
                found.append(load(path))
            except FileNotFoundError:
                continue  # removed by another thread meanwhile
        return found

    def oldest_age(self, now: float | None = None) -> float | None:
        """Seconds since the oldest held entry was first spooled, or None when the spool is empty."""
        with self._mutex:
            if not self._held:
                return None
            oldest = min(created for _, created in self._held.values())
        return (time.time() if now is None else now) - oldest

    def claim_orphans(self) -> Iterator[SpoolEntry | Damaged]:
        """Adopt the entries of dead owners in this directory and yield them, oldest first.

        The claim runs at the first ``next()``; from then on the adopted entries are this
        process's (``entries``, ``bytes``, ``remove``) even if iteration stops early."""
        self._check_pid()
        for path in self._claim():
            try:
                yield load(path)
            except FileNotFoundError:
                continue

    def _claim(self) -> list[str]:
        if self._closed:
            raise ValueError("spool is closed")
        owners = set()
        for name in os.listdir(self.directory):
            m = _ENTRY.fullmatch(name) or _TEMP.fullmatch(name) or _LOCK.fullmatch(name)
            if m:
                owners.add(m[m.re.groups])  # the owner is each pattern's last group
        owners.discard(self.token)
        dead: set[str] = set()
        locks: list[tuple[int, str]] = []
        try:
            for owner in sorted(owners):
                lock = os.path.join(self.directory, f".owner-{owner}.lock")
                try:
                    fd = os.open(lock, os.O_RDONLY | os.O_CLOEXEC)
                except FileNotFoundError:
                    dead.add(owner)  # closed cleanly, or its lock was already cleaned up
                    continue
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    os.close(fd)  # alive (or another claimer holds it right now)
                    continue
                locks.append((fd, lock))
                dead.add(owner)
            claimed = []
            for name in sorted(os.listdir(self.directory)):  # listed again: all of a dead owner's files
                m = _ENTRY.fullmatch(name)
                if m and m[4] in dead:
                    old = os.path.join(self.directory, name)
                    new = os.path.join(self.directory, f"{m[1]}-{m[2]}-{m[3]}+{self.token}.spool")
                    try:
                        os.rename(old, new)
                    except FileNotFoundError:
                        continue  # another claimer got it
                    with self._mutex:
                        self._held[new] = (os.stat(new).st_size, int(m[1]) / 1e9)
                        self._bytes += self._held[new][0]
                    claimed.append(new)
                elif (t := _TEMP.fullmatch(name)) and t[1] in dead:
                    _unlink(os.path.join(self.directory, name))  # a put its owner never finished
            if claimed and self._fsync:
                _fsync_dir(self.directory)
            return claimed
        finally:
            for fd, lock in locks:
                _unlink(lock)
                os.close(fd)

    @property
    def closed(self) -> bool:
        """True after ``close()``: the spool takes nothing more (its files await adoption)."""
        return self._closed

    def bytes(self) -> int:
        """Bytes of the files this process holds in the spool (a counter, no scan)."""
        return self._bytes

    def close(self) -> None:
        """Give up ownership: entries left here become orphans another ``Spool`` may claim."""
        if self._closed:
            return
        self._closed = True
        if os.getpid() == self._pid:  # a child that never reopened must not drop its parent's lock file
            _unlink(self._lock_path)
        os.close(self._lock_fd)

    def __enter__(self) -> Spool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Spool({self.directory!r}, owner={self.token!r}, bytes={self._bytes})"
