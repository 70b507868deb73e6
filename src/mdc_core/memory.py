"""An in-memory backend for ``memory://<name>`` URLs: unit tests of scoring code collect and read
back without touching disk (``memory_objects("name")``). Registered through the ``mdc`` entry
point like any plug-in; it behaves like a real backend (append, create-only, maintenance), but is
evidence for the core only, never for a real storage backend.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Mapping
from typing import Any

from mdc_core.hookspecs import hookimpl
from mdc_core.records import BackendPlugin, Capability

_stores: dict[str, dict[str, bytes]] = {}
_stores_lock = threading.Lock()


def memory_objects(name: str) -> dict[str, bytes]:
    """A copy of what ``memory://<name>`` holds, by key."""
    with _stores_lock:
        return dict(_stores.get(name, {}))


def clear_memory(name: str | None = None) -> None:
    """Forget one in-memory store, or all of them."""
    with _stores_lock:
        if name is None:
            _stores.clear()
        else:
            _stores.pop(name, None)


class MemoryBackend:
    """Objects in a process-wide dict, with the same append and create rules as real backends."""

    capabilities = frozenset({Capability.APPEND, Capability.CREATE_IF_ABSENT, Capability.MAINTAIN})

    def __init__(self, root: str, options: Mapping[str, Any] | None = None):
        self.name = root.split("://", 1)[-1].strip("/")
        self._lock = threading.Lock()

    @property
    def _objects(self) -> dict[str, bytes]:
        # Looked up on every use, so clear_memory() also empties backends already built.
        with _stores_lock:
            return _stores.setdefault(self.name, {})

    def __repr__(self) -> str:
        return f"MemoryBackend({self.name!r})"

    def append(self, key: str, header: bytes, body: bytes) -> str:
        with self._lock:
            current = self._objects.get(key)
            if current is None:
                self._objects[key] = header + body
                return key
            if header and not current.startswith(header):
                stem, dot, ext = key.rpartition(".")
                other = f"{stem}-{hashlib.sha256(header).hexdigest()[:8]}{dot}{ext}"
                self._objects[other] = self._objects.get(other, header) + body
                return other
            self._objects[key] = current + body
            return key

    def create(self, key: str, data: bytes) -> bool:
        with self._lock:
            if key in self._objects:
                return False
            self._objects[key] = data
            return True

    def close(self) -> None:
        pass

    def list(self, prefix: str) -> list[tuple[str, int]]:
        with self._lock:
            return sorted((k, len(v)) for k, v in self._objects.items() if k.startswith(prefix))

    def read(self, key: str) -> bytes | None:
        with self._lock:
            return self._objects.get(key)

    def size(self, key: str) -> int | None:
        data = self.read(key)
        return None if data is None else len(data)

    def put(self, key: str, data: bytes) -> None:
        with self._lock:
            self._objects[key] = data

    def delete(self, key: str) -> None:
        with self._lock:
            self._objects.pop(key, None)


@hookimpl
def mdc_backends() -> list[BackendPlugin]:
    return [
        BackendPlugin(
            name="memory",
            schemes=("memory",),
            factory=MemoryBackend,
            capabilities=MemoryBackend.capabilities,
            description="in-process dict, for unit tests of scoring code",
        )
    ]
