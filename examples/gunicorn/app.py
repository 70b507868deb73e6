"""A WSGI scoring service with the seed's shape, for gunicorn (``--preload`` works too).

    gunicorn -c examples/gunicorn/gunicorn.conf.py examples.gunicorn.app:app

The collectors are built at import: with ``--preload`` that is in the master, before the
workers fork; each worker then collects with its own queue, flusher and writer id.
"""

from __future__ import annotations

import json

from mdc_core import ModelDataCollector, request_context

inputs_dc = ModelDataCollector("best_model", designation="inputs", feature_names=["request", "x"])
prediction_dc = ModelDataCollector("best_model", designation="predictions", feature_names=["y"])


def app(environ, start_response):
    body = json.loads(environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0)) or b"{}")
    with request_context(environ.get("HTTP_X_REQUEST_ID")):
        inputs_dc.collect([body["request"], body["x"]])
        prediction_dc.collect([body["x"] * 2])
    start_response("200 OK", [("Content-Type", "application/json")])
    return [b'{"ok": true}']
