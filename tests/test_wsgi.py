"""The WSGI middleware, driven as a WSGI server drives it (no framework): request ids into rows and
echoed, the scope kept while the body is iterated, ``wsgi.input`` and the body observed without
disturbing the application, and body and failure capture read back from storage."""

from __future__ import annotations

import io
import json
import re
from wsgiref.util import setup_testing_defaults

import pytest

from conftest import data_files
from mdc_core import NO_REQUEST_ID, MdcWSGIMiddleware, record_exception
from mdc_core.correlation import current_request_id
from serving import break_captures, collectors, flush_all, rows

UUID4 = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


class Served:
    """What a WSGI server saw: status, headers, body; whether it closed the iterable."""

    def __init__(self, status, headers, body):
        self.status, self.headers, self.body = status, headers, body

    def header(self, name):
        values = [v for k, v in self.headers if k.lower() == name.lower()]
        assert len(values) == 1, values
        return values[0]


def serve(app, body=b"", headers=(), path="/score", content_type="application/json"):
    environ = {"REQUEST_METHOD": "POST", "PATH_INFO": path, "QUERY_STRING": "token=secret",
               "CONTENT_LENGTH": str(len(body)), "wsgi.input": io.BytesIO(body)}
    if content_type:
        environ["CONTENT_TYPE"] = content_type
    for name, value in headers:
        environ["HTTP_" + name.upper().replace("-", "_")] = value
    setup_testing_defaults(environ)
    started = {}
    written = []

    def start_response(status, response_headers, exc_info=None):
        started.update(status=status, headers=response_headers)
        return written.append

    result = app(environ, start_response)
    try:
        chunks = list(result)
    finally:
        if hasattr(result, "close"):
            result.close()
    return Served(started["status"], started["headers"], b"".join(written) + b"".join(chunks))




def streaming_app(inputs, preds):
    """Collects the inputs when called and each prediction while its chunk is iterated."""

    def app(environ, start_response):
        data = json.loads(environ["wsgi.input"].read(int(environ["CONTENT_LENGTH"])))["data"]
        inputs.collect(data)
        start_response("200 OK", [("Content-Type", "application/json"), ("X-Request-ID", "app-made")])

        def chunks():
            yield b"["
            for i, (a, b) in enumerate(data):
                preds.collect([a + b])  # one input row per request here: it pairs
                yield (b"," if i else b"") + str(a + b).encode()
            yield b"]"

        return chunks()

    return app


@pytest.mark.parametrize(
    ("headers", "expected"),
    [([("X-Request-ID", "req-7")], "req-7"),
     ([("traceparent", TRACEPARENT)], "4bf92f35-77b3-4da6-a3ce-929d0e0e4736"),
     ([], None)],
    ids=["header", "traceparent", "generated"],
)
def test_request_id_reaches_rows_collected_while_streaming_and_is_echoed(tmp_path, headers, expected) -> None:
    """Inputs collected in the app call and a prediction collected while the body is iterated both
    carry the request's id and pair; the response echoes the id once (replacing the app's)."""
    inputs, preds, _, _ = collectors(tmp_path)
    served = serve(MdcWSGIMiddleware(streaming_app(inputs, preds)), json.dumps({"data": [[1, 2]]}).encode(), headers)
    assert served.body == b"[3]"
    request_id = served.header("X-Request-ID")
    assert UUID4.match(request_id) if expected is None else request_id == expected
    assert current_request_id() == NO_REQUEST_ID  # nothing leaks past close()
    flush_all(inputs, preds)
    [src], [out] = rows(tmp_path, "inputs"), rows(tmp_path, "predictions")
    assert src["$aml_request_id"] == out["$aml_request_id"] == request_id
    assert out["$aml_dc_correlation_id"] == src["$aml_dc_correlation_id"] and out["y"] == "3"


