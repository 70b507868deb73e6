"""``mdc control enable|disable|sample|show``: write and show a service's control document.

Every collector of the service picks a change up within ``MDC_CONTROL_INTERVAL`` seconds (and
the flusher's interval), with no restart. ``--model``/``--version``/``--designation`` narrow a
change to an override; without them it applies to the whole service.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from typing import Any

from mdc_core.control import ControlDocument, Setting, control_key
from mdc_core.designations import normalize_designation
from mdc_core.errors import ConfigurationError
from mdc_core.paths import split_workspace, validate_segment
from mdc_core.plugins import get_registry
from mdc_core.records import Capability
from mdc_core.sampling import check_rate
from mdc_core.settings import DEFAULT, DEFAULT_WORKSPACE


def add_control_parser(commands: Any) -> None:
    control = commands.add_parser(
        "control", help="switch collection on or off, or sample it, for a running service",
        description=__doc__.splitlines()[0])
    control.add_argument("action", choices=("enable", "disable", "sample", "show"))
    control.add_argument("url", help="the storage root the service writes to")
    control.add_argument("rate", nargs="?", type=float, help="for 'sample': the share of requests kept, 0..1")
    control.add_argument("--workspace", default=DEFAULT_WORKSPACE, help="<subscription>/<resource_group>/<workspace>")
    control.add_argument("--service", default=DEFAULT, help="the webservice name")
    control.add_argument("--model", help="narrow to one model")
    control.add_argument("--version", help="narrow to one model version (needs --model)")
    control.add_argument("--designation", help="narrow to one designation (for signals/general: name:collection)")
    control.add_argument("--clear", action="store_true", help="remove the setting instead of setting it")
    control.add_argument("-o", "--option", action="append", default=[], metavar="KEY=VALUE",
                         help="storage option (credentials etc.), repeatable")
    control.add_argument("--json", action="store_true", help="print the document as JSON")


def run_control(args: argparse.Namespace, options: dict[str, Any]) -> int:
    split_workspace(args.workspace)
    validate_segment(args.service, "--service")
    plugin = get_registry().backend_for_url(args.url)
    if Capability.MAINTAIN not in plugin.capabilities:
        raise ConfigurationError(f"backend {plugin.name!r} cannot read and replace objects: no control document")
    backend: Any = plugin.factory(args.url, options)
    key = control_key(args.workspace, args.service)
    try:
        raw = backend.read(key)
        document = ControlDocument() if raw is None else ControlDocument.parse(raw)
        if args.action != "show":
            document = _changed(document, _scope(args), args)
            backend.put(key, document.to_json().encode())
        _show(key, raw is None and args.action == "show", document, args.json)
    finally:
        backend.close()
    return 0


def _scope(args: argparse.Namespace) -> str:
    """The override key the arguments name, or '' for the whole service."""
    if args.version and not args.model:
        raise ConfigurationError("--version needs --model")
    parts = []
    if args.model:
        parts.append(validate_segment(args.model, "--model"))
    if args.version:
        parts.append(validate_segment(args.version, "--version"))
    if args.designation:
        name, _, collection = args.designation.partition(":")
        parts.append(normalize_designation(name) + (f":{validate_segment(collection, '--designation')}"
                                                    if collection else ""))
    elif parts:
        raise ConfigurationError("--model and --version narrow a --designation: give one")
    return "/".join(parts)


def _changed(document: ControlDocument, scope: str, args: argparse.Namespace) -> ControlDocument:
    if args.action == "sample":
        if args.rate is None and not args.clear:
            raise ConfigurationError("mdc control sample needs the rate, e.g. 'mdc control sample URL 0.1'")
        change: dict[str, Any] = {"sample_rate": None if args.clear else check_rate(args.rate)}
    else:
        change = {"enabled": None if args.clear else args.action == "enable"}
    if not scope:
        return dataclasses.replace(document, service=dataclasses.replace(document.service, **change))
    overrides = dict(document.overrides)
    overrides[scope] = dataclasses.replace(overrides.get(scope, Setting()), **change)
    if overrides[scope] == Setting():
        del overrides[scope]
    return dataclasses.replace(document, overrides=overrides)


def _show(key: str, missing: bool, document: ControlDocument, as_json: bool) -> None:
    if missing:
        print(json.dumps({"document": key, "exists": False}) if as_json
              else f"{key}: no control document (collectors use their start-up values)")
        return
    text = document.to_json()
    if as_json:
        print(json.dumps({"document": key, "exists": True, "control": json.loads(text)}))
    else:
        print(f"{key}:\n{text}", end="")
