"""Azure ML's original collector, azureml-monitoring 0.1.0a21, as a peer (set-up in progress)."""

from __future__ import annotations

from typing import Any


def prepare(suite: Any, azurite: Any) -> str:
    return "not run: not wired up yet"


def run(suite: Any, cell: Any, specs: list[dict], log: Any) -> list[dict]:
    raise RuntimeError("azureml-monitoring peer is not wired up yet")


def cleanup(suite: Any) -> None:
    pass
