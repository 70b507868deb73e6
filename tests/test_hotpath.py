"""collect()'s compiled path (mdc_core._hotpath) against the Python path, side by side.

Each scenario runs twice, once through the C extension and once with it switched off, and must
return the same dicts and write the same rows, read back with the csv module. The C path covers
only one plain row at the collector's width; everything else must fall through to Python.
"""

from __future__ import annotations

import gc
import inspect
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import data_files, read_csv
from mdc_core import AML_COLUMNS, NO_REQUEST_ID, ModelDataCollector, RowWidthError, correlation, request_context
from mdc_core import collector as collector_module
from mdc_core import pipeline as pipeline_module
from mdc_core.compiled import load

UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}$")
ID, TS, REQUEST = AML_COLUMNS[0], AML_COLUMNS[1], AML_COLUMNS[7]
COMPILED = load("_hotpath")


def require_compiled() -> None:
    if COMPILED is not None:
        return
    if os.environ.get("MDC_REQUIRE_COMPILED") == "1":
        pytest.fail("mdc_core._hotpath was not built (MDC_REQUIRE_COMPILED=1): is a C compiler installed?")
    pytest.skip("mdc_core._hotpath not built (no C compiler, or MDC_PURE_PYTHON set)")


@pytest.fixture(params=["compiled", "python"])
def path(request, monkeypatch) -> str:
    """Which implementation collect() uses for plain rows in this test."""
    if request.param == "compiled":
        require_compiled()
    else:
        monkeypatch.setattr(collector_module, "_hotpath", None)
        monkeypatch.setattr(pipeline_module, "_hotpath", None)
    return request.param


def collectors(root: Path, model: str = "m") -> tuple[ModelDataCollector, ModelDataCollector]:
    inputs = ModelDataCollector(model, designation="inputs", feature_names=["a", "b", "c"], storage=root)
    preds = ModelDataCollector(model, designation="predictions", feature_names=["p", "q"], storage=root)
    return inputs, preds


def rows_of(root: Path, designation: str) -> list[dict[str, str]]:
    return [row for f in data_files(root, f"**/{designation}/**/*.csv") for row in read_csv(f)]


def test_the_compiled_path_is_taken_only_where_python_would_do_the_same(tmp_path, monkeypatch) -> None:
    require_compiled()
    inputs, _ = collectors(tmp_path)
    assert inputs._fast_path is not None
    assert type(vars(ModelDataCollector)["collect"]).__name__ == "CollectMethod"  # one C call, no frame
    assert list(inspect.signature(inputs.collect).parameters) == ["input_data", "user_correlation_id"]
    assert list(inspect.signature(ModelDataCollector.collect).parameters)[:2] == ["self", "input_data"]
    assert "correlation" in ModelDataCollector.collect.__doc__ and ModelDataCollector.collect.__name__ == "collect"
    got = inputs.collect([1.0, 2.0, 3.0], user_correlation_id="u-1")  # positional, keyword: both
    assert got[ID].startswith("u-1-") and inputs.collect(input_data=[1.0, 2.0, 3.0])[ID] != got[ID]
    with pytest.raises(TypeError):
        inputs.collect()
    untyped = ModelDataCollector("m", designation="general", storage=tmp_path)
    assert untyped._fast_path is None  # columns unknown until the first collect() names them
    untyped.collect([1.0, 2.0])
    assert untyped._fast_path is not None
    clocked = ModelDataCollector("m", designation="labels", feature_names=["a"], storage=tmp_path, clock=lambda: 0)
    assert clocked._fast_path is None
    inputs.enabled = False
    assert inputs._fast_path is None and inputs.collect([1.0, 2.0, 3.0]) == {}
    inputs.enabled = None
    assert inputs._fast_path is not None
    inputs.close()
    assert inputs._fast_path is None
    assert inputs.collect([1.0, 2.0, 3.0]) == {}


