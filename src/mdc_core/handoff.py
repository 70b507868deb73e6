"""``flusher_first``: once the flusher falls behind, its CPU work runs ahead of the scoring threads.

CPython gives the GIL back to a thread that released it only when the holder lets go, at the
latest after the 5 ms switch interval. The flusher releases it many times per batch (each Arrow
kernel), so beside threads that collect in a closed loop it waited 5 ms each time, with 16 such
threads far longer, and fell behind until memory reached its bound and rows were refused.
Inside ``with flusher_first(True):`` the compiled ``collect()`` lets go of the GIL until the block
ends, at most 5 ms per call: the scoring threads slow down to the pace at which rows can be
written, instead of filling memory.

Engaged only while memory holds more than ``1/BEHIND`` of its bound: a service that leaves the
GIL between requests does not get there, nor does a burst that half the bound absorbs. Only
around CPU work, never around storage calls: slow storage must not slow the scoring path.
Without the compiled path it does nothing.
"""

from __future__ import annotations

import contextlib
from typing import Any

from mdc_core import compiled

BEHIND = 2
"""The flusher is behind when memory holds more than half its bound."""

_hotpath = compiled.load("_hotpath")
_handoff = _hotpath.Handoff() if _hotpath is not None else None
_nothing = contextlib.nullcontext()


def flusher_first(behind: bool) -> Any:
    """A context for the flusher's CPU work: the handoff when ``behind``, else nothing."""
    return _handoff if behind and _handoff is not None else _nothing
