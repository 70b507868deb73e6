"""Runtime control and correlated sampling: a stored document switches and samples a running
service's collectors, in this and other processes; sampling keeps a request's rows together."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import uuid

import pytest

from conftest import data_files, read_csv
from mdc_core import ConfigurationError, ModelDataCollector, request_context
from mdc_core.control import ControlDocument, ControlWatcher, Setting, control_key
from mdc_core.sampling import kept

KEY = control_key("default/default/default", "default")


def mdc_control(store, *args: str) -> subprocess.CompletedProcess[str]:
    """``mdc control ...`` in another process, as an operator would run it."""
    return subprocess.run([sys.executable, "-m", "mdc_core.cli", "control", args[0], str(store), *args[1:]],
                          capture_output=True, text=True, timeout=120, check=False, env=dict(os.environ))


def by_hand(correlation_id: str, rate: float) -> bool:
    """The documented rule, written out independently of mdc."""
    return int.from_bytes(hashlib.sha256(correlation_id.encode()).digest()[:8], "big") < rate * 2**64


def test_the_sampling_rule_is_the_documented_hash() -> None:
    """kept() is exactly sha256's first 8 bytes against rate * 2**64, and keeps about that share."""
    ids = [str(uuid.UUID(int=i * 7919 + 12345)) for i in range(4000)]
    for rate in (0.0, 0.1, 0.5, 1.0):
        assert [kept(i, rate) for i in ids] == [by_hand(i, rate) for i in ids]
    share = sum(kept(i, 0.25) for i in ids) / len(ids)
    assert 0.2 < share < 0.3


def test_sampling_keeps_a_requests_inputs_and_predictions_together(tmp_path) -> None:
    """At sample_rate 0.3 the rows written are exactly the requests whose id the rule keeps,
    with inputs and predictions kept or skipped together; skipped rows are counted, not dropped."""
    store = tmp_path / "store"
    inputs = ModelDataCollector("m", designation="inputs", feature_names=["x"], storage=store, sample_rate=0.3)
    preds = ModelDataCollector("m", designation="predictions", feature_names=["y"], storage=store, sample_rate=0.3)
    ids = []
    for i in range(300):
        with request_context():
            ids.append(inputs.collect([i])["$aml_dc_correlation_id"])
            preds.collect([i * 2])
    assert inputs.flush(timeout=30) and preds.flush(timeout=30)
    files = data_files(store)
    got_in = {r["$aml_dc_correlation_id"]: int(r["x"]) for p in files if "/inputs/" in p for r in read_csv(p)}
    got_out = {r["$aml_dc_correlation_id"]: int(r["y"]) for p in files if "/predictions/" in p for r in read_csv(p)}
    expected = {i for i in ids if by_hand(i, 0.3)}
    assert set(got_in) == set(got_out) == expected and 40 < len(expected) < 140
    assert all(got_out[i] == 2 * got_in[i] for i in expected)
    stats = inputs.stats()
    assert stats["sampled_out"] == 300 - len(expected) and stats["dropped"] == {} and stats["pending"] == 0


def test_always_keep_rules_keep_flagged_rows(tmp_path) -> None:
    """Rows matching an always_keep rule are written whatever the hash says."""
    dc = ModelDataCollector("m", designation="inputs", feature_names=["status", "i"], storage=tmp_path,
                            sample_rate=0.0, always_keep=[{"column": "status", "in": ["error"]}])
    for i in range(50):
        dc.collect(["error" if i % 10 == 0 else "ok", i])
    assert dc.flush(timeout=30)
    rows = [r for p in data_files(tmp_path) for r in read_csv(p)]
    assert sorted(int(r["i"]) for r in rows) == [0, 10, 20, 30, 40] and dc.stats()["sampled_out"] == 45


def test_bad_sampling_arguments_are_refused() -> None:
    with pytest.raises(ConfigurationError, match="from 0 to 1"):
        ModelDataCollector("m", designation="inputs", storage="memory://x", sample_rate=1.5)
    with pytest.raises(ConfigurationError, match="always_keep"):
        ModelDataCollector("m", designation="inputs", storage="memory://x", always_keep=[{"col": "x"}])


