"""The reader on local disk: what it lists and reads equals what was collected, every row once,
whatever state compaction is in; types agree across CSV and Parquet; join, export, purge, erase.
Helpers here (``Clock``, ``collect_days``, ``expected_rows``) serve the other reader tests."""

from __future__ import annotations

import datetime as dt
import json
import os
from collections.abc import Sequence
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conftest import to_ns, utc
from mdc_backends.local import LocalBackend
from mdc_core import ModelDataCollector, NoDataError, Store, UnknownPluginError, join, open_store
from mdc_core.compaction import MANIFEST, compact_partition
from mdc_core.reader import UTC_US
from mdc_formats.csv import CsvFormat

FEATURES = ["x_int", "x_float", "x_text"]
DAYS = (utc(2026, 3, 4, 9, 15, 0, 250000), utc(2026, 3, 5, 23, 59, 59, 999999), utc(2026, 3, 6, 0, 0, 0, 1))
CID, TS, RID = "$aml_dc_correlation_id", "$aml_dc_scoring_timestamp", "$aml_request_id"


class Clock:
    """A clock that stays where it is put (``clock.at = datetime``)."""

    def __init__(self, at: dt.datetime = DAYS[0]):
        self.at = at

    def __call__(self) -> int:
        return to_ns(self.at)


def feature_rows(day: int, n: int, start: int = 0) -> list[list[Any]]:
    """Rows with an int, a float (some missing) and text with a comma and a quote."""
    return [
        [day * 1000 + start + i, None if i % 3 == 2 else (i + 0.5) / 7, f'd{day} "r{start + i}", ok'] for i in range(n)
    ]


def collector(root: str, designation: str, clock: Clock, names: Sequence[str], **kw: Any) -> ModelDataCollector:
    return ModelDataCollector(
        "best_model",
        designation=designation,
        feature_names=list(names),
        storage=root,
        clock=clock,
        model_version="3",
        **kw,
    )


def collect_days(
    root: str, *, batches: int = 2, per_batch: int = 3, days: Sequence[dt.datetime] = DAYS, **kw: Any
) -> dict[str, list[dict[str, Any]]]:
    """Collect inputs and predictions (paired row for row) on each day, ``batches`` flushes a
    day; return the rows as collected, with their correlation id and scoring time."""
    clock = Clock()
    inputs = collector(root, "inputs", clock, FEATURES, **kw)
    preds = collector(root, "predictions", clock, ["score"], **kw)
    collected: dict[str, list[dict[str, Any]]] = {"inputs": [], "predictions": []}
    for d, day in enumerate(days):
        clock.at = day
        for b in range(batches):
            rows = feature_rows(d, per_batch, b * per_batch)
            corr = inputs.collect(rows)
            scores = [[r[0] / 10] for r in rows]
            preds.collect(scores)
            ids = list(corr[CID])
            for row, score, cid in zip(rows, scores, ids):
                stamp = {CID: cid, TS: day, RID: corr[RID]}
                collected["inputs"].append({**dict(zip(FEATURES, row)), **stamp})
                collected["predictions"].append({"score": score[0], **stamp})
            assert inputs.flush(timeout=30) and preds.flush(timeout=30)
    inputs.close()
    preds.close()
    return collected


def expected_rows(
    rows: list[dict[str, Any]],
    start: dt.datetime | None = None,
    end: dt.datetime | None = None,
    columns: Sequence[str] | None = None,
) -> list[dict[str, Any]]:
    picked = [r for r in rows if (start is None or r[TS] >= start) and (end is None or r[TS] < end)]
    if columns is not None:
        picked = [{c: r[c] for c in columns} for r in picked]
    return sorted(picked, key=lambda r: r[CID])


def got_rows(table: pa.Table, columns: Sequence[str]) -> list[dict[str, Any]]:
    """The table's rows (only ``columns``), sorted by correlation id; floats compared exactly."""
    rows = table.select(list(columns)).to_pylist()
    return sorted(rows, key=lambda r: r[CID])


