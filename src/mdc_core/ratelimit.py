"""Logging that cannot flood: one line per reason per interval, with the count it swallowed."""

from __future__ import annotations

import logging
import threading
import time
import weakref
from collections.abc import Callable

_instances: weakref.WeakSet[RateLimitedLog] = weakref.WeakSet()


def reset_all() -> None:
    """Forget what every limiter has logged, so the next line of each key is written (tests)."""
    for instance in list(_instances):
        with instance._lock:
            instance._last.clear()
            instance._held.clear()


class RateLimitedLog:
    """Logs each ``key`` at most once per ``interval`` seconds, reporting how many it held back."""

    def __init__(self, logger: logging.Logger, interval: float = 60.0, clock: Callable[[], float] = time.monotonic):
        self._logger = logger
        self._interval = interval
        self._clock = clock
        self._lock = threading.Lock()
        self._last: dict[str, float] = {}
        self._held: dict[str, int] = {}
        _instances.add(self)

    def log(self, level: int, key: str, message: str, *args: object, exc_info: bool = False) -> bool:
        """Log now if ``key`` was quiet for an interval; return whether a line was written."""
        now = self._clock()
        with self._lock:
            last = self._last.get(key)
            if last is not None and now - last < self._interval:
                self._held[key] = self._held.get(key, 0) + 1
                return False
            self._last[key] = now
            held = self._held.pop(key, 0)
        if held:
            message += f" ({held} similar messages suppressed)"
        self._logger.log(level, message, *args, exc_info=exc_info)
        return True
