"""The mdc_transform_batch hook: built-in column rules (drop, keyed hash, mask) and a third
party's transform change each batch before anything is written; a failing transform drops the
batch, counted, rather than letting raw rows through."""

from __future__ import annotations

import hashlib
import hmac
import types
from pathlib import Path

import pyarrow as pa
import pyarrow.dataset as ds
import pytest

import mdc_core.plugins
from conftest import data_files, read_csv
from mdc_core import ConfigurationError, ModelDataCollector, hookimpl
from mdc_core.plugins import build_registry

KEY = "k3y-for-tests"
ROWS = [["ann@example.com", "123-45-6789", "555-0100", 41], ["bob@example.com", "987-65-4321", None, 7]]
FEATURES = ["email", "ssn", "phone", "age"]
RULES = {"drop": ["ssn"], "hash": ["email"], "mask": ["phone"], "hash_key": KEY}


def digest(value: str) -> str:
    """The documented keyed hash, computed independently."""
    return hmac.new(KEY.encode(), value.encode(), hashlib.sha256).hexdigest()


def test_column_rules_drop_hash_and_mask_before_csv_is_written(tmp_path) -> None:
    dc = ModelDataCollector("m", designation="inputs", feature_names=FEATURES, storage=tmp_path, column_rules=RULES)
    dc.collect(ROWS)
    assert dc.flush(timeout=30)
    [path] = data_files(tmp_path)
    rows = read_csv(path)
    assert "ssn" not in rows[0]
    assert [r["email"] for r in rows] == [digest("ann@example.com"), digest("bob@example.com")]
    assert [r["phone"] for r in rows] == ["****", ""]  # a null stays null
    assert [r["age"] for r in rows] == ["41", "7"]
    raw = Path(path).read_text(encoding="utf-8")
    assert "example.com" not in raw and "6789" not in raw and "555-0100" not in raw


def test_column_rules_apply_to_parquet_too(tmp_path) -> None:
    dc = ModelDataCollector("m", designation="inputs", feature_names=FEATURES, storage=tmp_path,
                            format="parquet", column_rules=RULES)
    dc.collect(ROWS)
    assert dc.flush(timeout=30)
    table = ds.dataset(data_files(tmp_path, "**/*.parquet"), format="parquet").to_table()
    assert "ssn" not in table.column_names and table.schema.field("email").type == pa.string()
    assert table.column("email").to_pylist() == [digest("ann@example.com"), digest("bob@example.com")]
    assert table.column("phone").to_pylist() == ["****", None]


def test_hash_key_from_the_environment(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("MDC_HASH_KEY", KEY)
    dc = ModelDataCollector("m", designation="inputs", feature_names=["email"], storage=tmp_path,
                            column_rules={"hash": ["email"]})
    dc.collect(["ann@example.com"])
    assert dc.flush(timeout=30)
    assert read_csv(data_files(tmp_path)[0])[0]["email"] == digest("ann@example.com")
    assert KEY not in repr(dc._route.context) and KEY not in repr(dc)


@pytest.mark.parametrize("rules, message", [
    ({"hash": ["email"]}, "needs a secret key"),
    ({"drop": ["nope"]}, "does not have: nope"),
    ({"blur": ["email"]}, "column_rules takes"),
    ({"drop": ["email"], "mask": ["email"]}, "in two rules"),
    ({"drop": "email"}, "list of column names"),
])
def test_bad_column_rules_are_refused_when_the_collector_is_built(tmp_path, rules, message) -> None:
    with pytest.raises(ConfigurationError, match=message):
        ModelDataCollector("m", designation="inputs", feature_names=FEATURES, storage=tmp_path, column_rules=rules)


def third_party(transform) -> types.ModuleType:
    module = types.ModuleType("third_party_transform")
    module.mdc_transform_batch = hookimpl(transform)
    return module


def test_a_third_party_mdc_transform_batch_runs_once_per_batch_after_the_built_in(tmp_path, monkeypatch) -> None:
    """A plug-in's transform sees the built-in rules' result and the batch's context, once per
    batch however many collect() calls made it."""
    calls = []

    def mdc_transform_batch(table, context):
        calls.append((table.num_rows, context.model, context.designation, "ssn" in table.column_names))
        return table.append_column("reviewed", pa.array(["yes"] * table.num_rows))

    monkeypatch.setattr(mdc_core.plugins, "_registry", build_registry([third_party(mdc_transform_batch)]))
    dc = ModelDataCollector("m", designation="inputs", feature_names=FEATURES, storage=tmp_path, column_rules=RULES)
    for row in ROWS * 5:
        dc.collect(row)
    assert dc.flush(timeout=30)
    assert calls == [(10, "m", "inputs", False)]
    rows = read_csv(data_files(tmp_path)[0])
    assert len(rows) == 10 and {r["reviewed"] for r in rows} == {"yes"}


def test_a_failing_transform_drops_the_batch_counted_never_writes_it_raw(tmp_path, monkeypatch) -> None:
    def mdc_transform_batch(table, context):
        raise RuntimeError("the redaction service is down")

    monkeypatch.setattr(mdc_core.plugins, "_registry", build_registry([third_party(mdc_transform_batch)]))
    dc = ModelDataCollector("m", designation="inputs", feature_names=FEATURES, storage=tmp_path)
    dc.collect(ROWS)
    status = dc.flush(timeout=30)
    assert not status and status.dropped_rows == 2
    assert dc.stats()["dropped"] == {"transform_error": 2} and data_files(tmp_path) == []


@pytest.mark.parametrize("guard", [False, True])
def test_csv_formula_guard_prefixes_formula_like_text_only_when_asked(tmp_path, guard) -> None:
    """With formula_guard, text starting with = + - @ (or a tab) gets a leading quote, so a
    spreadsheet shows it instead of running it; numbers, and everything when off, round-trip."""
    dc = ModelDataCollector("m", designation="inputs", feature_names=["text", "number"], storage=tmp_path,
                            format_options={"formula_guard": guard})
    texts = ['=HYPERLINK("http://x","y")', "+1", "-2", "@SUM(A1)", "\tcmd", "plain", "a=b"]
    for i, text in enumerate(texts):
        dc.collect([text, -float(i)])
    assert dc.flush(timeout=30)
    rows = read_csv(data_files(tmp_path)[0])
    expected = [("'" + t if guard and t[0] in "=+-@\t" else t) for t in texts]
    assert [r["text"] for r in rows] == expected
    assert [float(r["number"]) for r in rows] == [-float(i) for i in range(len(texts))]


def test_csv_format_refuses_unknown_options(tmp_path) -> None:
    with pytest.raises(ValueError, match="formula_guard"):
        ModelDataCollector("m", designation="inputs", storage=tmp_path, format_options={"guard": True})
