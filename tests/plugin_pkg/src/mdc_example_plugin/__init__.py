"""An example third-party mdc plug-in distribution (used by mdc's own tests and docs).

* ``mdc_example_plugin.memdir``: the ``memdir://<directory>`` storage backend, create-only.
* ``mdc_example_plugin.jsonl``: the ``jsonl`` file format, one JSON object per row.

Each module is its own entry point in the ``mdc`` group, so either can be blocked by name.
"""
