"""The process's one pipeline: ``collect()`` appends to it, a background flusher writes it out.

The shape is OpenTelemetry's batch processor: the caller stamps its rows, appends them to an
inbox (``deque.append``, no lock while the buffer is well below its bound; the compiled
``collect()`` appends single float rows to its collector's open ``Block``, one inbox chunk of
many rows kept as C arrays) and returns; a daemon
thread, started on first use, wakes on an interval or when enough rows wait, numbers and drains
them, and does all conversion and I/O, catching every error. ``flush()`` numbers what is in the
inbox and waits on sequence numbers, so it returns exactly when everything collected before it
was handled. In a forked child the pipeline starts empty (the parent writes its own rows).
"""

from __future__ import annotations

import atexit
import collections
import functools
import itertools
import json
import logging
import os
import threading
import time
import weakref
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from mdc_core.autocompact import DEFAULT_GRACE, AutoCompactor
from mdc_core.batches import STAMP_TS, Deployment, Stamp, build_table
from mdc_core.compiled import load
from mdc_core.correlation import OpenCorrelation, _IdSpace
from mdc_core.errors import ConfigurationError
from mdc_core.handoff import BEHIND, flusher_first
from mdc_core.ratelimit import RateLimitedLog
from mdc_core.records import Backend, BackendPlugin
from mdc_core.replay import SpoolReplay
from mdc_core.sealing import Holder, holds, seal_rows
from mdc_core.settings import env_seconds as _env_float
from mdc_core.shapes import ARROW, COLUMNS, N_AML, NUMPY, PANDAS, ROWS, Taken, queued, queued_rows
from mdc_core.writer import Sink, write

logger = logging.getLogger("mdc")

DEFAULT_INTERVAL = 5.0
DEFAULT_BATCH_ROWS = 10_000
EXIT_TIMEOUT = 10.0
DEFAULT_MAX_BYTES = 256 << 20
MAX_BATCH_ROWS = 100_000
ABSORB_EVERY = 256  # collect() numbers and counts the inbox's chunks about this often
INBOX_MAX = 4096  # past this, collect() takes the lock
BLOCK_ROWS = 1024  # the compiled collect() queues float rows in blocks of up to this many (see _hotpath.c)
ON_FULL = ("spill", "block", "drop_newest", "drop_oldest")
_hotpath = load("_hotpath")


def estimate_bytes(taken: Taken) -> int:
    """What the rows hold in memory while queued, from their shape, without looking at values:
    arrays and Arrow tables their buffers, frames 16 bytes a cell (pointers and boxed values of
    text columns), Python rows 16 bytes a value and their ``$aml_`` values, plus what a queued
    call costs. The ``$aml_`` columns of arrays and frames exist only in the batch being
    converted, so they are not counted per queued call: doing so made a 100-row array look
    3.5 times its size, and the bound refuse rows with memory to spare."""
    kind = taken.kind
    if kind is NUMPY:
        return int(taken.payload.nbytes) + 512
    if kind is ARROW:  # Table.nbytes costs 15 µs and releases the GIL; this 0.3 µs
        return int(taken.payload.get_total_buffer_size()) + 512
    if kind is PANDAS:
        return taken.rows * taken.width * 16 + 1024
    return taken.rows * (taken.width + N_AML) * 16 + 64


class Route:
    """A collector as the flusher sees it: where its rows go, and its counters."""

    def __init__(self, name: str, sink: Sink, deployment: Deployment, columns: tuple[str, ...] | None):
        self.name = name
        self.sink = sink
        self.deployment = deployment
        self.columns = columns
        self.collected = 0
        self.written = 0
        self.unpaired = 0
        self.spooled = 0  # failed to upload, safe in the local spool, to be replayed
        self.spilled = 0  # moved to the spool by the spiller under memory pressure, ever
        self.sampled_out = 0  # skipped by sampling (not a drop)
        self.sample_rate = 1.0
        self.always_keep: tuple[Any, ...] = ()
        self.transforms: tuple[Any, ...] = ()  # mdc_transform_batch implementations
        self.context: Any = None  # their BatchContext
        self.dropped: collections.Counter[str] = collections.Counter()
        self.key = -1  # set by Pipeline.register: how queued chunks name this route

    def reset_counters(self) -> None:
        self.collected = self.written = self.unpaired = self.spooled = self.spilled = self.sampled_out = 0
        self.dropped = collections.Counter()


