"""The ASGI middleware, driven as a server would drive it (no framework): request ids into rows and
echoed, body and failure capture read back from storage, streaming and exceptions, and the
request-id rules it shares with the WSGI middleware (``mdc_core.serving``)."""

from __future__ import annotations

import asyncio
import json
import re

import pytest

from conftest import data_files
from mdc_core import NO_REQUEST_ID, ConfigurationError, FlushStatus, MdcASGIMiddleware, ModelDataCollector
from mdc_core.correlation import current_request_id
from mdc_core.serving import BODY_COLUMNS, FAILURE_COLUMNS, resolve_request_id, trace_id_of
from serving import break_captures, collectors, flush_all, rows

UUID4 = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
TRACE_UUID = "4bf92f35-77b3-4da6-a3ce-929d0e0e4736"


# -- request-id rules (mdc_core.serving, shared by both middlewares) -----------------------------

@pytest.mark.parametrize(
    ("header", "traceparent", "expected"),
    [
        ("req-1", TRACEPARENT, "req-1"),
        ("  req 2  ", None, "req 2"),
        ("x" * 128, None, "x" * 128),
        ("x" * 129, TRACEPARENT, TRACE_UUID),
        ("bad\nid", TRACEPARENT, TRACE_UUID),
        ("caf\u00e9", TRACEPARENT, TRACE_UUID),
        ("", TRACEPARENT, TRACE_UUID),
        (None, " " + TRACEPARENT + " ", TRACE_UUID),
        (None, "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra", TRACE_UUID),
    ],
)
def test_request_id_rules(header, traceparent, expected) -> None:
    """X-Request-ID (1-128 printable ASCII) wins, else the traceparent's trace id UUID-style."""
    assert resolve_request_id(header, traceparent) == expected


@pytest.mark.parametrize(
    "traceparent",
    [
        "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",  # forbidden version
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01",  # all-zero trace id
        "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",  # all-zero parent id
        "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",  # upper case
        "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",  # short trace id
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",  # extra field in version 00
        "garbage",
    ],
)
def test_invalid_traceparent_gives_a_new_uuid4(traceparent) -> None:
    """An invalid traceparent is ignored: the id is a fresh uuid4."""
    assert trace_id_of(traceparent) is None
    first, second = resolve_request_id(None, traceparent), resolve_request_id(None, traceparent)
    assert UUID4.match(first) and UUID4.match(second) and first != second


# -- a tiny ASGI server -------------------------------------------------------------------------

def http_scope(headers=(), method="POST", path="/score", content_type="application/json"):
    raw = [(k.lower().encode(), v.encode("latin-1")) for k, v in headers]
    if content_type:
        raw.append((b"content-type", content_type.encode()))
    return {"type": "http", "method": method, "path": path, "query_string": b"secret=1", "headers": raw}


async def serve(app, scope, body_chunks=(b"",)):
    """Feed ``body_chunks`` as http.request messages; return the messages the app sent."""
    incoming = [{"type": "http.request", "body": c, "more_body": i < len(body_chunks) - 1}
                for i, c in enumerate(body_chunks)]
    sent = []

    async def receive():
        return incoming.pop(0) if incoming else {"type": "http.disconnect"}

    async def send(message):
        sent.append(message)

    await app(scope, receive, send)
    return sent


def run(app, headers=(), body_chunks=(b"",), **kw):
    return asyncio.run(serve(app, http_scope(headers, **kw), body_chunks))


def echoed(sent) -> str:
    [start] = [m for m in sent if m["type"] == "http.response.start"]
    values = [v.decode() for k, v in start["headers"] if k.lower() == b"x-request-id"]
    assert len(values) == 1, values
    return values[0]




def scoring_app(inputs, preds, response_headers=()):
    """Reads the whole JSON body, collects its rows and their predictions, answers JSON."""

    async def app(scope, receive, send):
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        data = json.loads(body)["data"]
        inputs.collect(data)
        preds.collect([[a + b] for a, b in data])
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/json"), *response_headers]})
        await send({"type": "http.response.body", "body": json.dumps({"n": len(data)}).encode()})

    return app