def assert_same(table: pa.Table, expected: list[dict[str, Any]]) -> None:
    assert expected, "a test must expect some rows"
    columns = list(expected[0])
    assert table.num_rows == len(expected)
    assert got_rows(table, columns) == expected
    assert len(set(table.column(CID).to_pylist())) == table.num_rows  # every row once


# -- listing ------------------------------------------------------------------------------------


def test_ls_lists_series_days_rows_and_bytes(tmp_path) -> None:
    """ls() names each designation's days with the rows collected and the bytes on disk."""
    collect_days(str(tmp_path))
    with open_store(str(tmp_path)) as store:
        entries = store.ls()
    assert [(e["designation"], e["date"], e["rows"]) for e in entries] == [
        (d, day, 6) for d in ("inputs", "predictions") for day in ("2026-03-04", "2026-03-05", "2026-03-06")
    ]
    first = entries[0]
    assert (first["workspace"], first["service"], first["model"], first["version"]) == (
        "default/default/default",
        "default",
        "best_model",
        "3",
    )
    path = tmp_path / "default/default/default/default/best_model/3/inputs/2026/03/04/data.csv"
    assert first["bytes"] == path.stat().st_size and first["files"] == 1 and first["batches"] == 0


def test_partitions_filter_by_level_and_range(tmp_path) -> None:
    """Filters narrow the listing; a range keeps the days it overlaps (end date included)."""
    collect_days(str(tmp_path))
    store = open_store(str(tmp_path))
    parts = store.partitions(designation="inputs", start="2026-03-05", end=dt.date(2026, 3, 5))
    assert [p.date for p in parts] == ["2026-03-05"]
    assert store.partitions(model="other") == []
    assert len(store.partitions(version="3", designation="predictions")) == 3


def test_unknown_scheme_and_missing_data_are_clear_errors(tmp_path) -> None:
    """An unknown URL scheme names the known ones; reading nothing is a NoDataError from the CLI."""
    with pytest.raises(UnknownPluginError, match="known: "):
        open_store("gopher://nowhere")
    store = open_store(str(tmp_path / "empty"))
    assert store.read("best_model").partitions == []
    with pytest.raises(NoDataError):
        store.export(str(tmp_path / "out.parquet"), "best_model")


# -- reading ------------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_read_range_equals_collected_rows(tmp_path, fmt) -> None:
    """Rows in [start, end) come back exactly as collected, with microsecond UTC timestamps."""
    collected = collect_days(str(tmp_path), format=fmt)
    start, end = utc(2026, 3, 5, 12), utc(2026, 3, 6, 0, 0, 0, 1)  # the last day's row at +1 µs is out
    table = open_store(str(tmp_path)).read("best_model", "inputs", start=start, end=end).to_table()
    assert table.schema.field(TS).type == UTC_US
    assert table.schema.field("x_int").type == pa.int64() and table.schema.field("x_text").type == pa.string()
    assert_same(table, expected_rows(collected["inputs"], start, end))


def test_csv_and_parquet_read_into_one_type(tmp_path) -> None:
    """The same rows collected as CSV and as Parquet read back as equal tables (types and values)."""
    tables = []
    for fmt in ("csv", "parquet"):
        collect_days(str(tmp_path / fmt), format=fmt)
        tables.append(open_store(str(tmp_path / fmt)).read("best_model", "inputs").to_table().sort_by(CID))
    csv_table, parquet_table = tables
    assert csv_table.schema == parquet_table.schema
    assert csv_table.select(FEATURES + [TS]).equals(parquet_table.select(FEATURES + [TS]))


def test_projection_and_pandas_polars(tmp_path) -> None:
    """columns= keeps those columns in that order; pandas and polars get the same rows."""
    collected = collect_days(str(tmp_path), format="parquet")
    scan = open_store(str(tmp_path)).read("best_model", "inputs", columns=[TS, "x_float", CID])
    table = scan.to_table()
    assert table.column_names == [TS, "x_float", CID]
    assert_same(table, expected_rows(collected["inputs"], columns=[CID, "x_float", TS]))
    frame = scan.to_pandas()
    assert sorted(frame[CID]) == sorted(r[CID] for r in collected["inputs"])
    polars = scan.to_polars()
    assert polars.height == len(collected["inputs"])
    dataset = open_store(str(tmp_path)).read("best_model", "inputs").to_dataset()  # one-shot, streamed
    ints = dataset.to_table(columns=["x_int"], filter=pa.compute.field("x_int") >= 2000).column("x_int")
    assert sorted(ints.to_pylist()) == sorted(r["x_int"] for r in collected["inputs"] if r["x_int"] >= 2000)


