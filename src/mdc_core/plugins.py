"""The plug-in registry: built on first use from the ``mdc`` entry points, cached per process.

Built-in backends and formats are entry points of this distribution, found exactly as a third
party's are. A plug-in that fails to import is logged and skipped; ``MDC_BLOCKED_PLUGINS``
(comma-separated entry-point names) switches plug-ins off; two plug-ins that claim one name or
URL scheme are refused loudly, naming both.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from importlib.metadata import entry_points
from types import MappingProxyType
from typing import Any

import pluggy

from mdc_core import hookspecs
from mdc_core.errors import PluginConflictError, UnknownPluginError
from mdc_core.records import BackendPlugin, FormatPlugin

ENTRY_POINT_GROUP = "mdc"
BLOCK_ENV = "MDC_BLOCKED_PLUGINS"

logger = logging.getLogger("mdc.plugins")


@dataclass(frozen=True)
class _Registered:
    record: Any
    plugin: str


class PluginRegistry:
    """Backends by name and URL scheme, formats by name, gathered from one plug-in manager."""

    def __init__(self, manager: pluggy.PluginManager, failed: Mapping[str, str] | None = None):
        self.manager = manager
        self.failed: Mapping[str, str] = MappingProxyType(dict(failed or {}))
        """Entry points that could not be loaded, with the reason."""
        self._backends = _index(manager.hook.mdc_backends, "backend")
        self._formats = _index(manager.hook.mdc_formats, "format")
        self._schemes: dict[str, _Registered] = {}
        for entry in self._backends.values():
            for scheme in entry.record.schemes:
                scheme = scheme.lower()
                other = self._schemes.get(scheme)
                if other is not None:
                    raise PluginConflictError(
                        f"URL scheme {scheme!r} is claimed by backend {other.record.name!r} "
                        f"(plug-in {other.plugin!r}) and by backend {entry.record.name!r} "
                        f"(plug-in {entry.plugin!r}); block one with {BLOCK_ENV}"
                    )
                self._schemes[scheme] = entry

    @property
    def backends(self) -> Mapping[str, BackendPlugin]:
        """A read-only view of the backends by name."""
        return MappingProxyType({name: e.record for name, e in self._backends.items()})

    @property
    def formats(self) -> Mapping[str, FormatPlugin]:
        """A read-only view of the formats by name."""
        return MappingProxyType({name: e.record for name, e in self._formats.items()})

    def backend(self, name: str) -> BackendPlugin:
        """The backend registered as ``name``."""
        return _lookup(self._backends, name, "backend", self.failed)

    def format(self, name: str) -> FormatPlugin:
        """The format registered as ``name``."""
        return _lookup(self._formats, name.lower(), "format", self.failed)

    def backend_for_url(self, url: str) -> BackendPlugin:
        """The backend that serves ``url``'s scheme (plain paths have the scheme ``""``)."""
        scheme = url_scheme(url)
        entry = self._schemes.get(scheme)
        if entry is None:
            known = ", ".join(f"{s}:// ({e.record.name})" for s, e in sorted(self._schemes.items()) if s)
            raise UnknownPluginError(
                f"no storage backend serves {scheme}:// URLs; known: {known or 'none'}"
                + _failed_hint(self.failed)
            )
        return entry.record


def url_scheme(url: str) -> str:
    """``"s3"`` for ``s3://bucket``, ``""`` for a plain path (Windows drive letters are not URLs)."""
    head, sep, _ = url.partition("://")
    return head.lower() if sep and "/" not in head else ""


def build_registry(
    modules: Iterable[object] = (),
    *,
    group: str = ENTRY_POINT_GROUP,
    blocked: Iterable[str] | None = None,
) -> PluginRegistry:
    """A fresh registry from the entry points of ``group`` plus ``modules`` (for tests)."""
    manager = pluggy.PluginManager(hookspecs.PROJECT)
    manager.add_hookspecs(hookspecs)
    blocked = set(blocked if blocked is not None else _blocked_from_env())
    for name in blocked:
        manager.set_blocked(name)
    failed: dict[str, str] = {}
    for ep in entry_points(group=group):
        if ep.name in blocked or manager.get_plugin(ep.name) is not None:
            continue
        try:
            plugin = ep.load()
        except Exception as exc:  # a broken third-party package must not stop collection
            failed[ep.name] = f"{type(exc).__name__}: {exc}"
            logger.warning("mdc plug-in %r (%s) failed to load and is skipped: %s",
                           ep.name, ep.value, failed[ep.name])
            continue
        manager.register(plugin, name=ep.name)
    for module in modules:
        manager.register(module)
    manager.check_pending()
    return PluginRegistry(manager, failed)


_registry: PluginRegistry | None = None
_registry_lock = threading.Lock()


def get_registry() -> PluginRegistry:
    """The process's registry, built on first use."""
    global _registry
    if _registry is None:
        with _registry_lock:
            if _registry is None:
                _registry = build_registry()
    return _registry


def reset_registry() -> None:
    """Forget the cached registry, so the next use rescans entry points and the environment."""
    global _registry
    with _registry_lock:
        _registry = None


def _blocked_from_env() -> list[str]:
    return [n.strip() for n in os.environ.get(BLOCK_ENV, "").split(",") if n.strip()]


def _index(hook: pluggy.HookCaller, kind: str) -> dict[str, _Registered]:
    # Each implementation is called on its own so every record is attributed to its plug-in.
    index: dict[str, _Registered] = {}
    for impl in hook.get_hookimpls():  # registration order
        for record in impl.function() or ():
            name = record.name.lower()
            other = index.get(name)
            if other is not None:
                raise PluginConflictError(
                    f"{kind} name {name!r} is registered by plug-in {other.plugin!r} and by "
                    f"plug-in {impl.plugin_name!r}; block one with {BLOCK_ENV}"
                )
            index[name] = _Registered(record, impl.plugin_name)
    return index


def _lookup(index: Mapping[str, _Registered], name: str, kind: str, failed: Mapping[str, str]) -> Any:
    try:
        return index[name].record
    except KeyError:
        known = ", ".join(sorted(index)) or "none"
        raise UnknownPluginError(
            f"unknown {kind} {name!r}; known {kind}s: {known}" + _failed_hint(failed)
        ) from None


def _failed_hint(failed: Mapping[str, str]) -> str:
    if not failed:
        return ""
    return " (plug-ins that failed to load: " + ", ".join(f"{n}: {r}" for n, r in sorted(failed.items())) + ")"
