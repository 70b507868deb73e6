"""Meta-tests that keep the public surface honest."""

from __future__ import annotations

import importlib
import importlib.resources
import inspect

import pytest

import mdc_core


def test_all_is_sorted_and_complete() -> None:
    """mdc_core.__all__ is sorted and every name in it exists."""
    assert mdc_core.__all__ == sorted(mdc_core.__all__)
    for name in mdc_core.__all__:
        assert hasattr(mdc_core, name), name


@pytest.mark.parametrize("package", ["mdc_core", "mdc_backends", "mdc_formats"])
def test_packages_are_typed(package: str) -> None:
    """Each import package ships py.typed."""
    assert importlib.resources.files(package).joinpath("py.typed").is_file()


def test_public_callables_have_docstrings_and_hints() -> None:
    """Every public function and class in __all__ says why it exists; functions are typed."""
    for name in mdc_core.__all__:
        obj = getattr(mdc_core, name)
        if inspect.isclass(obj) or inspect.isfunction(obj):
            assert obj.__doc__, f"{name} has no docstring"
        if inspect.isfunction(obj):
            assert "return" in obj.__annotations__, f"{name} lacks a return annotation"


def test_importing_mdc_starts_nothing() -> None:
    """Import builds no plug-in registry and starts no thread (both happen on first use)."""
    import subprocess
    import sys

    code = (
        "import threading, mdc_core, mdc_core.plugins as p, mdc_core.pipeline as q;"
        "assert p._registry is None and q._pipeline is None;"
        "assert threading.active_count() == 1"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
