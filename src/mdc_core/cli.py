"""The ``mdc`` command line: ``ls``, ``read``, ``join``, ``export``, ``compact``, ``purge``, ``erase``,
``control``, ``drift``.

``mdc compact URL`` merges closed partitions' batch objects into the spec's one file per
partition (what automatic compaction does, on demand); the others are the reader's
(``mdc_core.store``) on the command line. ``--json`` prints one JSON document for scripts;
progress bars are drawn on standard error only when it is a terminal.

Exit codes: 0 success, 1 failed (a storage error; a partition not compacted or erased),
2 wrong usage, 3 no data matches, 4 drift above ``mdc drift --fail-above``.
"""

from __future__ import annotations

import argparse
import calendar
import contextlib
import json
import os
import re
import sys
import time
from collections.abc import Sequence
from typing import Any

import pyarrow as pa

from mdc_core.compaction import MANIFEST, compact_partition
from mdc_core.control_cli import add_control_parser, run_control
from mdc_core.drift_cli import add_drift_parser, run_drift
from mdc_core.errors import ConfigurationError, MdcError
from mdc_core.export import FORMATS, ExportResult, add_counts, join_by_day
from mdc_core.join import HOW
from mdc_core.plugins import get_registry
from mdc_core.records import Capability
from mdc_core.redact import redact_url
from mdc_core.render import ROW_FORMATS, Progress, human_bytes, write_rows
from mdc_core.store import LEVELS, NoDataError, open_store