def test_interleaved_requests_on_one_thread_keep_their_scopes(tmp_path) -> None:
    """Two bodies iterated alternately (as an async-capable WSGI host might): each chunk's rows
    get their own request's id and pair with their own inputs."""
    inputs, preds, _, _ = collectors(tmp_path)
    app = MdcWSGIMiddleware(streaming_app(inputs, preds))

    def start(env_body, rid):
        environ = {"REQUEST_METHOD": "POST", "CONTENT_LENGTH": str(len(env_body)),
                   "wsgi.input": io.BytesIO(env_body), "HTTP_X_REQUEST_ID": rid}
        setup_testing_defaults(environ)
        return iter(app(environ, lambda status, headers, exc_info=None: None))

    first = start(b'{"data": [[1, 1]]}', "one")
    second = start(b'{"data": [[2, 2]]}', "two")
    assert current_request_id() == NO_REQUEST_ID
    for _ in range(3):
        next(first)
        next(second)
    flush_all(inputs, preds)
    ins = {r["$aml_dc_correlation_id"]: r for r in rows(tmp_path, "inputs")}
    for out in rows(tmp_path, "predictions"):
        src = ins[out["$aml_dc_correlation_id"]]
        assert out["$aml_request_id"] == src["$aml_request_id"] == {"1": "one", "2": "two"}[src["a"]]


def test_input_read_every_way_is_captured_once(tmp_path) -> None:
    """read(n), readline(), readinto(), read1() and iteration of wsgi.input give the app every byte once; the capture
    sees the same bytes; the legacy write() callable's output is captured too."""
    _, _, bodies, _ = collectors(tmp_path)
    payload = b'{"a": 1,\n"b": 2,\n"c": 3}'
    got = []

    def app(environ, start_response):
        stream = environ["wsgi.input"]
        got.append(stream.read(3))
        got.append(stream.readline())
        buffer = bytearray(4)
        got.append(bytes(buffer[: stream.readinto(buffer)]))
        got.append(stream.read1(2))
        got.extend(stream)
        write = start_response("200 OK", [("Content-Type", "application/json")])
        write(b'{"got":')
        return [b" true}"]

    served = serve(MdcWSGIMiddleware(app, bodies=bodies), payload)
    assert b"".join(got) == payload and served.body == b'{"got": true}'
    flush_all(bodies)
    [row] = rows(tmp_path, "general", "http_bodies")
    assert row["request_body"] == payload.decode() and row["request_bytes"] == str(len(payload))
    assert row["response_body"] == '{"got": true}' and row["response_bytes"] == "13"
    assert (row["method"], row["path"], row["status"]) == ("POST", "/score", "200")


def test_bodies_over_the_limit_are_cut_and_flagged(tmp_path) -> None:
    """Past max_body_bytes both bodies are cut and flagged, with their full sizes."""
    _, _, bodies, _ = collectors(tmp_path)
    request = json.dumps({"x": "y" * 50}).encode()

    def app(environ, start_response):
        environ["wsgi.input"].read()
        start_response("200 OK", [("Content-Type", "application/problem+json")])
        return [b'{"detail": "', b"z" * 40, b'"}']

    serve(MdcWSGIMiddleware(app, bodies=bodies, max_body_bytes=10), request)
    flush_all(bodies)
    [row] = rows(tmp_path, "general", "http_bodies")
    assert (row["request_body"], row["request_truncated"]) == (request[:10].decode(), "true")
    assert row["request_bytes"] == str(len(request))
    assert (row["response_body"], row["response_truncated"], row["response_bytes"]) == ('{"detail":', "true", "54")