def test_batches_stream_file_by_file(tmp_path, monkeypatch) -> None:
    """With a schema, to_batches() reads a file only when the batches before it are consumed;
    without one, a small read decodes each file once (the schema pass keeps the tables), and a
    read past the cache reads the files again, still every row once."""
    collected = collect_days(str(tmp_path))
    store = open_store(str(tmp_path))
    reads: list[str] = []
    real_read = store.backend.read
    monkeypatch.setattr(store.backend, "read", lambda key: reads.append(key) or real_read(key))
    schema = store.read("best_model", "inputs").schema
    reads.clear()
    batches = store.read("best_model", "inputs", schema=schema).to_batches()
    first = next(batches)
    assert len([k for k in reads if k.endswith("data.csv")]) == 1 and first.schema == schema
    rest = list(batches)
    assert pa.Table.from_batches([first, *rest]).num_rows == len(collected["inputs"])
    for cache, times in ((1 << 30, 1), (0, 2)):
        monkeypatch.setattr("mdc_core.reader.CACHE_BYTES", cache)
        reads.clear()
        table = store.read("best_model", "inputs").to_reader().read_all()
        assert len([k for k in reads if k.endswith("data.csv")]) == 3 * times
        assert_same(table, expected_rows(collected["inputs"]))


# -- batches, compaction, exactly once --------------------------------------------------------


class Hooked:
    """A backend that runs ``hook(op, key)`` before each read/put/delete (once per key)."""

    def __init__(self, inner: Any, hook: Any):
        self.inner, self.hook = inner, hook
        self.capabilities = getattr(inner, "capabilities", frozenset())

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def read(self, key: str) -> bytes | None:
        self.hook("read", key)
        return self.inner.read(key)

    def put(self, key: str, data: bytes) -> None:
        self.hook("put", key)
        self.inner.put(key, data)

    def delete(self, key: str) -> None:
        self.hook("delete", key)
        self.inner.delete(key)


def batch_store(tmp_path, days: Sequence[dt.datetime] = DAYS[:1]) -> tuple[str, dict[str, list[dict[str, Any]]]]:
    """Rows on local disk written as an object store writes them: one batch file per flush."""
    root = str(tmp_path / "store")
    collected = collect_days(root, batches=3, days=days, storage_options={"append": False}, compaction="off")
    return root, collected


def inputs_folder(root: str) -> str:
    return "default/default/default/default/best_model/3/inputs/2026/03/04/"


def test_batches_then_compacted_read_the_same(tmp_path) -> None:
    """Before compaction (batch files) and after (data.csv), the reader returns the rows collected."""
    root, collected = batch_store(tmp_path)
    store = open_store(root, append=False)
    assert len(store.partitions(designation="inputs")[0].batches) == 3
    assert_same(store.read("best_model").to_table(), expected_rows(collected["inputs"]))
    backend = LocalBackend(root, {"append": False})
    compact_partition(backend, CsvFormat(), inputs_folder(root), "data", "csv")
    assert store.partitions(designation="inputs")[0].batches == []
    assert_same(store.read("best_model").to_table(), expected_rows(collected["inputs"]))


