"""A FastAPI service around the seed's scoring script (``examples/score.py``: ``init()``/``run()``,
unchanged), served through mdc's ASGI middleware.

    uvicorn --factory examples.fastapi.app:create_app

Every request runs in a request scope: its input and prediction rows carry its id
(``X-Request-ID``, else the ``traceparent`` trace id, else a new one; echoed in the response)
and pair row for row. The middleware also keeps the JSON bodies (``general/.../http_bodies.csv``,
cut at ``MAX_BODY_BYTES``) and the failed requests (``general/.../http_failures.csv``: status and
exception class). The lifespan shutdown closes the collectors without blocking the event loop.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.responses import StreamingResponse
from pydantic import BaseModel

from examples import score
from mdc_core import MdcASGIMiddleware, ModelDataCollector

MAX_BODY_BYTES = 4096


class ScoreRequest(BaseModel):
    data: list[list[float]]


def create_app() -> MdcASGIMiddleware:
    score.init()  # the scoring script's collectors: inputs_dc, prediction_dc
    bodies_dc = ModelDataCollector("best_model", designation="general", collection_name="http_bodies")
    failures_dc = ModelDataCollector("best_model", designation="general", collection_name="http_failures")

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        for collector in (score.inputs_dc, score.prediction_dc, bodies_dc, failures_dc):
            await collector.aclose(10)  # writes what is queued; the loop keeps serving meanwhile

    api = FastAPI(lifespan=lifespan)

    @api.post("/score")
    def score_rows(request: ScoreRequest) -> dict:
        return {"result": score.run(request.data)}  # ragged rows: numpy raises, a failed request

    @api.post("/score/stream")
    def score_stream(request: ScoreRequest) -> StreamingResponse:
        """One NDJSON line per row, scored as it is streamed: the rows still get the request's id."""
        def lines():
            for row in request.data:
                yield json.dumps({"result": score.run([row])[0]}) + "\n"
        return StreamingResponse(lines(), media_type="application/x-ndjson")

    # Wrapping the whole app (rather than api.add_middleware) also echoes the id on the
    # 500 page Starlette writes for an unhandled exception.
    return MdcASGIMiddleware(api, bodies=bodies_dc, failures=failures_dc, max_body_bytes=MAX_BODY_BYTES)
