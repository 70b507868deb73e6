"""A Flask service around the seed's scoring script (``examples/score.py``: ``init()``/``run()``,
unchanged), served through mdc's WSGI middleware.

    flask --app examples.flask.app run          # or: gunicorn 'examples.flask.app:create_app()'

Every request runs in a request scope: its input and prediction rows carry its id
(``X-Request-ID``, else the ``traceparent`` trace id, else a new one; echoed in the response)
and pair row for row. The middleware also keeps the JSON bodies (``general/.../http_bodies.csv``,
cut at ``MAX_BODY_BYTES``) and the failed requests (``general/.../http_failures.csv``: status and
exception class; Flask turns exceptions into 500 responses itself, so ``got_request_exception``
tells mdc the class). Under gunicorn, close the collectors in ``worker_exit`` as in
``examples/gunicorn``; otherwise the exit hook writes what is queued.
"""

from __future__ import annotations

import json

from flask import Flask, Response, got_request_exception, request

from examples import score
from mdc_core import MdcWSGIMiddleware, ModelDataCollector, record_exception

MAX_BODY_BYTES = 4096


def _record(sender: Flask, exception: BaseException, **extra: object) -> None:
    record_exception(exception)  # the class goes into the failure row; the message never does


def create_app() -> Flask:
    score.init()  # the scoring script's collectors: inputs_dc, prediction_dc
    app = Flask(__name__)
    app.extensions["mdc"] = {
        "bodies": ModelDataCollector("best_model", designation="general", collection_name="http_bodies"),
        "failures": ModelDataCollector("best_model", designation="general", collection_name="http_failures"),
    }

    @app.post("/score")
    def score_rows():
        return {"result": score.run(request.get_json()["data"])}  # ragged rows: numpy raises, a failed request

    @app.post("/score/stream")
    def score_stream():
        """One NDJSON line per row, scored as it is streamed: the rows still get the request's id."""
        data = request.get_json()["data"]

        def lines():
            for row in data:
                yield json.dumps({"result": score.run([row])[0]}) + "\n"
        return Response(lines(), mimetype="application/x-ndjson")

    got_request_exception.connect(_record, app)
    app.wsgi_app = MdcWSGIMiddleware(app.wsgi_app, max_body_bytes=MAX_BODY_BYTES, **app.extensions["mdc"])
    return app
