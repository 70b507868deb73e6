"""The kinds of data a collector stores, named as Azure ML names them."""

from __future__ import annotations

from mdc_core.errors import ConfigurationError

INPUTS = "inputs"
PREDICTIONS = "predictions"
LABELS = "labels"
SIGNALS = "signals"
GENERAL = "general"

DESIGNATIONS = (INPUTS, PREDICTIONS, LABELS, SIGNALS, GENERAL)
PAIRED = frozenset({PREDICTIONS, LABELS, SIGNALS})
"""Designations whose rows pair with the inputs collected earlier in the same request."""
NAMED_COLLECTIONS = frozenset({SIGNALS, GENERAL})
"""Designations whose ``collection_name`` names the file, so two collections never mix."""

_ALIASES = {"default": GENERAL}


def normalize_designation(designation: str) -> str:
    """``"default"`` becomes ``"general"``; anything outside Azure ML's list is refused."""
    if not isinstance(designation, str):
        raise ConfigurationError(f"designation must be a string, one of {', '.join(DESIGNATIONS)}; got {designation!r}")
    name = _ALIASES.get(designation.strip().lower(), designation.strip().lower())
    if name not in DESIGNATIONS:
        raise ConfigurationError(
            f"unsupported designation {designation!r}: use one of {', '.join(DESIGNATIONS)} "
            "(or 'default', which means 'general')"
        )
    return name