_BATCH = re.compile(r"^(?P<stem>.+)-[0-9a-f]{16}-[0-9]{10}\.(?P<ext>[A-Za-z0-9]+)$")
_DATE_TAIL = re.compile(r"(?:^|/)(?P<y>\d{4})/(?P<m>\d{1,2})/(?P<d>\d{1,2})(?:/(?P<h>\d{1,2}))?/?$")


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        options = dict(_option(o) for o in args.option)
        if hasattr(args, "dest_option"):
            args.dest_options = dict(_option(o) for o in args.dest_option)
    except ValueError as exc:
        parser.error(str(exc))
    try:
        if args.command == "compact":
            return _compact(args.url, args.prefix, args.include_open, options, args.json)
        return COMMANDS[args.command](args, options)
    except NoDataError as exc:
        print(f"mdc: {exc}", file=sys.stderr)
        return EXIT_NO_DATA
    except BrokenPipeError:  # the reader of our output went away (| head): stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
    except (OSError, pa.ArrowException) as exc:  # storage errors (BackendError), unreadable files
        print(f"mdc: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except (MdcError, ValueError) as exc:  # a bad argument value
        print(f"mdc: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("mdc: interrupted", file=sys.stderr)
        return 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mdc",
        description="Model data collector tools: list, read, join, export, compact, purge and erase "
        "the data collected under a storage root.",
        epilog="Exit codes: 0 success, 1 failed (storage error, or some partition not done), "
        "2 wrong usage (bad argument, unknown URL scheme), 3 no data matches, 4 drift above --fail-above.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    root = argparse.ArgumentParser(add_help=False)
    root.add_argument("url", help="storage root: a path, file://, abfs://container[/prefix], s3://bucket[/prefix]")
    root.add_argument(
        "-o",
        "--option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a storage option for the backend (repeatable); credentials also come "
        "from the usual environment variables",
    )
    root.add_argument("--json", action="store_true", help="print one JSON document for scripts")
    where = argparse.ArgumentParser(add_help=False)
    for level in ("workspace", "service", "model", "version"):
        extra = " (<subscription>/<resource_group>/<workspace>)" if level == "workspace" else ""
        where.add_argument(f"--{level}", help=f"only this {level}{extra}")
    where.add_argument("--start", help="first day or instant, UTC: 2026-03-05 or 2026-03-05T09:00")
    where.add_argument("--end", help="last day (included), or an instant (excluded), UTC")
    rows = argparse.ArgumentParser(add_help=False)
    rows.add_argument("--format", choices=ROW_FORMATS, default="table", help="how to write the rows (default table)")
    rows.add_argument("--output", default="-", help="file to write (default: standard output)")
    rows.add_argument("--columns", help="comma-separated columns to keep")
    rows.add_argument("--limit", type=int, help="at most this many rows")
    pairing = argparse.ArgumentParser(add_help=False)
    pairing.add_argument("--labels", action="store_true", help="join labels too")
    pairing.add_argument("--how", choices=HOW, default="inner", help="inner: paired rows; left: every input row")

    ls = commands.add_parser(
        "ls",
        parents=[root, where],
        help="what exists: series, days, files, rows, bytes",
        description="List the series (workspace/service/model/version/designation) under the root with "
        "their days, files, rows and bytes.",
    )
    ls.add_argument("--designation", help="only this designation")
    ls.add_argument("--days", action="store_true", help="one line per day (partition)")
    ls.add_argument("--no-rows", action="store_true", help="do not count rows (counting reads every file)")

    read = commands.add_parser(
        "read",
        parents=[root, where, rows],
        help="read one designation's rows",
        description="Read the rows of one designation for a time range, each row exactly once.",
    )
    read.add_argument("--designation", default="inputs", help="inputs (default), predictions, labels, ...")
    read.add_argument("--collection", help="only files of this collection (signals/general)")

    commands.add_parser(
        "join",
        parents=[root, where, rows, pairing],
        help="inputs joined with predictions (and labels)",
        description="Join inputs with predictions (and labels) on the correlation id (request id as "
        "fallback); the unmatched counts go to standard error.",
    )

    export = commands.add_parser(
        "export",
        parents=[root, where, pairing],
        help="write a training set to a file at any fsspec URL",
        description="Write inputs joined with predictions (and labels), or one designation, for a time "
        "range to one Parquet or CSV file (a path or an fsspec URL: s3://, abfs://, ...).",
    )
    export.add_argument("destination", help="file to write, e.g. train.parquet or s3://bucket/train.csv")
    export.add_argument("--designation", help="export this designation as it is instead of a join")
    export.add_argument("--format", choices=FORMATS, help="default: from the destination's extension, else parquet")
    export.add_argument("--columns", help="comma-separated columns to keep")
    export.add_argument("--overwrite", action="store_true", help="replace an existing destination")
    export.add_argument(
        "-O",
        "--dest-option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="an fsspec storage option for the destination (repeatable)",
    )

    compact = commands.add_parser(
        "compact",
        parents=[root],
        help="merge closed partitions' batch objects into data.csv",
        description="Merge the batch objects of closed partitions (days, or hours) into one file each, "
        "as automatic compaction does. Safe to re-run and to interrupt.",
    )
    compact.add_argument(
        "--prefix",
        default="",
        help="only partitions under this folder of the root (e.g. sub/rg/ws/svc/model/1/inputs/2026)",
    )
    compact.add_argument(
        "--include-open", action="store_true", help="also compact partitions whose day (or hour) has not ended yet"
    )

    purge = commands.add_parser(
        "purge",
        parents=[root, where],
        help="delete partitions older than N days",
        description="Delete every file of the partitions whose day (or hour) ended more than N days ago.",
    )
    purge.add_argument("--older-than", type=float, required=True, metavar="DAYS", help="age in days")
    purge.add_argument("--designation", help="only this designation")
    purge.add_argument("--dry-run", action="store_true", help="say what would be deleted, delete nothing")

    erase = commands.add_parser(
        "erase",
        parents=[root, where],
        help="remove the rows of given correlation or request ids",
        description="Remove every row of the given ids, rewriting only the files that hold them "
        "(under the compaction lock, with a manifest, as compaction does).",
    )
    erase.add_argument("--correlation-id", action="append", default=[], metavar="ID", help="repeatable")
    erase.add_argument("--request-id", action="append", default=[], metavar="ID", help="repeatable")
    erase.add_argument(
        "--ids-file", help="a file of ids, one a line, each 'correlation:<id>' or 'request:<id>' (bare: correlation)"
    )
    erase.add_argument("--designation", help="only this designation")
    erase.add_argument("--dry-run", action="store_true", help="count the rows, change nothing")
    add_control_parser(commands)
    add_drift_parser(commands, root)
    return parser


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
    progress = Progress("compacting partitions", enabled=not as_json)
    try:
        partitions = _partitions(backend.list(prefix))
        for i, (folder, stem, ext) in enumerate(partitions):
            progress(i + 1, len(partitions))
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
        progress.close()
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


# -- the reader's commands ------------------------------------------------------------------

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_NO_DATA = 0, 1, 2, 3


def _filters(args: argparse.Namespace) -> dict[str, Any]:
    found = {k: getattr(args, k, None) for k in ("workspace", "service", "model", "version", "designation")}
    found.update(start=args.start, end=args.end)
    return {k: v for k, v in found.items() if v is not None}


def _columns(args: argparse.Namespace) -> list[str] | None:
    text = getattr(args, "columns", None)
    return [c.strip() for c in text.split(",") if c.strip()] if text else None


def _what(args: argparse.Namespace, noun: str) -> str:
    where = ", ".join(f"{k} {v}" for k, v in _filters(args).items() if k not in ("start", "end", "designation"))
    span = f" from {args.start or 'the first day'} to {args.end or 'the last'}"
    return f"no {noun}{' for ' + where if where else ''}{span} under {redact_url(args.url)}"


def _ls(args: argparse.Namespace, options: dict[str, Any]) -> int:
    progress = Progress("counting rows", enabled=not args.json)
    with open_store(args.url, **options) as store:
        entries = store.ls(rows=not args.no_rows, progress=progress, **_filters(args))
    progress.close()
    if not entries:
        hint = "" if _filters(args) else " (is the URL right? does the container or bucket exist?)"
        raise NoDataError(f"nothing stored under {redact_url(args.url)} matches{hint}")
    if args.json:
        print(json.dumps({"url": redact_url(args.url), "partitions": entries}, indent=2))
        return EXIT_OK
    series: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for e in entries:
        series.setdefault(tuple(e[k] for k in LEVELS), []).append(e)
    for key, days in series.items():
        rows = None if args.no_rows else sum(d["rows"] for d in days)
        batches = sum(d["batches"] for d in days)
        print(
            f"{'/'.join(key)}  {len(days)} day{'s' if len(days) != 1 else ''} {days[0]['date']}..{days[-1]['date']}"
            f"{'' if rows is None else f'  {rows} rows'}  {human_bytes(sum(d['bytes'] for d in days))}"
            f"{f'  ({batches} uncompacted batches)' if batches else ''}"
        )
        if args.days:
            for d in days:
                count = "" if d["rows"] is None else f"{d['rows']:>10} rows"
                print(f"    {d['date']}  {count}  {d['files']:>4} files  {human_bytes(d['bytes']):>9}")
    return EXIT_OK


def _open_output(path: str, fmt: str) -> Any:
    if path == "-":
        if fmt == "parquet" and sys.stdout.isatty():
            raise ConfigurationError("Parquet is binary: pass --output FILE, or pipe standard output")
        return contextlib.nullcontext(sys.stdout.buffer)
    return open(path, "wb")


def _read(args: argparse.Namespace, options: dict[str, Any]) -> int:
    filters = _filters(args)
    designation = filters.pop("designation", "inputs")
    model = filters.pop("model", None)
    with open_store(args.url, **options) as store:
        scan = store.read(model, designation, columns=_columns(args), collection=args.collection, **filters)
        if not scan.partitions:
            raise NoDataError(_what(args, designation))
        progress = Progress(f"reading {len(scan.partitions)} partitions", enabled=args.output != "-")
        scan.progress = progress
        fmt = "json" if args.json else args.format
        with _open_output(args.output, fmt) as out:
            rows = write_rows(scan.to_batches(), scan.schema, fmt, out, args.limit)
        progress.close()
    if args.output != "-":
        print(f"{rows} rows written to {args.output}", file=sys.stderr)
    return EXIT_OK


def _join(args: argparse.Namespace, options: dict[str, Any]) -> int:
    filters = _filters(args)
    model = filters.pop("model", None)
    filters.pop("designation", None)
    fmt = "json" if args.json else args.format
    columns = _columns(args)
    total = ExportResult("", "")  # the running counts
    with open_store(args.url, **options) as store:
        days = join_by_day(store, model, labels=args.labels, how=args.how, **filters)
        schema = days.schema if columns is None else pa.schema([f for f in days.schema if f.name in columns])
        progress = Progress(f"joining {len(days.days)} days", enabled=args.output != "-")

        def batches() -> Any:
            for i, joined in enumerate(days):
                add_counts(total, joined)
                yield from joined.table.select(schema.names).to_batches()
                progress(i + 1, len(days.days))

        with _open_output(args.output, fmt) as out:
            rows = write_rows(batches(), schema, fmt, out, args.limit)
        progress.close()
    summary = {"rows": rows, "matched": total.matched, "by_request": total.by_request, "unmatched": total.unmatched}
    print(
        json.dumps(summary)
        if args.json
        else f"{rows} joined rows; unmatched: "
        + ", ".join(f"{k} {v}" for k, v in summary["unmatched"].items())
        + (f"; paired by request id: {summary['by_request']}" if any(summary["by_request"].values()) else ""),
        file=sys.stderr,
    )
    return EXIT_OK


def _export(args: argparse.Namespace, options: dict[str, Any]) -> int:
    filters = _filters(args)
    model = filters.pop("model", None)
    designation = filters.pop("designation", None)
    progress = Progress("exporting days", enabled=not args.json)
    with open_store(args.url, **options) as store:
        result = store.export(
            args.destination,
            model,
            designation=designation,
            labels=args.labels,
            how=args.how,
            format=args.format,
            columns=_columns(args),
            storage_options=args.dest_options,
            overwrite=args.overwrite,
            progress=progress,
            **filters,
        )
    progress.close()
    if args.json:
        print(json.dumps(result.as_dict(), indent=2))
    else:
        unmatched = ", ".join(f"{k} {v}" for k, v in result.unmatched.items())
        print(
            f"{result.rows} rows of {result.days} days written to {result.destination} ({result.format})"
            + (f"; unmatched: {unmatched}" if unmatched else "")
        )
    return EXIT_OK


def _purge(args: argparse.Namespace, options: dict[str, Any]) -> int:
    progress = Progress("purging partitions", enabled=not args.json)
    with open_store(args.url, **options) as store:
        result = store.purge(args.older_than, dry_run=args.dry_run, progress=progress, **_filters(args))
    progress.close()
    if args.json:
        print(json.dumps(result.as_dict(), indent=2))
    else:
        verb = "would delete" if args.dry_run else "deleted"
        for folder in result.partitions:
            print(f"{verb}  {folder}")
        print(
            f"{redact_url(args.url)}: {verb} {len(result.partitions)} partitions ({result.objects} objects, "
            f"{human_bytes(result.bytes)}) that ended before {result.cutoff}"
        )
    return EXIT_OK


def _erase(args: argparse.Namespace, options: dict[str, Any]) -> int:
    correlation, request = list(args.correlation_id), list(args.request_id)
    if args.ids_file:
        with open(args.ids_file, encoding="utf-8") as f:
            for line in f:
                kind, sep, value = line.strip().partition(":")
                if not line.strip():
                    continue
                if sep and kind == "request":
                    request.append(value.strip())
                else:
                    correlation.append(value.strip() if sep and kind == "correlation" else line.strip())
    progress = Progress("searching partitions", enabled=not args.json)
    with open_store(args.url, **options) as store:
        result = store.erase(
            correlation_ids=correlation,
            request_ids=request,
            dry_run=args.dry_run,
            progress=progress,
            **_filters(args),
        )
    progress.close()
    if args.json:
        print(json.dumps(result.as_dict(), indent=2))
    else:
        verb = "would remove" if args.dry_run else "removed"
        for key in result.files:
            print(f"{'would rewrite' if args.dry_run else 'rewrote'}  {key}")
        for folder, reason in result.skipped.items():
            print(f"SKIPPED  {folder}: {reason}")
        print(f"{verb} {result.rows} rows from {len(result.files)} files")
    return EXIT_FAILED if result.skipped else EXIT_OK


COMMANDS = {
    "ls": _ls,
    "read": _read,
    "join": _join,
    "export": _export,
    "purge": _purge,
    "erase": _erase,
    "control": run_control,
    "drift": run_drift,
}


if __name__ == "__main__":
    sys.exit(main())
