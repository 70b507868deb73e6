"""``ModelDataCollector``: Azure ML's constructor and ``collect()``, backed by mdc's pipeline.

Building a collector checks everything (names, designation, plug-ins, settings) and raises on
misuse; ``collect()`` then only checks the data's shape, stamps it and queues it.
"""

from __future__ import annotations

import os
import secrets
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from mdc_core import correlation
from mdc_core.batches import Deployment, warm_up
from mdc_core.compiled import load
from mdc_core.control import START_TIMEOUT, ControlDocument, ControlWatcher, Setting, control_key
from mdc_core.correlation import (
    IdRange,
    IsoClock,
    OpenCorrelation,
    current_request_id,
    format_id,
    open_correlation,
    take_correlation,
)
from mdc_core.designations import INPUTS, NAMED_COLLECTIONS, PAIRED, normalize_designation
from mdc_core.errors import ConfigurationError, RowWidthError
from mdc_core.paths import BOUNDARY_MINUTES, Layout, split_workspace, validate_segment
from mdc_core.pipeline import ABSORB_EVERY, BLOCK_ROWS, INBOX_MAX, Pipeline, Route, estimate_bytes, get_pipeline
from mdc_core.plugins import get_registry
from mdc_core.privacy import check_rules
from mdc_core.records import BackendPlugin, BatchContext, Capability, FormatPlugin
from mdc_core.redact import redact_url
from mdc_core.sampling import check_rate, keep_rules
from mdc_core.settings import (
    DEFAULT,
    DEFAULT_WORKSPACE,
    env_seconds,
    first_flag,
    resolve_boundary,
    resolve_identity,
    resolve_storage,
)
from mdc_core.shapes import _SCALARS, AML_COLUMNS, ARROW, PANDAS, ROWS, Taken, default_names, take
from mdc_core.typecheck import TypeGuard
from mdc_core.writer import Sink

_ISO = IsoClock()
ID_COLUMN, TIMESTAMP_COLUMN, REQUEST_COLUMN = AML_COLUMNS[0], AML_COLUMNS[1], AML_COLUMNS[7]
_hotpath = load("_hotpath")


