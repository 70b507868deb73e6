"""Correlation ids, request scopes and the pairing of predictions with their inputs.

Ids are UUID-shaped (version 4 layout): a random prefix drawn once per process (again in a forked
child) and a 48-bit row counter. Reserving ids is a counter bump; the strings are made only when
someone reads them (the flusher, or the caller through the returned dict).

Collecting ``inputs`` opens a correlation in the current ``contextvars`` context (thread or
asyncio task). A ``predictions``, ``labels`` or ``signals`` collect in the same context pairs with
it if it is for the same model: row ``i`` with input row ``i`` when the row counts match, every
row with the single input row when the inputs had one, and not at all otherwise (new ids;
counted as ``unpaired``). Paired rows share the inputs' correlation id, scoring timestamp and
request id. Inside ``request_context()`` the correlation lives until the block ends; outside,
each of those designations takes it once and only within ``PAIRING_WINDOW`` seconds, so it
never leaks into a later request served by the same thread.
"""

from __future__ import annotations

import contextvars
import os
import secrets
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, overload

import pyarrow as pa

from mdc_core.compiled import load

NO_REQUEST_ID = "00000000-0000-0000-0000-000000000000"
PAIRING_WINDOW = 60.0
"""Seconds after an inputs collect (outside ``request_context``) in which other designations pair."""
"""Azure ML's ``$aml_request_id`` for rows collected outside any request."""


def _new_prefix() -> str:
    """``xxxxxxxx-xxxx-4xxx-yxxx-``: random, with the version and variant bits of a uuid4."""
    rand = secrets.randbits
    return f"{rand(32):08x}-{rand(16):04x}-4{rand(12):03x}-{0x8000 | rand(14):04x}-"


class _IdSpace:
    """The process's id prefix; renewed in a forked child so parent and child never collide."""

    prefix: str = _new_prefix()

    @classmethod
    def renew(cls) -> None:
        cls.prefix = _new_prefix()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_IdSpace.renew)


def format_id(prefix: str, counter: int, user: str) -> str:
    """The correlation id of row ``counter``; ``user`` is the caller's ``user_correlation_id``."""
    ident = f"{prefix}{counter & 0xFFFFFFFFFFFF:012x}"
    return f"{user}-{ident}" if user else ident


def format_ids(prefix: str, counters: list[int]) -> pa.Array:
    """``format_id(prefix, c, "")`` for every counter, as one Arrow string array: with numpy, the
    hex digits of all rows are computed at once into one buffer (a fifth of the cost of
    formatting them one by one, which is what happens without numpy)."""
    try:
        import numpy as np
    except ImportError:
        return pa.array([f"{prefix}{c & 0xFFFFFFFFFFFF:012x}" for c in counters], pa.string())
    head = np.frombuffer(prefix.encode(), np.uint8)
    n, width = len(counters), len(head) + 12
    text = np.empty((n, width), np.uint8)
    text[:, : len(head)] = head
    shifts = np.arange(44, -1, -4, dtype=np.uint64)
    digits = (np.array(counters, np.uint64)[:, None] >> shifts) & np.uint64(15)
    text[:, len(head) :] = np.frombuffer(b"0123456789abcdef", np.uint8)[digits]
    offsets = np.arange(0, (n + 1) * width, width, dtype=np.int32)
    return pa.StringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(text))



