"""A storage root opened for reading and upkeep: what exists, read, join, export, purge, erase.

``open_store(url, **storage_options)`` takes the URL and options a collector takes and returns a
``Store``. It finds the layout's partitions from one listing::

    <sub>/<rg>/<workspace>/<service>/<model>/<version>/<designation>/<yyyy>/<m>/<d>[/<hh>]/<file>

(padded or unpadded dates, day or hour partitions) and leaves everything else alone: files whose
name starts with ``_`` or ``.`` (mdc's locks and manifests) and files of no known format are
never data. The store reads and deletes through the backend's ``Capability.MAINTAIN`` methods,
with the credentials the backend resolves, so a root that a collector can write is a root the
store can read.
"""

from __future__ import annotations

import calendar
import datetime as dt
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from mdc_core.errors import ConfigurationError, MdcError
from mdc_core.plugins import get_registry
from mdc_core.records import Capability
from mdc_core.redact import redact_url

if TYPE_CHECKING:
    from mdc_core.export import ExportResult
    from mdc_core.join import JoinResult
    from mdc_core.reader import Scan
    from mdc_core.retention import EraseResult, PurgeResult

UTC = dt.timezone.utc
_NUMBER = re.compile(r"^\d{1,2}$")
_YEAR = re.compile(r"^\d{4}$")
_BATCH = re.compile(r"^(?P<stem>.+)-[0-9a-f]{16}-[0-9]{10}\.(?P<ext>[A-Za-z0-9]+)$")
_SIBLING = re.compile(r"^(?P<stem>.+)-[0-9a-f]{8}\.(?P<ext>[A-Za-z0-9]+)$")
LEVELS = ("workspace", "service", "model", "version", "designation")


class NoDataError(MdcError, LookupError):
    """Nothing stored matches: a wrong URL or prefix, a missing container or bucket, or no
    partition in the filters and time range."""


@dataclass(frozen=True)
class Partition:
    """One folder of data files: a designation's day (or hour)."""

    workspace: str
    """``<subscription>/<resource_group>/<workspace>``"""
    service: str
    model: str
    version: str
    designation: str
    start: dt.datetime
    """The first instant of the day (or hour), UTC."""
    end: dt.datetime
    """The first instant after it."""
    folder: str
    """Its key prefix, relative to the root, ending in ``/``."""
    files: tuple[tuple[str, int], ...] = field(default=(), compare=False)
    """``(name, size)`` of every object in the folder (mdc's own ``_`` files too)."""

    @property
    def data_files(self) -> list[tuple[str, int]]:
        """The data files: names not starting with ``_`` or ``.``, of a registered format."""
        return data_files(self.files)

    @property
    def batches(self) -> list[str]:
        """Batch objects not yet compacted (``data-<writer>-<seq>.<ext>``)."""
        return [n for n, _ in self.data_files if _BATCH.match(n)]

    @property
    def bytes(self) -> int:
        return sum(s for _, s in self.data_files)

    @property
    def date(self) -> str:
        """``yyyy-mm-dd`` (with ``Thh`` for an hour partition)."""
        text = self.start.strftime("%Y-%m-%d")
        return text + self.start.strftime("T%H") if self.end - self.start < dt.timedelta(days=1) else text

    @property
    def series(self) -> tuple[str, str, str, str, str]:
        """The five levels above the date."""
        return (self.workspace, self.service, self.model, self.version, self.designation)


def stem_of(name: str) -> str:
    """The collection a data file belongs to: ``data`` for ``data.csv``, ``data-<w>-<s>.csv``
    and ``data-<hash8>.csv``."""
    for pattern in (_BATCH, _SIBLING):
        match = pattern.match(name)
        if match:
            return match["stem"]
    return name.rpartition(".")[0]


def data_files(files: Iterable[tuple[str, int]]) -> list[tuple[str, int]]:
    """The ``(name, size)`` of data files: not starting with ``_`` or ``.``, of a registered format."""
    known = _extensions()
    return [(n, s) for n, s in files if n[:1] not in "_." and n.rpartition(".")[2] in known]


def is_batch(name: str) -> bool:
    return _BATCH.match(name) is not None


def _extensions() -> dict[str, Any]:
    return {f.extension: f for f in get_registry().formats.values()}


