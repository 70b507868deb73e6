"""The local-disk backend: safe appends from many writers, torn-tail repair, header changes."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from conftest import data_files, read_raw
from mdc_backends import local
from mdc_backends.local import LocalBackend
from mdc_core import BackendError

HEADER = b"a,b\n"


@pytest.fixture(params=["native", "python"])
def writes(request, monkeypatch) -> str:
    """Each test of the write steps runs twice: in C (_durable.c, one GIL release) and in Python."""
    if request.param == "python":
        monkeypatch.setattr(local, "_durable", None)
    elif local._durable is None:
        if os.environ.get("MDC_REQUIRE_COMPILED") == "1":
            pytest.fail("mdc_core._durable was not built (MDC_REQUIRE_COMPILED=1)")
        pytest.skip("mdc_core._durable not built (no C compiler, or MDC_PURE_PYTHON set)")
    return request.param


def test_append_writes_header_once(writes, tmp_path) -> None:
    """The first append writes the header; later appends only rows."""
    backend = LocalBackend(str(tmp_path))
    assert backend.append("x/data.csv", HEADER, b"1,2\n") == "x/data.csv"
    assert backend.append("x/data.csv", HEADER, b"3,4\n") == "x/data.csv"
    assert (tmp_path / "x" / "data.csv").read_bytes() == b"a,b\n1,2\n3,4\n"


def test_torn_tail_is_cut_before_the_next_append(writes, tmp_path) -> None:
    """Bytes a crashed writer left past the last complete append are removed under the lock."""
    backend = LocalBackend(str(tmp_path))
    backend.append("data.csv", HEADER, b'1,"multi\nline"\n')
    with open(tmp_path / "data.csv", "ab") as f:
        f.write(b'2,"torn\nhalf-writ')  # a writer died here, mid-append
    backend.append("data.csv", HEADER, b"3,4\n")
    assert read_raw(tmp_path / "data.csv") == [["a", "b"], ["1", "multi\nline"], ["3", "4"]]


def test_crash_during_first_append_is_cut_too(writes, tmp_path) -> None:
    """A file whose very first append was torn is reset, and gets its header again."""
    backend = LocalBackend(str(tmp_path))
    os.makedirs(tmp_path / "d")
    (tmp_path / "d" / ".data.csv.committed").write_bytes(b"0")
    (tmp_path / "d" / "data.csv").write_bytes(b"a,b\n1,")
    backend.append("d/data.csv", HEADER, b"5,6\n")
    assert (tmp_path / "d" / "data.csv").read_bytes() == b"a,b\n5,6\n"


def test_other_header_goes_to_a_sibling_file(writes, tmp_path, caplog) -> None:
    """Rows are never appended under another header: they go to data-<hash>.csv beside it."""
    backend = LocalBackend(str(tmp_path))
    backend.append("p/data.csv", HEADER, b"1,2\n")
    key = backend.append("p/data.csv", b"a,b,c\n", b"1,2,3\n")
    assert key.startswith("p/data-") and key.endswith(".csv")
    assert (tmp_path / key).read_bytes() == b"a,b,c\n1,2,3\n"
    assert backend.append("p/data.csv", b"a,b,c\n", b"4,5,6\n") == key  # same columns, same sibling
    assert (tmp_path / "p" / "data.csv").read_bytes() == b"a,b\n1,2\n"
    assert any("other columns" in r.getMessage() for r in caplog.records)


def test_create_is_create_only(writes, tmp_path) -> None:
    """create() publishes once and never replaces; no temporary files are left behind."""
    backend = LocalBackend(str(tmp_path))
    assert backend.create("f/data-1.parquet", b"first") is True
    assert backend.create("f/data-1.parquet", b"second") is False
    assert (tmp_path / "f" / "data-1.parquet").read_bytes() == b"first"
    assert os.listdir(tmp_path / "f") == ["data-1.parquet"]


def test_file_url_and_errors(writes, tmp_path) -> None:
    """file:// URLs work; an unwritable root raises BackendError (an OSError) from the backend."""
    assert LocalBackend(f"file://{tmp_path}").append("k.csv", HEADER, b"1,2\n") == "k.csv"
    (tmp_path / "blocker").write_text("")
    with pytest.raises(BackendError) as info:
        LocalBackend(str(tmp_path / "blocker")).append("k.csv", HEADER, b"1,2\n")
    assert isinstance(info.value, OSError)


def test_keys_cannot_escape_the_root(tmp_path) -> None:
    """A key with '..' or empty segments is refused."""
    backend = LocalBackend(str(tmp_path / "root"))
    for key in ("../x.csv", "a//b.csv", "/abs.csv"):
        with pytest.raises(ValueError):
            backend.append(key, HEADER, b"1,2\n")