@pytest.mark.parametrize("when", ["first batch read", "main file read"])
def test_compaction_between_listing_and_reading_never_doubles_rows(tmp_path, when) -> None:
    """A compaction that runs after the reader listed the folder (merging the batches into data.csv
    and deleting them) makes the reader list again: each row once, none lost."""
    root, collected = batch_store(tmp_path)
    inner = LocalBackend(root, {"append": False})
    folder = inputs_folder(root)
    if when == "main file read":  # a compacted data.csv plus late batches
        compact_partition(inner, CsvFormat(), folder, "data", "csv")
        late = collect_days(root, batches=2, days=DAYS[:1], storage_options={"append": False}, compaction="off")
        collected["inputs"] += late["inputs"]
    fired: list[str] = []

    def hook(op: str, key: str) -> None:
        trigger = key.endswith("/data.csv") if when == "main file read" else "/data-" in key
        if op == "read" and key.startswith(folder) and trigger and not fired:
            fired.append(key)
            compact_partition(inner, CsvFormat(), folder, "data", "csv")

    store = Store(root, Hooked(inner, hook), "local")
    table = store.read("best_model", "inputs").to_table()
    assert fired, "the compaction ran during the read"
    assert_same(table, expected_rows(collected["inputs"]))


@pytest.mark.parametrize("fail_on", ["delete", "put"])
def test_interrupted_compaction_is_read_by_its_manifest(tmp_path, fail_on) -> None:
    """A compaction that died after replacing data.csv (batches still there) or before (manifest
    only): the manifest's checksums tell the reader which copy to use; a plain glob would double."""
    root, collected = batch_store(tmp_path)
    inner = LocalBackend(root, {"append": False})
    folder = inputs_folder(root)

    def crash(op: str, key: str) -> None:
        if op == fail_on and "/data" in key:
            raise OSError("killed")

    with pytest.raises(OSError, match="killed"):
        compact_partition(Hooked(inner, crash), CsvFormat(), folder, "data", "csv")
    names = [k.rpartition("/")[2] for k, _ in inner.list(folder)]
    assert MANIFEST in names and sum(n.startswith("data-") for n in names) == 3
    table = open_store(root, append=False).read("best_model", "inputs").to_table()
    assert_same(table, expected_rows(collected["inputs"]))


def test_local_append_reads_only_committed_bytes(tmp_path) -> None:
    """Bytes past the local backend's committed length (a writer died mid-append) are not read."""
    collected = collect_days(str(tmp_path), days=DAYS[:1])
    path = tmp_path / "default/default/default/default/best_model/3/inputs/2026/03/04/data.csv"
    with open(path, "ab") as f:
        f.write(b"9999,0.5,torn")
    table = open_store(str(tmp_path)).read("best_model").to_table()
    assert_same(table, expected_rows(collected["inputs"]))


# -- join and export ----------------------------------------------------------------------------