class IdRange(Sequence[str]):
    """The correlation ids of consecutive rows, formatted on demand.

    ``step`` is 0 when every row shares one id (predictions paired with a single input row).
    A plain slotted class: one is made per ``collect()``, so it must be cheap to build.
    """

    __slots__ = ("prefix", "start", "count", "step", "user")

    def __init__(self, prefix: str, start: int, count: int, step: int = 1, user: str = ""):
        self.prefix = prefix
        self.start = start
        self.count = count
        self.step = step
        self.user = user

    def __len__(self) -> int:
        return self.count

    @overload
    def __getitem__(self, index: int) -> str: ...
    @overload
    def __getitem__(self, index: slice) -> list[str]: ...
    def __getitem__(self, index: int | slice) -> str | list[str]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(self.count))]
        if index < 0:
            index += self.count
        if not 0 <= index < self.count:
            raise IndexError("correlation id index out of range")
        return format_id(self.prefix, self.start + index * self.step, self.user)

    def __iter__(self) -> Iterator[str]:
        prefix, user, step = self.prefix, self.user, self.step
        for i in range(self.count):
            yield format_id(prefix, self.start + i * step, user)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, IdRange):
            return list(self) == list(other)
        if isinstance(other, Sequence) and not isinstance(other, str):
            return list(self) == list(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        shown = ", ".join(repr(i) for i in self[:3]) + (", ..." if self.count > 3 else "")
        return f"IdRange([{shown}], count={self.count})"


class OpenCorrelation:
    """The inputs of the current request, waiting for their predictions: their ``Stamp`` (ids,
    scoring time, request id) and row count."""

    __slots__ = ("stamp", "count", "model", "opened", "taken")

    def __init__(self, stamp: Any, count: int, model: str):
        self.stamp = stamp
        self.count = count
        self.model = model
        self.opened = time.monotonic()
        self.taken: tuple[str, ...] = ()  # designations that paired already (outside a scope)


_compiled = load("_hotpath")
if _compiled is not None:  # the same class in C, so that collect()'s compiled path makes them cheaply
    OpenCorrelation = _compiled.OpenCorrelation  # type: ignore[misc]


@dataclass
class RequestScope:
    """One request: its id and the correlation its inputs opened."""

    request_id: str
    correlation: OpenCorrelation | None = None


_scope: contextvars.ContextVar[RequestScope | None] = contextvars.ContextVar("mdc_request", default=None)
_open: contextvars.ContextVar[OpenCorrelation | None] = contextvars.ContextVar("mdc_open", default=None)


@contextmanager
def request_context(request_id: str | None = None) -> Iterator[RequestScope]:
    """Scope one request: its rows get ``request_id`` (a new uuid4 when ``None``) as
    ``$aml_request_id``, and its inputs pair with its predictions and with nothing else."""
    scope = RequestScope(request_id=str(request_id) if request_id else str(uuid.uuid4()))
    token = _scope.set(scope)
    try:
        yield scope
    finally:
        _scope.reset(token)


def current_request_id() -> str:
    scope = _scope.get()
    return scope.request_id if scope is not None else NO_REQUEST_ID


def open_correlation(correlation: OpenCorrelation) -> None:
    """Make ``correlation`` the one later designations in this context pair with."""
    scope = _scope.get()
    if scope is not None:
        scope.correlation = correlation
    else:
        _open.set(correlation)


def take_correlation(designation: str, model: str) -> OpenCorrelation | None:
    """The inputs this designation pairs with, if any (outside a request scope: once each)."""
    scope = _scope.get()
    if scope is not None:
        corr = scope.correlation
        return corr if corr is not None and corr.model == model else None
    corr = _open.get()
    if (
        corr is None
        or corr.model != model
        or designation in corr.taken
        or time.monotonic() - corr.opened > PAIRING_WINDOW
    ):
        return None
    corr.taken += (designation,)
    return corr


class IsoClock:
    """Formats epoch microseconds as ``2026-11-25T01:02:03.123456`` (UTC, no zone), caching the
    part that changes once a second so the hot path pays for one small f-string."""

    __slots__ = ("_cached",)

    def __init__(self) -> None:
        self._cached: tuple[int, str] = (-1, "")

    def format(self, ts_us: int) -> str:
        seconds = ts_us // 1_000_000
        cached_seconds, text = self._cached
        if cached_seconds != seconds:
            text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
            self._cached = (seconds, text)
        return f"{text}.{ts_us - seconds * 1_000_000:06d}"
