"""The S3 backend's event loop (s3fs runs aiobotocore on fsspec's loop thread) at fork and at exit.

**Fork.** A forked child inherits that loop, and with it the epoll set and the sockets of the
parent's pooled connections. Closing them in the child, as s3fs's finalizer and aiohttp's
connector do when the child drops the parent's filesystem, unregisters those sockets from the
epoll set the two processes share: the parent's next request on one of them then hangs until its
read timeout. So, in the child, each loop an S3 backend used gets an epoll set of its own
(``remember_loop`` installs the fork hook); the backend keeps the parent's filesystem instead of
dropping it, and its finalizer closes only sessions of the process that opened them
(``owned_here``).

**Exit.** Once the main thread has finished, concurrent.futures refuses new work ("cannot schedule
new futures after interpreter shutdown"), yet aiohttp needs an executor for TLS contexts and DNS
lookups, and mdc's exit hook still writes what is queued. ``keep_executor_at_exit`` gives the loop
an executor that runs each call on a thread of its own.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import selectors
import threading
import weakref
from collections.abc import Callable
from typing import Any

_lock = threading.Lock()
_owner: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, int] = weakref.WeakKeyDictionary()
_at_exit: weakref.WeakSet[asyncio.AbstractEventLoop] = weakref.WeakSet()
_hooked: list[bool] = []


def remember_loop(loop: asyncio.AbstractEventLoop, pid: int) -> None:
    """``loop`` serves S3 clients of process ``pid``; detach it in forked children."""
    with _lock:
        _owner[loop] = pid
        if not _hooked and hasattr(os, "register_at_fork"):
            os.register_at_fork(after_in_child=_detach_inherited_loops)
            _hooked.append(True)


def owned_here(loop: asyncio.AbstractEventLoop) -> bool:
    """Whether sessions on ``loop`` belong to this process (not to a parent before fork)."""
    return _owner.get(loop, os.getpid()) == os.getpid()


def _detach_inherited_loops() -> None:
    for loop in list(_owner):
        if getattr(loop, "_selector", None) is not None:  # asyncio's selector event loops
            loop._selector = selectors.DefaultSelector()  # type: ignore[attr-defined]


class _ThreadPerCall(concurrent.futures.ThreadPoolExecutor):
    """An executor that still works after interpreter shutdown began: a thread per call."""

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> concurrent.futures.Future[Any]:
        future: concurrent.futures.Future[Any] = concurrent.futures.Future()

        def run() -> None:
            if future.set_running_or_notify_cancel():
                try:
                    future.set_result(fn(*args, **kwargs))
                except BaseException as exc:  # handed to whoever awaits the future
                    future.set_exception(exc)

        threading.Thread(target=run, name="mdc-s3-exit", daemon=True).start()
        return future


def keep_executor_at_exit(loop: asyncio.AbstractEventLoop) -> None:
    """Give ``loop`` (once) a default executor that works after the main thread ended."""
    with _lock:
        if loop in _at_exit:
            return
        _at_exit.add(loop)
    loop.call_soon_threadsafe(loop.set_default_executor, _ThreadPerCall(max_workers=1))
