"""Settings from arguments and the environment, resolved once when a collector is built.

Who wins (SPEC.md): an argument, then mdc's variable, then Azure ML's, then the default.
Bad values are refused with a ``ConfigurationError`` naming the argument or variable.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from mdc_core.errors import ConfigurationError
from mdc_core.paths import BOUNDARY_MINUTES, DAY

DEFAULT = "default"
DEFAULT_WORKSPACE = "default/default/default"
DEFAULT_STORAGE = "./modeldata"
AZURE_CONTAINER = "modeldata"

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off", ""})


@dataclass(frozen=True)
class Identity:
    """The deployment a collector belongs to."""

    workspace: str
    service: str
    model: str
    version: str


@dataclass(frozen=True)
class Storage:
    """The storage root URL and the options handed to its backend (may hold secrets: no repr)."""

    url: str
    options: Mapping[str, Any] = field(default_factory=dict, repr=False)


def env_flag(name: str, environ: Mapping[str, str] | None = None) -> bool | None:
    """A boolean environment variable, ``None`` when unset; nonsense is refused."""
    env = os.environ if environ is None else environ
    raw = env.get(name)
    if raw is None:
        return None
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ConfigurationError(f"{name}={raw!r} is not a boolean: use true/false, 1/0, yes/no or on/off")


def first_flag(argument: bool | None, *names: str, default: bool) -> bool:
    """The argument if given, else the first of ``names`` that is set, else ``default``."""
    if argument is not None:
        if not isinstance(argument, bool):
            raise ConfigurationError(f"expected True, False or None, got {argument!r}")
        return argument
    for name in names:
        value = env_flag(name)
        if value is not None:
            return value
    return default


def resolve_identity(workspace: str, service: str, model: str, version: str) -> Identity:
    """Arguments left at their defaults are taken from ``MDC_*`` (or Azure ML's) variables."""
    env = os.environ
    if workspace == DEFAULT_WORKSPACE:
        workspace = env.get("MDC_WORKSPACE") or workspace
    if service == DEFAULT:
        service = env.get("MDC_SERVICE_NAME") or env.get("SERVICE_NAME") or service
    if version == DEFAULT:
        version = env.get("MDC_MODEL_VERSION") or version
    return Identity(workspace=workspace, service=service, model=model, version=str(version))


def resolve_boundary(boundary: str | None) -> str:
    """``day`` or ``hour``, from the argument, ``MDC_BOUNDARY`` or ``AML_MODEL_DC_BOUNDARY``."""
    source = "boundary"
    if boundary is None:
        for name in ("MDC_BOUNDARY", "AML_MODEL_DC_BOUNDARY"):
            if os.environ.get(name):
                boundary, source = os.environ[name], name
                break
        else:
            return DAY
    value = str(boundary).strip().lower()
    aliases = {"daily": "day", "1440": "day", "hourly": "hour", "60": "hour"}
    value = aliases.get(value, value)
    if value not in BOUNDARY_MINUTES:
        raise ConfigurationError(f"{source}={boundary!r}: use 'day' or 'hour'")
    return value


def resolve_storage(storage: str | os.PathLike[str] | None, options: Mapping[str, Any] | None) -> Storage:
    """The storage root: argument, ``MDC_STORAGE_URL``, ``AML_MODEL_DC_STORAGE``, ``./modeldata``."""
    opts = dict(options or {})
    if storage is not None:
        return Storage(os.fspath(storage), opts)
    if os.environ.get("MDC_STORAGE_URL"):
        return Storage(os.environ["MDC_STORAGE_URL"], opts)
    connection_string = os.environ.get("AML_MODEL_DC_STORAGE")
    if connection_string:
        # Azure ML's variable is a connection string; its data went to the container 'modeldata'.
        opts.setdefault("connection_string", connection_string)
        return Storage(f"abfs://{AZURE_CONTAINER}", opts)
    return Storage(DEFAULT_STORAGE, opts)


def positive_number(value: Any, what: str) -> float:
    """Refuse zero, negatives and non-numbers for intervals and sizes."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ConfigurationError(f"{what} must be a positive number, got {value!r}")
    return value


def env_seconds(name: str, default: float) -> float:
    """A positive number from the environment variable ``name`` (seconds, bytes), else ``default``."""
    raw = os.environ.get(name)
    if not raw:
        return default
    try:
        return positive_number(float(raw), name)
    except ValueError:
        raise ConfigurationError(f"{name}={raw!r} must be a positive number") from None
