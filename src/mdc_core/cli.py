"""The ``mdc`` command line. ``mdc compact URL`` merges closed partitions' batch objects into
the spec's one file per partition (what automatic compaction does, on demand).

Exit codes: 0 success, 1 some partition could not be compacted, 2 wrong usage.
"""

from __future__ import annotations

import argparse
import calendar
import json
import re
import sys
import time
from collections.abc import Sequence
from typing import Any

from mdc_core.compaction import MANIFEST, compact_partition
from mdc_core.errors import MdcError
from mdc_core.plugins import get_registry
from mdc_core.records import Capability
from mdc_core.redact import redact_url

_BATCH = re.compile(r"^(?P<stem>.+)-[0-9a-f]{16}-[0-9]{10}\.(?P<ext>[A-Za-z0-9]+)$")
_DATE_TAIL = re.compile(r"(?:^|/)(?P<y>\d{4})/(?P<m>\d{1,2})/(?P<d>\d{1,2})(?:/(?P<h>\d{1,2}))?/?$")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="mdc", description="Model data collector tools.")
    commands = parser.add_subparsers(dest="command", required=True)
    compact = commands.add_parser(
        "compact",
        help="merge closed partitions' batch objects into data.csv",
        description="Merge the batch objects of closed partitions (days, or hours) into one file each, "
        "as automatic compaction does. Safe to re-run and to interrupt.",
    )
    compact.add_argument("url", help="storage root, e.g. abfs://modeldata, s3://bucket/prefix or a path")
    compact.add_argument(
        "--prefix",
        default="",
        help="only partitions under this folder of the root (e.g. sub/rg/ws/svc/model/1/inputs/2026)",
    )
    compact.add_argument(
        "--include-open", action="store_true", help="also compact partitions whose day (or hour) has not ended yet"
    )
    compact.add_argument(
        "-o",
        "--option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a storage option for the backend (repeatable); credentials also come "
        "from the usual environment variables",
    )
    compact.add_argument("--json", action="store_true", help="print one JSON document for scripts")
    args = parser.parse_args(argv)
    try:
        options = dict(_option(o) for o in args.option)
    except ValueError as exc:
        parser.error(str(exc))
    try:
        return _compact(args.url, args.prefix, args.include_open, options, args.json)
    except MdcError as exc:
        print(f"mdc: {exc}", file=sys.stderr)
        return 2


def _option(text: str) -> tuple[str, Any]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise ValueError("--option needs KEY=VALUE (the value is not shown: it may be a secret)")
    return key, json.loads(value) if value[:1] in "[{" or value in ("true", "false") else value


def _compact(url: str, prefix: str, include_open: bool, options: dict[str, Any], as_json: bool) -> int:
    registry = get_registry()
    plugin = registry.backend_for_url(url)
    if Capability.MAINTAIN not in plugin.capabilities:
        print(f"mdc: backend {plugin.name!r} cannot list and replace objects, so it cannot compact", file=sys.stderr)
        return 2
    backend: Any = plugin.factory(url, options)
    formats = {f.extension: f for f in registry.formats.values()}
    prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
    now = time.time()
    results, failures = [], 0
    try:
        for folder, stem, ext in _partitions(backend.list(prefix)):
            end = _period_end(folder)
            if end is None or (end > now and not include_open):
                continue
            fmt_plugin = formats.get(ext)
            fmt = fmt_plugin.factory({}) if fmt_plugin else None
            if fmt is None or not hasattr(fmt, "compact"):
                results.append({"folder": folder, "skipped": f"no format that can compact .{ext} files"})
                continue
            try:
                results.append(compact_partition(backend, fmt, folder, stem, ext).as_dict())
            except Exception as exc:  # report and go on with the other partitions
                failures += 1
                results.append({"folder": folder, "error": f"{type(exc).__name__}: {exc}"})
    finally:
        backend.close()
    _report(redact_url(url), results, failures, as_json)
    return 1 if failures else 0


def _partitions(listing: list[tuple[str, int]]) -> list[tuple[str, str, str]]:
    """``(folder, stem, extension)`` of every folder holding batch objects or a manifest."""
    found: set[tuple[str, str, str]] = set()
    manifests: set[str] = set()
    for key, _ in listing:
        folder, _, name = key.rpartition("/")
        match = _BATCH.match(name)
        if match:
            found.add((folder, match["stem"], match["ext"]))
        elif name == MANIFEST:
            manifests.add(folder)
    for folder in manifests - {f for f, _, _ in found}:
        found.add((folder, "data", "csv"))  # an interrupted run whose batches are all merged
    return sorted(found)


def _period_end(folder: str) -> float | None:
    """When the partition's day (or hour) ends, from the date folders; None if not a partition."""
    match = _DATE_TAIL.search(folder)
    if not match:
        return None
    y, m, d = int(match["y"]), int(match["m"]), int(match["d"])
    start = calendar.timegm((y, m, d, int(match["h"] or 0), 0, 0))
    return start + (3600 if match["h"] is not None else 86400)


def _report(url: str, results: list[dict[str, Any]], failures: int, as_json: bool) -> None:
    if as_json:
        print(json.dumps({"url": url, "partitions": results, "failures": failures}, indent=2))
        return
    merged = sum(r.get("merged", 0) for r in results)
    for r in results:
        if "error" in r:
            print(f"FAILED  {r['folder']}: {r['error']}")
        elif r.get("merged"):
            print(f"merged  {r['merged']:5d} batches -> {', '.join(r['outputs'])}")
        elif r.get("skipped"):
            print(f"skipped {r['folder']}: {r['skipped']}")
    print(f"{url}: {len(results)} partitions, {merged} batches merged, {failures} failed")


if __name__ == "__main__":
    sys.exit(main())