# -- request ids --------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("headers", "expected"),
    [([("X-Request-ID", "req-7")], "req-7"), ([("traceparent", TRACEPARENT)], TRACE_UUID), ([], None)],
    ids=["header", "traceparent", "generated"],
)
def test_request_id_reaches_rows_and_is_echoed(tmp_path, headers, expected) -> None:
    """Inputs and predictions of the request carry its id, paired row for row; the response
    echoes it once, replacing an X-Request-ID the application set."""
    inputs, preds, _, _ = collectors(tmp_path)
    app = MdcASGIMiddleware(scoring_app(inputs, preds, [(b"X-Request-ID", b"app-made")]))
    sent = run(app, headers, [json.dumps({"data": [[1, 2], [3, 4]]}).encode()])
    request_id = echoed(sent)
    if expected is None:
        assert UUID4.match(request_id)
    else:
        assert request_id == expected
    flush_all(inputs, preds)
    ins, outs = rows(tmp_path, "inputs"), rows(tmp_path, "predictions")
    assert [r["$aml_request_id"] for r in ins + outs] == [request_id] * 4
    by_id = {r["$aml_dc_correlation_id"]: r for r in ins}
    for out in outs:
        src = by_id[out["$aml_dc_correlation_id"]]
        assert int(out["y"]) == int(src["a"]) + int(src["b"])
    assert current_request_id() == NO_REQUEST_ID  # the scope ended with the request


def test_concurrent_requests_keep_their_own_ids_and_pairs(tmp_path) -> None:
    """Fifty interleaved requests on one event loop: every row has its own request's id and pair."""
    inputs, preds, _, _ = collectors(tmp_path)

    async def app(scope, receive, send):
        message = await receive()
        n = json.loads(message["body"])["n"]
        inputs.collect([n, n])
        await asyncio.sleep(0)  # let the other requests run in between
        preds.collect([n * 10])
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    middleware = MdcASGIMiddleware(app)

    async def main():
        return await asyncio.gather(*(
            serve(middleware, http_scope([("X-Request-ID", f"r{n}")]), [json.dumps({"n": n}).encode()])
            for n in range(50)
        ))

    asyncio.run(main())
    flush_all(inputs, preds)
    ins = {r["$aml_dc_correlation_id"]: r for r in rows(tmp_path, "inputs")}
    outs = rows(tmp_path, "predictions")
    assert len(ins) == len(outs) == 50
    for out in outs:
        src = ins[out["$aml_dc_correlation_id"]]
        assert out["$aml_request_id"] == src["$aml_request_id"] == f"r{src['a']}"
        assert int(out["y"]) == int(src["a"]) * 10


