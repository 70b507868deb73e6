"""The plug-in registry: built on first use from the ``mdc`` entry points, cached per process.

Built-in backends and formats are entry points of this distribution, found exactly as a third
party's are. A plug-in that fails to import, or whose registration hook raises, is logged,
listed in ``registry.failed`` and skipped; ``MDC_BLOCKED_PLUGINS`` (comma-separated entry-point
names) switches plug-ins off; two plug-ins that claim one entry-point name, backend or format
name, or URL scheme are refused loudly, naming both. Mistakes in a plug-in's code (a misspelt
hook, a hook returning something other than records) raise ``pluggy.PluginValidationError``.
"""

from __future__ import annotations

import difflib
import logging
import os
import re
import threading
from collections.abc import Callable, Iterable, Mapping
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

    def __init__(
        self, manager: pluggy.PluginManager, failed: Mapping[str, str] | None = None, blocked: Iterable[str] = ()
    ):
        self.manager = manager
        failures = dict(failed or {})
        self._backends = _index(manager.hook.mdc_backends, "backend", BackendPlugin, failures)
        self._formats = _index(manager.hook.mdc_formats, "format", FormatPlugin, failures)
        self.transforms: tuple[Callable[..., Any], ...] = tuple(
            impl.function for impl in manager.hook.mdc_transform_batch.get_hookimpls())
        """The ``mdc_transform_batch`` implementations, in registration order."""
        self.failed: Mapping[str, str] = MappingProxyType(failures)
        """Plug-ins that could not be loaded or whose hook raised, with the reason."""
        self.blocked: frozenset[str] = frozenset(blocked)
        """Plug-in names switched off (``MDC_BLOCKED_PLUGINS`` or ``build_registry(blocked=)``)."""
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
        """The backend registered as ``name`` (case-insensitive, like registration)."""
        return _lookup(self._backends, name.lower(), "backend", self._hints())

    def format(self, name: str) -> FormatPlugin:
        """The format registered as ``name`` (case-insensitive, like registration)."""
        return _lookup(self._formats, name.lower(), "format", self._hints())

    def backend_for_url(self, url: str) -> BackendPlugin:
        """The backend that serves ``url``'s scheme (plain paths have the scheme ``""``)."""
        scheme = url_scheme(url)
        entry = self._schemes.get(scheme)
        if entry is None:
            known = [f"{s}:// ({e.record.name})" for s, e in sorted(self._schemes.items()) if s]
            if "" in self._schemes:
                known.append(f"plain paths ({self._schemes[''].record.name})")
            what = f"{scheme}:// URLs" if scheme else "plain paths"
            raise UnknownPluginError(
                f"no storage backend serves {what}; known: {', '.join(known) or 'none'}" + self._hints()
            )
        return entry.record

    def _hints(self) -> str:
        hint = ""
        if self.blocked:
            hint += f" (blocked by {BLOCK_ENV}: {', '.join(sorted(self.blocked))})"
        if self.failed:
            hint += (
                " (plug-ins that failed to load: "
                + ", ".join(f"{n}: {r}" for n, r in sorted(self.failed.items()))
                + ")"
            )
        return hint


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
    seen: dict[str, Any] = {}
    for ep in entry_points(group=group):
        if ep.name in blocked:
            continue
        other = seen.setdefault(ep.name, ep)
        if other is not ep:  # importlib.metadata lists each distribution once: two packages
            raise PluginConflictError(
                f"mdc plug-in name {ep.name!r} is an entry point of {_dist(other)} ({other.value}) "
                f"and of {_dist(ep)} ({ep.value}); uninstall one, or block the name with {BLOCK_ENV}"
            )
        try:
            plugin = ep.load()
        except Exception as exc:  # a broken third-party package must not stop collection
            failed[ep.name] = f"{type(exc).__name__}: {exc}"
            logger.warning("mdc plug-in %r (%s) failed to load and is skipped: %s", ep.name, ep.value, failed[ep.name])
            continue
        if manager.is_registered(plugin):  # two entry points naming one module: its hooks run once
            logger.debug("mdc plug-in %r (%s) is already registered as %r", ep.name, ep.value, manager.get_name(plugin))
            continue
        manager.register(plugin, name=ep.name)
    for module in modules:
        if not manager.is_registered(module):  # a module that is also an entry point counts once
            manager.register(module)
    _check_pending(manager)
    return PluginRegistry(manager, failed, blocked)


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


def _dist(ep: Any) -> str:
    dist = getattr(ep, "dist", None)
    return f"distribution {dist.name!r}" if dist is not None else "an unknown distribution"


