"""Session-scoped pytest fixtures for real storage servers.

Import them explicitly in a test module (tests/ must be on sys.path)::

    from conftest_servers import azurite, seaweedfs  # noqa: F401

``azurite`` yields a ``servers.AzuriteServer`` and ``seaweedfs`` a
``servers.SeaweedServer``.  When a server's binary is not installed the
fixture skips the test and prints why (install with
``bash tests/install_servers.sh``).  Set ``MDC_REQUIRE_SERVERS=1`` (e.g. in CI)
to turn such a skip into a failure, so integration tests cannot be skipped
silently.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import TypeVar, Union

import pytest

import servers

ServerT = TypeVar("ServerT", bound=Union["servers.AzuriteServer", "servers.SeaweedServer"])


def _report(config: pytest.Config, line: str) -> None:
    """Write a line to the terminal, bypassing output capture."""
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if reporter is None:
        return
    capman = config.pluginmanager.get_plugin("capturemanager")
    if capman is None:
        reporter.write_line(line)
        return
    with capman.global_and_fixture_disabled():
        reporter.write_line(line)


def _skip_or_fail(config: pytest.Config, reason: str) -> None:
    if os.environ.get("MDC_REQUIRE_SERVERS") == "1":
        pytest.fail(f"{reason} (and MDC_REQUIRE_SERVERS=1)", pytrace=False)
    _report(config, f"[mdc servers] SKIP: {reason}")
    pytest.skip(reason)


def _run_server(
    request: pytest.FixtureRequest,
    name: str,
    reason: str | None,
    start: Callable[[], ServerT],
) -> Iterator[ServerT]:
    if reason:
        _skip_or_fail(request.config, reason)
    server = start()
    _report(
        request.config,
        f"[mdc servers] {name} ready in {server.startup_seconds:.2f}s: {server!r}",
    )
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def azurite(request, tmp_path_factory) -> Iterator[servers.AzuriteServer]:
    """A running Azurite blob service (127.0.0.1, free port) for the session."""
    yield from _run_server(
        request,
        "azurite",
        servers.azurite_unavailable_reason(),
        lambda: servers.start_azurite(tmp_path_factory.mktemp("azurite")),
    )


@pytest.fixture(scope="session")
def seaweedfs(request, tmp_path_factory) -> Iterator[servers.SeaweedServer]:
    """A running SeaweedFS (master+volume+filer+S3) for the session."""
    yield from _run_server(
        request,
        "seaweedfs",
        servers.seaweedfs_unavailable_reason(),
        lambda: servers.start_seaweedfs(tmp_path_factory.mktemp("seaweedfs")),
    )
