"""Opt-in: flush collected rows when the process is asked to stop with SIGTERM.

``atexit`` hooks do not run when a process dies of SIGTERM's default action, which is how
containers and plain ``python app.py`` services are stopped. mdc installs no signal handler on
its own (a library must not); call ``install_sigterm_flush()`` once, from the main thread, to
write what is queued before the previous handler (or the default action) takes over.
Servers with their own hooks don't need it: gunicorn's ``worker_exit`` and ASGI lifespan
shutdown can call ``collector.close(timeout)`` directly (see the README).
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterable
from types import FrameType

from mdc_core.pipeline import get_pipeline


def install_sigterm_flush(timeout: float = 10.0, signals: Iterable[int] = (signal.SIGTERM,)) -> None:
    """On each of ``signals``: flush for up to ``timeout`` seconds, then chain to the handler that
    was installed before (or re-raise the signal with its default action)."""
    for signum in signals:
        previous = signal.getsignal(signum)

        def handler(received: int, frame: FrameType | None, previous: object = previous) -> None:
            get_pipeline().flush_for_signal(timeout)
            if callable(previous):
                previous(received, frame)
            elif previous == signal.SIG_DFL:
                signal.signal(received, signal.SIG_DFL)
                os.kill(os.getpid(), received)
            # SIG_IGN (or None: set outside Python): the signal stays ignored

        signal.signal(signum, handler)