def _check_pending(manager: pluggy.PluginManager) -> None:
    """``check_pending()``, with the plug-in's name and the hook it probably meant."""
    try:
        manager.check_pending()
    except pluggy.PluginValidationError as exc:
        hooks = sorted(n for n in dir(hookspecs) if n.startswith(f"{hookspecs.PROJECT}_"))
        unknown = re.findall(r"unknown hook '([^']+)'", str(exc))
        close = difflib.get_close_matches(unknown[0], hooks, n=1) if unknown else []
        raise pluggy.PluginValidationError(
            exc.plugin,
            f"mdc plug-in {manager.get_name(exc.plugin)!r}: {exc}"
            + (f"; did you mean {close[0]!r}?" if close else "")
            + f" (mdc's hooks: {', '.join(hooks)})",
        ) from exc


_SCHEME = re.compile(r"[a-z][a-z0-9+.-]*\Z")


def _index(
    hook: pluggy.HookCaller, kind: str, record_type: type[Any], failed: dict[str, str]
) -> dict[str, _Registered]:
    # Each implementation is called on its own so every record is attributed to its plug-in,
    # and a plug-in whose hook raises is skipped without losing the others.
    index: dict[str, _Registered] = {}
    for impl in hook.get_hookimpls():  # registration order
        if impl.hookwrapper or impl.wrapper:
            raise pluggy.PluginValidationError(
                impl.plugin, f"mdc plug-in {impl.plugin_name!r}: {hook.name} cannot be a wrapper"
            )
        try:
            result = impl.function()
        except Exception as exc:  # like a failed import: log, skip, keep collecting
            failed[impl.plugin_name] = f"{hook.name}() raised {type(exc).__name__}: {exc}"
            logger.warning("mdc plug-in %r is skipped: %s", impl.plugin_name, failed[impl.plugin_name])
            continue
        for record in _records(impl, hook.name, record_type, result):
            name = record.name.lower()
            other = index.get(name)
            if other is not None:
                raise PluginConflictError(
                    f"{kind} name {name!r} is registered by plug-in {other.plugin!r} and by "
                    f"plug-in {impl.plugin_name!r}; block one with {BLOCK_ENV}"
                )
            index[name] = _Registered(record, impl.plugin_name)
    return index


def _records(impl: Any, hook_name: str, record_type: type[Any], result: object) -> list[Any]:
    """The records a hook returned, checked so a plug-in's mistake names the plug-in."""

    def invalid(problem: str) -> pluggy.PluginValidationError:
        return pluggy.PluginValidationError(impl.plugin, f"mdc plug-in {impl.plugin_name!r}: {hook_name}() {problem}")

    if result is None:
        return []
    if isinstance(result, (str, bytes, Mapping, record_type)) or not isinstance(result, Iterable):
        raise invalid(f"must return a list of {record_type.__name__}, got {type(result).__name__}")
    records: list[Any] = list(result)
    for record in records:
        if not isinstance(record, record_type):
            raise invalid(f"returned {type(record).__name__}, not {record_type.__name__}")
        if not isinstance(record.name, str) or not record.name.strip():
            raise invalid(f"returned a {record_type.__name__} without a name: {record!r}")
        if not callable(record.factory):
            raise invalid(f"{record.name!r}: factory {record.factory!r} is not callable")
        if isinstance(record, BackendPlugin):
            schemes = record.schemes
            if isinstance(schemes, str) or not isinstance(schemes, (tuple, list, frozenset, set)):
                raise invalid(f"{record.name!r}: schemes must be a tuple of URL schemes, got {schemes!r}")
            for scheme in schemes:
                if not isinstance(scheme, str) or (scheme and not _SCHEME.match(scheme.lower())):
                    raise invalid(
                        f"{record.name!r}: {scheme!r} is not a URL scheme "
                        f"(write 's3', not 's3://'; '' serves plain paths)"
                    )
        if isinstance(record, FormatPlugin):
            ext = record.extension
            if not isinstance(ext, str) or not ext or ext.startswith(".") or "/" in ext:
                raise invalid(f"{record.name!r}: extension must be like 'csv' (no dot), got {ext!r}")
    return records


def _lookup(index: Mapping[str, _Registered], name: str, kind: str, hints: str) -> Any:
    try:
        return index[name].record
    except KeyError:
        known = ", ".join(sorted(index)) or "none"
        raise UnknownPluginError(f"unknown {kind} {name!r}; known {kind}s: {known}{hints}") from None
