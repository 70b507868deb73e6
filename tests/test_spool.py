"""The local spool: durability, ownership between processes, torn and corrupt files, full disks."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import io
import json
import os
import select
import signal
import subprocess
import sys
from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mdc_core.spool import Damaged, Spool, SpoolEntry, SpoolFull, SpoolRecord, load

ROUTE = "best_model/1/inputs"
STORAGE = "s3://bucket/modeldata"


def rec(key: str, data: bytes | None = None, rows: int = 1) -> SpoolRecord:
    return SpoolRecord(STORAGE, key, key.encode() * 3 if data is None else data, rows, ROUTE)


def keys(item: SpoolEntry | Damaged) -> list[str]:
    return [r.key for r in (item.recovered if isinstance(item, Damaged) else item.records)]


def spool_files(directory: str | os.PathLike[str]) -> list[str]:
    return sorted(n for n in os.listdir(directory) if n.endswith(".spool"))


# A process that owns a spool and obeys one command per line on stdin, answering one JSON line.
WORKER = r"""
import json, os, signal, sys
from mdc_core.spool import Damaged, Spool, SpoolRecord

def reply(**kw):
    sys.stdout.write(json.dumps(kw) + "\n")
    sys.stdout.flush()

def record(key):
    return SpoolRecord("s3://bucket/modeldata", key, key.encode() * 40, 1, "best_model/1/inputs")

def keys(item):
    return [r.key for r in (item.recovered if isinstance(item, Damaged) else item.records)]

class Hang:
    # A spool file whose first write lands 5 bytes, tells the test, then waits to be killed.
    def __init__(self, path, mode):
        self.f = open(path, mode)
    def __enter__(self):
        return self
    def __exit__(self, *exc):
        self.f.close()
    def write(self, data):
        self.f.write(bytes(data[:5]))
        self.f.flush()
        reply(writing=self.f.name)
        signal.pause()

hang = False
spool = Spool(sys.argv[1], fsync=sys.argv[2] == "1", opener=lambda p, m: Hang(p, m) if hang else open(p, m))
reply(token=spool.token)
for line in sys.stdin:
    cmd, *args = line.split()
    if cmd == "put":
        entries = [spool.put([record(f"{args[0]}/{i:05d}")]) for i in range(int(args[1]))]
        reply(paths=[e.path for e in entries], sizes=[os.path.getsize(e.path) for e in entries])
    elif cmd == "hang":
        hang = True
        spool.put([record(args[0])])
    elif cmd == "claim":
        got = list(spool.claim_orphans())
        reply(claimed=[keys(g) for g in got], damaged=[isinstance(g, Damaged) for g in got], bytes=spool.bytes())
    elif cmd == "entries":
        reply(entries=[keys(e) for e in spool.entries()])
    elif cmd == "fork":
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            try:
                os.close(r)
                spool.reopen_after_fork()
                entry = spool.put([record(args[0])])
                os.write(w, json.dumps({"child": os.getpid(), "path": entry.path}).encode())
                os.close(w)
            except BaseException:
                os._exit(1)
            while True:
                signal.pause()
        os.close(w)
        with os.fdopen(r) as f:
            reply(**json.loads(f.read()))
    elif cmd == "close":
        spool.close()
        reply(closed=True)
    elif cmd == "exit":
        os._exit(0)