def test_rows_collected_while_streaming_get_the_request_id(tmp_path) -> None:
    """A streamed response whose chunks are scored as they are sent: the predictions collected
    after the response started still carry the request id and pair with the inputs."""
    inputs, preds, bodies, _ = collectors(tmp_path)

    async def app(scope, receive, send):
        await receive()
        inputs.collect([[1, 2], [3, 4]])
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": b"[", "more_body": True})
        preds.collect([[3], [7]])
        await send({"type": "http.response.body", "body": b"3,7]", "more_body": True})
        await send({"type": "http.response.body", "body": b""})

    sent = run(MdcASGIMiddleware(app, bodies=bodies), [("X-Request-ID", "stream-1")])
    assert b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body") == b"[3,7]"
    flush_all(inputs, preds, bodies)
    ins, outs = rows(tmp_path, "inputs"), rows(tmp_path, "predictions")
    assert [r["$aml_dc_correlation_id"] for r in outs] == [r["$aml_dc_correlation_id"] for r in ins]
    assert {r["$aml_request_id"] for r in ins + outs} == {"stream-1"}
    [body] = rows(tmp_path, "general", "http_bodies")
    assert body["response_body"] == "[3,7]" and body["response_bytes"] == "5"


def test_websocket_gets_a_request_scope_and_lifespan_passes_through(tmp_path) -> None:
    """Websocket handlers collect inside a scope (id from the handshake headers); lifespan
    messages reach the application untouched."""
    inputs, *_ = collectors(tmp_path)
    seen = []

    async def app(scope, receive, send):
        seen.append((scope["type"], current_request_id()))
        if scope["type"] == "websocket":
            inputs.collect([1, 2])

    async def main():
        async def nothing():
            return {}

        async def drop(message):
            pass

        middleware = MdcASGIMiddleware(app)
        await middleware({"type": "lifespan"}, nothing, drop)
        await middleware({"type": "websocket", "path": "/ws", "headers": [(b"x-request-id", b"ws-1")]}, nothing, drop)

    asyncio.run(main())
    assert seen == [("lifespan", NO_REQUEST_ID), ("websocket", "ws-1")]
    flush_all(inputs)
    assert [r["$aml_request_id"] for r in rows(tmp_path, "inputs")] == ["ws-1"]


# -- body capture -------------------------------------------------------------------------------

def test_bodies_captured_without_disturbing_the_app(tmp_path) -> None:
    """A body sent in three chunks reaches the app whole and is captured whole, with its
    response, sizes, status, method and path (never the query string)."""
    inputs, preds, bodies, failures = collectors(tmp_path)
    payload = json.dumps({"data": [[1, 2], [3, 4], [5, 6]]}).encode()
    chunks = [payload[:5], payload[5:20], payload[20:]]
    sent = run(MdcASGIMiddleware(scoring_app(inputs, preds), bodies=bodies, failures=failures),
               [("X-Request-ID", "b-1")], chunks)
    assert sent[-1]["body"] == b'{"n": 3}'
    flush_all(inputs, preds, bodies, failures)
    [row] = rows(tmp_path, "general", "http_bodies")
    assert list(row)[: len(BODY_COLUMNS)] == list(BODY_COLUMNS)
    assert row["request_body"] == payload.decode() and row["request_bytes"] == str(len(payload))
    assert row["response_body"] == '{"n": 3}' and row["response_bytes"] == "8"
    assert (row["request_truncated"], row["response_truncated"]) == ("false", "false")
    assert (row["method"], row["path"], row["status"], row["$aml_request_id"]) == ("POST", "/score", "200", "b-1")
    assert not rows(tmp_path, "general", "http_failures")  # a 200 is no failure
    assert len(rows(tmp_path, "inputs")) == 3


def test_bodies_over_the_limit_are_cut_and_flagged(tmp_path) -> None:
    """Past max_body_bytes a body is cut (never inside a UTF-8 character) and flagged; the
    full size is kept; the application still gets and sends every byte."""
    _, _, bodies, _ = collectors(tmp_path)
    request = json.dumps({"text": "é" * 20}, ensure_ascii=False).encode()  # 2-byte characters
    response = b'{"ok": "' + b"x" * 100 + b'"}'
    received = []

    async def app(scope, receive, send):
        received.append((await receive())["body"])
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/json; charset=utf-8")]})
        await send({"type": "http.response.body", "body": response[:50], "more_body": True})
        await send({"type": "http.response.body", "body": response[50:]})

    sent = run(MdcASGIMiddleware(app, bodies=bodies, max_body_bytes=12), [], [request])
    assert received == [request]
    assert b"".join(m.get("body", b"") for m in sent[1:]) == response
    flush_all(bodies)
    [row] = rows(tmp_path, "general", "http_bodies")
    assert row["request_body"] == '{"text": "é'  # 11 bytes: the 12th is half an "é", left out
    assert row["request_bytes"] == str(len(request)) and row["request_truncated"] == "true"
    assert row["response_body"] == response[:12].decode() and row["response_truncated"] == "true"
    assert row["response_bytes"] == str(len(response))


def test_non_json_bodies_are_counted_not_kept(tmp_path) -> None:
    """Form posts and text responses are not JSON: their sizes are recorded, their text is not."""
    _, _, bodies, _ = collectors(tmp_path)

    async def app(scope, receive, send):
        await receive()
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": b"hello"})

    run(MdcASGIMiddleware(app, bodies=bodies), [], [b"user=alice&card=4111"],
        content_type="application/x-www-form-urlencoded")
    flush_all(bodies)
    [row] = rows(tmp_path, "general", "http_bodies")
    assert (row["request_body"], row["request_bytes"], row["request_truncated"]) == ("", "20", "false")
    assert (row["response_body"], row["response_bytes"]) == ("", "5")


# -- failure capture ----------------------------------------------------------------------------

class SecretError(RuntimeError):
    pass


def test_exception_escaping_the_app_is_recorded_by_class_only(tmp_path) -> None:
    """An exception escaping before a response: a failure row with status 500 and the class,
    never the message; the exception still reaches the server; the scope is closed."""
    inputs, preds, bodies, failures = collectors(tmp_path)

    async def app(scope, receive, send):
        await receive()
        inputs.collect([1, 2])
        raise SecretError("card number 4111-1111-1111-1111")

    with pytest.raises(SecretError):
        run(MdcASGIMiddleware(app, bodies=bodies, failures=failures), [("X-Request-ID", "f-1")], [b"{}"])
    assert current_request_id() == NO_REQUEST_ID
    flush_all(inputs, bodies, failures)
    [row] = rows(tmp_path, "general", "http_failures")
    assert list(row)[: len(FAILURE_COLUMNS)] == list(FAILURE_COLUMNS)
    assert (row["method"], row["path"], row["status"]) == ("POST", "/score", "500")
    assert row["error"] == f"{__name__}.SecretError" and row["$aml_request_id"] == "f-1"
    assert rows(tmp_path, "inputs")[0]["$aml_request_id"] == "f-1"
    assert rows(tmp_path, "general", "http_bodies")[0]["status"] == "500"
    for path in data_files(tmp_path):
        with open(path, encoding="utf-8") as f:
            assert "4111" not in f.read()


def test_server_error_answered_by_the_app_is_recorded_without_class(tmp_path) -> None:
    """A 503 the application sends itself is a failure (error empty); a 404 is not."""
    _, _, _, failures = collectors(tmp_path)

    def answering(status):
        async def app(scope, receive, send):
            await send({"type": "http.response.start", "status": status, "headers": []})
            await send({"type": "http.response.body", "body": b""})
        return app

    run(MdcASGIMiddleware(answering(503), failures=failures), [("X-Request-ID", "s-503")])
    run(MdcASGIMiddleware(answering(404), failures=failures), [("X-Request-ID", "s-404")])
    flush_all(failures)
    [row] = rows(tmp_path, "general", "http_failures")
    assert (row["status"], row["error"], row["$aml_request_id"]) == ("503", "", "s-503")


def test_exception_mid_stream_keeps_the_status_sent(tmp_path) -> None:
    """An exception after the response started records the status already sent and the class."""
    _, _, _, failures = collectors(tmp_path)

    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"partial", "more_body": True})
        raise KeyError("user-42")

    with pytest.raises(KeyError):
        run(MdcASGIMiddleware(app, failures=failures))
    flush_all(failures)
    [row] = rows(tmp_path, "general", "http_failures")
    assert (row["status"], row["error"]) == ("200", "KeyError")


