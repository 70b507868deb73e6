"""The storage layout: which names may be folders, and the one template every file path follows.

    <root>/<sub>/<rg>/<workspace>/<service>/<model>/<version>/<designation>/<yyyy>/<mm>/<dd>[/<hh>]/<file>

exactly as Azure ML's collector lays it out (zero-padded month, day and hour), or unpadded
(``2026/3/5``; the hour stays ``09``) for users who filter paths as ``.../<year>/3``.
"""

from __future__ import annotations

import time
import unicodedata
from dataclasses import dataclass

from mdc_core.errors import InvalidPathSegmentError

DAY = "day"
HOUR = "hour"
BOUNDARY_MINUTES = {DAY: 1440, HOUR: 60}
"""The ``$aml_dc_boundary`` value of each boundary, as Azure ML writes it."""

_FORBIDDEN = frozenset("/\\")


def validate_segment(value: object, what: str) -> str:
    """Return ``value`` if it can be one folder name of the layout, else raise saying why."""
    if not isinstance(value, str):
        raise InvalidPathSegmentError(f"{what} must be a string, got {type(value).__name__}")
    problem = None
    if not value:
        problem = "it is empty"
    elif value in (".", ".."):
        problem = "'.' and '..' are not folder names"
    elif value[0] in "_.":
        problem = "names starting with '_' or '.' are reserved for mdc's own files and skipped by Spark and Hadoop"
    elif _FORBIDDEN.intersection(value):
        problem = "it contains '/' or '\\'"
    elif any(unicodedata.category(c) == "Cc" for c in value):
        problem = "it contains control characters"
    elif value != value.strip():
        problem = "it starts or ends with whitespace"
    if problem:
        raise InvalidPathSegmentError(f"{what} {value!r} cannot be a path segment: {problem}")
    return value


def split_workspace(workspace: str) -> tuple[str, str, str]:
    """``"<subscription_id>/<resource_group>/<workspace_name>"`` as three validated segments."""
    if not isinstance(workspace, str) or workspace.count("/") != 2:
        raise InvalidPathSegmentError(
            f"workspace must be '<subscription_id>/<resource_group>/<workspace_name>', got {workspace!r}"
        )
    sub, rg, name = workspace.split("/")
    return (
        validate_segment(sub, "workspace subscription id"),
        validate_segment(rg, "workspace resource group"),
        validate_segment(name, "workspace name"),
    )


@dataclass(frozen=True)
class Layout:
    """Everything but the date that decides where a collector's rows go."""

    workspace: str
    service: str
    model: str
    version: str
    designation: str
    file_stem: str = "data"
    boundary: str = DAY
    pad: bool = True

    @property
    def prefix(self) -> str:
        """The folders above the date, relative to the storage root."""
        return "/".join((self.workspace, self.service, self.model, self.version, self.designation))


def partition_path(layout: Layout, seconds: int, extension: str) -> str:
    """The file for a row scored at ``seconds`` since the epoch (UTC), relative to the root."""
    t = time.gmtime(seconds)
    padded = f"{t.tm_year:04d}/{t.tm_mon:02d}/{t.tm_mday:02d}"
    date = padded if layout.pad else f"{t.tm_year}/{t.tm_mon}/{t.tm_mday}"
    if layout.boundary == HOUR:
        date += f"/{t.tm_hour:02d}"  # the hour level is zero-padded in both styles
    return f"{layout.prefix}/{date}/{layout.file_stem}.{extension}"
