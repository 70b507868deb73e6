"""Correlation columns, row-level pairing of inputs with predictions, and request scopes."""

from __future__ import annotations

import asyncio
import re
import threading

import pytest

from conftest import data_files, read_csv
from mdc_core import AML_COLUMNS, NO_REQUEST_ID, ModelDataCollector, request_context

UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}$")


def pair(tmp_path, **kw):
    inputs = ModelDataCollector("best_model", designation="inputs", feature_names=["a", "b"], storage=tmp_path, **kw)
    preds = ModelDataCollector("best_model", designation="predictions", feature_names=["p"], storage=tmp_path, **kw)
    return inputs, preds


def rows_of(tmp_path, designation):
    return [row for path in data_files(tmp_path, f"**/{designation}/**/*.csv") for row in read_csv(path)]


def test_returned_correlation_has_azure_ml_keys_and_forms(tmp_path) -> None:
    """collect() returns the eight $aml_ keys: a uuid4-shaped id, a six-digit ISO timestamp, 1440."""
    inputs, _ = pair(tmp_path)
    corr = inputs.collect([1.0, 2.0])
    assert list(corr) == list(AML_COLUMNS)
    assert UUID.match(corr["$aml_dc_correlation_id"])
    assert ISO.match(corr["$aml_dc_scoring_timestamp"])
    assert corr["$aml_dc_boundary"] == 1440
    assert corr["$aml_workspace"] == "default/default/default"
    assert corr["$aml_request_id"] == NO_REQUEST_ID


def test_user_correlation_id_prefixes_the_id(tmp_path) -> None:
    """Azure ML's rule: the id is f'{user_correlation_id}-{uuid}' when one is given."""
    inputs, _ = pair(tmp_path)
    corr = inputs.collect([1, 2], user_correlation_id="order-42")
    prefix, _, rest = corr["$aml_dc_correlation_id"].partition("-")
    assert prefix == "order" and rest.startswith("42-") and UUID.match(rest[3:])


@pytest.mark.parametrize("rows", [1, 100])
def test_inputs_and_predictions_pair_row_for_row(tmp_path, rows) -> None:
    """The seed's script as written yields tables that join row for row on correlation id."""
    inputs, preds = pair(tmp_path)
    for request in range(3):
        batch = [[request, i] for i in range(rows)]
        inputs.collect(batch if rows > 1 else batch[0])
        out = [[request * 1000 + i] for i in range(rows)]
        preds.collect(out if rows > 1 else out[0])
    assert inputs.flush(timeout=30)
    ins, outs = rows_of(tmp_path, "inputs"), rows_of(tmp_path, "predictions")
    assert len(ins) == len(outs) == 3 * rows
    by_id = {r["$aml_dc_correlation_id"]: r for r in ins}
    assert len(by_id) == 3 * rows  # every input row has its own id
    for out in outs:
        source = by_id[out["$aml_dc_correlation_id"]]
        assert float(out["p"]) == float(source["a"]) * 1000 + float(source["b"])
        assert out["$aml_dc_scoring_timestamp"] == source["$aml_dc_scoring_timestamp"]
        assert out["$aml_request_id"] == source["$aml_request_id"]
    assert preds.stats()["unpaired"] == 0


def test_single_input_row_pairs_with_every_prediction_row(tmp_path) -> None:
    """One input row and several prediction rows (top-k): all predictions share its id."""
    inputs, preds = pair(tmp_path)
    corr = inputs.collect([1, 2])
    preds.collect([[0.1], [0.2], [0.3]])
    assert inputs.flush(timeout=30)
    assert {r["$aml_dc_correlation_id"] for r in rows_of(tmp_path, "predictions")} == {corr["$aml_dc_correlation_id"]}


def test_mismatched_row_counts_do_not_pair(tmp_path) -> None:
    """Two input rows and three predictions: nothing is guessed; new ids, counted as unpaired."""
    inputs, preds = pair(tmp_path)
    corr = inputs.collect([[1, 2], [3, 4]])
    out = preds.collect([[0.1], [0.2], [0.3]])
    assert set(out["$aml_dc_correlation_id"]).isdisjoint(corr["$aml_dc_correlation_id"])
    assert preds.stats()["unpaired"] == 3


def test_correlation_does_not_leak_into_next_request(tmp_path) -> None:
    """Outside a request scope each designation takes the inputs' correlation once."""
    inputs, preds = pair(tmp_path)
    first = inputs.collect([1, 2])
    assert preds.collect([0.5])["$aml_dc_correlation_id"] == first["$aml_dc_correlation_id"]
    # next request on the same thread collects a prediction without inputs: it must not reuse it
    assert preds.collect([0.6])["$aml_dc_correlation_id"] != first["$aml_dc_correlation_id"]
    second = inputs.collect([3, 4])
    assert preds.collect([0.7])["$aml_dc_correlation_id"] == second["$aml_dc_correlation_id"]