def test_another_process_disables_and_samples_a_running_collector(tmp_path) -> None:
    """An operator's `mdc control` in another process writes the document; the running collector
    applies it at its next refresh (driven explicitly here), with no restart; rows it accepted
    before being disabled are still written."""
    store = tmp_path / "store"
    dc = ModelDataCollector("m", designation="inputs", feature_names=["i"], storage=store)
    assert dc.enabled and dc.sample_rate == 1.0  # no document: start-up values
    dc.collect([1])
    done = mdc_control(store, "disable")
    assert done.returncode == 0, done.stderr
    assert json.loads((store / KEY).read_text())["enabled"] is False
    dc.refresh_control()
    assert not dc.enabled and dc.collect([2]) == {}
    assert dc.flush(timeout=30)
    assert [r["i"] for p in data_files(store) if "/inputs/" in p for r in read_csv(p)] == ["1"]
    assert mdc_control(store, "enable").returncode == 0
    assert mdc_control(store, "sample", "0", "--designation", "inputs").returncode == 0
    dc.refresh_control()
    assert dc.enabled and dc.sample_rate == 0.0
    shown = mdc_control(store, "show", "--json")
    assert json.loads(shown.stdout)["control"]["overrides"] == {"inputs": {"sample_rate": 0.0}}


def test_code_wins_over_the_document_and_none_goes_back_to_it(tmp_path) -> None:
    """Precedence (SPEC.md): set in code > control document > start-up value."""
    store = tmp_path / "store"
    (store / KEY).parent.mkdir(parents=True)
    (store / KEY).write_text(json.dumps({"enabled": False, "sample_rate": 0.5}))
    dc = ModelDataCollector("m", designation="inputs", storage=store, enabled=True, sample_rate=1.0)
    assert not dc.enabled and dc.sample_rate == 0.5  # the document, read at start
    dc.enabled, dc.sample_rate = True, 0.9
    (store / KEY).write_text(json.dumps({"enabled": False, "sample_rate": 0.1}))
    dc.refresh_control()
    assert dc.enabled and dc.sample_rate == 0.9  # code still wins
    dc.enabled = dc.sample_rate = None
    assert not dc.enabled and dc.sample_rate == 0.1
    (store / KEY).unlink()
    dc.refresh_control()
    assert dc.enabled and dc.sample_rate == 1.0  # document gone: start-up values


def test_overrides_resolve_most_specific_first() -> None:
    doc = ControlDocument.parse(json.dumps({
        "enabled": True, "sample_rate": 0.5,
        "overrides": {"inputs": {"sample_rate": 0.2}, "m/inputs": {"enabled": False},
                      "m/3/inputs": {"enabled": True}, "general:http": {"sample_rate": 1.0}}}))
    assert doc.for_collector("m", "1", "inputs", "default") == Setting(False, 0.2, None)
    assert doc.for_collector("m", "3", "inputs", "default") == Setting(True, 0.2, None)
    assert doc.for_collector("other", "1", "inputs", "default") == Setting(True, 0.2, None)
    assert doc.for_collector("m", "1", "predictions", "default") == Setting(True, 0.5, None)
    assert doc.for_collector("m", "1", "general", "http") == Setting(True, 1.0, None)
    for bad in ('{"enabled": "no"}', '{"sample_rate": 2}', '{"colour": 1}', "[]", "{"):
        with pytest.raises(ConfigurationError):
            ControlDocument.parse(bad)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_the_watcher_rereads_only_when_due_and_keeps_the_last_good_document(tmp_path) -> None:
    """Reads happen when the interval has passed on the (injected) clock; a broken document is
    logged and the last good one stays in force."""
    from mdc_backends.local import LocalBackend

    backend = LocalBackend(str(tmp_path))
    (tmp_path / KEY).parent.mkdir(parents=True)
    (tmp_path / KEY).write_text('{"enabled": false}')
    clock = Clock()
    watcher = ControlWatcher(backend, KEY, interval=30, clock=clock)
    watcher.refresh_if_due()
    assert watcher.reads == 1 and watcher.document.service.enabled is False
    clock.now = 29.0
    watcher.refresh_if_due()
    assert watcher.reads == 1
    (tmp_path / KEY).write_text("{not json")
    clock.now = 30.0
    watcher.refresh_if_due()
    assert watcher.reads == 2 and watcher.document.service.enabled is False  # kept
