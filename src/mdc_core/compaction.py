"""Compaction: merge a closed partition's batch objects into the spec's one file (``data.csv``,
or ``data.parquet``: the format merges, this module names, publishes and cleans up).

Object stores cannot append safely, so there every flush writes one create-only batch object
(``data-<writer>-<seq>.csv``). Once a partition (day, or hour) is closed, exactly one process
merges its batches, with any earlier compacted file, into ``data.csv`` — header once, rows in
scoring-time order — and deletes the batches. Steps, each safe to interrupt and re-run:

1. Take the partition's lock: a create-only ``_mdc_compaction.lock`` holding its expiry, so a
   crashed compactor's lock lapses. No lock, no work.
2. Write the manifest ``_mdc_compaction.json``: for each output file its checksum before and
   after, and the batches merged into it.
3. Replace each output whole (``put``), then delete the merged batches, then the manifest.

A re-run that finds a manifest checks each output's checksum: "after" means its batches are
already in it (they are only deleted); "before" means it was not written (they are merged
again). Batches that arrive later (a replica's late flush, a replayed spool) are merged by the
next run. Names starting with ``_`` are skipped by Spark and Hadoop readers; a plain ``*.csv``
glob can see a batch both in ``data.csv`` and on its own for the moment between steps 3's put
and delete: the project's reader uses the manifest and never returns a row twice.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from mdc_core.errors import BackendError
from mdc_core.records import Encoded, Maintainable

logger = logging.getLogger("mdc.compaction")

LOCK = "_mdc_compaction.lock"
MANIFEST = "_mdc_compaction.json"
LOCK_TTL = 600.0


class Compactable(Protocol):
    """A format that can merge its own files (CSV can; see ``mdc_formats.csv``).

    A format may also offer ``merge(parts, outputs) -> list[Merged]``, which says which parts
    went into each output (Parquet's outputs unify several schemas, so headers cannot tell)."""

    def compact(self, parts: Sequence[bytes]) -> list[Encoded]:
        """Merge whole files into one per distinct header, rows in scoring-time order."""
        ...


@dataclass(frozen=True)
class Merged:
    """One file merged by a format: its bytes, the key naming it when it is not the main file
    (``data-<hash8(key)>.<ext>``), and the indices of the parts it holds."""

    data: bytes
    key: bytes
    sources: tuple[int, ...]


def merge(fmt: Any, parts: Sequence[bytes], outputs: int = 0) -> list[Merged]:
    """``fmt.merge`` when the format has it; else ``compact``, whose outputs are matched to their
    parts by header (the longest header a part starts with)."""
    if hasattr(fmt, "merge"):
        return list(fmt.merge(parts, outputs))
    encoded = list(fmt.compact(parts))
    sources: list[list[int]] = [[] for _ in encoded]
    for i, data in enumerate(parts):
        matches = [j for j, e in enumerate(encoded) if data and data.startswith(e.header)]
        if matches:
            sources[max(matches, key=lambda j: len(encoded[j].header))].append(i)
    return [Merged(e.header + e.body, e.header, tuple(s)) for e, s in zip(encoded, sources)]


def batch_pattern(stem: str, extension: str) -> re.Pattern[str]:
    """The names ``writer.BatchNames`` gives a partition's batch objects."""
    return re.compile(rf"^{re.escape(stem)}-[0-9a-f]{{16}}-[0-9]{{10}}\.{re.escape(extension)}$")


def sibling_name(stem: str, extension: str, header: bytes) -> str:
    """Where rows of another header go (the local backend's rule): ``data-<hash8>.csv``."""
    return f"{stem}-{hashlib.sha256(header).hexdigest()[:8]}.{extension}"


@dataclass
class CompactionResult:
    """What one partition's compaction did."""

    folder: str
    merged: list[str] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)
    skipped: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {"folder": self.folder, "merged": len(self.merged), "outputs": self.outputs, "skipped": self.skipped}


