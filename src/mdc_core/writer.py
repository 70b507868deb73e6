"""Write one collector's batch: split it by date partition, encode it, hand it to the backend.

Appendable formats go to ``append`` on backends that can append (one file per partition);
anything else becomes one create-only object per batch, named so ``*.<ext>`` globs find it.
Debug mode prints the encoded rows to standard output instead.
"""

from __future__ import annotations

import errno
import functools
import itertools
import logging
import os
import random
import secrets
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from mdc_core.batches import AML_TIMESTAMP
from mdc_core.errors import BackendError
from mdc_core.paths import HOUR, Layout, partition_path
from mdc_core.ratelimit import RateLimitedLog
from mdc_core.records import Backend, Capability, Format, FormatPlugin

logger = logging.getLogger("mdc.writer")
_log = RateLimitedLog(logger)

MAX_BACKOFF = 30.0
TERMINAL_ERRNOS = frozenset({errno.EACCES, errno.EPERM, errno.EINVAL, errno.ENOENT, errno.ENOTSUP, errno.EEXIST})
"""Backend errors that retrying cannot fix: refused credentials, missing container or bucket,
a request the server calls invalid, a name taken by other bytes."""


def is_retryable(exc: BaseException) -> bool:
    """Whether another attempt may succeed: storage trouble yes, refusals and our own bugs no."""
    if isinstance(exc, OSError):
        return exc.errno not in TERMINAL_ERRNOS
    return not isinstance(exc, (ValueError, TypeError, AttributeError, KeyError))


_PERIOD_US = {"day": 86_400_000_000, HOUR: 3_600_000_000}


@dataclass
class Sink:
    """Where a collector's batches go and how they are encoded."""

    layout: Layout
    format_plugin: FormatPlugin
    format: Format
    backend: Backend | None
    capabilities: frozenset[Capability] = field(default_factory=frozenset)
    debug: bool = False
    retries: int = 3
    backoff: float = 0.2
    compactor: Any = None
    """An ``AutoCompactor`` told about every batch object, or None (appending, or compaction off)."""
    spool: Any = None
    """A ``Spool`` holding each batch object until its upload is confirmed, or None."""
    storage_label: str = ""
    route_name: str = ""
    retried: int = 0
    """Attempts beyond the first, over the sink's life (stats)."""
    _noted_previous: bool = False

    @property
    def appends(self) -> bool:
        return self.format_plugin.appendable and Capability.APPEND in self.capabilities


def partitions(table: pa.Table, boundary: str) -> Iterator[tuple[int, pa.Table]]:
    """``(start of partition in seconds, rows of that partition)``, by each row's scoring time."""
    if table.num_rows == 0:
        return
    period = _PERIOD_US[boundary]
    # One kernel call for the usual batch, all of one period (each call releases the GIL, and a
    # flusher waits for it up to the switch interval while scoring threads run).
    first, last = (v.value for v in pc.min_max(table.column(AML_TIMESTAMP)).values())
    low, high = max(first, 0), max(last, 0)  # before 1970: filed under 1970-01-01
    if low // period == high // period:
        yield low // period * period // 1_000_000, table
        return
    micros = pc.cast(table.column(AML_TIMESTAMP), pa.int64())
    if first < 0:
        micros = pc.max_element_wise(micros, 0)  # before 1970: filed under 1970-01-01
    keys = pc.divide(micros, period)  # integer division: whole periods since the epoch
    unique = pc.unique(keys).to_pylist()
    if len(unique) == 1:
        yield unique[0] * period // 1_000_000, table
        return
    for key in sorted(unique):
        yield key * period // 1_000_000, table.filter(pc.equal(keys, key))


class BatchNames:
    """Names for create-only batch objects: ``<stem>-<writer>-<sequence>.<ext>``.

    ``writer`` is random per process (renewed in a forked child) and the sequence counts the
    process's batches, so a name is unique across replicas yet the same on every retry of one
    batch: an upload that succeeded but whose answer was lost is found, not written twice.
    Names never start with ``_`` or ``.``, which Spark and Hadoop skip.
    """

    writer: str = secrets.token_hex(8)
    _counter = itertools.count(1)

    @classmethod
    def renew(cls) -> None:
        cls.writer = secrets.token_hex(8)
        cls._counter = itertools.count(1)

    @classmethod
    def next(cls, key: str) -> str:
        stem, dot, ext = key.rpartition(".")
        return f"{stem}-{cls.writer}-{next(cls._counter):010d}{dot}{ext}"


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=BatchNames.renew)