def test_one_row_returns_the_python_paths_dict_and_writes_the_row(tmp_path, path) -> None:
    inputs, preds = collectors(tmp_path)
    got = inputs.collect([1.5, -2.0, 3.25])
    assert list(got) == list(AML_COLUMNS)
    assert UUID.match(got[ID]) and ISO.match(got[TS]) and got[REQUEST] == NO_REQUEST_ID
    assert {k: got[k] for k in AML_COLUMNS[2:7]} == {
        "$aml_dc_boundary": 1440,
        "$aml_workspace": "default/default/default",
        "$aml_service_name": "default",
        "$aml_model_name": "m",
        "$aml_model_version": "default",
    }
    paired = preds.collect((0.5, 0.25))  # a tuple, paired with the inputs just collected
    assert paired == got
    again = preds.collect([0.75, 1.0])  # outside a request scope a designation pairs once
    assert again[ID] != got[ID] and UUID.match(again[ID])
    assert inputs.flush(timeout=30) and preds.flush(timeout=30)
    ins, outs = rows_of(tmp_path, "inputs"), rows_of(tmp_path, "predictions")
    assert [(r["a"], r["b"], r["c"]) for r in ins] == [("1.5", "-2", "3.25")]
    assert [r[ID] for r in ins] == [got[ID]]
    assert ins[0][TS].startswith(got[TS][:19])
    assert [(r["p"], r[ID]) for r in outs] == [("0.5", got[ID]), ("0.75", again[ID])]
    assert preds.stats()["written"] == 2


def test_request_scope_sets_the_request_id_and_pairs_every_designation(tmp_path, path) -> None:
    inputs, preds = collectors(tmp_path)
    with request_context("req-7"):
        got = inputs.collect([1.0, 2.0, 3.0])
        first = preds.collect([0.1, 0.2])
        second = preds.collect([0.3, 0.4])  # inside a scope, every collect pairs
    assert got[REQUEST] == "req-7" and first == got and second == got
    outside = preds.collect([0.5, 0.6])
    assert outside[REQUEST] == NO_REQUEST_ID and outside[ID] != got[ID]
    assert preds.flush(timeout=30)
    assert [r[REQUEST] for r in rows_of(tmp_path, "predictions")] == ["req-7", "req-7", NO_REQUEST_ID]


def test_pairing_needs_the_same_model_and_the_window(tmp_path, path, monkeypatch) -> None:
    inputs, _ = collectors(tmp_path, "m")
    _, other = collectors(tmp_path, "other-model")
    got = inputs.collect([1.0, 2.0, 3.0])
    assert other.collect([0.1, 0.2])[ID] != got[ID]
    _, preds = collectors(tmp_path, "m")
    monkeypatch.setattr(correlation, "PAIRING_WINDOW", -1.0)  # every correlation is too old
    assert preds.collect([0.1, 0.2])[ID] != got[ID]
    monkeypatch.setattr(correlation, "PAIRING_WINDOW", 60.0)
    assert preds.collect([0.1, 0.2])[ID] == got[ID]


def test_user_correlation_ids_carry_over_to_paired_rows(tmp_path, path) -> None:
    inputs, preds = collectors(tmp_path)
    got = inputs.collect([1.0, 2.0, 3.0], user_correlation_id="order-42")
    assert got[ID].startswith("order-42-") and UUID.match(got[ID][len("order-42-") :])
    assert preds.collect([0.1, 0.2]) == got


@pytest.mark.parametrize(
    "row, expected",
    [
        ([1, 2, 3], ["1", "2", "3"]),
        (["x", "y", "z"], ["x", "y", "z"]),
        ([None, 1.5, "t"], ["", "1.5", "t"]),
        ((True, False, True), ["true", "false", "true"]),
    ],
)
def test_rows_of_other_scalars_are_written_as_python_writes_them(tmp_path, path, row, expected) -> None:
    inputs, _ = collectors(tmp_path)
    inputs.collect(row)
    assert inputs.flush(timeout=30)
    assert [[r["a"], r["b"], r["c"]] for r in rows_of(tmp_path, "inputs")] == [expected]


def test_programming_errors_still_raise(tmp_path, path) -> None:
    inputs, _ = collectors(tmp_path)
    with pytest.raises(RowWidthError):
        inputs.collect([1.0, 2.0])
    with pytest.raises(RowWidthError):
        inputs.collect([1.0, 2.0, 3.0, 4.0])
    assert inputs.collect([]) == {}


def test_queued_rows_are_left_to_the_flusher_untracked_by_the_gc(tmp_path) -> None:
    """A queued chunk holds only strings and numbers: the garbage collector must not walk it."""
    require_compiled()
    inputs, _ = collectors(tmp_path)
    pipeline = inputs._pipeline
    with pipeline.lock:  # neither the flusher nor an absorb can take the chunk meanwhile
        inputs.collect([1.0, 2.0, 3.0])
        chunk = pipeline._inbox[-1]
        assert not gc.is_tracked(chunk) and not gc.is_tracked(chunk[1]) and not gc.is_tracked(chunk[2])
        pipeline._absorb()
        assert not gc.is_tracked(pipeline._queue[-1])
    holder = [object()]  # a row holding a container stays tracked
    inputs.collect([1.0, holder, 3.0])
    assert inputs.flush(timeout=30) is not None


