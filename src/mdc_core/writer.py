"""Write one collector's batch: split it by date partition, encode it, hand it to the backend.

Appendable formats go to ``append`` on backends that can append (one file per partition);
anything else becomes one create-only object per batch, named so ``*.<ext>`` globs find it.
Debug mode prints the encoded rows to standard output instead.
"""

from __future__ import annotations

import logging
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
import pyarrow as pa
import pyarrow.compute as pc

from mdc_core.batches import AML_TIMESTAMP
from mdc_core.paths import HOUR, Layout, partition_path
from mdc_core.records import Backend, Capability, Format, FormatPlugin

logger = logging.getLogger("mdc.writer")

_PERIOD_US = {"day": 86_400_000_000, HOUR: 3_600_000_000}


@dataclass
class Sink:
    """Where a collector's batches go and how they are encoded."""

    layout: Layout
    format_plugin: FormatPlugin
    format: Format
    backend: Backend | None
    capabilities: frozenset[Capability] = field(default_factory=frozenset)
    debug: bool = False
    retries: int = 3
    backoff: float = 0.2

    @property
    def appends(self) -> bool:
        return self.format_plugin.appendable and Capability.APPEND in self.capabilities


def partitions(table: pa.Table, boundary: str) -> Iterator[tuple[int, pa.Table]]:
    """``(start of partition in seconds, rows of that partition)``, by each row's scoring time."""
    if table.num_rows == 0:
        return
    period = _PERIOD_US[boundary]
    micros = pc.cast(table.column(AML_TIMESTAMP), pa.int64())
    if pc.min(micros).as_py() < 0:
        micros = pc.max_element_wise(micros, 0)  # before 1970: filed under 1970-01-01
    keys = pc.divide(micros, period)  # integer division: whole periods since the epoch
    unique = pc.unique(keys).to_pylist()
    if len(unique) == 1:
        yield unique[0] * period // 1_000_000, table
        return
    for key in sorted(unique):
        yield key * period // 1_000_000, table.filter(pc.equal(keys, key))


def write(sink: Sink, table: pa.Table) -> Iterator[tuple[int, str, BaseException | None]]:
    """Write ``table``; yield ``(rows, key, error)`` per partition (``error`` None on success)."""
    extension = sink.format_plugin.extension
    for seconds, part in partitions(table, sink.layout.boundary):
        key = partition_path(sink.layout, seconds, extension)
        try:
            encoded = sink.format.encode(part)
        except Exception as exc:  # a format bug or unencodable value: count it, keep going
            yield part.num_rows, key, exc
            continue
        if sink.debug:
            _print_debug(key, encoded.header + encoded.body)
            yield part.num_rows, key, None
            continue
        error: BaseException | None = None
        for attempt in range(sink.retries):
            try:
                if sink.appends:
                    key = sink.backend.append(key, encoded.header, encoded.body)  # type: ignore[union-attr]
                else:
                    key = _unique_key(key)
                    sink.backend.create(key, encoded.header + encoded.body)  # type: ignore[union-attr]
                error = None
                break
            except Exception as exc:  # every backend error is retried, then counted by the caller
                error = exc
                if attempt + 1 < sink.retries:
                    time.sleep(sink.backoff * (2**attempt))
        yield part.num_rows, key, error


def _unique_key(key: str) -> str:
    """``.../data.parquet`` -> ``.../data-<uuid>.parquet``: one object per batch, never overwritten."""
    stem, dot, ext = key.rpartition(".")
    return f"{stem}-{uuid.uuid4().hex}{dot}{ext}"


def _print_debug(key: str, data: bytes) -> None:
    out = sys.stdout
    out.write(f"mdc debug (not stored): {key}\n")
    out.write(data.decode("utf-8", errors="replace"))
    out.flush()