class ModelDataCollector:
    """Collects one designation (inputs, predictions, ...) of one model into storage.

    The positional arguments are Azure ML's; everything mdc adds is keyword-only.
    ``collect()`` never does I/O and never raises because storage is slow or down.
    """

    def __init__(
        self,
        model_name: str,
        designation: str = "default",
        feature_names: Sequence[str] | None = None,
        workspace: str = DEFAULT_WORKSPACE,
        webservice_name: str = DEFAULT,
        model_version: str = DEFAULT,
        collection_name: str = DEFAULT,
        *,
        storage: str | os.PathLike[str] | None = None,
        storage_options: Mapping[str, Any] | None = None,
        format: str = "csv",
        format_options: Mapping[str, Any] | None = None,
        schema: pa.Schema | None = None,
        schema_mode: str = "evolve",
        boundary: str | None = None,
        enabled: bool | None = None,
        sample_rate: float = 1.0,
        always_keep: Sequence[Mapping[str, Any]] | None = None,
        control: bool | None = None,
        column_rules: Mapping[str, Any] | None = None,
        transform_options: Mapping[str, Any] | None = None,
        debug: bool | None = None,
        pad_dates: bool = True,
        compaction: str | None = None,
        clock: Callable[[], int] | None = None,
    ) -> None:
        self._designation = normalize_designation(designation)
        self._paired = self._designation in PAIRED  # pairs with the request's inputs
        self._opens = self._designation == INPUTS  # opens a correlation for the request
        identity = resolve_identity(workspace, webservice_name, model_name, str(model_version))
        split_workspace(identity.workspace)
        validate_segment(identity.service, "webservice_name")
        validate_segment(model_name, "model_name")
        validate_segment(identity.version, "model_version")
        validate_segment(collection_name, "collection_name")
        self.model_name = model_name
        self.workspace = identity.workspace
        self.webservice_name = identity.service
        self.model_version = identity.version
        self.collection_name = collection_name
        self.feature_names = _check_feature_names(feature_names)
        self.schema = _check_schema(schema, self.feature_names)
        if self.schema is not None and self.feature_names is None:
            self.feature_names = tuple(self.schema.names)
        if schema_mode not in ("evolve", "strict"):
            raise ConfigurationError(
                f"schema_mode={schema_mode!r}: use 'evolve' (a batch of conflicting types is written as a "
                "new schema version, with a warning) or 'strict' (collect() raises SchemaConflictError)"
            )
        self._guard = TypeGuard(self.schema) if schema_mode == "strict" else None
        self.boundary = resolve_boundary(boundary)
        if not isinstance(pad_dates, bool):
            raise ConfigurationError(f"pad_dates must be True or False, got {pad_dates!r}")
        self._enabled_at_start = first_flag(enabled, "MDC_ENABLED", "AML_MODEL_DC_STORAGE_ENABLED", default=True)
        self._enabled_override: bool | None = None
        self._on = self._enabled_at_start
        self._rate_at_start = check_rate(sample_rate)
        self._rate_override: float | None = None
        self._keep_at_start = keep_rules(always_keep)
        self._control: Setting = Setting()
        self.debug = first_flag(debug, "MDC_DEBUG", "AML_MODEL_DC_DEBUG", default=False)
        self._clock = clock or time.time_ns
        self._closed = False
        self._columns_lock = threading.Lock()

        registry = get_registry()
        storage_cfg = resolve_storage(storage, storage_options)
        self._storage_url = storage_cfg.url
        backend_plugin = registry.backend_for_url(storage_cfg.url)
        format_plugin = registry.format(format)
        _check_capabilities(backend_plugin, format_plugin)
        stem = collection_name if self._designation in NAMED_COLLECTIONS and collection_name != DEFAULT else "data"
        layout = Layout(
            workspace=identity.workspace,
            service=identity.service,
            model=model_name,
            version=identity.version,
            designation=self._designation,
            file_stem=stem,
            boundary=self.boundary,
            pad=pad_dates,
        )
        backend = None if self.debug else get_pipeline().backend(backend_plugin, storage_cfg.url, storage_cfg.options)
        # An instance may declare less than its plug-in (e.g. the local backend with append=False).
        capabilities = getattr(backend, "capabilities", backend_plugin.capabilities)
        fmt = format_plugin.factory(dict(format_options or {}))
        if self.schema is not None and hasattr(fmt, "use_schema"):
            fmt.use_schema(self.schema)
        if self.debug and getattr(fmt, "binary", False) and "csv" in registry.formats:
            fmt = registry.format("csv").factory({})  # debug prints rows: as text, whatever the format
        sink = Sink(
            layout=layout,
            format_plugin=format_plugin,
            format=fmt,
            backend=backend,
            capabilities=capabilities,
            debug=self.debug,
        )
        if backend is not None and not sink.appends and _spool_on() and Capability.CREATE_IF_ABSENT in capabilities:
            sink.storage_label = redact_url(storage_cfg.url)
            sink.spool = get_pipeline().spool_for(backend_plugin, sink.storage_label, backend)
        if (
            _compaction_on(compaction)
            and not sink.appends
            and not sink.debug
            and Capability.MAINTAIN in capabilities
            and (hasattr(sink.format, "compact") or hasattr(sink.format, "merge"))
        ):
            sink.compactor = get_pipeline().compactor
        deployment = Deployment(
            BOUNDARY_MINUTES[self.boundary], identity.workspace, identity.service, model_name, identity.version
        )
        # Unique per collector, so a replayed batch is credited to exactly the collector that spooled it.
        sink.route_name = f"{model_name}/{identity.version}/{self._designation}@{secrets.token_hex(4)}"
        self._route = Route(
            f"{model_name}/{identity.version}/{self._designation}", sink, deployment, self.feature_names
        )
        rules = check_rules(column_rules, self.feature_names)
        if registry.transforms:
            self._route.transforms = registry.transforms
            self._route.context = BatchContext(
                identity.workspace, identity.service, model_name, identity.version, self._designation,
                collection_name, {**(transform_options or {}), "column_rules": rules})
        elif rules:
            raise ConfigurationError("column_rules need the 'privacy' plug-in, which is blocked or not installed")
        self._pipeline: Pipeline = get_pipeline()
        self._pipeline.register(self._route)
        warm_up()
        self._constants = dict.fromkeys(AML_COLUMNS, "")
        self._constants.update(
            {
                AML_COLUMNS[2]: deployment.boundary_minutes,
                AML_COLUMNS[3]: identity.workspace,
                AML_COLUMNS[4]: identity.service,
                AML_COLUMNS[5]: model_name,
                AML_COLUMNS[6]: identity.version,
            }
        )
        self._fast_path: Any = None  # the compiled collect()'s state, when it applies
        self._apply()  # and _sync_fast()
        self._watcher: ControlWatcher | None = None
        if backend is not None and first_flag(control, "MDC_CONTROL", default=True) and hasattr(backend, "read"):
            self._watcher = self._pipeline.control_for(backend, control_key(identity.workspace, identity.service))
            self._watcher.subscribe(self._on_control)
            if self._watcher.document is not None:
                self._on_control(self._watcher.document)
            self._watcher.first_read(env_seconds("MDC_CONTROL_START_TIMEOUT", START_TIMEOUT))

    # -- Azure ML's API ----------------------------------------------------------------------

    def collect(self, input_data: Any, user_correlation_id: str = "") -> dict[str, Any]:
        """Queue the rows of ``input_data`` for storage; return their correlation data.

        ``$aml_dc_correlation_id`` is a string for one row and a sequence of strings (one per
        row) for several. Returns ``{}`` when the collector is disabled or given no rows.
        """
        if not self._on:
            return {}
        if self._fast_path is not None:
            self._fast_path.seal()  # this row goes after the rows of the compiled path's open block
        route = self._route
        columns = route.columns
        taken = take(input_data, columns and len(columns))
        if not taken.rows:
            return {}
        if columns is None:
            self._fix_columns(taken.names, taken.width, taken.carried)
        elif taken.names is not None and taken.kind is not ARROW and taken.kind is not PANDAS:
            _check_names(taken.names[: taken.width], columns)
        if self._guard is not None:
            self._guard.check(taken, route.columns or ())
        if self._closed:
            self._pipeline.drop(route, taken.rows, "closed")
            return {}
        pairing = take_correlation(self._designation, self.model_name) if self._paired and not taken.carried else None
        stamp = self._pipeline.accept(
            route,
            taken,
            self._clock() // 1000,
            current_request_id(),
            str(user_correlation_id) if user_correlation_id else "",
            pairing,
        )
        if stamp is None or not stamp[0]:
            return {}
        n = taken.rows
        if self._opens:
            open_correlation(OpenCorrelation(stamp, n, self.model_name))
        prefix, start, step, user, ts_us, request_id = stamp
        result = self._constants.copy()
        result[ID_COLUMN] = format_id(prefix, start, user) if n == 1 else IdRange(prefix, start, n, step, user)
        result[TIMESTAMP_COLUMN] = _ISO.format(ts_us)
        result[REQUEST_COLUMN] = request_id
        return result

    def add_correlations(self, input_data: Any, correlations: Mapping[str, Any]) -> Any:
        """``input_data`` with the eight ``$aml_`` columns of ``correlations`` appended."""
        from mdc_core.attach import attach_correlations

        return attach_correlations(input_data, correlations)

    # -- mdc's additions ---------------------------------------------------------------------

    @property
    def designation(self) -> str:
        return self._designation

    @property
    def enabled(self) -> bool:
        """Whether ``collect()`` keeps rows. Set it at run time; set ``None`` to go back to the
        start-up value (argument, ``MDC_ENABLED``, ``AML_MODEL_DC_STORAGE_ENABLED``)."""
        return self._on

    @enabled.setter
    def enabled(self, value: bool | None) -> None:
        if value is not None and not isinstance(value, bool):
            raise ConfigurationError(f"enabled must be True, False or None, got {value!r}")
        self._enabled_override = value
        self._apply()

    @property
    def sample_rate(self) -> float:
        """The share of requests whose rows are kept (by a hash of the correlation id, so a
        request's inputs, predictions and labels go together). Set it at run time; ``None``
        goes back to the control document's value, else the start-up one."""
        return self._route.sample_rate

    @sample_rate.setter
    def sample_rate(self, value: float | None) -> None:
        self._rate_override = None if value is None else check_rate(value)
        self._apply()

    def refresh_control(self) -> None:
        """Read the service's control document now (the flusher also does, every
        ``MDC_CONTROL_INTERVAL`` seconds)."""
        if self._watcher is not None:
            self._watcher.refresh()

    def _on_control(self, document: ControlDocument | None) -> None:
        self._control = Setting() if document is None else document.for_collector(
            self.model_name, self.model_version, self._designation, self.collection_name)
        self._apply()

    def _apply(self) -> None:
        """Effective values: set in code > the control document > the start-up value (SPEC.md)."""
        control = self._control
        self._on = next(v for v in (self._enabled_override, control.enabled, self._enabled_at_start) if v is not None)
        route = self._route
        route.sample_rate = next(v for v in (self._rate_override, control.sample_rate, self._rate_at_start)
                                 if v is not None)
        route.always_keep = control.always_keep if control.always_keep is not None else self._keep_at_start
        self._sync_fast()

    def _sync_fast(self) -> None:
        """Use the compiled path for plain rows only while the Python path would do just that:
        collecting, open, columns known, no strict schema, the default clock."""
        route = self._route
        if (
            _hotpath is None
            or not self._on
            or self._closed
            or self._guard is not None
            or route.columns is None
            or self._clock is not time.time_ns
        ):
            self._fast_path = None
            return
        width = len(route.columns)
        self._fast_path = _hotpath.FastPath(
            pipeline=self._pipeline,
            key=route.key,
            width=width,
            size=estimate_bytes(Taken(ROWS, (), 1, width, None, False)),  # one plain row
            model=self.model_name,
            designation=self._designation,
            opens=self._opens,
            paired=self._paired,
            constants=self._constants,
            scalars=_SCALARS,
            id_space=correlation._IdSpace,
            scope_var=correlation._scope,
            open_var=correlation._open,
            correlation_module=correlation,
            no_request=correlation.NO_REQUEST_ID,
            absorb_every=ABSORB_EVERY,
            inbox_max=INBOX_MAX,
            ndarray=getattr(sys.modules.get("numpy"), "ndarray", None),  # numpy is optional
            block_rows=BLOCK_ROWS,
        )

    def flush(self, timeout: float | None = None) -> FlushStatus:
        """Wait until every row collected before the call is handled. The status is true when
        they are all in storage; else it says what is still in memory, only in the local spool
        (replayed later), or dropped. ``timeout`` in seconds; ``None`` waits as long as it takes."""
        return self._status(self._pipeline.flush(timeout, self._route))

    def close(self, timeout: float | None = None) -> FlushStatus:
        """Flush, then refuse further rows (they are counted as dropped, reason ``closed``)."""
        if self._closed:
            return self._status(True)
        self._closed = True
        self._sync_fast()
        return self._status(self._pipeline.flush(timeout, self._route))

    async def aflush(self, timeout: float | None = None) -> FlushStatus:
        """``flush()`` for async code (an ASGI lifespan handler): waits in a worker thread, so the
        event loop keeps serving while storage is written."""
        import asyncio

        return await asyncio.to_thread(self.flush, timeout)

    async def aclose(self, timeout: float | None = None) -> FlushStatus:
        """``close()`` for async code (an ASGI lifespan shutdown), run in a worker thread."""
        import asyncio

        return await asyncio.to_thread(self.close, timeout)

    def _status(self, written: bool) -> FlushStatus:
        stats = self.stats()
        written = written and not stats["spooled"] and not stats["pending"]
        return FlushStatus(written=written, pending_rows=stats["pending"], spooled_rows=stats["spooled"],
                           dropped_rows=sum(stats["dropped"].values()))

    def stats(self) -> dict[str, Any]:
        """Rows collected, written, dropped (by reason), pending, and unpaired with inputs."""
        return self._pipeline.stats(self._route)

    def __enter__(self) -> ModelDataCollector:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"ModelDataCollector(model_name={self.model_name!r}, designation={self._designation!r}, "
            f"workspace={self.workspace!r}, webservice_name={self.webservice_name!r}, "
            f"model_version={self.model_version!r}, storage={redact_url(self._storage_url)!r}, "
            f"enabled={self._on})"
        )

    def _fix_columns(self, names: tuple[str, ...] | None, width: int, carried: bool) -> None:
        """The first collect() names the columns when ``feature_names`` did not."""
        with self._columns_lock:
            if self._route.columns is None:
                features = names[:width] if names is not None else default_names(width)
                self._route.columns = _check_feature_names(features)
                self._sync_fast()


