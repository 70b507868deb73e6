"""Exit paths: atexit, the opt-in SIGTERM flush, and no signal handler changed by mdc on its own."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

from conftest import data_files, read_csv

COLLECT = """
import os, signal, sys
from mdc_core import ModelDataCollector, install_sigterm_flush
dc = ModelDataCollector("m", designation="inputs", storage=sys.argv[1])
"""


def run(tmp_path, body: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MDC_")}
    env["MDC_FLUSH_INTERVAL"] = "3600"  # nothing is written unless an exit path flushes
    return subprocess.run(
        [sys.executable, "-c", COLLECT + textwrap.dedent(body), str(tmp_path / "store")],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def rows(tmp_path) -> list[str]:
    return sorted(r["feature_0"] for p in data_files(tmp_path / "store") for r in read_csv(p))


def test_sigterm_without_the_opt_in_loses_the_queue(tmp_path) -> None:
    """The control case: SIGTERM's default action skips atexit, so queued rows are not written."""
    result = run(
        tmp_path,
        """
        for i in range(5): dc.collect([i])
        os.kill(os.getpid(), signal.SIGTERM)
    """,
    )
    assert result.returncode == -signal.SIGTERM
    assert rows(tmp_path) == []


def test_sigterm_flush_writes_the_queue_then_dies_of_sigterm(tmp_path) -> None:
    """With install_sigterm_flush(), SIGTERM writes what is queued, then the default action ends the process."""
    result = run(
        tmp_path,
        """
        install_sigterm_flush(timeout=30)
        for i in range(5): dc.collect([i])
        os.kill(os.getpid(), signal.SIGTERM)
        print("not reached")
    """,
    )
    assert result.returncode == -signal.SIGTERM, result.stderr
    assert "not reached" not in result.stdout
    assert rows(tmp_path) == ["0", "1", "2", "3", "4"]


def test_sigterm_flush_chains_to_the_previous_handler(tmp_path) -> None:
    """An application's own SIGTERM handler still runs, after the flush."""
    result = run(
        tmp_path,
        """
        def mine(signum, frame):
            print("app handler ran"); sys.stdout.flush(); os._exit(7)
        signal.signal(signal.SIGTERM, mine)
        install_sigterm_flush(timeout=30)
        dc.collect(["x"])
        os.kill(os.getpid(), signal.SIGTERM)
    """,
    )
    assert result.returncode == 7 and "app handler ran" in result.stdout
    assert rows(tmp_path) == ["x"]


def test_sys_exit_runs_the_atexit_flush(tmp_path) -> None:
    """sys.exit() runs atexit: queued rows are written."""
    result = run(
        tmp_path,
        """
        for i in range(3): dc.collect([i])
        sys.exit(0)
    """,
    )
    assert result.returncode == 0 and rows(tmp_path) == ["0", "1", "2"]


def test_import_and_use_change_no_signal_handler(tmp_path) -> None:
    """Importing mdc and collecting leaves every signal handler as it was."""
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            textwrap.dedent(f"""
        import signal
        before = {{s: signal.getsignal(s) for s in signal.valid_signals() if s not in (signal.SIGKILL, signal.SIGSTOP)}}
        from mdc_core import ModelDataCollector
        dc = ModelDataCollector("m", designation="inputs", storage={str(tmp_path / "s")!r})
        dc.collect([1]); assert dc.flush(timeout=30); dc.close()
        after = {{s: signal.getsignal(s) for s in before}}
        assert before == after, {{s: (before[s], after[s]) for s in before if before[s] != after[s]}}
    """),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
