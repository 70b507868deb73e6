"""``mdc drift``: per-feature drift of one designation against a baseline, per window; a text
summary (or ``--json``), an HTML report (``--html``), and exit code 4 when a window's magnitude is
above ``--fail-above``."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from mdc_core.errors import ConfigurationError
from mdc_core.render import Progress

EXIT_DRIFT = 4
"""Some window drifted more than ``--fail-above``."""
ENGINES = ("local", "spark")


def add_drift_parser(commands: Any, root: argparse.ArgumentParser) -> None:
    drift = commands.add_parser(
        "drift",
        parents=[root],
        help="per-feature drift against a baseline, per window (JSON, HTML report)",
        description="Measure per-feature drift of one designation, per window, against a baseline (training "
        "data in a Parquet/CSV file, or a date range of the same designation): PSI, KS, Wasserstein (numeric), "
        "chi-square and Jensen-Shannon (categorical), missing rates, and a magnitude per window. "
        f"Exit code {EXIT_DRIFT} when --fail-above is exceeded.",
    )
    drift.add_argument("--model", required=True, help="the model")
    drift.add_argument("--version", help="only this version")
    drift.add_argument("--service", help="only this service")
    drift.add_argument("--workspace", help="only this workspace (<subscription>/<resource_group>/<workspace>)")
    drift.add_argument("--designation", default="inputs", help="inputs (default) or predictions (prediction drift)")
    drift.add_argument(
        "--baseline",
        required=True,
        help="training data: a .parquet or .csv file (path or URL), or a date range of the same designation, "
        "2026-03-01..2026-03-07",
    )
    drift.add_argument("--window", default="day", help="day (default), hour, 'N days', 'N hours' (7d, 12h)")
    drift.add_argument("--from", dest="start", help="first day or instant, UTC (default: the first stored)")
    drift.add_argument("--to", dest="end", help="last day (included) or an instant (excluded), UTC")
    drift.add_argument("--features", help="comma-separated features (default: the baseline's columns)")
    drift.add_argument("--engine", choices=ENGINES, default="local", help="local (default) or spark (a local root)")
    drift.add_argument("--prediction-column", help="with --label-column: accuracy/error per window from labels")
    drift.add_argument("--label-column", help="the labels' column to compare --prediction-column with")
    drift.add_argument("--html", metavar="FILE", help="write the HTML report to this file")
    drift.add_argument(
        "--fail-above", type=float, metavar="THRESHOLD", help=f"exit {EXIT_DRIFT} if a window's magnitude is above this"
    )


def run_drift(args: argparse.Namespace, options: dict[str, Any]) -> int:
    try:
        from mdc_core.drift import compute
    except ImportError as exc:  # numpy is not a core dependency
        raise ConfigurationError(f"mdc drift needs numpy: pip install 'mdc[drift]' ({exc})") from None
    features = [f.strip() for f in args.features.split(",") if f.strip()] if args.features else None
    progress = Progress("reading partitions", enabled=not args.json)
    try:
        result = compute(
            args.url,
            baseline=args.baseline,
            model=args.model,
            version=args.version,
            service=args.service,
            workspace=args.workspace,
            designation=args.designation,
            window=args.window,
            start=args.start,
            end=args.end,
            features=features,
            engine=args.engine,
            storage_options=options,
            progress=progress,
            prediction_column=args.prediction_column,
            label_column=args.label_column,
        )
    finally:
        progress.close()
    if args.html:
        with open(args.html, "w", encoding="utf-8") as f:
            f.write(result.to_html(args.fail_above))
    exceeded = args.fail_above is not None and result.exceeds(args.fail_above)
    if args.json:
        document = result.as_dict()
        document["threshold"] = args.fail_above
        document["exceeded"] = exceeded
        print(json.dumps(document, indent=2))
    else:
        _summary(result)
        if args.html:
            print(f"report written to {args.html}", file=sys.stderr)
        if exceeded:
            print(f"drift magnitude {result.max_magnitude:.4f} is above {args.fail_above}", file=sys.stderr)
    return EXIT_DRIFT if exceeded else 0


def _summary(result: Any) -> None:
    data = result.as_dict()
    print(f"baseline: {data['baseline']['source']} ({data['baseline']['rows']} rows); window {data['window']}")
    for w in data["windows"]:
        magnitude = "       –" if w["magnitude"] is None else f"{w['magnitude']:8.4f}"
        top = ", ".join(f"{t['name']} {t['score']:.3f}" for t in w["top_features"][:3])
        quality = w.get("labels")
        labelled = ""
        if quality and quality["labelled"]:
            labelled = f"  accuracy {quality['accuracy']:.3f}" + (
                f" mae {quality['mae']:.4g}" if quality["mae"] is not None else ""
            )
        print(f"{w['start'][:16]}  {w['rows']:>10} rows  magnitude {magnitude}  {top}{labelled}")
    print("top features: " + ", ".join(data["summary"]["top_features"]))
