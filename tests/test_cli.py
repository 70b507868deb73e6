"""The ``mdc`` command line: ls, read, join, export, purge, erase on local disk — output compared
with the rows collected, exit codes, --json documents, errors that say what is wrong, and
progress drawn only on a terminal."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys

import pyarrow.parquet as pq
import pytest

from conftest import utc
from mdc_core import open_store
from mdc_core.cli import main
from mdc_core.render import Progress
from test_reader import CID, DAYS, FEATURES, TS, collect_days, joined_expected

COMMANDS = ("ls", "read", "join", "export", "compact", "purge", "erase")


@pytest.fixture
def store_root(tmp_path) -> tuple[str, dict]:
    root = str(tmp_path / "modeldata")
    return root, collect_days(root)


def csv_ids_and_ints(text: str) -> list[tuple[str, int]]:
    return sorted((r[CID], int(r["x_int"])) for r in csv.DictReader(io.StringIO(text)))


def test_help_names_every_command_and_the_exit_codes(capsys) -> None:
    """'mdc --help' lists the seven commands and the exit codes; each command has its own --help."""
    with pytest.raises(SystemExit) as done:
        main(["--help"])
    out = capsys.readouterr().out
    assert done.value.code == 0 and all(c in out for c in COMMANDS) and "3 no data" in out
    for command in COMMANDS:
        with pytest.raises(SystemExit) as done:
            main([command, "--help"])
        assert done.value.code == 0


def test_ls_json_and_text(store_root, capsys) -> None:
    """'ls --json' lists every partition with rows; the text form sums each series."""
    root, collected = store_root
    assert main(["ls", root, "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert sum(p["rows"] for p in doc["partitions"] if p["designation"] == "inputs") == len(collected["inputs"])
    assert main(["ls", root, "--designation", "predictions", "--days"]) == 0
    out = capsys.readouterr().out
    assert f"best_model/3/predictions  3 days 2026-03-04..2026-03-06  {len(collected['predictions'])} rows" in out
    assert out.count("2026-03-0") >= 4


@pytest.mark.parametrize("fmt", ["csv", "json", "parquet"])
def test_read_writes_the_rows_collected(store_root, tmp_path, fmt, capsys) -> None:
    """'read --format csv|json|parquet --output FILE' writes exactly the rows of the range."""
    root, collected = store_root
    out = tmp_path / f"rows.{fmt}"
    args = ["read", root, "--model", "best_model", "--start", "2026-03-05", "--end", "2026-03-05"]
    assert main([*args, "--format", fmt, "--output", str(out)]) == 0
    want = sorted((r[CID], r["x_int"]) for r in collected["inputs"] if r[TS].day == 5)
    if fmt == "csv":
        got = csv_ids_and_ints(out.read_text())
    elif fmt == "json":
        got = sorted((d[CID], d["x_int"]) for d in map(json.loads, out.read_text().splitlines()))
    else:
        table = pq.read_table(out)
        got = sorted(zip(table.column(CID).to_pylist(), table.column("x_int").to_pylist()))
    assert got == want
    assert f"{len(want)} rows written" in capsys.readouterr().err


def test_read_table_columns_and_limit(store_root, capsys) -> None:
    """The default table format prints the chosen columns and says how many rows there were."""
    root, collected = store_root
    assert main(["read", root, "--model", "best_model", "--columns", "x_int,x_text", "--limit", "2"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].split() == ["x_int", "x_text"] and "(2 rows)" in out


def test_read_piped_to_another_process(store_root) -> None:
    """'mdc read ... --format csv' on a pipe writes CSV only (no progress, no summary on stdout)."""
    root, collected = store_root
    done = subprocess.run(
        [sys.executable, "-m", "mdc_core.cli", "read", root, "--designation", "predictions", "--format", "csv"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    rows = list(csv.DictReader(io.StringIO(done.stdout)))
    assert sorted(r[CID] for r in rows) == sorted(r[CID] for r in collected["predictions"])
    assert done.stderr == ""


def test_errors_say_what_is_wrong(store_root, tmp_path, capsys) -> None:
    """No data in the range: exit 3; unknown URL scheme or a bad date: exit 2; each with a message."""
    root, _ = store_root
    assert main(["read", root, "--model", "best_model", "--start", "2027-01-01"]) == 3
    assert "no inputs for model best_model from 2027-01-01" in capsys.readouterr().err
    assert main(["join", root, "--model", "other_model"]) == 3
    assert "no inputs" in capsys.readouterr().err
    assert main(["ls", str(tmp_path / "nothing")]) == 3
    assert "is the URL right" in capsys.readouterr().err
    assert main(["read", "gopher://x"]) == 2
    assert "no storage backend serves gopher://" in capsys.readouterr().err
    assert main(["read", root, "--start", "March"]) == 2
    assert "is not a date" in capsys.readouterr().err


def test_join_writes_pairs_and_reports_unmatched(store_root, tmp_path, capsys) -> None:
    """'join --json' writes joined rows as JSON lines and a JSON summary with unmatched counts."""
    root, collected = store_root
    out = tmp_path / "joined.jsonl"
    assert main(["join", root, "--model", "best_model", "--json", "--output", str(out)]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert sorted((r[CID], r["score"]) for r in rows) == [(r[CID], r["score"]) for r in joined_expected(collected)]
    summary = json.loads(capsys.readouterr().err)
    assert summary["unmatched"] == {"inputs": 0, "predictions": 0} and summary["rows"] == len(rows)


def test_export_then_purge_then_erase(store_root, tmp_path, capsys) -> None:
    """export writes the training set; purge --dry-run deletes nothing, purge deletes old days;
    erase removes the rows of the ids given on the command line and in a file."""
    root, collected = store_root
    target = tmp_path / "train.parquet"
    assert main(["export", root, str(target), "--model", "best_model", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["rows"] == len(collected["inputs"])
    assert pq.read_table(target).num_rows == len(collected["inputs"])
    assert main(["export", root, str(target)]) == 1  # exists, no --overwrite
    assert "exists" in capsys.readouterr().err

    days_old = (utc(2026, 11, 25) - DAYS[1]).days  # keeps the last two days whatever today is
    assert main(["purge", root, "--older-than", str(days_old), "--dry-run", "--json"]) == 0
    dry = json.loads(capsys.readouterr().out)
    assert dry["dry_run"] and len(dry["partitions"]) >= 2
    assert len(open_store(root).partitions()) == 6
    assert main(["purge", root, "--older-than", "100000"]) == 0  # nothing that old
    assert "deleted 0 partitions" in capsys.readouterr().out

    ids = [r[CID] for r in collected["inputs"]]
    ids_file = tmp_path / "ids.txt"
    ids_file.write_text(f"correlation:{ids[1]}\n{ids[2]}\n\n")
    assert (
        main(["erase", root, "--correlation-id", ids[0], "--ids-file", str(ids_file), "--designation", "inputs"]) == 0
    )
    assert "removed 3 rows" in capsys.readouterr().out
    left = open_store(root).read("best_model").to_table()
    assert sorted(left.column(CID).to_pylist()) == sorted(ids[3:])


def test_progress_draws_only_on_a_terminal() -> None:
    """Progress writes a bar to a terminal stream and nothing to a pipe or file."""

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    tty, pipe = Terminal(), io.StringIO()
    for stream in (tty, pipe):
        bar = Progress("reading", stream=stream)
        bar(1, 2)
        bar(2, 2)
        bar.close()
    assert "reading [" in tty.getvalue() and "2/2" in tty.getvalue() and tty.getvalue().endswith("\n")
    assert pipe.getvalue() == ""


def test_features_survive_the_csv_round_trip(store_root, tmp_path) -> None:
    """Text with commas and quotes, and missing floats, come back as collected through 'read --format csv'."""
    root, collected = store_root
    out = tmp_path / "rows.csv"
    assert main(["read", root, "--format", "csv", "--output", str(out)]) == 0
    got = {r[CID]: r for r in csv.DictReader(io.StringIO(out.read_text()))}
    for row in collected["inputs"]:
        assert got[row[CID]]["x_text"] == row["x_text"]
        assert got[row[CID]]["x_float"] == ("" if row["x_float"] is None else repr(row["x_float"]))
    assert set(FEATURES) <= set(next(iter(got.values())))