def test_capture_errors_never_reach_the_request(tmp_path, monkeypatch, caplog) -> None:
    """A capture collector that raises is logged; the request is answered as if it weren't there."""
    inputs, preds, bodies, failures = collectors(tmp_path)
    break_captures(monkeypatch, bodies, failures)
    app = MdcASGIMiddleware(scoring_app(inputs, preds), bodies=bodies, failures=failures)
    sent = run(app, [("X-Request-ID", "ok-1")], [b'{"data": [[1, 2]]}'])
    assert sent[0]["status"] == 200 and sent[-1]["body"] == b'{"n": 1}' and echoed(sent) == "ok-1"
    assert "capture broke" in caplog.text
    flush_all(inputs)
    assert [r["$aml_request_id"] for r in rows(tmp_path, "inputs")] == ["ok-1"]


def test_capture_collectors_are_checked_at_construction(tmp_path) -> None:
    """Capture goes to general collectors whose columns are the capture's; bad settings raise at once."""
    inputs, *_ = collectors(tmp_path)
    with pytest.raises(ConfigurationError, match="designation='general'"):
        MdcASGIMiddleware(scoring_app(inputs, inputs), bodies=inputs)
    named = ModelDataCollector("m", designation="general", collection_name="x", feature_names=["a"], storage=tmp_path)
    with pytest.raises(ConfigurationError, match="feature_names"):
        MdcASGIMiddleware(scoring_app(inputs, inputs), failures=named)
    with pytest.raises(ConfigurationError, match="max_body_bytes"):
        MdcASGIMiddleware(scoring_app(inputs, inputs), max_body_bytes=-1)
    exact = ModelDataCollector("m", designation="general", collection_name="y", feature_names=list(FAILURE_COLUMNS),
                               storage=tmp_path)
    MdcASGIMiddleware(scoring_app(inputs, inputs), failures=exact)


# -- aflush / aclose ----------------------------------------------------------------------------

def test_aflush_and_aclose_return_flush_status_without_blocking_the_loop(tmp_path) -> None:
    """aflush() writes what was collected and returns flush()'s FlushStatus; the event loop runs
    other tasks meanwhile; aclose() then refuses rows like close()."""
    inputs, *_ = collectors(tmp_path)

    async def main():
        inputs.collect([[1, 2], [3, 4]])
        ticks = 0

        async def ticker():
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0)

        task = asyncio.create_task(ticker())
        flushed = await inputs.aflush(30)
        closed = await inputs.aclose(30)
        task.cancel()
        return flushed, closed, ticks

    flushed, closed, ticks = asyncio.run(main())
    assert flushed == FlushStatus(written=True) and closed == FlushStatus(written=True)
    assert ticks > 0
    assert len(rows(tmp_path, "inputs")) == 2
    inputs.collect([5, 6])
    assert inputs.stats()["dropped"]["closed"] == 1


def test_disabled_capture_collectors_capture_nothing_until_enabled(tmp_path) -> None:
    """Capture follows its collectors' run-time switch: off, requests leave no capture rows; on
    again, the next request is captured."""
    inputs, preds, bodies, failures = collectors(tmp_path)
    bodies.enabled = failures.enabled = False
    app = MdcASGIMiddleware(scoring_app(inputs, preds), bodies=bodies, failures=failures)
    assert run(app, [("X-Request-ID", "off")], [b'{"data": [[1, 2]]}'])[0]["status"] == 200
    bodies.enabled = None
    run(app, [("X-Request-ID", "on")], [b'{"data": [[1, 2]]}'])
    flush_all(inputs, preds, bodies, failures)
    assert [r["$aml_request_id"] for r in rows(tmp_path, "general", "http_bodies")] == ["on"]
    assert [r["$aml_request_id"] for r in rows(tmp_path, "inputs")] == ["off", "on"]
