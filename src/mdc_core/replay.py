"""Replaying the local spools: what failed to upload (or was spilled) is uploaded again, oldest
first, by the flusher at the start of each cycle; what dead processes on the host left for the
same storage root is adopted every ``CLAIM_EVERY`` seconds. A mixin of ``Pipeline``, which owns
the state it uses (``lock``, ``_spools``, ``_routes``, ``_log`` and the counters below)."""

from __future__ import annotations

import hashlib
import logging
import os
import time
from collections.abc import Iterable
from typing import Any

from mdc_core.records import Backend, BackendPlugin
from mdc_core.settings import env_seconds
from mdc_core.writer import _create

logger = logging.getLogger("mdc")

DEFAULT_SPOOL_BYTES = 1 << 30
CLAIM_EVERY = 60.0


class SpoolReplay:
    """Spools per storage root, and their replay."""

    lock: Any
    _spools: dict[str, tuple[Any, Backend]]
    _start_lock: Any
    _routes: Any
    _log: Any
    _claimed_at: float
    spool_lost_rows: int
    orphan_rows_replayed: int

    def spool_for(self, plugin: BackendPlugin, label: str, backend: Backend) -> Any:
        """The spool of one storage root, in ``MDC_SPOOL_DIR`` (default ``~/.cache/mdc/spool``),
        made on first use; it adopts what dead processes left there for the same root."""
        from mdc_core.spool import Spool

        with self._start_lock:
            found = self._spools.get(label)
            if found is None:
                root = os.environ.get("MDC_SPOOL_DIR") or os.path.join(
                    os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "mdc", "spool")
                name = hashlib.sha256(f"{plugin.name}\n{label}".encode()).hexdigest()[:16]
                spool = Spool(os.path.join(root, name),
                              max_bytes=int(env_seconds("MDC_SPOOL_MAX_BYTES", DEFAULT_SPOOL_BYTES)))
                found = self._spools[label] = (spool, backend)
            return found[0]

    def _replay(self) -> None:
        """Upload what the spools hold, oldest first; stop at a spool's first failure."""
        from mdc_core.spool import Damaged

        now = time.monotonic()
        claim = now - self._claimed_at > CLAIM_EVERY
        if claim:
            self._claimed_at = now
        for spool, backend in list(self._spools.values()):
            if spool.closed:
                continue  # closed at exit: what it holds is for the next process
            if claim:
                list(spool.claim_orphans())  # adopted entries are listed by entries() below
            if not spool.bytes():
                continue
            for entry in spool.entries():
                if isinstance(entry, Damaged):
                    self._lost_in_spool(spool, entry)
                    continue
                try:
                    for record in entry.records:
                        _create(backend, record.key, record.data)
                except Exception as exc:  # still down: try again next cycle
                    self._log.log(logging.WARNING, f"replay:{spool.directory}",
                                  "mdc spool replay paused: %s: %s", type(exc).__name__, exc)
                    break
                spool.remove(entry)
                self._credit(entry.records)

    def _credit(self, records: Iterable[Any]) -> None:
        """Replayed rows count as written for the collector that spooled them (in this process)."""
        routes = {route.sink.route_name: route for route in list(self._routes)}
        with self.lock:
            for record in records:
                route = routes.get(record.route)
                if route is not None and route.spooled >= record.rows:
                    route.spooled -= record.rows
                    route.written += record.rows
                else:
                    self.orphan_rows_replayed += record.rows

    def _lost_in_spool(self, spool: Any, damaged: Any) -> None:
        with self.lock:
            self.spool_lost_rows += damaged.lost_rows or 0
        logger.error("mdc spool file %s is damaged (%s): %d bytes (%s rows) lost; %d complete batches recovered",
                     damaged.path, damaged.reason, damaged.lost_bytes, damaged.lost_rows, len(damaged.recovered))
        backend = next(b for s, b in self._spools.values() if s is spool)
        for record in damaged.recovered:
            try:
                _create(backend, record.key, record.data)
            except Exception:  # keep the file for a later replay of what it still holds
                return
        self._credit(damaged.recovered)
        spool.remove(damaged)