def compact_partition(
    backend: Maintainable,
    fmt: Compactable,
    folder: str,
    stem: str,
    extension: str,
    *,
    lock_ttl: float = LOCK_TTL,
    clock: Any = time.time,
) -> CompactionResult:
    """Compact the batches of ``<folder>/<stem>-*.<extension>`` into ``<folder>/<stem>.<extension>``."""
    folder = folder.rstrip("/") + "/"
    result = CompactionResult(folder)
    pattern = batch_pattern(stem, extension)
    names = [key[len(folder) :] for key, _ in backend.list(folder)]
    if MANIFEST not in names and not any(pattern.match(n) for n in names):
        result.skipped = "no batches"
        return result  # the common case, checked without taking the lock
    owner = secrets.token_hex(8)
    if not acquire_lock(backend, folder + LOCK, owner, lock_ttl, clock):
        result.skipped = "locked by another compactor"
        return result
    try:
        _compact_locked(backend, fmt, folder, stem, extension, result)
    finally:
        release_lock(backend, folder + LOCK, owner)
    return result


def _compact_locked(
    backend: Maintainable, fmt: Compactable, folder: str, stem: str, extension: str, result: CompactionResult
) -> None:
    pattern = batch_pattern(stem, extension)
    main = folder + f"{stem}.{extension}"
    already_in: set[str] = set()
    manifest = _read_json(backend, folder + MANIFEST)
    if manifest:
        for key, entry in manifest["outputs"].items():
            digest = _digest(backend.read(key))
            if digest == entry["after"]:
                already_in.update(entry["batches"])
            elif digest != entry["before"]:
                raise BackendError(
                    0, f"{key} changed under an unfinished compaction; resolve by hand (manifest {folder + MANIFEST})"
                )
    listing = [key for key, _ in backend.list(folder) if "/" not in key[len(folder) :]]
    batches = [k for k in listing if pattern.match(k[len(folder) :])]
    for key in (k for k in batches if k in already_in):
        backend.delete(key)  # merged by the interrupted run
    batches = [k for k in batches if k not in already_in]
    if not batches:
        backend.delete(folder + MANIFEST)
        result.skipped = result.skipped or "no batches"
        return
    sibling = re.compile(rf"^{re.escape(stem)}-[0-9a-f]{{8}}\.{re.escape(extension)}$")
    existing = sorted((k for k in listing if k == main or sibling.match(k[len(folder) :])), key=lambda k: k != main)
    parts = {key: backend.read(key) for key in existing}
    inputs = [(key, data) for key, data in parts.items() if data]  # the main file first
    n_outputs = len(inputs)
    for key in batches:
        data = backend.read(key)
        if data is not None:  # else deleted by someone else meanwhile
            inputs.append((key, data))
    outputs: dict[str, dict[str, Any]] = {}
    plan: dict[str, bytes] = {}
    for out in merge(fmt, [data for _, data in inputs], n_outputs):
        earlier = [inputs[i][0] for i in out.sources if i < n_outputs]
        if earlier:
            name = earlier[0]
        elif main not in plan and not parts.get(main):
            name = main
        else:
            name = folder + sibling_name(stem, extension, out.key)
        plan[name] = out.data
        outputs[name] = {
            "before": _digest(parts.get(name)),
            "after": _digest(out.data),
            "batches": [inputs[i][0] for i in out.sources if i >= n_outputs],
        }
    backend.put(folder + MANIFEST, json.dumps({"outputs": outputs}, indent=1).encode())
    for name, data in plan.items():
        backend.put(name, data)
    for key in batches:
        backend.delete(key)
    backend.delete(folder + MANIFEST)
    result.merged = batches
    result.outputs = sorted(plan)


def _digest(data: bytes | None) -> str:
    return "absent" if data is None else hashlib.sha256(data).hexdigest()


def _read_json(backend: Maintainable, key: str) -> dict[str, Any] | None:
    raw = backend.read(key)
    if raw is None:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        logger.warning("ignoring unreadable %s", key)
        return None


def acquire_lock(backend: Maintainable, key: str, owner: str, ttl: float, clock: Any) -> bool:
    """Create the lock; an expired lock is removed once and creation retried."""
    create = backend.create
    for _ in range(2):
        if create(key, json.dumps({"owner": owner, "expires": clock() + ttl}).encode()):
            return True
        lock = _read_json(backend, key)
        if lock is not None and lock.get("expires", 0) > clock():
            return False
        backend.delete(key)  # lapsed: its compactor died; the manifest makes its work resumable
    return False


def release_lock(backend: Maintainable, key: str, owner: str) -> None:
    """Remove the lock if it is still ``owner``'s (it may have lapsed and been taken over)."""
    lock = _read_json(backend, key)
    if lock is not None and lock.get("owner") == owner:
        backend.delete(key)