Chunk = tuple[int, Any, Stamp, int, int]
"""What one collect() queued: route key, rows (``shapes.queued``, or a ``_hotpath.Block`` of
single float rows, whose stamp is its first row's), stamp, estimated bytes, sequence number:
for a single row, plain values two levels deep, which the garbage collector stops tracking
before promoting them."""


class Pipeline(SpoolReplay):
    """Accepts chunks from any thread; one flusher thread writes them."""

    def __init__(self, interval: float = DEFAULT_INTERVAL, batch_rows: int = DEFAULT_BATCH_ROWS,
                 max_bytes: int = DEFAULT_MAX_BYTES, on_full: str = "spill", block_timeout: float = 1.0):
        self.interval = interval
        self.batch_rows = batch_rows
        self.max_bytes = max_bytes
        self.on_full = on_full
        self.block_timeout = block_timeout
        self._routes: weakref.WeakSet[Route] = weakref.WeakSet()
        self._route_by_key: dict[int, Route] = {}
        """Queued chunks name their route by this key: an int keeps a chunk free of tracked
        objects (see ``shapes.queued``)."""
        self._backends: dict[tuple[str, str, str], Backend] = {}
        self._spools: dict[str, tuple[Any, Backend]] = {}
        self._controls: dict[tuple[int, str], Any] = {}
        self._claimed_at = 0.0
        self.spool_lost_rows = 0
        """Rows in spool files found torn or corrupt (counted, and logged, when found)."""
        self.orphan_rows_replayed = 0
        self._compactor: AutoCompactor | None = None
        self._holding = False  # whether any route's format holds rows for longer batches
        self._log = RateLimitedLog(logger)
        self._init_state()

    def _init_state(self) -> None:
        self.lock = threading.Lock()
        self._queue: collections.deque[Chunk] = collections.deque()
        self._inbox: collections.deque[tuple[Route, Taken, Stamp, int, int]] = collections.deque()
        self._inbox_bytes = 0
        """What collect() appended without the lock: route, rows, stamp, size, unpaired rows."""
        # ids of single rows: the lower half of the counter space (a Counter the C path reads directly)
        self._row_ids = itertools.count() if _hotpath is None else _hotpath.Counter()
        self._id_lock = threading.Lock()
        # chunks of formats that seal larger, longer batches (Parquet)
        self._holder = Holder(resolve=self._route_by_key.__getitem__)
        self._seal_upto = 0  # flush() wants everything up to this sequence number sealed now
        self._pending_rows = 0
        self._buffered_bytes = 0  # queued + being written: what the bound limits
        self._inflight_bytes = 0
        self._inflight: dict[str, int] = {}  # sealing thread -> lowest sequence number it holds
        self._inflight_since: dict[str, int] = {}  # sealing thread -> its oldest row's time (µs)
        self.batches = 0
        """Batches written (or spooled, or counted as failed), and the seconds that took, in total
        and for the last one: the flush latency that metrics export."""
        self.batch_seconds = 0.0
        self.last_batch_seconds: float | None = None
        self._space = threading.Condition(self.lock)
        self._next_id = 1 << 47  # ids of calls of several rows: the upper half
        self._seq = 0
        self._done_seq = 0
        self._started = 0  # flusher cycles begun
        self._finished = 0  # the number of the last cycle that ended
        self._failures = 0
        self._done = threading.Condition(threading.Lock())
        self._wake = threading.Event()
        self._start_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._spill_wake = threading.Event()
        self._spiller: threading.Thread | None = None

    # -- the caller's side -------------------------------------------------------------------

    @property
    def compactor(self) -> AutoCompactor:
        """The process's automatic compactor, made on first use."""
        with self._start_lock:
            if self._compactor is None:
                self._compactor = AutoCompactor(grace=_env_float("MDC_COMPACTION_GRACE", DEFAULT_GRACE))
            return self._compactor

    def control_for(self, backend: Backend, key: str) -> Any:
        """The process's watcher of one control document, made on first use; the flusher
        re-reads it when due."""
        from mdc_core.control import DEFAULT_INTERVAL, ControlWatcher

        with self._start_lock:
            found = self._controls.get((id(backend), key))
            if found is None:
                interval = _env_float("MDC_CONTROL_INTERVAL", DEFAULT_INTERVAL)
                found = self._controls[(id(backend), key)] = ControlWatcher(backend, key, interval)
            return found

    def register(self, route: Route) -> None:
        self._routes.add(route)
        route.key = len(self._route_by_key)
        self._route_by_key[route.key] = route
        if holds(route):
            self._holding = True  # the flusher sorts chunks through the Holder from now on

    def backend(self, plugin: BackendPlugin, url: str, options: Mapping[str, Any]) -> Backend:
        """One backend per plug-in, root and options in a process, shared by its collectors
        and closed at exit."""
        key = (plugin.name, url, json.dumps(dict(options), sort_keys=True, default=repr))
        with self._start_lock:
            backend = self._backends.get(key)
            if backend is None:
                backend = self._backends[key] = plugin.factory(url, options)
            return backend

    def accept(
        self, route: Route, taken: Taken, ts_us: int, request_id: str, user_id: str, pairing: OpenCorrelation | None
    ) -> Stamp | None:
        """Queue ``taken`` for ``route``; return the correlation data its rows got (None: refused).

        On the scoring path, and lock-free for small chunks while the buffer is well below its
        bound: ids come from an ``itertools.count`` and the chunk goes to the inbox with one
        ``deque.append``, both atomic under the GIL. A shared lock there made threads queue up
        behind whichever one the interpreter paused while holding it (4 threads ran at a third
        of one thread's rate). Every ``ABSORB_EVERY`` chunks, and whenever the bound is near,
        the caller takes the lock and moves the inbox to the numbered queue."""
        n = taken.rows
        kind = taken.kind
        # estimate_bytes()'s rule for Python rows, inline: most calls are rows, and this is the hot path
        size = n * (taken.width + N_AML) * 16 + 64 if kind is ROWS or kind is COLUMNS else estimate_bytes(taken)
        unpaired = 0
        # Stamps are plain tuples in Stamp's layout (see Stamp: the GC stops tracking them).
        stamp: Stamp
        if taken.carried:
            stamp = ("", 0, 0, "", ts_us, request_id)  # type: ignore[assignment]
        elif pairing is not None and (pairing.count == n or pairing.count == 1):
            stamp = pairing.stamp
            if pairing.count != n:  # one input row: every prediction row shares its id
                prefix, start, _, user, ts_us, request_id = stamp
                stamp = (prefix, start, 0, user, ts_us, request_id)  # type: ignore[assignment]
        else:
            start = next(self._row_ids) if n == 1 else self._id_block(n)
            stamp = (_IdSpace.prefix, start, 1, user_id, ts_us, request_id)  # type: ignore[assignment]
            if pairing is not None:
                unpaired = n
        inbox = self._inbox
        item = queued(taken)
        if (size <= self._small_chunk and len(inbox) < INBOX_MAX
                and self._buffered_bytes + self._inbox_bytes + size <= self._fast_limit):
            inbox.append((route.key, item, stamp, size, unpaired))
            self._inbox_bytes += size  # an estimate: a race may miscount it until the next absorb
            # Absorb now and then, but never wait for it: when the flusher holds the lock, the
            # inbox grows (up to INBOX_MAX) and the flusher absorbs it next.
            if len(inbox) >= ABSORB_EVERY:
                self._absorb_soon()
            if self._thread is None:
                self._start()
            return stamp
        with self.lock:
            self._absorb()
            full = self._buffered_bytes + size > self.max_bytes and (self._queue or self._inflight_bytes)
            if full and not self._make_room(route, n, size):
                return self._refused(route, n)
            self._inbox.append((route.key, item, stamp, size, unpaired))
            self._absorb()
        if self._thread is None:
            self._start()
        return stamp

    def _absorb_soon(self) -> None:
        """Absorb the inbox unless the lock is taken (then its holder, or the flusher next, does)."""
        if self.lock.acquire(blocking=False):
            try:
                self._absorb()
            finally:
                self.lock.release()

    def _absorb(self) -> None:
        """Number and count the chunks ``collect()`` left in the inbox, and queue them (called
        holding the lock; ``collect()`` appends without it, this is the only consumer). A block
        is sealed as it is counted: its collector starts a new one for its next row."""
        inbox = self._inbox
        if not inbox:
            return
        self._inbox_bytes = 0
        if _hotpath is not None:
            seq, rows, size = _hotpath.absorb(inbox, self._queue, self._route_by_key, self._seq)
        else:
            seq, rows, size = self._absorb_python(inbox)
        self._seq = seq
        self._pending_rows += rows
        self._buffered_bytes += size
        if self._pending_rows >= self.batch_rows:
            self._wake.set()
        if self._buffered_bytes > self.max_bytes:
            self._wake.set()
            if self.on_full == "spill":
                self._start_spiller()

    def _absorb_python(self, inbox: collections.deque[Any]) -> tuple[int, int, int]:
        """_absorb()'s loop without the compiled module: (last sequence number, rows, bytes)."""
        queue, seq, rows, size = self._queue, self._seq, 0, 0
        by_key = self._route_by_key
        while inbox:
            key, item, stamp, chunk_size, unpaired = inbox.popleft()
            seq += 1
            n = 1 if type(item) is tuple else item.rows  # queued_rows(), inline: once per call
            route = by_key[key]
            route.collected += n
            if unpaired:
                route.unpaired += unpaired
            queue.append((key, item, stamp, chunk_size, seq))
            rows += n
            size += chunk_size
        return seq, rows, size

    def _id_block(self, rows: int) -> int:
        """Consecutive ids for a call of several rows, from their own half of the 48-bit counter
        space (single rows take theirs from ``_row_ids`` without a lock)."""
        with self._id_lock:
            start = self._next_id
            self._next_id = start + rows
        return start

    @property
    def max_bytes(self) -> int:
        """Bound on rows held in memory (queued and being written), estimated from their shape."""
        return self._max_bytes

    @max_bytes.setter
    def max_bytes(self, value: int) -> None:
        self._max_bytes = value
        self._set_fast_limit()

    @property
    def on_full(self) -> str:
        """What collect() does when the bound is reached: one of ``ON_FULL``."""
        return self._on_full

    @on_full.setter
    def on_full(self, value: str) -> None:
        if value not in ON_FULL:
            raise ConfigurationError(f"on_full={value!r}: use one of {', '.join(ON_FULL)}")
        self._on_full = value
        self._set_fast_limit()

    def _set_fast_limit(self) -> None:
        """Lock-free appends are for chunks of at most 1/8192 of the bound, while the buffer and
        the inbox stay 1/16 of the bound short of where the policy applies (the bound; twice
        it for spill, whose spiller the absorb wakes): threads racing past the check cannot
        pass it. Beyond, collect() takes the lock and applies the policy exactly."""
        value = self._max_bytes
        self._small_chunk = value >> 13
        ceiling = 2 * value if getattr(self, "_on_full", "spill") == "spill" else value
        self._fast_limit = ceiling - (value >> 4)

    def _make_room(self, route: Route, rows: int, size: int) -> bool:
        """Apply the full-buffer policy (called holding the lock); False: refuse the new rows."""
        self._wake.set()  # whatever the policy, the flusher should drain now
        policy = self.on_full
        if policy == "drop_newest":
            return False
        if policy == "drop_oldest":
            while self._queue and self._buffered_bytes + size > self.max_bytes:
                old_key, old_item, _, old_size, _ = self._queue.popleft()
                self._buffered_bytes -= old_size
                self._pending_rows -= queued_rows(old_item)
                self._route_by_key[old_key].dropped["buffer_full"] += queued_rows(old_item)
            self._log.log(logging.WARNING, "drop:buffer_full", "mdc buffer full (%d bytes): dropped the oldest rows",
                          self.max_bytes)
            return True
        if policy == "block":
            def fits() -> bool:
                return self._buffered_bytes + size <= self.max_bytes or not (self._queue or self._inflight_bytes)
            return self._space.wait_for(fits, self.block_timeout)
        # spill: a second thread seals queued batches into the local spool (the flusher may be
        # stuck in an upload); past twice the bound, collect() outruns both and rows are refused.
        self._start_spiller()
        return self._buffered_bytes + size <= 2 * self.max_bytes

    def _refused(self, route: Route, rows: int) -> None:
        """Count rows the full buffer refused (called holding the lock)."""
        route.collected += rows
        route.dropped["buffer_full"] += rows
        self._log.log(logging.WARNING, "drop:buffer_full",
                      "mdc buffer full (%d bytes, policy %s): dropped %d rows of %s",
                      self.max_bytes, self.on_full, rows, route.name)
        return None

    def drop(self, route: Route, rows: int, reason: str) -> None:
        """Count rows refused before they were queued (e.g. collected after close())."""
        with self.lock:
            route.collected += rows
            route.dropped[reason] += rows
        self._log.log(logging.WARNING, f"drop:{reason}", "mdc dropped %d rows of %s: %s", rows, route.name, reason)

    def flush(self, timeout: float | None = None, route: Route | None = None) -> bool:
        """Wait until everything accepted before this call is handled, and, when ``route`` then
        has batches in a spool, until a replay begun after that was tried. ``True`` if nothing
        failed meanwhile; ``False`` if ``timeout`` ran out or a write failed (the collector's
        status says which rows)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self.lock:
            self._absorb()
            target, failures = self._seq, self._failures
            self._seal_upto = max(self._seal_upto, target)
        if self._done_seq >= target and not (route is not None and route.spooled):
            return True
        if threading.current_thread() is self._thread:
            return False  # a flush from inside a backend would wait for itself
        self._start()
        with self._done:
            self._wake.set()
            done = self._done.wait_for(lambda: self._done_seq >= target, _left(deadline))
            if done and route is not None and route.spooled:
                begun = self._started
                self._wake.set()
                done = self._done.wait_for(lambda: self._finished > begun, _left(deadline))
        return done and self._failures == failures

    def flush_for_signal(self, timeout: float) -> bool:
        """``flush`` for a signal handler: takes no lock the interrupted code may hold."""
        waiting = len(self._inbox)  # numbered after _seq by the flusher's next absorb
        target = self._seal_upto = self._seq + waiting
        if self._done_seq >= target or self._thread is None:
            return self._done_seq >= target
        self._wake.set()
        with self._done:
            return self._done.wait_for(lambda: self._done_seq >= target, timeout)

    @property
    def buffered_bytes(self) -> int:
        """Estimated bytes of the rows in memory (queued, held or being written)."""
        with self.lock:
            self._absorb()
            return self._buffered_bytes

    def oldest_pending_age(self, now: float | None = None) -> float | None:
        """Seconds since the oldest row still in memory (queued, held for a larger batch or being
        written, any collector) was collected; None when memory holds no rows."""
        with self.lock:
            self._absorb()
            since = list(self._inflight_since.values()) + self._holder.oldest_us()
            if self._queue:
                since.append(self._queue[0][2][STAMP_TS])
        since = [t for t in since if t > 0]
        if not since:
            return None
        return max(0.0, (time.time() if now is None else now) - min(since) / 1e6)

    def stats(self, route: Route) -> dict[str, Any]:
        spool = route.sink.spool
        spool_stats = {"spool_bytes": spool.bytes(), "oldest_spooled_age_s": spool.oldest_age()} if spool else {}
        oldest_pending = self.oldest_pending_age()  # absorbs the inbox: its rows count as collected
        with self.lock:
            dropped = dict(route.dropped)
            return {
                "collected": route.collected,
                "written": route.written,
                "dropped": dropped,
                "pending": (route.collected - route.written - sum(dropped.values()) - route.spooled
                            - route.sampled_out),
                "spooled": route.spooled,
                "spilled": route.spilled,
                "sampled_out": route.sampled_out,
                "unpaired": route.unpaired,
                "retries": route.sink.retried,
                "buffered_bytes": self._buffered_bytes,
                "oldest_pending_age_s": oldest_pending,
                "last_batch_seconds": self.last_batch_seconds,
                **spool_stats,
            }

    # -- the flusher's side ------------------------------------------------------------------

    def _start(self) -> None:
        with self._start_lock:
            if self._thread is not None and self._thread.is_alive():
                return
            self._thread = threading.Thread(target=self._run, name="mdc-flusher", daemon=True)
            self._thread.start()

    def _start_spiller(self) -> None:
        """Wake the spill thread, made on the first overflow (called holding the lock)."""
        if self._spiller is None:
            self._spiller = threading.Thread(target=self._spill_run, name="mdc-spiller", daemon=True)
            self._spiller.start()
        self._spill_wake.set()

    def _spill_run(self) -> None:
        while True:
            self._spill_wake.wait()
            self._spill_wake.clear()
            try:
                while self._seal_and_write("spiller"):
                    pass
            except Exception:  # like the flusher, it must survive anything
                logger.exception("mdc spill failed")

    def _run(self) -> None:
        while True:
            self._wake.wait(self.interval)
            self._wake.clear()
            try:
                self._cycle()
            except Exception:  # the flusher must survive anything; rows were counted in _cycle
                logger.exception("mdc flusher cycle failed")

    def _cycle(self) -> None:
        with self._done:
            self._started += 1
            number = self._started
        for watcher in list(self._controls.values()):
            watcher.refresh_if_due()
        if self._spools:
            self._replay()
        while self._seal_and_write():
            pass
        with self._done:
            self._finished = number
            self._done.notify_all()

    def _seal_and_write(self, who: str = "flusher") -> bool:
        """Seal up to ``MAX_BATCH_ROWS`` queued rows (and half the memory bound) into a batch and
        write it; True if more wait.

        Bounded batches keep objects a sensible size and free memory as they go, under any load.
        The spiller (``who="spiller"``) takes batches only while the buffer is over half its
        bound, only for collectors with a spool, and only puts them in the spool: the flusher's
        replay uploads them, so a hung upload cannot hold memory."""
        spill = who == "spiller"
        with self.lock:
            self._absorb()
            chunks: list[Chunk] = []
            rows = size = 0
            half = self.max_bytes // 2
            if not spill and (self._holding or self._holder):
                self._pending_rows += self._holder.sort(self._queue, self._seal_upto, self._buffered_bytes > half)
            if not spill or self._buffered_bytes > half:
                # at most half the bound per batch: a batch stuck in a hung upload leaves room
                # for the spiller to keep accepting rows
                def limit_for(key: int) -> int:  # per route, not per chunk: a batch may hold 100,000
                    route = self._route_by_key[key]
                    spillable = not spill or _spillable(route.sink)
                    return max(MAX_BATCH_ROWS, seal_rows(route)) if spillable else 0

                take = _take_batch_python if _hotpath is None else _hotpath.take_batch
                chunks, rows, size = take(self._queue, {}, limit_for, half)
            if spill and not chunks:
                return False
            self._pending_rows -= rows
            self._inflight_bytes += size
            if chunks:
                self._inflight[who] = chunks[0][4]
                self._inflight_since[who] = chunks[0][2][STAMP_TS]  # FIFO: about the oldest
            more = bool(self._queue or self._inbox)
            first = flusher_first(self._buffered_bytes > self.max_bytes // BEHIND)
        began = time.monotonic()
        try:
            if chunks:
                self._write(chunks, spill, first)
        finally:
            took = time.monotonic() - began
            with self.lock:
                if chunks:
                    self.batches += 1
                    self.batch_seconds += took
                    self.last_batch_seconds = took
                self._inflight_since.pop(who, None)
                self._buffered_bytes -= size
                self._inflight_bytes -= size
                self._inflight.pop(who, None)
                # everything below the lowest sequence number still queued or being written is done
                lows = list(self._inflight.values()) + self._holder.lowest()
                if self._queue:
                    lows.append(self._queue[0][4])
                upto = min(lows) - 1 if lows else self._seq
                self._space.notify_all()
            with self._done:
                self._done_seq = max(self._done_seq, upto)
                self._done.notify_all()
        return more

    def _write(self, chunks: Sequence[Chunk], spill: bool, first: Any) -> None:
        """Write a sealed batch; ``first`` wraps its CPU work (``handoff.flusher_first``)."""
        for key, (takens, stamps) in _by_route(chunks).items():
            route = self._route_by_key[key]
            spilled = functools.partial(self._spilled, route) if spill else None
            for table in self._tables(route, takens, stamps, first):
                if route.sample_rate < 1.0:
                    table = self._sampled(route, table)
                if route.transforms:
                    table = self._transformed(route, table)
                    if table is None:
                        continue
                done = 0
                try:
                    for rows, key, error, kept in write(route.sink, table, spilled, first):
                        done += rows
                        self._account(route, rows, key, error, kept=kept)
                except Exception as exc:  # nothing may stay pending forever: count the rest
                    self._account(route, table.num_rows - done, route.name, exc, reason="unconvertible")

    def _tables(self, route: Route, takens: Sequence[Taken], stamps: Sequence[Stamp], first: Any) -> Iterable[Any]:
        try:
            with first:
                table = build_table(route.columns or (), route.deployment, takens, stamps)
        except Exception:
            pass
        else:
            yield table
            return
        # Something in the batch cannot be converted: isolate it so the rest is still written.
        for taken, stamp in zip(takens, stamps):
            try:
                yield build_table(route.columns or (), route.deployment, [taken], [stamp])
            except Exception as exc:
                self._account(route, queued_rows(taken), route.name, exc, reason="unconvertible")

    def _transformed(self, route: Route, table: Any) -> Any:
        """The batch after every ``mdc_transform_batch`` implementation; None if one failed
        (the batch is then counted as dropped: untransformed rows must not be written)."""
        rows = table.num_rows
        try:
            for transform in route.transforms:
                table = transform(table=table, context=route.context) or table
        except Exception as exc:
            self._account(route, rows, route.name, exc, reason="transform_error")
            return None
        return table

    def _sampled(self, route: Route, table: Any) -> Any:
        from mdc_core.sampling import sample

        try:
            kept, skipped = sample(table, route.sample_rate, route.always_keep)
        except Exception as exc:  # a rule that does not fit the data: keep every row, say why
            self._log.log(logging.ERROR, f"sampling:{route.name}", "mdc sampling of %s failed (%s: %s); "
                          "the batch is written whole", route.name, type(exc).__name__, exc)
            return table
        with self.lock:
            route.sampled_out += skipped
        return kept

    def _spilled(self, route: Route, rows: int) -> None:
        """Count rows the spiller puts in the spool before the put (a replay may credit them as
        soon as the file exists); a put that failed takes them back with ``-rows``."""
        with self.lock:
            route.spooled += rows
            route.spilled += rows
        if rows > 0:
            self._log.log(logging.WARNING, f"spill:{route.name}",
                          "mdc buffer over its bound (%d bytes): %d rows of %s moved to the local spool, "
                          "to be uploaded from there", self.max_bytes, rows, route.name)

    def _account(
        self, route: Route, rows: int, key: str, error: BaseException | None, reason: str = "storage_error",
        kept: bool = False,
    ) -> None:
        with self.lock:
            if error is None:
                if not kept:  # kept without an error: spilled, counted by _spilled
                    route.written += rows
                return
            self._failures += 1
            if kept:
                route.spooled += rows
            else:
                route.dropped[reason] += rows
        if kept:
            self._log.log(logging.WARNING, f"spooled:{route.name}",
                          "mdc could not write %d rows of %s to %s (%s: %s); they are kept in the spool and "
                          "will be replayed", rows, route.name, key, type(error).__name__, error)
            return
        self._log.log(
            logging.ERROR,
            f"{reason}:{route.name}",
            "mdc could not write %d rows of %s to %s (%s: %s); they are counted as dropped (%s)",
            rows,
            route.name,
            key,
            type(error).__name__,
            error,
            reason,
        )

    # -- process life ------------------------------------------------------------------------

    def shutdown(self, timeout: float = EXIT_TIMEOUT) -> bool:
        """Flush what is queued, then close the backends (at interpreter exit)."""
        with self.lock:
            self._absorb()
            empty = not self._queue and not self._holder
        done = True if empty else self.flush(timeout)
        for spool, _ in list(self._spools.values()):
            spool.close()  # what is left is adopted and replayed by the next process
        for backend in list(self._backends.values()):
            try:
                backend.close()
            except Exception:  # closing is best effort at exit
                logger.debug("closing %r failed", backend, exc_info=True)
        return done

    def _before_fork(self) -> None:
        self.lock.acquire()

    def _after_fork_parent(self) -> None:
        self.lock.release()

    def _after_fork_child(self) -> None:
        self._init_state()
        for route in list(self._routes):
            route.reset_counters()


_pipeline: Pipeline | None = None
_pipeline_lock = threading.Lock()


def get_pipeline() -> Pipeline:
    """The process's pipeline, made on first use; flushed at exit."""
    global _pipeline
    if _pipeline is None:
        with _pipeline_lock:
            if _pipeline is None:
                pipeline = Pipeline(
                    interval=_env_float("MDC_FLUSH_INTERVAL", DEFAULT_INTERVAL),
                    max_bytes=int(_env_float("MDC_MAX_BUFFER_BYTES", DEFAULT_MAX_BYTES)),
                    on_full=os.environ.get("MDC_ON_FULL", "spill"),
                    block_timeout=_env_float("MDC_BLOCK_TIMEOUT", 1.0),
                )
                if hasattr(os, "register_at_fork"):
                    os.register_at_fork(
                        before=pipeline._before_fork,
                        after_in_parent=pipeline._after_fork_parent,
                        after_in_child=pipeline._after_fork_child,
                    )
                atexit.register(pipeline.shutdown, _env_float("MDC_EXIT_TIMEOUT", EXIT_TIMEOUT))
                _pipeline = pipeline
    return _pipeline


