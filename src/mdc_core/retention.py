"""Retention and erasure: delete partitions older than N days; remove the rows of given ids.

**Purge** deletes every object of each partition whose day (or hour) ended more than N days ago.

**Erase** finds the files that hold rows of the given ``$aml_dc_correlation_id`` or
``$aml_request_id`` values and rewrites only those, with the care compaction takes (see
``mdc_core.compaction``): under the partition's create-only lock (a compactor holding it makes
erase skip the partition and say so: run it again), a manifest records each file's checksum
before and after, the files are replaced whole (or deleted when no row is left), and the
manifest is removed last, so readers and a re-run compactor see either the old file or the new.
CSV records that stay keep their exact bytes. On local disk with appends, each file is rewritten
in place under the appenders' ``flock`` (a replaced file would lose a waiting appender's rows);
a crash during that rewrite can leave the file torn, so stop writing or keep a copy first.
"""

from __future__ import annotations

import csv
import datetime as dt
import fcntl
import hashlib
import io
import json
import os
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from mdc_core.compaction import LOCK, MANIFEST, acquire_lock, release_lock
from mdc_core.correlation import NO_REQUEST_ID
from mdc_core.errors import ConfigurationError
from mdc_core.shapes import AML_COLUMNS
from mdc_core.store import UTC, Partition, data_files

if TYPE_CHECKING:
    from mdc_core.store import Store

CORRELATION = AML_COLUMNS[0]
REQUEST = AML_COLUMNS[-1]


@dataclass
class PurgeResult:
    cutoff: str
    partitions: list[str] = field(default_factory=list)
    objects: int = 0
    bytes: int = 0
    dry_run: bool = False

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def purge(
    store: Store,
    older_than_days: float,
    *,
    now: Any = None,
    dry_run: bool = False,
    progress: Any = None,
    **filters: Any,
) -> PurgeResult:
    """Delete the partitions (matching ``filters``) whose period ended ``older_than_days`` days
    before ``now`` (default: the current time) or earlier."""
    if not isinstance(older_than_days, (int, float)) or older_than_days != older_than_days or older_than_days < 0:
        raise ConfigurationError(f"older_than_days must be a number >= 0, got {older_than_days!r}")
    moment = now if isinstance(now, dt.datetime) else dt.datetime.fromtimestamp(now or time.time(), UTC)
    cutoff = moment.astimezone(UTC) - dt.timedelta(days=older_than_days)
    result = PurgeResult(cutoff.isoformat(), dry_run=dry_run)
    victims = [p for p in store.partitions(**filters) if p.end <= cutoff]
    for i, part in enumerate(victims):
        result.partitions.append(part.folder)
        result.objects += len(part.files)
        result.bytes += sum(s for _, s in part.files)
        if not dry_run:
            names = sorted((n for n, _ in part.files), key=lambda n: n[:1] in "_.")  # mdc's own files last
            for name in names:
                store.backend.delete(part.folder + name)
            _remove_empty_folders(store.backend, part.folder)
        if progress is not None:
            progress(i + 1, len(victims))
    return result


def _remove_empty_folders(backend: Any, folder: str) -> None:
    """On local disk, the purged day's folder and its empty month and year folders go too."""
    root = getattr(backend, "root", None)
    if not isinstance(root, str) or not os.path.isdir(root):
        return
    path = os.path.join(root, *folder.strip("/").split("/"))
    for _ in range(folder.strip("/").count("/") - 6):  # the date levels only, never the series
        try:
            os.rmdir(path)
        except OSError:  # not empty (or gone): stop climbing
            return
        path = os.path.dirname(path)


@dataclass
class EraseResult:
    rows: int = 0
    files: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    dry_run: bool = False

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def erase(
    store: Store,
    *,
    correlation_ids: Iterable[str] = (),
    request_ids: Iterable[str] = (),
    dry_run: bool = False,
    progress: Any = None,
    **filters: Any,
) -> EraseResult:
    """Remove every row whose correlation id is in ``correlation_ids`` or whose request id is
    in ``request_ids``, in the partitions matching ``filters`` (``start``/``end`` narrow the days
    searched). Returns the rows removed, the files rewritten, and partitions skipped (locked)."""
    ids = (frozenset(str(i) for i in correlation_ids), frozenset(str(i) for i in request_ids))
    if NO_REQUEST_ID in ids[1]:
        raise ConfigurationError(
            f"{NO_REQUEST_ID} marks every row collected outside a request; erase those by correlation id"
        )
    if not ids[0] and not ids[1]:
        raise ConfigurationError("give at least one correlation id or request id to erase")
    result = EraseResult(dry_run=dry_run)
    parts = store.partitions(**filters)
    local_root = getattr(store.backend, "root", None) if store._local_append() else None
    for i, part in enumerate(parts):
        hits = _hits(store.backend, part, ids)
        if hits and dry_run:
            result.rows += sum(hits.values())
            result.files.extend(part.folder + n for n in hits)
        elif hits and local_root is not None:
            for name in hits:
                removed = _rewrite_in_place(os.path.join(local_root, *(part.folder + name).split("/")), ids)
                if removed:
                    result.rows += removed
                    result.files.append(part.folder + name)
        elif hits:
            _erase_locked(store.backend, part, ids, result)
        if progress is not None:
            progress(i + 1, len(parts))
    return result


