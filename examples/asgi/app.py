"""An ASGI scoring service with the seed's shape, for uvicorn (or any ASGI server).

    uvicorn examples.asgi.app:app

Plain ASGI, no framework, so the lifespan hook is visible: on shutdown (uvicorn's answer to
SIGTERM, after in-flight requests finish) it closes the collectors, which writes what they
queued. With FastAPI or Starlette the same two lines go in the ``lifespan`` context manager.
"""

from __future__ import annotations

import asyncio
import json

from mdc_core import ModelDataCollector, request_context

inputs_dc = ModelDataCollector("best_model", designation="inputs", feature_names=["request", "x"])
prediction_dc = ModelDataCollector("best_model", designation="predictions", feature_names=["y"])


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                # close() waits for storage: run it off the event loop
                await asyncio.to_thread(inputs_dc.close, 10)
                await asyncio.to_thread(prediction_dc.close, 10)
                await send({"type": "lifespan.shutdown.complete"})
                return
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    payload = json.loads(body or b"{}")
    request_id = dict(scope["headers"]).get(b"x-request-id", b"").decode() or None
    with request_context(request_id):
        inputs_dc.collect([payload["request"], payload["x"]])
        prediction_dc.collect([payload["x"] * 2])
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": b'{"ok": true}'})