def write(
    sink: Sink,
    table: pa.Table,
    spilled: Callable[[int], None] | None,
    first: AbstractContextManager[Any],
) -> Iterator[tuple[int, str, BaseException | None, bool]]:
    """Write ``table``; yield ``(rows, key, error, kept)`` per partition: ``error`` is None on
    success; ``kept`` says the batch is safe in the spool and will be replayed.

    With ``spilled`` (the spill policy under memory pressure) a batch only goes to the spool,
    ``kept`` with no error; ``spilled(rows)`` is called before the put, ``spilled(-rows)`` if
    the spool refused it (then it is uploaded here, as usual). ``first`` wraps the CPU work
    (``handoff.flusher_first``)."""
    extension = sink.format_plugin.extension
    with first:
        parts = list(partitions(table, sink.layout.boundary))
    for seconds, part in parts:
        key = partition_path(sink.layout, seconds, extension)
        try:
            with first:
                encoded = sink.format.encode(part)
        except Exception as exc:  # a format bug or unencodable value: count it, keep going
            yield part.num_rows, key, exc, False
            continue
        if sink.debug:
            _print_debug(key, encoded.header + encoded.body)
            yield part.num_rows, key, None, False
            continue
        backend: Any = sink.backend
        if sink.appends:
            written, error = _retrying(sink, functools.partial(backend.append, key, encoded.header, encoded.body))
        else:
            key, data = BatchNames.next(key), encoded.header + encoded.body
            if spilled is not None:
                spilled(part.num_rows)
            entry = _spool(sink, key, data, part.num_rows)
            if spilled is not None:
                if entry is not None:
                    yield part.num_rows, key, None, True
                    continue
                spilled(-part.num_rows)
            written, error = _retrying(sink, functools.partial(_create, backend, key, data))
            if error is None:
                if entry is not None:
                    sink.spool.remove(entry)
                if sink.compactor is not None:
                    _note_for_compaction(sink, seconds)
            elif entry is not None:
                yield part.num_rows, key, error, True  # kept in the spool, replayed later
                continue
        yield part.num_rows, written or key, error, False


def _spool(sink: Sink, key: str, data: bytes, rows: int) -> Any:
    """Make the batch durable on local disk before its upload starts; None if there is no spool
    or it is full (then the upload is the batch's only chance, and a failure is a drop)."""
    if sink.spool is None or sink.spool.closed:
        return None
    from mdc_core.spool import SpoolFull, SpoolRecord

    try:
        return sink.spool.put([SpoolRecord(sink.storage_label, key, data, rows, sink.route_name)])
    except SpoolFull as exc:
        _log.log(logging.WARNING, "spool:full", "mdc spool full (%s): uploading %s without a local copy", exc, key)
    except OSError as exc:  # the spool's disk failed: the upload is still worth trying
        _log.log(logging.ERROR, "spool:error", "mdc spool failed (%s: %s): uploading %s without a local copy",
                 type(exc).__name__, exc, key)
    return None


def _note_for_compaction(sink: Sink, start: int) -> None:
    """Schedule this partition's compaction; the first time, the previous period's too, which
    a process that stopped before the period ended may have left uncompacted."""
    period = _PERIOD_US[sink.layout.boundary] // 1_000_000
    starts = [start] if sink._noted_previous else [start - period, start]
    sink._noted_previous = True
    ext = sink.format_plugin.extension
    for begin in starts:
        folder = partition_path(sink.layout, begin, ext).rpartition("/")[0]
        sink.compactor.note(sink.backend, sink.format, folder, sink.layout.file_stem, ext, begin + period)


def _create(backend: Backend, key: str, data: bytes) -> str:
    """Create ``key``; finding it already there with our size means an earlier try delivered it."""
    if backend.create(key, data):
        return key
    size = getattr(backend, "size", None)
    existing = size(key) if size is not None else len(data)
    if existing != len(data):
        raise BackendError(errno.EEXIST, f"{key} exists with {existing} bytes, not this batch's {len(data)}")
    return key


def _retrying(sink: Sink, attempt: Callable[[], str]) -> tuple[str, BaseException | None]:
    """Try, and retry what may succeed later (timeouts, connection errors, throttling, 5xx) with
    capped exponential backoff and jitter; stop at once on what will not (refused credentials,
    a missing container, a bad request), so the batch is counted, kept or logged without delay."""
    error: BaseException | None = None
    for n in range(sink.retries):
        try:
            return attempt(), None
        except Exception as exc:  # classified below; the caller counts what is left over
            error = exc
            if not is_retryable(exc) or n + 1 >= sink.retries:
                break
            sink.retried += 1
            time.sleep(min(sink.backoff * (2**n), MAX_BACKOFF) * random.uniform(0.5, 1.5))
    return "", error


def _print_debug(key: str, data: bytes) -> None:
    out = sys.stdout
    out.write(f"mdc debug (not stored): {key}\n")
    out.write(data.decode("utf-8", errors="replace"))
    out.flush()
