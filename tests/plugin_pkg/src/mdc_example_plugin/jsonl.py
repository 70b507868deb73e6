"""``jsonl``: JSON Lines, one JSON object per row, keys in column order.

Timestamps become ISO-8601 text in UTC without a zone (``2026-11-25T01:02:03.123456``, as the
CSV format writes them); NaN and infinities become ``null`` (JSON has no such numbers). The
format is not appendable: every batch becomes a file of its own, so it has no header.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import math
from collections.abc import Mapping
from typing import Any

import pyarrow as pa

from mdc_core import Encoded, FormatPlugin, hookimpl


class JsonLinesFormat:
    """Encodes a batch as UTF-8 JSON Lines."""

    def __init__(self, options: Mapping[str, Any]) -> None:
        if options:
            raise ValueError(f"the jsonl format takes no options, got {sorted(options)}")

    def encode(self, table: pa.Table) -> Encoded:
        lines = [
            json.dumps({name: _jsonable(value) for name, value in row.items()},
                       ensure_ascii=False, allow_nan=False, default=str)
            for row in table.to_pylist()
        ]
        return Encoded(header=b"", body="".join(line + "\n" for line in lines).encode("utf-8"))


def _jsonable(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dt.datetime):
        if value.tzinfo is not None:
            value = value.astimezone(dt.timezone.utc).replace(tzinfo=None)
        return value.isoformat(timespec="microseconds")
    if isinstance(value, (dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    return value


@hookimpl
def mdc_formats() -> list[FormatPlugin]:
    return [FormatPlugin(name="jsonl", extension="jsonl", factory=JsonLinesFormat, appendable=False,
                         description="JSON Lines, one object per row (example plug-in)")]