def as_utc(value: Any, *, end: bool = False) -> dt.datetime | None:
    """A bound of a time range as an aware UTC datetime. Dates mean midnight UTC, and as an
    ``end`` the midnight after (so ``end=date(2026, 3, 31)`` includes March 31st); ISO text is
    parsed the same way (a date alone, or a date and time); naive datetimes are UTC."""
    if value is None:
        return None
    if isinstance(value, str):
        text = value.strip()
        try:
            value = dt.date.fromisoformat(text) if len(text) <= 10 else dt.datetime.fromisoformat(text)
        except ValueError:
            raise ConfigurationError(f"{text!r} is not a date (2026-03-05) or datetime (2026-03-05T09:00)") from None
    if isinstance(value, dt.datetime):
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    if isinstance(value, dt.date):
        day = dt.datetime(value.year, value.month, value.day, tzinfo=UTC)
        return day + dt.timedelta(days=1) if end else day
    raise ConfigurationError(f"a time bound must be a date, a datetime or ISO text, got {type(value).__name__}")


def parse_partitions(listing: Iterable[tuple[str, int]], prefix: str = "") -> list[Partition]:
    """Group a recursive listing into partitions; keys that do not follow the layout are ignored."""
    folders: dict[str, list[tuple[str, int]]] = {}
    for key, size in listing:
        folder, _, name = key.rpartition("/")
        folders.setdefault(folder, []).append((name, size))
    found = []
    for folder, files in folders.items():
        part = _partition(folder, tuple(sorted(files)))
        if part is not None:
            found.append(part)
    return sorted(found, key=lambda p: (p.series, p.start))


def _partition(folder: str, files: tuple[tuple[str, int], ...]) -> Partition | None:
    parts = folder.split("/")
    for hour in (False, True):
        n = 11 if hour else 10
        if len(parts) != n:
            continue
        y, m, d = parts[7:10]
        h = parts[10] if hour else "0"
        if not (_YEAR.match(y) and _NUMBER.match(m) and _NUMBER.match(d) and _NUMBER.match(h)):
            return None
        if any(p[:1] in ("", "_", ".") for p in parts[:7]):
            return None
        try:
            start = dt.datetime(int(y), int(m), int(d), int(h), tzinfo=UTC)
        except ValueError:
            return None
        end = start + (dt.timedelta(hours=1) if hour else dt.timedelta(days=1))
        return Partition("/".join(parts[:3]), *parts[3:7], start, end, folder + "/", files)
    return None


