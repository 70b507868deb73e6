"""Compiled fast paths, optional: without a C compiler mdc installs and runs as pure Python.

Everything else about the package is in pyproject.toml.
"""

from setuptools import Extension, setup

HANDOFF = ["src/mdc_core/_handoff.h"]  # shared by _hotpath and _durable

setup(
    ext_modules=[
        Extension("mdc_core._hotpath", ["src/mdc_core/_hotpath.c"], depends=HANDOFF, optional=True),
        Extension("mdc_core._transpose", ["src/mdc_core/_transpose.c"], optional=True),
        Extension("mdc_core._durable", ["src/mdc_core/_durable.c"], depends=HANDOFF, optional=True),
    ]
)
