"""mdc: collect the inputs and predictions of production models into object storage.

A drop-in for Azure ML's ``ModelDataCollector``; storage backends and file formats are pluggy
plug-ins (see ``mdc_core.hookspecs``).
"""

from mdc_core.asgi import MdcASGIMiddleware
from mdc_core.collector import FlushStatus, ModelDataCollector
from mdc_core.correlation import NO_REQUEST_ID, request_context
from mdc_core.errors import (
    BackendError,
    ConfigurationError,
    InvalidPathSegmentError,
    MdcError,
    PluginConflictError,
    RowWidthError,
    SchemaConflictError,
    UnknownPluginError,
    UnsupportedInputError,
)
from mdc_core.hookspecs import hookimpl
from mdc_core.join import JoinResult, join
from mdc_core.paths import Layout, partition_path, validate_segment
from mdc_core.records import Backend, BackendPlugin, Capability, Encoded, Format, FormatPlugin
from mdc_core.serving import record_exception
from mdc_core.shapes import AML_COLUMNS
from mdc_core.shutdown import install_sigterm_flush
from mdc_core.store import NoDataError, Partition, Store, open_store
from mdc_core.wsgi import MdcWSGIMiddleware

__version__ = "0.1.0"

__all__ = [
    "AML_COLUMNS",
    "Backend",
    "BackendError",
    "BackendPlugin",
    "Capability",
    "ConfigurationError",
    "Encoded",
    "FlushStatus",
    "Format",
    "FormatPlugin",
    "InvalidPathSegmentError",
    "JoinResult",
    "Layout",
    "MdcASGIMiddleware",
    "MdcError",
    "MdcWSGIMiddleware",
    "ModelDataCollector",
    "NO_REQUEST_ID",
    "NoDataError",
    "Partition",
    "PluginConflictError",
    "RowWidthError",
    "SchemaConflictError",
    "Store",
    "UnknownPluginError",
    "UnsupportedInputError",
    "hookimpl",
    "install_sigterm_flush",
    "join",
    "open_store",
    "partition_path",
    "record_exception",
    "request_context",
    "validate_segment",
]