"""


class Worker:
    """A subprocess owning a spool in ``directory``, driven line by line."""

    def __init__(self, directory: str | os.PathLike[str], fsync: bool = True):
        self.proc = subprocess.Popen(
            [sys.executable, "-c", WORKER, os.fspath(directory), "1" if fsync else "0"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            bufsize=0,
        )
        self._buffer = b""
        self.token = self.reply()["token"]

    def send(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line.encode() + b"\n")

    def reply(self, timeout: float = 60) -> dict:
        assert self.proc.stdout is not None
        while b"\n" not in self._buffer:
            ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
            chunk = self.proc.stdout.read(65536) if ready else b""
            if not chunk:
                raise AssertionError(f"worker gave no answer (exit code {self.proc.poll()})")
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        return json.loads(line)

    def ask(self, line: str) -> dict:
        self.send(line)
        return self.reply()

    def exit(self) -> None:
        """Die by ``os._exit``: no clean-up, entries and lock file left as they are."""
        self.send("exit")
        assert self.proc.wait(timeout=60) == 0


@pytest.fixture
def workers() -> Iterator[list]:
    """Holds started workers (and pids of their forked children) and kills whatever is left at the end."""
    started: list = []
    yield started
    for item in started:
        if isinstance(item, Worker):
            with item.proc:  # closes its pipes
                item.proc.kill()
        else:
            with contextlib.suppress(ProcessLookupError):
                os.kill(item, signal.SIGKILL)


def wait_until_dead(directory: str | os.PathLike[str], token: str) -> None:
    """Block until the owner ``token`` has released its lock, i.e. until it has died."""
    fd = os.open(os.path.join(directory, f".owner-{token}.lock"), os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
    finally:
        os.close(fd)


def test_round_trip_keeps_records_order_and_exact_byte_count(tmp_path):
    """put, entries and remove keep each batch's records, put order, and a byte counter equal to the files."""
    spool = Spool(tmp_path)
    puts = [spool.put([rec(f"k/{i}/a"), rec(f"k/{i}/b", b"\x00\xff" * i, rows=i)]) for i in range(40)]
    assert spool.entries() == puts
    assert spool.bytes() == sum(os.path.getsize(e.path) for e in puts)
    spool.remove(puts[7])
    spool.remove(puts[7])  # already gone: fine
    assert not os.path.exists(puts[7].path)
    assert spool.entries() == puts[:7] + puts[8:]
    assert spool.bytes() == sum(os.path.getsize(e.path) for e in puts if e is not puts[7])
    for entry in puts:
        spool.remove(entry)
    assert spool.entries() == [] and spool.bytes() == 0 and spool_files(tmp_path) == []


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.builds(SpoolRecord, st.text(), st.text(), st.binary(max_size=300), st.integers(0, 2**62), st.text()),
        min_size=1,
        max_size=4,
    )
)
def test_any_record_reads_back_unchanged(tmp_path_factory, records):
    """Any text (newlines, quotes, any Unicode) and any bytes read back from disk exactly as put."""
    with Spool(tmp_path_factory.mktemp("spool"), fsync=False) as spool:
        entry = spool.put(records)
    assert load(entry.path) == entry
    assert load(entry.path).records == tuple(records)


def test_put_refuses_what_it_could_not_read_back(tmp_path):
    """Records of the wrong types, or no records at all, are refused before anything is written."""
    spool = Spool(tmp_path)
    for bad in (rec("k", rows=True), rec("k", rows=-1), SpoolRecord(STORAGE, "k", "text", 1, ROUTE)):  # type: ignore[arg-type]
        with pytest.raises(TypeError):
            spool.put([bad])
    with pytest.raises(ValueError):
        spool.put([])
    assert spool_files(tmp_path) == [] and spool.bytes() == 0


def test_oldest_age_follows_the_oldest_held_entry(tmp_path):
    """oldest_age counts from the oldest entry still held, and is None when nothing is."""
    spool = Spool(tmp_path)
    assert spool.oldest_age() is None
    first, second = spool.put([rec("a")]), spool.put([rec("b")])
    assert spool.oldest_age(now=first.created + 5) == pytest.approx(5)
    spool.remove(first)
    assert spool.oldest_age(now=second.created + 5) == pytest.approx(5)
    spool.remove(second)
    assert spool.oldest_age() is None


def test_entries_of_a_killed_process_are_claimed_only_after_it_died(tmp_path, workers):
    """A process that put 3 entries and died by os._exit leaves them, byte for byte, to the next claimer."""
    workers.append(owner := Worker(tmp_path))
    put = owner.ask("put dead 3")
    spool = Spool(tmp_path)
    mine = spool.put([rec("mine")])
    assert list(spool.claim_orphans()) == []  # the owner is alive
    owner.exit()
    claimed = list(spool.claim_orphans())
    assert [keys(e) for e in claimed] == [["dead/00000"], ["dead/00001"], ["dead/00002"]]
    assert all(isinstance(e, SpoolEntry) for e in claimed)
    assert [e.records[0].data for e in claimed] == [f"dead/{i:05d}".encode() * 40 for i in range(3)]
    assert [os.path.getsize(e.path) for e in claimed] == put["sizes"]
    assert spool.bytes() == sum(put["sizes"]) + os.path.getsize(mine.path)
    assert spool.entries() == [*claimed, mine]
    assert list(spool.claim_orphans()) == []  # adopted entries are now this process's own


def test_a_closed_spool_leaves_its_entries_to_the_next(tmp_path):
    """While a spool is open its entries are not orphans, even to another spool in the same process."""
    first, second = Spool(tmp_path), Spool(tmp_path)
    entry = first.put([rec("a"), rec("b")])
    assert list(second.claim_orphans()) == []
    first.close()
    first.close()
    assert [e.records for e in second.claim_orphans()] == [entry.records]
    assert sorted(os.listdir(tmp_path)) == sorted(
        [os.path.basename(second.entries()[0].path), f".owner-{second.token}.lock"]
    )