def joined_expected(collected: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    scores = {r[CID]: r["score"] for r in collected["predictions"]}
    return sorted(
        ({**r, "score": scores[r[CID]]} for r in collected["inputs"] if r[CID] in scores), key=lambda r: r[CID]
    )


def test_join_pairs_inputs_predictions_and_late_labels(tmp_path) -> None:
    """Inputs and predictions pair on the correlation id; labels collected days later with the
    inputs' correlations land beside them and join; unpaired rows are counted per side."""
    root = str(tmp_path)
    collected = collect_days(root, days=DAYS[:2])
    clock = Clock(DAYS[1])
    extra = collector(root, "inputs", clock, FEATURES)
    lonely = extra.collect(feature_rows(9, 2))  # inputs without predictions
    extra.close()
    clock.at = utc(2026, 3, 9, 12)  # labels arrive days later, carrying the inputs' correlation data
    labels_dc = collector(root, "labels", clock, ["truth"])
    labelled = collected["inputs"][:4]
    corr = {
        k: [r[k] for r in labelled] if k in (CID, TS) else v
        for k, v in {
            CID: None,
            TS: None,
            "$aml_dc_boundary": 1440,
            "$aml_workspace": "default/default/default",
            "$aml_service_name": "default",
            "$aml_model_name": "best_model",
            "$aml_model_version": "3",
            RID: labelled[0][RID],
        }.items()
    }
    corr[TS] = [r[TS].strftime("%Y-%m-%dT%H:%M:%S.%f") for r in labelled]
    frame = {"truth": [i % 2 for i in range(4)]}
    labels_dc.collect(add_correlations_frame(frame, corr))
    labels_dc.close()
    store = open_store(root)
    assert [p.date for p in store.partitions(designation="labels")] == ["2026-03-04"]
    result = store.join("best_model", labels=True)
    want = [{**r, "truth": i % 2} for i, r in enumerate(labelled)]
    assert result.table.num_rows == 4
    assert got_rows(result.table, [*FEATURES, "score", "truth", CID, TS]) == sorted(
        (
            {k: r[k] for k in [*FEATURES, "score", "truth", CID, TS]}
            for r in ({**w, "score": w["x_int"] / 10} for w in want)
        ),
        key=lambda r: r[CID],
    )
    assert result.unmatched == {"inputs": 2, "predictions": 0, "labels": 0}
    left = store.join("best_model", how="left")
    assert left.table.num_rows == len(collected["inputs"]) + 2
    assert sorted(left.table.filter(pa.compute.is_null(left.table["score"]))[CID].to_pylist()) == sorted(lonely[CID])


def add_correlations_frame(features: dict[str, list[Any]], corr: dict[str, Any]) -> dict[str, list[Any]]:
    n = len(next(iter(features.values())))
    return {**features, **{k: v if isinstance(v, list) else [v] * n for k, v in corr.items()}}


def test_join_falls_back_to_unique_request_ids() -> None:
    """Rows whose correlation ids differ pair on a request id that names one row on each side;
    the no-request placeholder and ambiguous request ids never pair."""
    inputs = pa.table(
        {"f": [1, 2, 3, 4], CID: ["a", "b", "c", "d"], RID: ["r1", "r2", "00000000-0000-0000-0000-000000000000", "r4"]}
    )
    preds = pa.table(
        {
            "p": [10, 20, 30, 40, 41],
            CID: ["a", "x", "y", "z", "w"],
            RID: ["r1", "r2", "00000000-0000-0000-0000-000000000000", "r4", "r4"],
        }
    )
    result = join(inputs, preds)
    assert sorted(result.table.select(["f", "p"]).to_pylist(), key=lambda r: r["f"]) == [
        {"f": 1, "p": 10},
        {"f": 2, "p": 20},
    ]
    assert result.matched == {"predictions": 1} and result.by_request == {"predictions": 1}
    assert result.unmatched == {"predictions": 3, "inputs": 2}


def test_join_suffixes_clashing_feature_names() -> None:
    """A predictions column named like an input column gets the designation as suffix."""
    inputs = pa.table({"feature_0": [1], CID: ["a"]})
    preds = pa.table({"feature_0": [0.5], CID: ["a"]})
    assert join(inputs, preds).table.column_names == ["feature_0", "feature_0_predictions", CID]


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_export_writes_the_joined_training_set(tmp_path, fmt) -> None:
    """export() writes inputs joined with predictions for the range; read back by pyarrow alone."""
    collected = collect_days(str(tmp_path / "store"))
    target = str(tmp_path / f"out/train.{fmt}")
    result = open_store(str(tmp_path / "store")).export(target, "best_model", start="2026-03-05")
    start = utc(2026, 3, 5)
    want = [r for r in joined_expected(collected) if r[TS] >= start]
    assert result.rows == len(want) and result.days == 2
    if fmt == "parquet":
        table = pq.read_table(target)
    else:
        import pyarrow.csv as pacsv

        table = pacsv.read_csv(target)
    assert sorted(table.column(CID).to_pylist()) == [r[CID] for r in want]
    assert sorted(zip(table.column(CID).to_pylist(), table.column("score").to_pylist())) == [
        (r[CID], r["score"]) for r in want
    ]
    with pytest.raises(FileExistsError):
        open_store(str(tmp_path / "store")).export(target, "best_model")


# -- retention and erasure ----------------------------------------------------------------------


def test_purge_deletes_only_partitions_older_than_n_days(tmp_path) -> None:
    """Partitions that ended more than N days before now go, with their files; the rest stay."""
    collected = collect_days(str(tmp_path), days=DAYS[:2])
    store = open_store(str(tmp_path))
    now = utc(2026, 3, 7, 1)  # 2026-03-04 ended 2 days 1 hour ago, 2026-03-05 1 day 1 hour ago
    dry = store.purge(2, now=now, dry_run=True)
    assert len(dry.partitions) == 2 and store.ls(rows=False)[0]["date"] == "2026-03-04"
    done = store.purge(2, now=now)
    assert [p.rpartition("/")[0][-10:] for p in done.partitions] == ["2026/03/04"] * 2
    assert [e["date"] for e in store.ls(rows=False)] == ["2026-03-05", "2026-03-05"]
    inputs = tmp_path / "default/default/default/default/best_model/3/inputs"
    assert sorted(p.name for p in (inputs / "2026/03").iterdir()) == ["05"]  # no empty day folder left
    assert_same(store.read("best_model").to_table(), expected_rows(collected["inputs"], start=utc(2026, 3, 5)))


@pytest.mark.parametrize("mode", ["append", "batches", "parquet"])
def test_erase_removes_exactly_the_rows_of_the_ids(tmp_path, mode) -> None:
    """Erasing by correlation id and by request id removes exactly those rows, rewrites only the
    files holding them, and keeps every other record's bytes."""
    root = str(tmp_path)
    kw: dict[str, Any] = {"format": "parquet", "compaction": "off"} if mode == "parquet" else {}
    if mode == "batches":
        kw = {"storage_options": {"append": False}, "compaction": "off"}
    collected = collect_days(root, **kw)
    options = {"append": False} if mode == "batches" else {}
    store = open_store(root, **options)
    victims = [collected["inputs"][0][CID], collected["inputs"][7][CID]]
    files_before = {k: store.backend.read(k) for k, _ in store.backend.list("")}
    result = store.erase(correlation_ids=victims, designation="inputs")
    assert result.rows == 2 and not result.skipped
    files_after = {k: store.backend.read(k) for k, _ in store.backend.list("")}
    changed = {k for k in files_before if files_before[k] != files_after.get(k)}
    assert changed == set(result.files) and len(changed) == 2
    if mode != "parquet":
        for key in changed:  # every other record is byte for byte what it was
            before = files_before[key].decode().splitlines(keepends=True)
            after = (files_after.get(key) or b"").decode().splitlines(keepends=True)
            assert [line for line in before if not any(v in line for v in victims)] == after
    remaining = [r for r in collected["inputs"] if r[CID] not in victims]
    assert_same(store.read("best_model").to_table(), expected_rows(remaining))
    # predictions keep their rows; a dry run by correlation id there counts them
    assert store.erase(correlation_ids=victims, designation="predictions", dry_run=True).rows == 2
    assert store.read("best_model", "predictions").count_rows() == len(collected["predictions"])


def test_erase_refuses_the_no_request_placeholder(tmp_path) -> None:
    """The placeholder request id is shared by every row outside a request: never an erase key."""
    with pytest.raises(ValueError, match="outside a request"):
        open_store(str(tmp_path)).erase(request_ids=["00000000-0000-0000-0000-000000000000"])


def test_erase_skips_a_partition_locked_by_a_compactor(tmp_path) -> None:
    """A live compaction lock makes erase leave the partition alone and say so."""
    root, collected = batch_store(tmp_path)
    backend = LocalBackend(root, {"append": False})
    backend.create(inputs_folder(root) + "_mdc_compaction.lock", json.dumps({"owner": "x", "expires": 4e9}).encode())
    store = open_store(root, append=False)
    result = store.erase(correlation_ids=[collected["inputs"][0][CID]], designation="inputs")
    assert result.rows == 0 and list(result.skipped) == [inputs_folder(root)]
    assert os.path.exists(os.path.join(root, inputs_folder(root), "_mdc_compaction.lock"))


def test_hour_partitions_and_unpadded_dates(tmp_path) -> None:
    """Hourly, unpadded folders (2026/3/4/09) are listed by hour and read by a datetime range."""
    hours = (utc(2026, 3, 4, 9, 5), utc(2026, 3, 4, 10, 59, 59), utc(2026, 3, 4, 11, 0))
    collected = collect_days(str(tmp_path), days=hours, boundary="hour", pad_dates=False)
    store = open_store(str(tmp_path))
    parts = store.partitions(designation="inputs")
    assert [p.date for p in parts] == ["2026-03-04T09", "2026-03-04T10", "2026-03-04T11"]
    assert parts[0].folder.endswith("/inputs/2026/3/4/09/")
    start, end = utc(2026, 3, 4, 10), utc(2026, 3, 4, 11)
    assert [p.date for p in store.partitions(designation="inputs", start=start, end=end)] == ["2026-03-04T10"]
    assert_same(
        store.read("best_model", start=start, end=end).to_table(), expected_rows(collected["inputs"], start, end)
    )


def test_an_append_during_the_read_is_cut_at_the_committed_length(tmp_path) -> None:
    """The reader takes the committed length before the bytes: a half-written append, and one
    that completes meanwhile, stay out of this read (the next read has the latter)."""
    collected = collect_days(str(tmp_path), days=DAYS[:1])
    inner = LocalBackend(str(tmp_path))
    key = inputs_folder(str(tmp_path)) + "data.csv"
    header = inner.read(key).split(b"\n", 1)[0] + b"\n"
    appended: list[str] = []

    def append_meanwhile(op: str, name: str) -> None:
        if op == "read" and name == key and not appended:  # after the reader took the marker
            appended.append(name)
            inner.append(key, header, b'5,0.5,"late",c-late,2026-03-04T09:15:00.250000,1440,w,s,m,3,r\n')
            with open(tmp_path / key, "ab") as f:
                f.write(b"6,0.5,half")  # a writer still writing

    store = Store(str(tmp_path), Hooked(inner, append_meanwhile), "local")
    assert_same(store.read("best_model").to_table(), expected_rows(collected["inputs"]))
    assert appended
    assert open_store(str(tmp_path)).read("best_model").count_rows() == len(collected["inputs"]) + 1


def test_collections_of_signals_read_apart_or_together(tmp_path) -> None:
    """Signals of two collections share a folder as <name>.csv; collection= reads one, and
    without it the union comes back (columns of the other collection null)."""
    clock = Clock(DAYS[0])
    made = {}
    for name, column in (("drift", "psi"), ("latency", "ms")):
        dc = ModelDataCollector(
            "best_model",
            designation="signals",
            collection_name=name,
            feature_names=[column],
            storage=str(tmp_path),
            clock=clock,
        )
        made[name] = list(dc.collect([[1.5], [2.5]])[CID])
        dc.close()
    store = open_store(str(tmp_path))
    part = store.partitions(designation="signals")[0]
    assert [n for n, _ in part.data_files] == ["drift.csv", "latency.csv"]
    drift = store.read("best_model", "signals", collection="drift").to_table()
    assert drift.column_names[0] == "psi" and sorted(drift.column(CID).to_pylist()) == sorted(made["drift"])
    both = store.read("best_model", "signals").to_table()
    assert both.num_rows == 4 and both.column("ms").null_count == 2 and both.column("psi").null_count == 2


def test_a_large_file_streams_in_blocks_parsed_as_the_schema(tmp_path, monkeypatch) -> None:
    """Past the cache, a CSV file is parsed block by block with the scan's types: a column whose
    first rows are whole numbers and later ones fractions still comes back exactly."""
    clock = Clock(DAYS[0])
    dc = collector(str(tmp_path), "inputs", clock, ["v"])
    ids = []
    for batch in ([[i] for i in range(40)], [[i + 0.25] for i in range(40)]):
        ids += list(dc.collect(batch)[CID])
        assert dc.flush(timeout=30)
    dc.close()
    monkeypatch.setattr("mdc_core.reader.CACHE_BYTES", 0)
    monkeypatch.setattr("mdc_core.reader.STREAM_BLOCK", 1024)
    scan = open_store(str(tmp_path)).read("best_model", columns=["v", CID])
    batches = list(scan.to_batches())
    assert len(batches) > 2 and all(b.schema == scan.schema for b in batches)
    assert scan.schema.field("v").type == pa.float64()
    table = pa.Table.from_batches(batches)
    assert dict(zip(table.column(CID).to_pylist(), table.column("v").to_pylist())) == dict(
        zip(ids, [float(i) for i in range(40)] + [i + 0.25 for i in range(40)])
    )
