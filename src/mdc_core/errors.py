"""The exceptions mdc raises, and when.

Misuse raises at once, where the mistake is made; storage trouble never reaches ``collect()``::

    MdcError                              base of everything below
    ├── ConfigurationError(ValueError)    a bad argument or environment value, found when a
    │   │                                 collector is built (fix the argument or variable)
    │   ├── InvalidPathSegmentError       a name that cannot be a folder of the storage layout
    │   ├── UnknownPluginError(LookupError)  no backend/format of that name or URL scheme;
    │   │                                 the message lists the known ones
    │   └── PluginConflictError           two plug-ins claim the same name or URL scheme
    ├── UnsupportedInputError(TypeError)  ``collect()`` got a type it cannot store
    ├── RowWidthError(ValueError)         a row with more or fewer values than the collector's columns
    ├── SchemaConflictError(ValueError)   with ``schema_mode="strict"``, values whose type conflicts
    │                                     with the collector's schema (mdc_core.typecheck)
    ├── BackendError(OSError)             a backend could not write; raised by backends, caught,
    │                                     counted and logged by the flusher, never by ``collect()``
    └── SpoolFull(OSError)                the local spool is at its byte cap or its disk is full
                                          (mdc_core.spool); the batch is uploaded without a copy

Backends map their library's exceptions to ``BackendError`` at their boundary with
``raise BackendError(...) from exc`` and never put a credential in the message.
"""

from __future__ import annotations


class MdcError(Exception):
    """Base class of every exception raised by mdc."""


class ConfigurationError(MdcError, ValueError):
    """A collector was configured with a value it cannot use."""


class InvalidPathSegmentError(ConfigurationError):
    """A workspace, service, model, version or collection name cannot be a path segment."""


class UnknownPluginError(ConfigurationError, LookupError):
    """No registered plug-in has the requested name or URL scheme."""


class PluginConflictError(ConfigurationError):
    """Two plug-ins register the same name or URL scheme."""


class UnsupportedInputError(MdcError, TypeError):
    """``collect()`` was given data of a type it does not accept."""


class RowWidthError(MdcError, ValueError):
    """A row's number of values differs from the collector's number of columns."""


class SchemaConflictError(MdcError, ValueError):
    """A strict collector got values of a type its schema cannot hold (text in a float column)."""


class BackendError(MdcError, OSError):
    """A storage backend failed to write; the flusher retries, counts and logs it."""
