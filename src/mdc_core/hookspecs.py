"""The pluggy hooks a plug-in implements. ``mdc_backends`` and ``mdc_formats`` run once, when the
plug-in registry is built; ``mdc_transform_batch`` runs in the flusher, once per batch.

A plug-in is a module (or object) exposed under the ``mdc`` entry-point group::

    # pyproject.toml of a plug-in package
    [project.entry-points.mdc]
    mybackend = "my_package.mdc_plugin"

    # my_package/mdc_plugin.py
    from mdc_core import BackendPlugin, Capability, hookimpl

    @hookimpl
    def mdc_backends():
        return [BackendPlugin(name="mine", schemes=("mine",), factory=MyBackend,
                              capabilities=frozenset({Capability.CREATE_IF_ABSENT}))]

See ``docs/plugin_hooks.md`` for every hook with a runnable example.
"""

from __future__ import annotations

import pluggy
import pyarrow as pa

from mdc_core.records import BackendPlugin, BatchContext, FormatPlugin

PROJECT = "mdc"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)
"""Marks a plug-in's implementation of an ``mdc_*`` hook."""


@hookspec
def mdc_backends() -> list[BackendPlugin]:  # type: ignore[empty-body]
    """Return the storage backends this plug-in provides.

    Called once per process, when the registry is first needed (the first collector built).
    Each ``BackendPlugin`` names a backend, the URL schemes it serves and its capabilities;
    its ``factory(root_url, storage_options)`` runs once per storage root, and the backend it
    returns receives whole encoded batches from the flusher thread, never single rows.
    """


@hookspec
def mdc_formats() -> list[FormatPlugin]:  # type: ignore[empty-body]
    """Return the file formats this plug-in provides.

    Called once per process, with ``mdc_backends``. Each ``FormatPlugin`` names a format and
    its file extension, and says whether bodies may be appended to one file; its
    ``factory(format_options)`` runs once per collector, and the format it returns encodes one
    Arrow table per batch and partition in the flusher thread.
    """


@hookspec
def mdc_transform_batch(table: pa.Table, context: BatchContext) -> pa.Table | None:
    """Change a batch before it is written (drop, hash or mask columns, or anything else).

    Called in the flusher thread once per batch and collector, never per ``collect()`` call,
    after sampling and before encoding. Implementations run in registration order, each given
    the previous one's result; return a table to replace the batch, or ``None`` to leave it.
    If one raises, the batch is counted as dropped (reason ``transform_error``) and logged: a
    privacy transform that failed must not let the raw rows through.
    """