def test_other_models_do_not_pair(tmp_path) -> None:
    """Predictions of another model never take this model's inputs' correlation."""
    inputs, _ = pair(tmp_path)
    other = ModelDataCollector("other_model", designation="predictions", storage=tmp_path)
    corr = inputs.collect([1, 2])
    assert other.collect([9])["$aml_dc_correlation_id"] != corr["$aml_dc_correlation_id"]


def test_request_context_sets_request_id_and_scopes_pairing(tmp_path) -> None:
    """Inside request_context every row gets its request id; pairing lasts the whole block."""
    inputs, preds = pair(tmp_path)
    signals = ModelDataCollector("best_model", designation="signals", storage=tmp_path)
    with request_context(request_id="req-1") as scope:
        corr = inputs.collect([1, 2])
        a = preds.collect([0.1])
        b = preds.collect([0.2])  # a second prediction in the same request still pairs
        s = signals.collect([42])
    assert scope.request_id == "req-1"
    assert corr["$aml_request_id"] == a["$aml_request_id"] == s["$aml_request_id"] == "req-1"
    assert (
        a["$aml_dc_correlation_id"]
        == b["$aml_dc_correlation_id"]
        == s["$aml_dc_correlation_id"]
        == corr["$aml_dc_correlation_id"]
    )
    with request_context() as scope2:
        c = preds.collect([0.3])  # a new request without inputs pairs with nothing
    assert c["$aml_dc_correlation_id"] != corr["$aml_dc_correlation_id"]
    assert c["$aml_request_id"] == scope2.request_id != "req-1"
    assert preds.collect([0.4])["$aml_request_id"] == NO_REQUEST_ID


def test_threads_do_not_share_correlations(tmp_path) -> None:
    """Each thread's inputs pair with that thread's predictions only."""
    inputs, preds = pair(tmp_path)
    barrier = threading.Barrier(8)
    failures = []

    def worker(n: int) -> None:
        for i in range(200):
            if i == 0:
                barrier.wait()
            corr = inputs.collect([n, i])
            out = preds.collect([n * 1000 + i])
            if out["$aml_dc_correlation_id"] != corr["$aml_dc_correlation_id"]:
                failures.append((n, i))

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not failures
    assert inputs.flush(timeout=30)
    by_id = {r["$aml_dc_correlation_id"]: r for r in rows_of(tmp_path, "inputs")}
    for out in rows_of(tmp_path, "predictions"):
        src = by_id[out["$aml_dc_correlation_id"]]
        assert float(out["p"]) == float(src["a"]) * 1000 + float(src["b"])


def test_asyncio_tasks_are_isolated(tmp_path) -> None:
    """Concurrent asyncio tasks (one request each) pair their own rows."""
    inputs, preds = pair(tmp_path)

    async def handle(n: int) -> bool:
        with request_context(request_id=f"r{n}"):
            corr = inputs.collect([n, n])
            await asyncio.sleep(0)  # let the other tasks run in between
            out = preds.collect([n])
            return out["$aml_dc_correlation_id"] == corr["$aml_dc_correlation_id"] and out["$aml_request_id"] == f"r{n}"

    async def main() -> list[bool]:
        return await asyncio.gather(*(handle(n) for n in range(50)))

    assert all(asyncio.run(main()))


def test_ids_are_unique_across_collectors_and_calls(tmp_path) -> None:
    """No two unpaired rows in a process share a correlation id."""
    inputs, preds = pair(tmp_path)
    seen = set()
    for i in range(100):
        seen.update(inputs.collect([[i, 1], [i, 2]])["$aml_dc_correlation_id"])
    other = ModelDataCollector("m2", designation="inputs", storage=tmp_path)
    for i in range(100):
        seen.add(other.collect([i])["$aml_dc_correlation_id"])
    assert len(seen) == 300


@pytest.mark.parametrize("numpy_present", [True, False])
def test_batch_id_formatting_equals_one_by_one(monkeypatch, numpy_present) -> None:
    """The flusher formats a batch's ids at once (numpy), or one by one without numpy: both give
    exactly format_id's text, counters past 48 bits wrapping the same way."""
    import builtins

    from mdc_core.correlation import _new_prefix, format_id, format_ids

    if not numpy_present:
        real_import = builtins.__import__

        def no_numpy(name, *args, **kwargs):
            if name == "numpy":
                raise ImportError("numpy hidden by the test")
            return real_import(name, *args, **kwargs)

        monkeypatch.setattr(builtins, "__import__", no_numpy)
    prefix = _new_prefix()
    counters = [0, 1, 15, 16, 255, 0xABCDEF, (1 << 48) - 1, 1 << 48, (1 << 52) + 7, 123456789012]
    got = format_ids(prefix, counters).to_pylist()
    assert got == [format_id(prefix, c, "") for c in counters]
    assert all(UUID.match(i) for i in got)
    assert format_ids(prefix, []).to_pylist() == []