def test_two_live_processes_never_claim_each_others_entries(tmp_path, workers):
    """Two live owners see no orphans in each other's entries, and neither does a third process."""
    workers.extend([one := Worker(tmp_path), two := Worker(tmp_path)])
    one.ask("put one 3")
    two.ask("put two 3")
    assert one.ask("claim")["claimed"] == []
    assert two.ask("claim")["claimed"] == []
    assert list(Spool(tmp_path).claim_orphans()) == []
    assert one.ask("entries")["entries"] == [[f"one/{i:05d}"] for i in range(3)]
    assert two.ask("entries")["entries"] == [[f"two/{i:05d}"] for i in range(3)]


@pytest.mark.slow
@pytest.mark.parametrize("death", ["killed", "closed"])
def test_concurrent_claimers_split_a_dead_owners_entries_without_overlap(tmp_path, workers, death):
    """Two claimers racing for a dead owner's 300 entries get each exactly once, and never a live owner's."""
    workers.extend([dead := Worker(tmp_path, fsync=False), live := Worker(tmp_path, fsync=False)])
    dead.ask("put dead 300")
    live.ask("put live 5")
    if death == "closed":  # lock file gone: the claimers race on the renames themselves
        dead.ask("close")
    dead.exit()
    workers.extend([a := Worker(tmp_path), b := Worker(tmp_path)])
    a.send("claim")
    b.send("claim")
    got_a, got_b = ({k for entry in w.reply()["claimed"] for k in entry} for w in (a, b))
    assert not got_a & got_b
    assert got_a | got_b == {f"dead/{i:05d}" for i in range(300)}
    assert len(spool_files(tmp_path)) == 305  # and no copy of any entry on disk
    assert live.ask("entries")["entries"] == [[f"live/{i:05d}"] for i in range(5)]
    assert a.ask("claim")["claimed"] == [] and b.ask("claim")["claimed"] == []


def test_a_process_killed_mid_put_leaves_no_partial_file(tmp_path, workers):
    """A put cut short by SIGKILL leaves only a hidden temp file, which the claimer deletes and never yields."""
    workers.append(owner := Worker(tmp_path))
    owner.send("hang victim")
    temp = owner.reply()["writing"]
    assert os.path.basename(temp).startswith(".") and os.path.getsize(temp) == 5  # the fault happened
    owner.proc.kill()
    owner.proc.wait()
    assert spool_files(tmp_path) == []
    spool = Spool(tmp_path)
    assert list(spool.claim_orphans()) == []
    assert os.listdir(tmp_path) == [f".owner-{spool.token}.lock"]


def test_a_forked_child_owns_only_its_own_entries(tmp_path):
    """After fork and reopen_after_fork, parent and child each list only the entries they put."""
    spool = Spool(tmp_path)
    parent_entry = spool.put([rec("parent")])
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child reports through the pipe
        code = 1
        try:
            os.close(r)
            spool.reopen_after_fork()
            entry = spool.put([rec("child")])
            report = {"path": entry.path, "entries": [e.path for e in spool.entries()], "bytes": spool.bytes()}
            os.write(w, json.dumps(report).encode())
            code = 0
        finally:
            os._exit(code)
    os.close(w)
    with os.fdopen(r) as f:
        report = json.loads(f.read() or "{}")
    assert os.waitpid(pid, 0)[1] == 0
    assert report["entries"] == [report["path"]]
    assert report["bytes"] == os.path.getsize(report["path"])
    assert spool.entries() == [parent_entry]
    assert spool.bytes() == os.path.getsize(parent_entry.path)
    claimed = list(Spool(tmp_path).claim_orphans())  # the child has exited; the parent lives
    assert [keys(e) for e in claimed] == [["child"]]


def test_a_forked_child_does_not_keep_its_dead_parents_entries(tmp_path, workers):
    """When the parent dies its entries are orphans even though its forked child lives on, and not the child's."""
    workers.append(parent := Worker(tmp_path))
    parent.ask("put parent 2")
    child = parent.ask("fork child")
    workers.append(child["child"])
    parent.exit()
    spool = Spool(tmp_path)
    assert [keys(e) for e in spool.claim_orphans()] == [["parent/00000"], ["parent/00001"]]
    os.kill(child["child"], signal.SIGKILL)
    wait_until_dead(tmp_path, os.path.basename(child["path"]).split("+")[1].removesuffix(".spool"))
    assert [keys(e) for e in spool.claim_orphans()] == [["child"]]


