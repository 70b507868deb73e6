"""Automatic compaction: each process compacts the closed partitions it wrote batches into.

The flusher reports every batch object it creates; once the partition's period has ended and a
grace period passed (late flushes of other replicas, retries), a daemon thread compacts it.
Replicas race for the partition's lock; the losers skip. After a restart the previous period
of each collector is scheduled too, so a process that died before midnight is covered by its
successor. ``MDC_COMPACTION=off`` (or ``compaction="off"``) leaves it to ``mdc compact``.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from typing import Any

from mdc_core.compaction import compact_partition
from mdc_core.ratelimit import RateLimitedLog

logger = logging.getLogger("mdc.compaction")

DEFAULT_GRACE = 600.0
RETRY_AFTER = 300.0
MAX_ATTEMPTS = 5


class AutoCompactor:
    """Runs ``compact_partition`` for due partitions on its own daemon thread."""

    def __init__(self, grace: float = DEFAULT_GRACE, clock: Callable[[], float] = time.time):
        self.grace = grace
        self.clock = clock
        self._log = RateLimitedLog(logger)
        self._reset()
        if hasattr(os, "register_at_fork"):
            os.register_at_fork(after_in_child=self._reset)

    def _reset(self) -> None:
        """A fresh state (and, in a forked child, no thread: the parent compacts its own)."""
        self._cond = threading.Condition()
        self._due: dict[tuple[int, str, str, str], list[Any]] = {}
        self._busy = False
        self._thread: threading.Thread | None = None

    def note(self, backend: Any, fmt: Any, folder: str, stem: str, extension: str, period_end: float) -> None:
        """A batch went into ``folder``, whose period ends at ``period_end`` (epoch seconds)."""
        key = (id(backend), folder, stem, extension)
        with self._cond:
            entry = self._due.get(key)
            if entry is None:
                self._due[key] = [period_end + self.grace, backend, fmt, 0]
            self._cond.notify_all()
        if self._thread is None:
            self._start()

    def wait_idle(self, timeout: float | None = None, now: float | None = None) -> bool:
        """Wait until nothing is due (as of ``now``, default the clock) and no compaction runs."""

        def idle() -> bool:
            t = self.clock() if now is None else now
            return not self._busy and all(entry[0] > t for entry in self._due.values())

        with self._cond:
            self._cond.notify_all()
            return self._cond.wait_for(idle, timeout)

    def pending(self) -> int:
        with self._cond:
            return len(self._due)

    def _start(self) -> None:
        with self._cond:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="mdc-compactor", daemon=True)
                self._thread.start()

    def _run(self) -> None:
        while True:
            with self._cond:
                now = self.clock()
                ready = [(k, e) for k, e in self._due.items() if e[0] <= now]
                if not ready:
                    wait = min((e[0] for e in self._due.values()), default=now + 3600) - now
                    self._cond.wait(min(max(wait, 0.05), 60.0))
                    continue
                key, entry = min(ready, key=lambda item: item[1][0])
                del self._due[key]
                self._busy = True
            try:
                self._compact(key, entry)
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()

    def _compact(self, key: tuple[int, str, str, str], entry: list[Any]) -> None:
        _, folder, stem, extension = key
        _, backend, fmt, attempts = entry
        try:
            result = compact_partition(backend, fmt, folder, stem, extension)
            if result.merged:
                logger.info("mdc compacted %d batches into %s", len(result.merged), ", ".join(result.outputs))
        except Exception as exc:  # storage trouble: try again later, a few times
            self._log.log(
                logging.WARNING,
                f"compact:{folder}",
                "mdc could not compact %s (%s: %s)%s",
                folder,
                type(exc).__name__,
                exc,
                "; will retry" if attempts + 1 < MAX_ATTEMPTS else "; giving up, run `mdc compact`",
            )
            if attempts + 1 < MAX_ATTEMPTS:
                with self._cond:
                    self._due.setdefault(key, [self.clock() + RETRY_AFTER, backend, fmt, attempts + 1])