def test_a_marker_ahead_of_the_data_or_unreadable_is_handled(writes, tmp_path, caplog) -> None:
    """A marker past the end of the file (a crash between the two fsyncs) is pulled back; one that
    holds no number is ignored (the file trusted as it is); an empty one means 0: all cut."""
    backend = LocalBackend(str(tmp_path))
    data, marker = tmp_path / "data.csv", tmp_path / ".data.csv.committed"
    data.write_bytes(b"a,b\n1,2\n")
    marker.write_bytes(b"100")
    backend.append("data.csv", HEADER, b"3,4\n")
    assert data.read_bytes() == b"a,b\n1,2\n3,4\n" and marker.read_bytes() == b"12"
    marker.write_bytes(b"not a number")
    backend.append("data.csv", HEADER, b"5,6\n")
    assert data.read_bytes() == b"a,b\n1,2\n3,4\n5,6\n" and marker.read_bytes() == b"16"
    marker.write_bytes(b"")
    backend.append("data.csv", HEADER, b"7,8\n")
    assert data.read_bytes() == b"a,b\n7,8\n" and marker.read_bytes() == b"8"
    assert [r.getMessage() for r in caplog.records if "cut" in r.getMessage()] == [
        f"mdc cut 16 bytes of an interrupted write from the end of {data}"
    ]
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]


FILE_SIZE_LIMIT = textwrap.dedent("""
    import errno, os, resource, sys
    from mdc_backends import local
    from mdc_core import BackendError
    if sys.argv[2] == "python":
        local._durable = None
    root = sys.argv[1]
    backend = local.LocalBackend(root)
    backend.append("p/data.csv", b"a,b\\n", b"1,2\\n")
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (18, hard))  # the file is 8 bytes: 10 more fit
    for step in (lambda: backend.append("p/data.csv", b"a,b\\n", b"3,4\\n" * 25),
                 lambda: backend.create("q/object.csv", b"x" * 100)):
        try:
            step()
        except BackendError as exc:
            print(exc.errno == errno.EFBIG, end=" ")
    resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    print(os.path.getsize(os.path.join(root, "p", "data.csv")))
    backend.append("p/data.csv", b"a,b\\n", b"5,6\\n")
""")


def test_a_write_that_fails_midway_leaves_a_tail_the_next_append_cuts(writes, tmp_path) -> None:
    """A real failed write (the file size limit, EFBIG, after 10 of 100 bytes): the append raises
    BackendError, the torn 10 bytes are cut by the next append, and a failed create leaves neither
    the object nor its temporary file."""
    done = subprocess.run([sys.executable, "-c", FILE_SIZE_LIMIT, str(tmp_path), writes],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["True", "True", "18"]  # both failed with EFBIG; 10 bytes were torn
    assert (tmp_path / "p" / "data.csv").read_bytes() == b"a,b\n1,2\n5,6\n"
    assert "mdc cut 10 bytes" in done.stderr
    assert not (tmp_path / "q").exists() or os.listdir(tmp_path / "q") == []


WRITER = textwrap.dedent("""
    import sys, threading
    from mdc_core import ModelDataCollector
    proc, threads, per_thread = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    t0 = 1772700000_000000_000  # one fixed instant: every row goes to one partition
    dc = ModelDataCollector("m", designation="inputs", feature_names=["proc", "thread", "i", "text"],
                            storage=sys.argv[4], clock=lambda: t0)
    start = threading.Barrier(threads)
    def work(t):
        start.wait()
        for i in range(per_thread):
            dc.collect([proc, t, i, f'p{proc} "t{t}", row\\n{i}'])
    ts = [threading.Thread(target=work, args=(t,)) for t in range(threads)]
    [t.start() for t in ts]; [t.join() for t in ts]
    assert dc.flush(timeout=60), dc.stats()
    assert dc.stats()["written"] == threads * per_thread, dc.stats()
""")


def test_sixteen_threads_times_two_processes_one_partition(tmp_path) -> None:
    """16 threads in each of 2 processes collect into one file: every row once, one header."""
    threads, per_thread = 16, 300
    env = {**os.environ, "MDC_FLUSH_INTERVAL": "0.01"}  # many small interleaved appends
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, str(p), str(threads), str(per_thread), str(tmp_path)],
            env=env,
            stderr=subprocess.PIPE,
            text=True,
        )
        for p in range(2)
    ]
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
    [path] = data_files(tmp_path)
    rows = read_raw(path)
    assert rows[0][:4] == ["proc", "thread", "i", "text"]
    assert sum(1 for r in rows if r[0] == "proc") == 1
    body = rows[1:]
    keys = [(r[0], r[1], r[2]) for r in body]
    expected = {(str(p), str(t), str(i)) for p in range(2) for t in range(threads) for i in range(per_thread)}
    assert len(keys) == len(expected) and set(keys) == expected
    assert all(r[3] == f'p{r[0]} "t{r[1]}", row\n{r[2]}' for r in body)
