"""``memdir://<directory>``: a create-only storage backend that keeps each key as a file.

``memdir:///srv/rows`` stores the key ``a/b/data-1f.jsonl`` as ``/srv/rows/a/b/data-1f.jsonl``.
It declares only ``Capability.CREATE_IF_ABSENT``, so mdc never calls ``append``: every batch,
in any format, becomes an object of its own.
"""

from __future__ import annotations

import errno
import os
import tempfile
from collections.abc import Mapping
from typing import Any

from mdc_core import BackendError, BackendPlugin, Capability, hookimpl

SCHEME = "memdir"


class MemdirBackend:
    """Files under the directory named after ``memdir://``."""

    def __init__(self, root: str, options: Mapping[str, Any]) -> None:
        if options:
            raise ValueError(f"the memdir backend takes no storage_options, got {sorted(options)}")
        scheme, sep, path = root.partition("://")
        if scheme.lower() != SCHEME or not sep or not path:
            raise ValueError(f"memdir URLs look like memdir:///absolute/folder, got {root!r}")
        self.root = os.path.abspath(path)

    def append(self, key: str, header: bytes, body: bytes) -> str:
        # Never called: the backend does not declare Capability.APPEND.
        raise BackendError(errno.ENOTSUP, "the memdir backend cannot append")

    def create(self, key: str, data: bytes) -> bool:
        parts = key.split("/")
        if any(part in ("", ".", "..") for part in parts):
            raise ValueError(f"invalid storage key {key!r}")
        path = os.path.join(self.root, *parts)
        try:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            # Write a hidden temporary file, then link it into place: readers never see half
            # an object, and os.link refuses to replace one that is already there.
            fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".", suffix=".tmp")
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(data)
                try:
                    os.link(tmp, path)
                except FileExistsError:
                    return False
            finally:
                os.unlink(tmp)
        except OSError as exc:  # mapped at the boundary, as mdc's error contract asks
            raise BackendError(exc.errno, f"cannot create {path}: {exc.strerror or exc}") from exc
        return True

    def close(self) -> None:
        pass  # nothing is held open between calls


@hookimpl
def mdc_backends() -> list[BackendPlugin]:
    return [BackendPlugin(
        name="memdir",
        schemes=(SCHEME,),
        factory=MemdirBackend,
        capabilities=frozenset({Capability.CREATE_IF_ABSENT}),
        description="files under a local folder, one object per batch (example plug-in)",
    )]
