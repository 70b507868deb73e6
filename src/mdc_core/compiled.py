"""The optional compiled fast paths, or None: pure Python is the fallback, with the same results.

``setup.py`` builds them when a C compiler is present (``optional=True``: without one, mdc
installs and runs as pure Python). ``MDC_PURE_PYTHON=1`` ignores them, to compare the two or to
rule them out when diagnosing.
"""

from __future__ import annotations

import importlib
import os
from types import ModuleType


def load(name: str) -> ModuleType | None:
    """``mdc_core.<name>`` if it was built and not switched off by ``MDC_PURE_PYTHON``."""
    if os.environ.get("MDC_PURE_PYTHON", "").strip().lower() in ("1", "true", "yes", "on"):
        return None
    try:
        return importlib.import_module(f"mdc_core.{name}")
    except ImportError:
        return None