def _three_records() -> list[SpoolRecord]:
    return [rec("2026/03/05/data-a-1.csv", b""), rec("b", b"x", rows=0), rec("c", bytes(range(256)) * 2, rows=9)]


def _boundaries(tmp_path) -> tuple[list[SpoolRecord], bytes, list[int]]:
    """Three records, their file, and where the header and each record end, found from file sizes alone."""
    records = _three_records()
    spool = Spool(tmp_path / "sizes", fsync=False)
    size = [os.path.getsize(spool.put(records[:k]).path) for k in (1, 2, 3)]
    header = size[0] + os.path.getsize(spool.put(records[1:2]).path) - size[1]
    full = spool.put(records)
    with open(full.path, "rb") as f:
        return records, f.read(), [header, *size]


def test_a_torn_tail_recovers_exactly_the_complete_records_at_every_length(tmp_path):
    """Cut anywhere, a file yields the records wholly before the cut and counts the bytes and rows after them."""
    records, data, ends = _boundaries(tmp_path)
    path = str(tmp_path / "cut.spool")
    for length in range(len(data)):
        with open(path, "wb") as f:
            f.write(data[:length])
        got = load(path)
        complete = max((k for k, end in enumerate(ends) if end <= length), default=None)
        assert isinstance(got, Damaged), length
        assert got.recovered == tuple(records[: complete or 0]), length
        assert got.lost_bytes == length - (ends[complete] if complete is not None else 0), length
        assert got.lost_rows == (None if complete is None else sum(r.rows for r in records[complete:])), length
    with open(path, "wb") as f:
        f.write(data)
    assert load(path) == SpoolEntry(path, tuple(records), 0.0)


def test_a_flipped_byte_keeps_the_records_before_it(tmp_path):
    """A corrupted byte anywhere makes the file Damaged; the records before the corrupted one are recovered."""
    records, data, ends = _boundaries(tmp_path)
    path = str(tmp_path / "flipped.spool")
    for pos in range(len(data)):
        with open(path, "wb") as f:
            f.write(data[:pos] + bytes([data[pos] ^ 0xFF]) + data[pos + 1 :])
        got = load(path)
        assert isinstance(got, Damaged), pos
        if pos < ends[0]:  # header: nothing readable, or every record by its own checksum
            assert (got.recovered, got.lost_bytes) in {((), len(data)), (tuple(records), 0)}, pos
        else:
            hit = next(k for k in range(3) if pos < ends[k + 1])
            assert got.recovered == tuple(records[:hit]), pos
            assert got.lost_bytes == len(data) - ends[hit], pos
            assert got.lost_rows == sum(r.rows for r in records[hit:]), pos


def test_a_damaged_orphan_is_yielded_in_order_with_what_it_kept(tmp_path, workers):
    """Among a dead owner's entries a torn one comes back as Damaged, in its place, with its bytes counted."""
    workers.append(owner := Worker(tmp_path))
    put = owner.ask("put dead 3")
    owner.exit()
    os.truncate(put["paths"][1], put["sizes"][1] - 1)
    got = list(Spool(tmp_path).claim_orphans())
    assert [type(g) for g in got] == [SpoolEntry, Damaged, SpoolEntry]
    assert [keys(g) for g in got] == [["dead/00000"], [], ["dead/00002"]]
    assert got[1].lost_bytes > 0 and got[1].lost_rows == 1 and got[1].reason


class FullDisk(io.FileIO):
    """A spool file on a disk that runs out after ``room`` bytes (writes short, then fails)."""

    failures = 0

    def __init__(self, path: str, mode: str, room: int, code: int):
        super().__init__(path, mode.replace("b", ""))
        self.room, self.code = room, code

    def write(self, data) -> int:  # type: ignore[override]
        if self.room <= 0:
            FullDisk.failures += 1
            raise OSError(self.code, os.strerror(self.code))
        n = super().write(memoryview(data)[: self.room])
        self.room -= n
        return n


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EDQUOT])
@pytest.mark.parametrize("room", [0, 30])
def test_a_full_disk_raises_spool_full_and_leaves_nothing(tmp_path, code, room):
    """ENOSPC or EDQUOT while writing becomes SpoolFull, with no temp or final file left and bytes() unchanged."""
    opened: list[str] = []
    full = False

    def opener(path: str, mode: str) -> io.FileIO:
        if not full:
            return io.FileIO(path, mode)
        opened.append(path)
        return FullDisk(path, mode, room, code)

    spool = Spool(tmp_path, opener=opener)
    before = spool.put([rec("ok")])
    full = True  # the same spool, its disk now full
    FullDisk.failures = 0
    with pytest.raises(SpoolFull) as caught:
        spool.put([rec("too much", b"y" * 1000)])
    assert caught.value.errno == code
    assert FullDisk.failures == 1 and len(opened) == 1  # the fault happened, mid-file when room > 0
    assert not os.path.exists(opened[0])
    assert sorted(os.listdir(tmp_path)) == sorted([os.path.basename(before.path), f".owner-{spool.token}.lock"])
    assert spool.bytes() == os.path.getsize(before.path)
    assert spool.entries() == [before]