if _hotpath is not None:
    # collect() as a compiled method descriptor: a plain row goes straight to the collector's
    # FastPath, without a Python frame; anything else to the Python method above.
    ModelDataCollector.collect = _hotpath.CollectMethod(ModelDataCollector.collect)  # type: ignore[method-assign]


def _check_names(names: tuple[str, ...], columns: tuple[str, ...]) -> None:
    """Named values (a dict, a Series) must name the collector's columns, in any order; frames
    may be renamed by position (``feature_names`` wins), but a dict's keys are its meaning."""
    if names != columns and set(names) != set(columns):
        missing = [c for c in columns if c not in names]
        unknown = [n for n in names if n not in columns]
        raise RowWidthError(
            f"the data names {', '.join(unknown) or 'no unknown features'} and lacks "
            f"{', '.join(missing) or 'nothing'}: its keys must be the collector's features ({', '.join(columns)})"
        )


def _check_schema(schema: Any, names: tuple[str, ...] | None) -> pa.Schema | None:
    """``schema=`` must be a pyarrow schema of exactly the features (``$aml_`` columns are mdc's)."""
    if schema is None:
        return None
    if not isinstance(schema, pa.Schema):
        raise ConfigurationError(f"schema must be a pyarrow.Schema, got {type(schema).__name__}")
    _check_feature_names(schema.names)
    if names is not None and set(schema.names) != set(names):
        missing = [n for n in names if n not in schema.names]
        extra = [n for n in schema.names if n not in names]
        raise ConfigurationError(
            f"schema= does not match feature_names: it lacks {missing or 'nothing'} and has {extra or 'nothing'} "
            "extra; give one type per feature (names starting with '$aml_' are mdc's own)"
        )
    return pa.schema([schema.field(n) for n in (names or schema.names)])