def test_many_threads_get_unique_ids_and_every_row_is_written_once(tmp_path, path) -> None:
    import threading

    inputs, preds = collectors(tmp_path)
    per_thread, threads = 2000, 8
    returned: list[list[str]] = [[] for _ in range(threads)]

    def work(t: int) -> None:
        for i in range(per_thread):
            got = inputs.collect([float(t), float(i), 0.5])
            assert preds.collect([float(t), float(i)]) == got
            returned[t].append(got[ID])

    workers = [threading.Thread(target=work, args=(t,)) for t in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert inputs.flush(timeout=60) and preds.flush(timeout=60)
    ids = [i for ids in returned for i in ids]
    assert len(set(ids)) == per_thread * threads
    ins, outs = rows_of(tmp_path, "inputs"), rows_of(tmp_path, "predictions")
    assert sorted(r[ID] for r in ins) == sorted(ids) == sorted(r[ID] for r in outs)
    by_id = {r[ID]: (r["a"], r["b"]) for r in ins}
    assert all(by_id[r[ID]] == (r["p"], r["q"]) for r in outs)
    assert inputs.stats()["collected"] == inputs.stats()["written"] == per_thread * threads


@pytest.mark.slow
def test_the_collect_tests_pass_without_the_compiled_module() -> None:
    """The pure-Python fallback (no C compiler) runs the core collect tests too."""
    require_compiled()  # else the whole suite already ran pure Python
    tests = Path(__file__).parent
    files = ["test_inputs.py", "test_correlation.py", "test_concurrent_collect.py", "test_buffer_bound.py"]
    env = {**os.environ, "MDC_PURE_PYTHON": "1"}
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *[str(tests / f) for f in files]],
        env=env, capture_output=True, text=True, timeout=600, cwd=tests.parent,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert " passed" in run.stdout


def test_batch_loops_in_c_match_the_python_loops(monkeypatch) -> None:
    """take_batch() and split_by_route() against the pipeline's Python loops, on mixed chunks."""
    require_compiled()
    import collections

    from mdc_core.shapes import ROWS, Taken

    def chunk(key: int, rows: int, size: int, seq: int) -> tuple:
        item = (float(seq),) if rows == 1 else Taken(ROWS, ((1.0,),) * rows, rows, 1, None, False)
        return (key, item, ("p-", seq, 1, "", seq, "r"), size, seq)

    chunks = [chunk(seq % 3, 1 if seq % 4 else 5, 100 + seq, seq) for seq in range(1, 60)]
    limits = {0: 40, 1: 1 << 30, 2: 1 << 30}
    for half in (10**9, 2000, 1):
        queue = collections.deque(chunks)
        taken, rows, size = COMPILED.take_batch(queue, {}, limits.__getitem__, half)
        left = collections.deque(chunks)
        expected, want_rows, want_size = pipeline_module._take_batch_python(left, {}, limits.__getitem__, half)
        assert (taken, rows, size, list(queue)) == (expected, want_rows, want_size, list(left))
        assert 0 < len(taken) < len(chunks)  # the limits really cut the batch
    monkeypatch.setattr(pipeline_module, "_hotpath", None)
    assert COMPILED.split_by_route(chunks) == pipeline_module._by_route(chunks)


@pytest.mark.parametrize(
    "make, expected",
    [
        (lambda np: np.array([1.5, -2.0, 3.25]), ["1.5", "-2", "3.25"]),  # 1-D
        (lambda np: np.array([[1.5, -2.0, 3.25]]), ["1.5", "-2", "3.25"]),  # np.array(request["data"])
        (lambda np: np.array([[7, -8, 9]], dtype=np.int64), ["7", "-8", "9"]),
        (lambda np: np.arange(6.0).reshape(3, 2).T[:1], ["0", "2", "4"]),  # a strided view
        (lambda np: np.array([[1.5, 2.5, 3.5]], dtype=np.float32), ["1.5", "2.5", "3.5"]),  # Python's path
        (lambda np: np.array([[1.5, 2.5, 3.5]], dtype=">f8"), ["1.5", "2.5", "3.5"]),  # Python's path
    ],
)
def test_one_row_numpy_arrays_are_written_as_python_writes_them(tmp_path, path, make, expected) -> None:
    np = pytest.importorskip("numpy")
    inputs, preds = collectors(tmp_path)
    array = make(np)
    got = inputs.collect(array)
    array[...] = 0  # the caller reuses its buffer: what was collected must not change
    assert preds.collect(np.array([[0.5, 0.25]])) == got
    assert inputs.flush(timeout=30) and preds.flush(timeout=30)
    assert [[r["a"], r["b"], r["c"]] for r in rows_of(tmp_path, "inputs")] == [expected]
    assert [[r["p"], r["q"], r[ID]] for r in rows_of(tmp_path, "predictions")] == [["0.5", "0.25", got[ID]]]