def _hits(backend: Any, part: Partition, ids: tuple[frozenset[str], frozenset[str]]) -> dict[str, int]:
    """``name -> rows to remove`` for the partition's files that hold any of the ids."""
    found = {}
    for name, _ in part.data_files:
        raw = backend.read(part.folder + name)
        if raw:
            _, removed = drop_rows(name, raw, ids)
            if removed:
                found[name] = removed
    return found


Ids = tuple[frozenset[str], frozenset[str]]


def _erase_locked(backend: Any, part: Partition, ids: Ids, result: EraseResult) -> None:
    folder = part.folder
    owner = os.urandom(8).hex()
    if not acquire_lock(backend, folder + LOCK, owner, 600.0, time.time):
        result.skipped[folder] = "locked by a compactor; run erase again"
        return
    try:
        if backend.size(folder + MANIFEST) is not None:
            result.skipped[folder] = "an unfinished compaction; run 'mdc compact' first"
            return
        plan: dict[str, bytes | None] = {}
        outputs: dict[str, dict[str, Any]] = {}
        removed_total = 0
        for key, _ in backend.list(folder):
            name = key[len(folder) :]
            if "/" in name or not data_files(((name, 0),)):
                continue
            raw = backend.read(key)
            if not raw:
                continue
            kept, removed = drop_rows(name, raw, ids)
            if removed:
                plan[key] = kept
                removed_total += removed
                outputs[key] = {"before": _digest(raw), "after": _digest(kept), "batches": []}
        if not plan:
            return
        backend.put(folder + MANIFEST, json.dumps({"outputs": outputs, "erase": True}, indent=1).encode())
        for key, data in plan.items():
            if data is None:
                backend.delete(key)
            else:
                backend.put(key, data)
        backend.delete(folder + MANIFEST)
        result.rows += removed_total
        result.files.extend(sorted(plan))
    finally:
        release_lock(backend, folder + LOCK, owner)


def _digest(data: bytes | None) -> str:
    return "absent" if data is None else hashlib.sha256(data).hexdigest()


def drop_rows(name: str, raw: bytes, ids: tuple[frozenset[str], frozenset[str]]) -> tuple[bytes | None, int]:
    """The file without the rows of ``ids`` (``None`` when no row is left), and how many went."""
    if name.endswith(".parquet"):
        return _drop_parquet(raw, ids)
    return _drop_csv(raw, ids)


def _drop_csv(raw: bytes, ids: tuple[frozenset[str], frozenset[str]]) -> tuple[bytes | None, int]:
    text = raw.decode("utf-8")
    lines = list(io.StringIO(text, newline=""))
    reader = csv.reader(lines)
    fields = next(reader, None)
    if fields is None:
        return raw, 0
    columns = [(fields.index(c), wanted) for c, wanted in zip((CORRELATION, REQUEST), ids) if c in fields and wanted]
    if not columns:
        return raw, 0
    kept = ["".join(lines[: reader.line_num])]
    start, removed, rows = reader.line_num, 0, 0
    for row in reader:
        record = "".join(lines[start : reader.line_num])
        start = reader.line_num
        rows += 1
        if any(i < len(row) and row[i] in wanted for i, wanted in columns):
            removed += 1
        else:
            kept.append(record)
    if not removed:
        return raw, 0
    return ("".join(kept).encode("utf-8") if removed < rows else None), removed


def _drop_parquet(raw: bytes, ids: tuple[frozenset[str], frozenset[str]]) -> tuple[bytes | None, int]:
    table = pq.read_table(pa.BufferReader(raw))
    mask = pa.array([False] * table.num_rows)
    for column, wanted in zip((CORRELATION, REQUEST), ids):
        if column in table.column_names and wanted:
            hit = pc.is_in(table.column(column).cast(pa.string()), value_set=pa.array(sorted(wanted), pa.string()))
            mask = pc.or_(mask, pc.fill_null(hit, False))
    removed = int(pc.sum(mask).as_py() or 0)
    if not removed:
        return raw, 0
    if removed == table.num_rows:
        return None, removed
    out = io.BytesIO()
    pq.write_table(table.filter(pc.invert(mask)), out, compression="zstd")
    return out.getvalue(), removed


def _rewrite_in_place(path: str, ids: tuple[frozenset[str], frozenset[str]]) -> int:
    """Erase from a local file that appenders may be writing, under their lock (see the module
    docstring); keeps the append marker (``.<name>.committed``) in step."""
    folder, name = os.path.split(path)
    marker = os.path.join(folder, f".{name}.committed")
    fd = os.open(path, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        size = os.fstat(fd).st_size
        try:
            with open(marker, "rb") as f:
                size = min(size, int(f.read().strip() or b"0"))
        except (FileNotFoundError, ValueError):
            pass
        raw = os.pread(fd, size, 0)
        kept, removed = drop_rows(name, raw, ids)
        if not removed:
            return 0
        data = kept if kept is not None else raw[: raw.find(b"\n") + 1] if name.endswith(".csv") else b""
        os.pwrite(fd, data, 0)
        os.ftruncate(fd, len(data))
        os.fsync(fd)
        tmp = f"{marker}.{os.getpid()}.tmp"
        with open(tmp, "wb") as f:
            f.write(str(len(data)).encode("ascii"))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, marker)
        return removed
    finally:
        os.close(fd)