def _check_feature_names(names: Sequence[str] | None) -> tuple[str, ...] | None:
    if names is None:
        return None
    if isinstance(names, (str, bytes)):
        raise ConfigurationError("feature_names must be a list of names, not one string")
    names = tuple(names)
    for name in names:
        if not isinstance(name, str) or not name:
            raise ConfigurationError(f"feature names must be non-empty strings, got {name!r}")
        if name.startswith("$aml_"):
            raise ConfigurationError(
                f"feature name {name!r}: names starting with '$aml_' are mdc's correlation columns"
            )
    if len(set(names)) != len(names):
        dupes = sorted({n for n in names if names.count(n) > 1})
        raise ConfigurationError(f"feature_names has duplicates: {', '.join(dupes)}")
    if not names:
        raise ConfigurationError("feature_names is empty: give at least one name, or None")
    return names


@dataclass(frozen=True)
class FlushStatus:
    """What ``flush()``/``close()`` achieved: true when everything collected before the call is in
    storage. Counts are this collector's rows still in memory, only in the spool, and dropped."""

    written: bool
    pending_rows: int = 0
    spooled_rows: int = 0
    dropped_rows: int = 0

    def __bool__(self) -> bool:
        return self.written


def _spool_on() -> bool:
    value = os.environ.get("MDC_SPOOL", "on")
    if value not in ("on", "off"):
        raise ConfigurationError(
            f"MDC_SPOOL={value!r}: use 'on' (keep each batch on local disk until uploaded) or 'off'"
        )
    return value == "on"


def _compaction_on(argument: str | None) -> bool:
    value = argument if argument is not None else os.environ.get("MDC_COMPACTION", "auto")
    if value not in ("auto", "off"):
        source = "compaction" if argument is not None else "MDC_COMPACTION"
        raise ConfigurationError(f"{source}={value!r}: use 'auto' (compact closed partitions) or 'off'")
    return value == "auto"


def _check_capabilities(backend: BackendPlugin, fmt: FormatPlugin) -> None:
    """A backend must be able to publish this format's files one way or the other."""
    caps = backend.capabilities
    if Capability.CREATE_IF_ABSENT in caps or (Capability.APPEND in caps and fmt.appendable):
        return
    raise ConfigurationError(
        f"backend {backend.name!r} can neither create objects only if absent nor append "
        f"{fmt.name!r} files, so it cannot store this format; choose another format or backend"
    )