def test_one_row_float64_arrays_never_reach_the_python_path(tmp_path, monkeypatch) -> None:
    """The C path handles np.array(request["data"]) itself; wider or other arrays go to Python."""
    require_compiled()
    np = pytest.importorskip("numpy")
    from mdc_core import shapes

    inputs, _ = collectors(tmp_path)
    seen = []
    original = shapes._take_numpy
    monkeypatch.setattr(shapes, "_take_numpy", lambda a, w: seen.append(a.shape) or original(a, w))
    inputs.collect(np.array([[1.0, 2.0, 3.0]]))
    inputs.collect(np.array([4.0, 5.0, 6.0]))
    assert seen == []
    inputs.collect(np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]))
    with pytest.raises(RowWidthError):
        inputs.collect(np.array([[1.0, 2.0]]))
    assert seen == [(2, 3), (1, 2)]


def test_collect_can_be_overridden_and_patched_like_a_method(tmp_path) -> None:
    """Subclasses that override collect() and tests that patch it on the class see their own."""
    from unittest import mock

    class Logged(ModelDataCollector):
        def collect(self, input_data, user_correlation_id=""):
            self.seen = input_data
            return super().collect(input_data, user_correlation_id)

    logged = Logged("m", designation="inputs", feature_names=["a", "b", "c"], storage=tmp_path)
    got = logged.collect([1.0, 2.0, 3.0])
    assert logged.seen == [1.0, 2.0, 3.0] and UUID.match(got[ID])
    inputs, _ = collectors(tmp_path)  # made before the patch, as a scoring script's are
    with mock.patch.object(ModelDataCollector, "collect", return_value={"patched": True}) as patched:
        assert inputs.collect([1.0, 2.0, 3.0]) == {"patched": True}
    patched.assert_called_once_with([1.0, 2.0, 3.0])
    assert UUID.match(inputs.collect([1.0, 2.0, 3.0])[ID])  # restored
    assert logged.flush(timeout=30) and inputs.flush(timeout=30)
    assert len(rows_of(tmp_path, "inputs")) == 2  # the patched call stored nothing


def test_the_python_path_pairs_with_inputs_the_compiled_path_opened(tmp_path, path) -> None:
    """The compiled path keeps an OpenCorrelation's stamp as fields; Python reads it as a tuple."""
    inputs, preds = collectors(tmp_path)
    got = inputs.collect([1.0, 2.0, 3.0])
    named = preds.collect({"p": 0.5, "q": 0.25})  # a dict: the Python method pairs it
    assert named[ID] == got[ID] and named[TS] == got[TS]
    again = inputs.collect([4.0, 5.0, 6.0])
    two = preds.collect([[0.5, 0.25], [0.75, 1.0]])  # two rows of one input: both get its id
    assert list(two[ID]) == [again[ID], again[ID]]
    assert preds.flush(timeout=30)
    assert [r[ID] for r in rows_of(tmp_path, "predictions")] == [got[ID], again[ID], again[ID]]


def test_a_renewed_id_prefix_is_used_at_once(tmp_path, path, monkeypatch) -> None:
    """The compiled path caches the process's id prefix until the class attribute changes (a fork)."""
    inputs, _ = collectors(tmp_path)
    before = inputs.collect([1.0, 2.0, 3.0])[ID]
    monkeypatch.setattr(correlation._IdSpace, "prefix", "0123abcd-0000-4000-8000-")
    renewed = inputs.collect([1.0, 2.0, 3.0])[ID]
    monkeypatch.undo()
    after = inputs.collect([1.0, 2.0, 3.0])[ID]
    assert renewed.startswith("0123abcd-0000-4000-8000-") and UUID.match(renewed)
    assert before[:24] == after[:24] != renewed[:24]
    assert inputs.flush(timeout=30)
    assert [r[ID] for r in rows_of(tmp_path, "inputs")] == [before, renewed, after]


def test_the_row_id_counter_counts_like_itertools_count() -> None:
    require_compiled()
    counter = COMPILED.Counter(5)
    assert iter(counter) is counter and [next(counter) for _ in range(3)] == [5, 6, 7]
    assert next(COMPILED.Counter()) == 0
