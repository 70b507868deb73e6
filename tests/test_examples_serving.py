"""The FastAPI and Flask examples served through their frameworks' own test clients, with the rows
read back from storage by the csv module: request ids (given, from traceparent, generated and
echoed), inputs paired with predictions (streamed ones too), bodies cut at the limit, failures."""

from __future__ import annotations

import json
import math
import re

import pytest

from conftest import data_files
from serving import rows

UUID4 = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
TRACE_UUID = "0af76519-16cd-43dd-8448-eb211c80319c"
FEATURES = [f"feat{i}" for i in range(1, 7)]


def serve(framework: str, requests: list[tuple[str, bytes, dict[str, str]]]) -> list:
    """Serve ``requests`` (path, JSON body, headers) through the example app, then shut it down
    as its server would (FastAPI: the lifespan's aclose(); Flask: close() the collectors)."""
    if framework == "fastapi":
        pytest.importorskip("fastapi", reason="fastapi comes with the test extra")
        from examples.fastapi.app import create_app
        from fastapi.testclient import TestClient

        with TestClient(create_app(), raise_server_exceptions=False) as client:
            return [client.post(path, content=body, headers={"Content-Type": "application/json", **headers})
                    for path, body, headers in requests]
    pytest.importorskip("flask", reason="flask comes with the test extra")
    from examples import score
    from examples.flask.app import create_app

    app = create_app()
    client = app.test_client()
    responses = [client.post(path, data=body, content_type="application/json", headers=headers)
                 for path, body, headers in requests]
    for response in responses:
        response.get_data()  # a streamed body is iterated (and scored) as the client reads it
    for collector in (score.inputs_dc, score.prediction_dc, *app.extensions["mdc"].values()):
        assert collector.close(timeout=30)
    return responses


def payload(rows_: list[list[float]]) -> bytes:
    return json.dumps({"data": rows_}).encode()


@pytest.mark.parametrize("framework", ["fastapi", "flask"])
def test_example_app_collects_every_request_with_its_id(framework, tmp_path, monkeypatch) -> None:
    """Six requests through the real framework: rows carry the given, traceparent-derived or
    generated (and echoed) id; predictions pair with inputs, streamed ones too; bodies are kept
    and the big one is cut and flagged; the failed request is recorded by status and class."""
    monkeypatch.setenv("MDC_STORAGE_URL", str(tmp_path))
    big = [[float(i), 1.5, 2.5, 3.5, 4.5, 5.5] for i in range(400)]  # both bodies over the 4096-byte limit
    requests = [
        ("/score", payload([[1, 2, 3, 4, 5, 6], [6, 5, 4, 3, 2, 1]]), {"X-Request-ID": "req-header"}),
        ("/score", payload([[1, 1, 1, 1, 1, 1]]), {"traceparent": TRACEPARENT}),
        ("/score", payload([[2, 2, 2, 2, 2, 2]]), {}),
        ("/score", payload(big), {"X-Request-ID": "req-big"}),
        ("/score", payload([[1, 2, 3, 4, 5, 6], [1]]), {"X-Request-ID": "req-ragged"}),
        ("/score/stream", payload([[1, 0, 0, 0, 0, 0], [2, 0, 0, 0, 0, 0], [3, 0, 0, 0, 0, 0]]),
         {"X-Request-ID": "req-stream"}),
    ]
    responses = serve(framework, requests)

    assert [r.status_code for r in responses] == [200, 200, 200, 200, 500, 200]
    echoed = [r.headers["X-Request-ID"] for r in responses]
    generated = echoed[2]
    assert UUID4.match(generated)
    assert echoed == ["req-header", TRACE_UUID, generated, "req-big", "req-ragged", "req-stream"]
    assert [json.loads(line)["result"] for line in responses[5].text.splitlines()] == [[1, 1], [2, 2], [3, 3]]

    ins, outs = rows(tmp_path, "inputs"), rows(tmp_path, "predictions")
    per_request = {}
    for row in ins:
        per_request[row["$aml_request_id"]] = per_request.get(row["$aml_request_id"], 0) + 1
    assert per_request == {"req-header": 2, TRACE_UUID: 1, generated: 1, "req-big": 400, "req-stream": 3}
    by_id = {r["$aml_dc_correlation_id"]: r for r in ins}
    assert len(by_id) == len(ins) == len(outs)
    for out in outs:  # row for row: same correlation id, same request id, the model's answer
        src = by_id[out["$aml_dc_correlation_id"]]
        assert out["$aml_request_id"] == src["$aml_request_id"]
        assert math.isclose(float(out["prediction1"]), sum(float(src[f]) for f in FEATURES))
        assert math.isclose(float(out["prediction2"]), max(float(src[f]) for f in FEATURES))

    bodies = {r["$aml_request_id"]: r for r in rows(tmp_path, "general", "http_bodies")}
    assert set(bodies) == set(echoed)
    first = bodies["req-header"]
    assert first["request_body"] == requests[0][1].decode() and first["request_truncated"] == "false"
    assert json.loads(first["response_body"]) == json.loads(responses[0].text)
    assert first["response_bytes"] == str(len(responses[0].text.encode()))
    cut = bodies["req-big"]
    assert cut["request_truncated"] == "true" and cut["request_bytes"] == str(len(requests[3][1]))
    assert requests[3][1].decode().startswith(cut["request_body"]) and 4000 < len(cut["request_body"]) <= 4096
    assert cut["response_truncated"] == "true" and len(cut["response_body"]) == 4096
    assert (bodies["req-ragged"]["status"], bodies["req-stream"]["status"]) == ("500", "200")
    assert bodies["req-stream"]["response_body"] == responses[5].text  # NDJSON counts as JSON

    [failure] = rows(tmp_path, "general", "http_failures")
    assert (failure["method"], failure["path"], failure["status"]) == ("POST", "/score", "500")
    assert failure["error"] == "ValueError" and failure["$aml_request_id"] == "req-ragged"
    for path in data_files(tmp_path):
        with open(path, encoding="utf-8") as f:
            assert "inhomogeneous" not in f.read()  # numpy's message never lands in storage