class Store:
    """A storage root: list what exists, read a designation, join, export, purge, erase.

    Build it with ``open_store``; close it (or use it as a context manager) when done.
    """

    def __init__(self, url: str, backend: Any, plugin_name: str):
        self.url = url
        self.backend = backend
        self.backend_name = plugin_name

    def __repr__(self) -> str:
        return f"Store({redact_url(self.url)!r}, backend={self.backend_name!r})"

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.backend.close()

    # -- what exists -----------------------------------------------------------------------

    def partitions(
        self,
        *,
        workspace: str | None = None,
        service: str | None = None,
        model: str | None = None,
        version: str | None = None,
        designation: str | None = None,
        start: Any = None,
        end: Any = None,
    ) -> list[Partition]:
        """The partitions that match every filter given (``None``: any), and whose day (or
        hour) overlaps ``[start, end)``; sorted by series, then date."""
        wanted = (workspace, service, model, version, designation)
        prefix = ""
        for value in wanted:  # list only below the levels that are fixed
            if value is None:
                break
            prefix += value.strip("/") + "/"
        lo, hi = as_utc(start), as_utc(end, end=True)
        found = []
        for part in parse_partitions(self.backend.list(prefix)):
            if any(w is not None and w.strip("/") != have for w, have in zip(wanted, part.series)):
                continue
            if (lo is not None and part.end <= lo) or (hi is not None and part.start >= hi):
                continue
            if part.data_files or any(n.startswith("_mdc_") for n, _ in part.files):
                found.append(part)
        return found

    def ls(self, *, rows: bool = True, progress: Any = None, **filters: Any) -> list[dict[str, Any]]:
        """One dict per partition: its five levels, ``date``, ``files``, ``batches``, ``bytes``,
        and ``rows`` (counted by reading the files, exactly once as ``read`` would; ``None``
        with ``rows=False``). ``progress(done, total)`` is called as partitions are counted."""
        from mdc_core.reader import count_rows

        out = []
        parts = self.partitions(**filters)
        for i, part in enumerate(parts):
            entry: dict[str, Any] = dict(zip(LEVELS, part.series))
            entry.update(date=part.date, files=len(part.data_files), batches=len(part.batches), bytes=part.bytes)
            entry["rows"] = count_rows(self.backend, part, self._local_append()) if rows else None
            out.append(entry)
            if progress is not None and rows:
                progress(i + 1, len(parts))
        return out

    # -- reading ---------------------------------------------------------------------------

    def read(
        self,
        model: str | None = None,
        designation: str = "inputs",
        *,
        start: Any = None,
        end: Any = None,
        version: str | None = None,
        service: str | None = None,
        workspace: str | None = None,
        columns: Sequence[str] | None = None,
        schema: Any = None,
        collection: str | None = None,
    ) -> Scan:
        """The rows of one designation in ``[start, end)`` (UTC; see ``as_utc``) as a ``Scan``:
        ``to_table()``, ``to_batches()``, ``to_reader()``, ``to_dataset()``, ``to_pandas()``,
        ``to_polars()``. ``None`` filters match every model, version, service, workspace;
        ``collection`` picks one file stem (``signals``/``general`` collections)."""
        from mdc_core.reader import Scan

        parts = self.partitions(
            workspace=workspace,
            service=service,
            model=model,
            version=version,
            designation=designation,
            start=start,
            end=end,
        )
        return Scan(
            self.backend,
            parts,
            start=as_utc(start),
            end=as_utc(end, end=True),
            columns=columns,
            schema=schema,
            collection=collection,
            local_append=self._local_append(),
        )

    def join(
        self,
        model: str | None = None,
        *,
        start: Any = None,
        end: Any = None,
        labels: bool = False,
        how: str = "inner",
        **filters: Any,
    ) -> JoinResult:
        """Read inputs and predictions (and labels) for the same filters and range, and join
        them (``mdc_core.join.join``)."""
        from mdc_core.join import join

        def table(designation: str) -> Any:
            return self.read(model, designation, start=start, end=end, **filters).to_table()

        return join(table("inputs"), table("predictions"), table("labels") if labels else None, how=how)

    def export(self, destination: str, model: str | None = None, **kwargs: Any) -> ExportResult:
        """Write a training set to any fsspec URL (``mdc_core.export.export``)."""
        from mdc_core.export import export

        return export(self, destination, model, **kwargs)

    # -- upkeep ----------------------------------------------------------------------------

    def purge(self, older_than_days: float, **kwargs: Any) -> PurgeResult:
        """Delete partitions older than ``older_than_days`` (``mdc_core.retention.purge``)."""
        from mdc_core.retention import purge

        return purge(self, older_than_days, **kwargs)

    def erase(
        self, *, correlation_ids: Iterable[str] = (), request_ids: Iterable[str] = (), **kwargs: Any
    ) -> EraseResult:
        """Remove the rows of these ids, rewriting only the files that hold them
        (``mdc_core.retention.erase``)."""
        from mdc_core.retention import erase

        return erase(self, correlation_ids=correlation_ids, request_ids=request_ids, **kwargs)

    def _local_append(self) -> bool:
        """Whether files may be growing by appends (local disk): read them only up to their
        last complete append."""
        return Capability.APPEND in getattr(self.backend, "capabilities", ())


def open_store(url: str, **storage_options: Any) -> Store:
    """Open a storage root (a path, ``file://``, ``abfs://container/prefix``, ``s3://bucket/prefix``,
    or any URL a backend plug-in serves) with the ``storage_options`` a collector would take."""
    plugin = get_registry().backend_for_url(url)
    if Capability.MAINTAIN not in plugin.capabilities:
        raise ConfigurationError(f"backend {plugin.name!r} cannot list and read objects, so mdc cannot read it back")
    return Store(url, plugin.factory(url, storage_options), plugin.name)


def period_end(part: Partition) -> float:
    return calendar.timegm(part.end.timetuple())


def iter_series(parts: Iterable[Partition]) -> Iterator[tuple[tuple[str, ...], list[Partition]]]:
    """Partitions grouped by their five levels, in order."""
    current: tuple[str, ...] | None = None
    group: list[Partition] = []
    for part in parts:
        if part.series != current and group:
            yield current, group  # type: ignore[misc]
            group = []
        current = part.series
        group.append(part)
    if group:
        yield current, group  # type: ignore[misc]
