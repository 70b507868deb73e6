"""The small frozen records that plug-ins register, and the interfaces their factories return.

A backend stores bytes under keys relative to a storage root and never knows the file format;
a format turns an Arrow table into a header and a body and never knows where they go.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import pyarrow as pa


class Capability(str, enum.Enum):
    """What a backend can do safely; the flusher picks its write strategy from these."""

    CREATE_IF_ABSENT = "create_if_absent"
    """``create(key, data)`` publishes a whole object only when none exists under ``key``."""

    APPEND = "append"
    """``append(key, header, body)`` adds to an object, writing ``header`` first when it is new,
    safely with other writers (processes, hosts) appending to the same key."""

    MAINTAIN = "maintain"
    """``list``, ``read``, ``size``, ``put`` and ``delete`` (see ``Maintainable``): what compaction,
    retention and the reader need besides writing batches."""


@runtime_checkable
class Backend(Protocol):
    """Where encoded batches go. Keys are ``/``-separated and relative to the storage root."""

    def append(self, key: str, header: bytes, body: bytes) -> str:
        """Append ``body`` to ``key`` (``header`` first if the object is new); return the key
        actually written, which differs from ``key`` when the existing object has another header."""
        ...

    def create(self, key: str, data: bytes) -> bool:
        """Publish ``data`` under ``key`` only if nothing is there; ``False`` if it already was."""
        ...

    def close(self) -> None:
        """Release connections and files; called once when the process stops collecting."""
        ...


@runtime_checkable
class Maintainable(Protocol):
    """The extra methods of a backend that declares ``Capability.MAINTAIN``.

    Keys are relative to the root; a missing object is not an error for ``read``, ``size``
    and ``delete``. Failures raise ``BackendError`` (an ``OSError``), never with a secret.
    """

    def list(self, prefix: str) -> list[tuple[str, int]]:
        """``(key, size)`` of every object under the folder ``prefix`` (``""`` for the root,
        else ending in ``/``), recursively, sorted by key."""
        ...

    def read(self, key: str) -> bytes | None:
        """The object's bytes, or ``None`` if there is none."""
        ...

    def size(self, key: str) -> int | None:
        """The object's size in bytes, or ``None`` if there is none."""
        ...

    def put(self, key: str, data: bytes) -> None:
        """Replace (or create) the object whole: readers see the old bytes or the new, never a mix."""
        ...

    def delete(self, key: str) -> None:
        """Remove the object if it exists."""
        ...


@dataclass(frozen=True)
class Encoded:
    """A batch serialised by a format: ``header`` starts a new file, ``body`` holds the rows."""

    header: bytes
    body: bytes


@runtime_checkable
class Format(Protocol):
    """Turns a batch (an Arrow table) into bytes.

    Optional extras, found with ``getattr`` (see ``docs/formats.md``): ``seal_rows`` and
    ``seal_seconds`` ask the flusher for larger, longer batches; ``use_schema(schema)`` receives
    the collector's ``schema=``; ``compact(parts)`` or ``merge(parts, outputs)`` lets compaction
    merge a closed partition's files; ``binary = True`` makes debug mode print rows as CSV.
    """

    def encode(self, table: pa.Table) -> Encoded:
        """Serialise ``table``; the header depends only on the column names and types."""
        ...


@dataclass(frozen=True)
class BackendPlugin:
    """A storage backend as registered by ``mdc_backends()``.

    ``factory(root, options)`` builds a backend for the storage root URL ``root`` with the
    user's ``storage_options``; ``schemes`` are the URL schemes it serves (``""`` for plain paths).
    """

    name: str
    schemes: tuple[str, ...]
    factory: Callable[[str, Mapping[str, Any]], Backend]
    capabilities: frozenset[Capability] = field(default_factory=frozenset)
    description: str = ""


@dataclass(frozen=True)
class FormatPlugin:
    """A file format as registered by ``mdc_formats()``.

    ``appendable`` says that bodies of the same header may be concatenated into one file (CSV);
    otherwise every batch becomes an object of its own.
    """

    name: str
    extension: str
    factory: Callable[[Mapping[str, Any]], Format]
    appendable: bool = False
    description: str = ""


@dataclass(frozen=True)
class BatchContext:
    """What an ``mdc_transform_batch`` implementation knows about the batch it is given: whose
    rows they are, and the collector's ``transform_options`` (which may hold keys: never shown)."""

    workspace: str
    service: str
    model: str
    version: str
    designation: str
    collection: str
    options: Mapping[str, Any] = field(default_factory=dict, repr=False)
