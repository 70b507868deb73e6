"""Runtime control: switch collection on and off, and sample it, for a deployed service without
touching its scoring script or restarting it.

A control document per service lives beside the data, at
``<root>/_control/<subscription>/<resource_group>/<workspace>/<service>.json`` (names starting
with ``_`` cannot be workspaces, and readers skip them)::

    {"enabled": true, "sample_rate": 0.25,
     "always_keep": [{"column": "status", "in": ["error"]}],
     "overrides": {"predictions": {"sample_rate": 1.0},
                   "best_model/inputs": {"enabled": false},
                   "best_model/3/inputs": {"enabled": true}}}

Every key is optional. An override applies to a designation, a ``model/designation`` or a
``model/version/designation`` (for ``signals``/``general``: ``designation:collection_name`` in
place of the designation); the most specific wins, key by key. Every collector reads the document
at start (waiting at most ``MDC_CONTROL_START_TIMEOUT`` seconds, default 2) and the flusher
re-reads it every ``MDC_CONTROL_INTERVAL`` seconds (default 30), one read per service and process.
Precedence (SPEC.md): a value set in code (``collector.enabled = ...``) > this document > the
start-up value. A missing document means "no say"; an unreadable or invalid one is logged
(rate-limited) and the last good one stays in force.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from mdc_core.errors import ConfigurationError
from mdc_core.ratelimit import RateLimitedLog
from mdc_core.sampling import KeepRule, check_rate, keep_rules

logger = logging.getLogger("mdc.control")
_log = RateLimitedLog(logger)

PREFIX = "_control"
DEFAULT_INTERVAL = 30.0
START_TIMEOUT = 2.0
_KEYS = ("enabled", "sample_rate", "always_keep")
_UNREAD = object()


def control_key(workspace: str, service: str) -> str:
    """Where a service's control document lives, relative to the storage root."""
    return f"{PREFIX}/{workspace}/{service}.json"


@dataclass(frozen=True)
class Setting:
    """What the document says for one collector; None: no say."""

    enabled: bool | None = None
    sample_rate: float | None = None
    always_keep: tuple[KeepRule, ...] | None = None

    def over(self, base: Setting) -> Setting:
        """This setting's values where it has them, ``base``'s elsewhere."""
        return Setting(*(getattr(self, k) if getattr(self, k) is not None else getattr(base, k) for k in _KEYS))


@dataclass(frozen=True)
class ControlDocument:
    service: Setting = field(default_factory=Setting)
    overrides: Mapping[str, Setting] = field(default_factory=dict)

    @classmethod
    def parse(cls, data: bytes | str) -> ControlDocument:
        """Read a document, refusing anything it does not understand (with what to fix)."""
        try:
            raw = json.loads(data)
        except ValueError as exc:
            raise ConfigurationError(f"the control document is not JSON: {exc}") from None
        if not isinstance(raw, dict):
            raise ConfigurationError("the control document must be a JSON object")
        unknown = set(raw) - {*_KEYS, "overrides", "updated"}
        if unknown:
            raise ConfigurationError(f"unknown keys in the control document: {', '.join(sorted(unknown))}")
        overrides = raw.get("overrides") or {}
        if not isinstance(overrides, dict):
            raise ConfigurationError("the control document's overrides must be an object")
        service = {k: v for k, v in raw.items() if k != "overrides"}
        return cls(_setting(service, "the control document"),
                   {str(k): _setting(v, f"override {k!r}") for k, v in overrides.items()})

    def for_collector(self, model: str, version: str, designation: str, collection: str) -> Setting:
        """The setting for one collector: the most specific override first, key by key."""
        name = f"{designation}:{collection}" if collection != "default" else designation
        setting = self.service
        for key in (name, f"{model}/{name}", f"{model}/{version}/{name}"):  # least to most specific
            found = self.overrides.get(key)
            if found is not None:
                setting = found.over(setting)
        return setting

    def to_json(self) -> str:
        def plain(s: Setting) -> dict[str, Any]:
            out: dict[str, Any] = {k: getattr(s, k) for k in ("enabled", "sample_rate") if getattr(s, k) is not None}
            if s.always_keep is not None:
                out["always_keep"] = [r.to_json() for r in s.always_keep]
            return out

        doc = plain(self.service)
        if self.overrides:
            doc["overrides"] = {k: plain(v) for k, v in sorted(self.overrides.items())}
        doc["updated"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        return json.dumps(doc, indent=2, sort_keys=True) + "\n"


def _setting(raw: Any, where: str) -> Setting:
    if not isinstance(raw, dict) or set(raw) - {*_KEYS, "updated"}:
        raise ConfigurationError(f"{where}: expected an object with enabled, sample_rate, always_keep")
    enabled = raw.get("enabled")
    if enabled is not None and not isinstance(enabled, bool):
        raise ConfigurationError(f"{where}: enabled must be true or false")
    rate = raw.get("sample_rate")
    return Setting(
        enabled,
        None if rate is None else check_rate(rate, f"{where}: sample_rate"),
        None if raw.get("always_keep") is None else keep_rules(raw["always_keep"], f"{where}: always_keep"),
    )


class ControlWatcher:
    """One service's document for a process: read on demand and when due, shared by its
    collectors, who are told (weakly: a watcher keeps no collector alive) when it changes."""

    def __init__(self, backend: Any, key: str, interval: float = DEFAULT_INTERVAL,
                 clock: Callable[[], float] = time.monotonic):
        self.backend = backend
        self.key = key
        self.interval = interval
        self.clock = clock
        self.document: ControlDocument | None = None
        self.reads = 0
        self._raw: object = _UNREAD  # the bytes last read (None: no document)
        self._read_at: float | None = None
        self._lock = threading.Lock()
        self._subscribers: list[weakref.WeakMethod[Any]] = []

    def subscribe(self, callback: Callable[[ControlDocument | None], None]) -> None:
        with self._lock:
            self._subscribers.append(weakref.WeakMethod(callback))  # type: ignore[arg-type]

    def due(self) -> bool:
        return self._read_at is None or self.clock() - self._read_at >= self.interval

    def refresh(self) -> ControlDocument | None:
        """Read the document now; tell the collectors if it changed. Never raises for storage
        trouble or a bad document: the last good document stays in force."""
        self._read_at = self.clock()
        try:
            raw = self.backend.read(self.key)
            self.reads += 1
            document = None if raw is None else ControlDocument.parse(raw)
        except Exception as exc:  # storage down, or a document someone broke by hand
            _log.log(logging.WARNING, f"control:{self.key}", "mdc could not read the control document %s "
                     "(%s: %s); keeping the last one", self.key, type(exc).__name__, exc)
            return self.document
        if raw == self._raw:
            return self.document
        self._raw, self.document = raw, document
        with self._lock:
            self._subscribers = [ref for ref in self._subscribers if ref() is not None]
            callbacks = [ref() for ref in self._subscribers]
        for callback in callbacks:
            if callback is not None:
                callback(document)
        if raw is not None:
            logger.info("mdc control document %s read: %s", self.key, document)
        return document

    def refresh_if_due(self) -> None:
        if self.due():
            self.refresh()

    def first_read(self, timeout: float) -> None:
        """The read at start, bounded: if storage is slow, collectors start with their start-up
        values and the flusher applies the document when it arrives."""
        if self._read_at is not None:
            return
        done = threading.Event()
        thread = threading.Thread(target=lambda: (self.refresh(), done.set()), name="mdc-control", daemon=True)
        thread.start()
        if not done.wait(timeout):
            logger.warning("mdc: the control document %s took over %.1f s to read; starting with the "
                           "start-up values", self.key, timeout)