def test_exception_from_the_app_is_recorded_by_class_only(tmp_path) -> None:
    """An exception raised by the app call: status 500 and the class, never the message; the
    exception reaches the server and the scope is closed."""
    inputs, _, bodies, failures = collectors(tmp_path)

    def app(environ, start_response):
        inputs.collect([1, 2])
        raise ValueError("patient alice, 4111-1111")

    with pytest.raises(ValueError):
        serve(MdcWSGIMiddleware(app, bodies=bodies, failures=failures), b"{}", [("X-Request-ID", "f-1")])
    assert current_request_id() == NO_REQUEST_ID
    flush_all(inputs, bodies, failures)
    [row] = rows(tmp_path, "general", "http_failures")
    assert (row["method"], row["path"], row["status"], row["error"]) == ("POST", "/score", "500", "ValueError")
    assert row["$aml_request_id"] == rows(tmp_path, "inputs")[0]["$aml_request_id"] == "f-1"
    for path in data_files(tmp_path):
        with open(path, encoding="utf-8") as f:
            assert "alice" not in f.read()


def test_exception_while_iterating_keeps_the_status_sent(tmp_path) -> None:
    """A body generator that fails after the 200 was sent: the status sent and the class."""
    _, _, _, failures = collectors(tmp_path)

    def app(environ, start_response):
        start_response("200 OK", [])

        def body():
            yield b"partial"
            raise OSError("disk of user 42")

        return body()

    with pytest.raises(OSError):
        serve(MdcWSGIMiddleware(app, failures=failures))
    assert current_request_id() == NO_REQUEST_ID
    flush_all(failures)
    [row] = rows(tmp_path, "general", "http_failures")
    assert (row["status"], row["error"]) == ("200", "OSError")


def test_recorded_exception_names_a_500_the_framework_made(tmp_path) -> None:
    """A framework that answers an exception with a 500 itself calls record_exception(): the row
    has its class. A 4xx is no failure."""
    _, _, _, failures = collectors(tmp_path)

    def app(environ, start_response):
        if environ["PATH_INFO"] == "/missing":
            start_response("404 Not Found", [])
            return [b""]
        try:
            {}["key"]
        except KeyError as exc:
            record_exception(exc)
        start_response("500 INTERNAL SERVER ERROR", [("Content-Type", "text/html")])
        return [b"<h1>oops</h1>"]

    served = serve(MdcWSGIMiddleware(app, failures=failures), headers=[("X-Request-ID", "r-500")])
    assert served.status.startswith("500") and served.header("X-Request-ID") == "r-500"
    serve(MdcWSGIMiddleware(app, failures=failures), path="/missing")
    record_exception(RuntimeError("outside any request"))  # does nothing
    flush_all(failures)
    [row] = rows(tmp_path, "general", "http_failures")
    assert (row["status"], row["error"], row["$aml_request_id"]) == ("500", "KeyError", "r-500")


def test_close_reaches_the_app_inside_the_scope(tmp_path) -> None:
    """The iterable's close() is passed on (rows collected there get the id); the body row is
    collected once even when close() follows exhaustion."""
    inputs, _, bodies, _ = collectors(tmp_path)
    closed = []

    class Body:
        def __iter__(self):
            return iter([b"{}"])

        def close(self):
            closed.append(current_request_id())
            inputs.collect([0, 0])

    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "application/json")])
        return Body()

    serve(MdcWSGIMiddleware(app, bodies=bodies), headers=[("X-Request-ID", "c-1")])
    assert closed == ["c-1"]
    flush_all(inputs, bodies)
    assert [r["$aml_request_id"] for r in rows(tmp_path, "inputs")] == ["c-1"]
    assert len(rows(tmp_path, "general", "http_bodies")) == 1


def test_capture_errors_never_reach_the_request(tmp_path, monkeypatch, caplog) -> None:
    """A capture collector that raises is logged; the response is unchanged."""
    inputs, preds, bodies, failures = collectors(tmp_path)
    break_captures(monkeypatch, bodies, failures)
    app = MdcWSGIMiddleware(streaming_app(inputs, preds), bodies=bodies, failures=failures)
    served = serve(app, b'{"data": [[1, 2]]}', [("X-Request-ID", "ok-1")])
    assert served.status == "200 OK" and served.body == b"[3]" and served.header("X-Request-ID") == "ok-1"
    assert "capture broke" in caplog.text