def _take_batch_python(
    queue: collections.deque[Chunk], limits: dict[int, int], limit_for: Any, half: int
) -> tuple[list[Chunk], int, int]:
    """The flusher's next batch without the compiled module (``_hotpath.take_batch``): chunks
    from the front of the queue while under their route's row limit (``limits``, filled by
    ``limit_for``) and half the memory bound (at least one); with its rows and bytes."""
    chunks: list[Chunk] = []
    rows = size = 0
    while queue:
        chunk = queue[0]
        limit = limits.get(chunk[0])
        if limit is None:
            limit = limits[chunk[0]] = limit_for(chunk[0])
        if rows >= limit or (chunks and size >= half):
            break
        chunks.append(queue.popleft())
        rows += queued_rows(chunk[1])
        size += chunk[3]
    return chunks, rows, size


def _by_route(chunks: Sequence[Chunk]) -> dict[int, tuple[list[Taken], list[Stamp]]]:
    """Each route key's rows and stamps, in order, as two parallel lists: C-level passes per
    route for the usual few routes (a batch may hold 100,000 chunks), plain appends for many."""
    if _hotpath is not None and type(chunks) is list:
        return _hotpath.split_by_route(chunks)
    routes = [chunk[0] for chunk in chunks]
    takens = [chunk[1] for chunk in chunks]
    stamps = [chunk[2] for chunk in chunks]
    distinct = dict.fromkeys(routes)
    if len(distinct) == 1:
        return {routes[0]: (takens, stamps)}
    if len(distinct) > 8:
        grouped: dict[int, tuple[list[Taken], list[Stamp]]] = {route: ([], []) for route in distinct}
        for route, taken, stamp in zip(routes, takens, stamps):
            own = grouped[route]
            own[0].append(taken)
            own[1].append(stamp)
        return grouped
    result = {}
    for route in distinct:
        mine = [r is route for r in routes]
        result[route] = (list(itertools.compress(takens, mine)), list(itertools.compress(stamps, mine)))
    return result


def _spillable(sink: Sink) -> bool:
    """Whether the spiller may take this sink's rows: object-store batches with a live spool."""
    return sink.spool is not None and not sink.spool.closed and not sink.appends and not sink.debug


def _left(deadline: float | None) -> float | None:
    return None if deadline is None else max(0.0, deadline - time.monotonic())