def test_a_full_disk_at_open_raises_spool_full(tmp_path):
    """ENOSPC when creating the temp file is SpoolFull too."""

    def opener(path: str, mode: str) -> io.FileIO:
        raise OSError(errno.ENOSPC, "No space left on device", path)

    spool = Spool(tmp_path, opener=opener)
    with pytest.raises(SpoolFull) as caught:
        spool.put([rec("a")])
    assert caught.value.errno == errno.ENOSPC
    assert os.listdir(tmp_path) == [f".owner-{spool.token}.lock"] and spool.bytes() == 0


def test_other_write_errors_propagate_and_leave_nothing(tmp_path):
    """An I/O error that is not a full disk is raised as itself, and leaves no file behind."""
    spool = Spool(tmp_path, opener=lambda p, m: FullDisk(p, m, 10, errno.EIO))
    with pytest.raises(OSError) as caught:
        spool.put([rec("a")])
    assert caught.value.errno == errno.EIO and not isinstance(caught.value, SpoolFull)
    assert os.listdir(tmp_path) == [f".owner-{spool.token}.lock"] and spool.bytes() == 0


def test_the_byte_cap_refuses_a_batch_that_would_exceed_it(tmp_path):
    """A put that would take bytes() past max_bytes raises SpoolFull naming the cap; removing makes room."""
    size = os.path.getsize(Spool(tmp_path / "probe", fsync=False).put([rec("a")]).path)
    spool = Spool(tmp_path / "capped", max_bytes=2 * size - 1)
    first = spool.put([rec("a")])
    with pytest.raises(SpoolFull, match="cap") as caught:
        spool.put([rec("b")])
    assert caught.value.errno == errno.ENOSPC
    assert spool.bytes() == size and spool.entries() == [first]
    assert len(spool_files(tmp_path / "capped")) == 1
    spool.remove(first)
    second = spool.put([rec("b")])
    assert spool.entries() == [second]


def test_native_and_python_puts_write_the_same_bytes(tmp_path, monkeypatch):
    """put() in C (_durable.c, one GIL release) and in Python: the same file, loadable, no temp left."""
    from mdc_core import spool as spool_module

    if spool_module._durable is None:
        pytest.skip("mdc_core._durable not built")
    records = [rec("a", b"x" * 1000, rows=3), rec("b", b"", rows=1)]
    native = Spool(tmp_path / "native").put(records)
    monkeypatch.setattr(spool_module, "_durable", None)
    python = Spool(tmp_path / "python").put(records)
    with open(native.path, "rb") as f, open(python.path, "rb") as g:
        assert f.read() == g.read()
    assert load(native.path).records == load(python.path).records == tuple(records)
    for folder in ("native", "python"):
        assert not [n for n in os.listdir(tmp_path / folder) if n.endswith(".tmp")]


FILE_SIZE_LIMIT = """
import errno, os, resource, sys
from mdc_core import spool as spool_module
from mdc_core.spool import Spool, SpoolFull, SpoolRecord
assert spool_module._durable is not None
spool = Spool(sys.argv[1])
resource.setrlimit(resource.RLIMIT_FSIZE, (100, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))
try:
    spool.put([SpoolRecord("s", "k", b"y" * 1000, 1, "r")])
except SpoolFull:
    print("spoolfull")
except OSError as exc:
    print(exc.errno == errno.EFBIG, spool.bytes(), sorted(os.listdir(sys.argv[1])) == [f".owner-{spool.token}.lock"])
"""


def test_a_native_put_that_fails_midway_leaves_nothing(tmp_path):
    """A real failed write in C (the file size limit: EFBIG after 100 bytes) raises the OSError
    (not SpoolFull: the disk is not full), leaves no temp or final file, and bytes() unchanged."""
    from mdc_core import spool as spool_module

    if spool_module._durable is None:
        pytest.skip("mdc_core._durable not built")
    done = subprocess.run([sys.executable, "-c", FILE_SIZE_LIMIT, str(tmp_path)], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["True", "0", "True"]
