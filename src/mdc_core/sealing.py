"""Longer, larger batches for formats that ask for them (Parquet), so their files are not tiny.

A format may declare ``seal_rows`` and ``seal_seconds``. The flusher then holds a collector's
queued rows back until it has ``seal_rows`` of them, or the oldest has waited ``seal_seconds``
since the flusher first saw it, or ``flush()`` (and so ``close()`` and the exit hook) asks for
them, or the buffer is over half its memory bound. Held rows stay counted in the memory bound
and as pending; they are never dropped by waiting. Formats that declare nothing (CSV) are
sealed every flusher cycle, as before.
"""

from __future__ import annotations

import collections
import heapq
import time
from collections.abc import Callable
from typing import Any

from mdc_core.batches import STAMP_TS
from mdc_core.shapes import queued_rows


def seal_rows(route: Any) -> int:
    """The rows a format wants per batch (0: no wish)."""
    return int(getattr(route.sink.format, "seal_rows", 0) or 0)


def _seal_seconds(route: Any) -> float:
    return float(getattr(route.sink.format, "seal_seconds", 0) or 0)


def holds(route: Any) -> bool:
    """Whether the route's format asks for longer batches (so its chunks go through a Holder)."""
    return seal_rows(route) > 0 or _seal_seconds(route) > 0


class Holder:
    """Chunks of holding collectors taken out of the pipeline's queue until they are ripe.

    Called only by the flusher, holding the pipeline's lock. Chunks are the pipeline's
    ``(route key, rows, stamp, bytes, seq)`` tuples; the queue stays ordered by ``seq``;
    ``resolve`` turns a route key into its route."""

    def __init__(self, clock: Callable[[], float] = time.monotonic, resolve: Callable[[Any], Any] = lambda r: r):
        self._clock = clock
        self._resolve = resolve
        self._held: dict[Any, collections.deque[Any]] = {}
        self._rows: collections.Counter[Any] = collections.Counter()
        self._since: dict[Any, float] = {}
        self._scanned = 0  # every queued chunk up to this seq has been looked at

    def sort(self, queue: collections.deque[Any], seal_upto: int, pressure: bool) -> int:
        """Move new chunks of holding collectors from ``queue`` into the holder, and ripe held
        chunks back into ``queue``; return the change in queued rows."""
        moved = self._take_new(queue)
        ripe = [route for route in self._held if pressure or self._ripe(route, seal_upto)]
        if not ripe:
            return -moved
        back: list[Any] = []
        for route in ripe:
            back.extend(self._held.pop(route))
            self._rows.pop(route, None)
            self._since.pop(route, None)
        back.sort(key=lambda chunk: chunk[4])
        merged = list(heapq.merge(back, queue, key=lambda chunk: chunk[4]))
        queue.clear()
        queue.extend(merged)
        return sum(queued_rows(chunk[1]) for chunk in back) - moved

    def lowest(self) -> list[int]:
        """The lowest sequence number held, if any (nothing below it is written yet)."""
        return [min(chunks[0][4] for chunks in self._held.values())] if self._held else []

    def oldest_us(self) -> list[int]:
        """The collection time (µs) of the oldest held chunk, if any (for the age metric)."""
        return [min(chunks[0][2][STAMP_TS] for chunks in self._held.values())] if self._held else []

    def __bool__(self) -> bool:
        return bool(self._held)

    def _take_new(self, queue: collections.deque[Any]) -> int:
        new: list[Any] = []
        while queue and queue[-1][4] > self._scanned:
            new.append(queue.pop())
        if not new:
            return 0
        self._scanned = new[0][4]
        moved = 0
        now = self._clock()
        holding: dict[Any, bool] = {}
        for chunk in reversed(new):
            route = chunk[0]
            held = holding.get(route)
            if held is None:
                held = holding[route] = holds(self._resolve(route))
            if not held:
                queue.append(chunk)
                continue
            self._held.setdefault(route, collections.deque()).append(chunk)
            self._rows[route] += queued_rows(chunk[1])
            self._since.setdefault(route, now)
            moved += queued_rows(chunk[1])
        return moved

    def _ripe(self, key: Any, seal_upto: int) -> bool:
        chunks = self._held[key]
        route = self._resolve(key)
        rows = seal_rows(route)
        return (
            chunks[0][4] <= seal_upto
            or (rows > 0 and self._rows[key] >= rows)
            or self._clock() - self._since[key] >= _seal_seconds(route)
        )
