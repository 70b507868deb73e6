"""Fault-injection scenarios against the real servers (SeaweedFS, Azurite), through the HTTP-aware
loopback proxy in ``faults.httpfaults``.

Every row carries a unique id. After each scenario the test lists storage with an independent
client (boto3 / azure-storage-blob), parses it with the csv module, and checks that
written ∪ counted-dropped ∪ still-spooled == collected with zero duplicates, and that the fault
really happened (proxy fault count, spooled rows during the outage)."""

from __future__ import annotations

import contextlib
import csv
import io
import os
import signal
import threading
import time
import uuid
from collections import Counter
from typing import Any

import pytest

from faults.httpfaults import BLACKHOLE, DROP_RESPONSE, REFUSE, RESPOND, HttpFaultProxy, Rule, wait_until
from mdc_core import ModelDataCollector
from test_s3_backend import aws_env, bucket, bucket_name, options, s3  # noqa: F401  (fixtures)

blob = pytest.importorskip("azure.storage.blob")

S3_OBJECT_PUT = r"^/mdc-[0-9a-f]+/.+\.csv"  # a batch upload (path-style), not bucket calls


# -- helpers ------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def own_spool(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    """Each scenario has its own spool folder, so nothing of another test is adopted."""
    monkeypatch.setenv("MDC_SPOOL_DIR", str(tmp_path / "spool"))


@pytest.fixture
def collectors(monkeypatch: pytest.MonkeyPatch):
    """Make collectors with a fast flusher and short backoff; detach their spools afterwards so
    the process's flusher does not keep replaying towards a proxy that is gone."""
    made: list[ModelDataCollector] = []

    def make(url: str, storage_options: dict[str, Any], *, retries: int = 3) -> ModelDataCollector:
        dc = ModelDataCollector(
            "m",
            designation="inputs",
            feature_names=["id"],
            storage=url,
            storage_options=storage_options,
            compaction="off",
        )
        monkeypatch.setattr(dc._pipeline, "interval", 0.25)
        dc._route.sink.backoff = 0.02
        dc._route.sink.retries = retries
        made.append(dc)
        return dc

    yield make
    for dc in made:
        dc._pipeline._spools.pop(dc._route.sink.storage_label, None)


def ids_in_csv(data: bytes) -> list[str]:
    return [row["id"] for row in csv.DictReader(io.StringIO(data.decode("utf-8"), newline=""))]


def s3_ids(client: Any, where: str) -> list[str]:
    out: list[str] = []
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=where):
        for obj in page.get("Contents", []):
            name = obj["Key"].rpartition("/")[2]
            if name.endswith(".csv") and not name.startswith(("_", ".")):
                out += ids_in_csv(client.get_object(Bucket=where, Key=obj["Key"])["Body"].read())
    return out


def azure_ids(service: Any, container: str) -> list[str]:
    client = service.get_container_client(container)
    out: list[str] = []
    for item in client.list_blobs():
        name = item.name.rpartition("/")[2]
        if name.endswith(".csv") and not name.startswith(("_", ".")):
            out += ids_in_csv(client.download_blob(item.name).readall())
    return out


def spooled_ids(dc: ModelDataCollector) -> list[str]:
    out: list[str] = []
    for entry in dc._route.sink.spool.entries():
        for record in getattr(entry, "records", None) or getattr(entry, "recovered", ()):
            out += ids_in_csv(record.data)
    return out


def check_accounting(collected: list[str], written: list[str], spooled: list[str], dropped: int) -> None:
    """written ∪ counted-dropped ∪ still-spooled == collected, zero duplicates."""
    dups = [i for i, n in (Counter(written) + Counter(spooled)).items() if n > 1]
    assert dups == [], f"duplicated rows: {dups[:10]}"
    assert len(set(collected)) == len(collected)
    assert set(written) | set(spooled) <= set(collected), "rows that were never collected"
    missing = set(collected) - set(written) - set(spooled)
    assert len(missing) == dropped, f"{len(missing)} rows neither written nor spooled, {dropped} counted dropped"


def settle_and_check(dc: ModelDataCollector, collected: list[str], last: str, stored: Any) -> None:
    """After the fault: one more row, a flush that must succeed with nothing left in the spool,
    and storage (read by ``stored()``) holding every collected row exactly once."""
    dc.collect([[last]])
    collected.append(last)
    status = dc.flush(timeout=60)
    assert status and status.spooled_rows == 0 and status.dropped_rows == 0, status
    written = stored()
    check_accounting(collected, written, spooled_ids(dc), sum(dc.stats()["dropped"].values()))
    assert sorted(written) == sorted(collected)


class Steady:
    """Collects a uniquely-identified row every ``period`` seconds on a thread of its own."""

    def __init__(self, dc: ModelDataCollector, tag: str, period: float = 0.01):
        self.dc, self.tag, self.period = dc, tag, period
        self.collected: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            rid = f"{self.tag}-{len(self.collected):06d}"
            self.dc.collect([[rid]])
            self.collected.append(rid)
            self._stop.wait(self.period)

    def __enter__(self) -> Steady:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


def azure_options(azurite: Any, port: int, **extra: Any) -> dict[str, Any]:
    cs = azurite.connection_string.replace(f":{azurite.port}/", f":{port}/")
    return {"connection_string": cs, **extra}


# -- 1. storage refuses during steady collection ----------------------------------------


def test_refused_storage_during_steady_collection_loses_and_duplicates_nothing(
    seaweedfs, s3, bucket, collectors
) -> None:  # noqa: F811,E501
    """SeaweedFS behind the proxy refuses every request for 5 s while rows keep coming: sealed
    batches wait in the spool, and once it is back every row is written exactly once."""
    with HttpFaultProxy("127.0.0.1", s3_port(seaweedfs)) as proxy:
        dc = collectors(f"s3://{bucket}", options(seaweedfs, endpoint_url=proxy.endpoint, timeout=2, retries=0))
        with Steady(dc, "r1") as steady:
            assert wait_until(lambda: dc.stats()["written"] > 0, 10), "nothing written before the outage"
            proxy.add(Rule(REFUSE))
            time.sleep(5.0)  # the deliberate outage
            during = dc.flush(timeout=30)
            proxy.clear()
        assert not during and during.spooled_rows > 0 and during.dropped_rows == 0, during
        assert proxy.faults[REFUSE] > 0
        settle_and_check(dc, steady.collected, "r1-last", lambda: s3_ids(s3, bucket))


def s3_port(server: Any) -> int:
    return int(server.endpoint_url.rsplit(":", 1)[1].split("/")[0])


# -- 2. throttling and 5xx bursts ---------------------------------------------------------


def test_throttling_and_5xx_bursts_on_azurite_are_retried_once_each(azurite, collectors) -> None:  # noqa: F811
    """Azurite behind the proxy answers bursts of 503 ServerBusy, 429 and 500 to blob uploads:
    they are retried, every row lands once, nothing is dropped."""
    service = blob.BlobServiceClient.from_connection_string(azurite.connection_string)
    container = f"t-{uuid.uuid4().hex[:16]}"
    blob_put = r"/devstoreaccount1/t-[0-9a-f]+/.+\.csv"
    try:
        with HttpFaultProxy("127.0.0.1", azurite.port) as proxy:
            proxy.add(
                Rule(RESPOND, method="PUT", path=blob_put, status=503, code="ServerBusy", flavour="azure", times=2),
                Rule(RESPOND, method="PUT", path=blob_put, status=429, code="ServerBusy", flavour="azure", times=1),
                Rule(RESPOND, method="PUT", path=blob_put, status=500, code="InternalError", flavour="azure", times=1),
            )
            dc = collectors(
                f"abfs://{container}",
                azure_options(azurite, proxy.port, timeout=5, retries=1, retry_backoff=0.05),
                retries=4,
            )
            collected = []
            for batch in range(4):
                ids = [f"r2-{batch}-{i}" for i in range(50)]
                dc.collect([[i] for i in ids])
                collected += ids
                status = dc.flush(timeout=30)
                if not status:  # a batch that ran out of retries waits in the spool, replayed next time
                    assert status.dropped_rows == 0, status
            dc.collect([["r2-last"]])
            collected.append("r2-last")
            status = dc.flush(timeout=30)
            assert status and status.spooled_rows == 0 and status.dropped_rows == 0, status
            assert proxy.fault_count == 4  # every burst answer was really sent
            assert Counter(proxy.statuses("PUT"))[201] >= 5  # and the uploads then landed
        written = azure_ids(service, container)
        check_accounting(collected, written, spooled_ids(dc), sum(dc.stats()["dropped"].values()))
        assert sorted(written) == sorted(collected)
    finally:
        with contextlib.suppress(Exception):
            service.delete_container(container)


def test_s3_slowdown_and_503_bursts_are_retried_once_each(seaweedfs, s3, bucket, collectors) -> None:  # noqa: F811
    """The same on SeaweedFS: S3-shaped 503 SlowDown and 500 InternalError answers to uploads."""
    with HttpFaultProxy("127.0.0.1", s3_port(seaweedfs)) as proxy:
        proxy.add(
            Rule(RESPOND, method="PUT", path=S3_OBJECT_PUT, status=503, code="SlowDown", times=3),
            Rule(RESPOND, method="PUT", path=S3_OBJECT_PUT, status=500, code="InternalError", times=1),
        )
        dc = collectors(
            f"s3://{bucket}", options(seaweedfs, endpoint_url=proxy.endpoint, timeout=5, retries=0), retries=5
        )
        collected = []
        for batch in range(3):
            ids = [f"r2s-{batch}-{i}" for i in range(40)]
            dc.collect([[i] for i in ids])
            collected += ids
            status = dc.flush(timeout=30)
            assert status.dropped_rows == 0, status
        dc.collect([["r2s-last"]])
        collected.append("r2s-last")
        status = dc.flush(timeout=30)
        assert status and status.spooled_rows == 0 and status.dropped_rows == 0, status
        assert proxy.fault_count == 4 and dc._route.sink.retried >= 1
    written = s3_ids(s3, bucket)
    check_accounting(collected, written, spooled_ids(dc), sum(dc.stats()["dropped"].values()))
    assert sorted(written) == sorted(collected)


# -- 3. the response is lost after the write landed -------------------------------------


def test_lost_response_after_the_write_landed_is_not_written_twice(seaweedfs, s3, bucket, collectors) -> None:  # noqa: F811
    """The proxy forwards a batch's PUT, SeaweedFS stores it, and the answer is dropped: the retry
    under the same create-only name finds it (412) and counts it delivered; one copy only."""
    with HttpFaultProxy("127.0.0.1", s3_port(seaweedfs)) as proxy:
        proxy.add(Rule(DROP_RESPONSE, method="PUT", path=S3_OBJECT_PUT, times=1))
        dc = collectors(f"s3://{bucket}", options(seaweedfs, endpoint_url=proxy.endpoint, timeout=5, retries=0))
        collected = [f"r3-{i}" for i in range(100)]
        dc.collect([[i] for i in collected])
        status = dc.flush(timeout=30)
        if not status:  # kept in the spool: the replay must find it too
            assert status.spooled_rows == 100 and status.dropped_rows == 0, status
            dc.collect([["r3-last"]])
            collected.append("r3-last")
            status = dc.flush(timeout=30)
        assert status and status.spooled_rows == 0 and status.dropped_rows == 0, status
        assert proxy.faults[DROP_RESPONSE] == 1
        landed = [(m, p, s) for m, p, what, s in proxy.log if what == DROP_RESPONSE]
        assert landed[0][2] == 200, landed  # the write really landed
        dropped_path = landed[0][1]
        retried = [s for m, p, what, s in proxy.log if m == "PUT" and p == dropped_path and what == "forwarded"]
        assert 412 in retried, proxy.log  # the retry found the object already there
    written = s3_ids(s3, bucket)
    check_accounting(collected, written, spooled_ids(dc), sum(dc.stats()["dropped"].values()))
    assert sorted(written) == sorted(collected)


# -- 4. credentials expire mid-run --------------------------------------------------------


def test_expired_token_keeps_rows_spooled_then_replays_them(seaweedfs, s3, bucket, collectors) -> None:  # noqa: F811
    """For a while every S3 request gets 403 ExpiredToken: the rows stay in the spool, none is
    dropped; once the fault stops, the next flush replays them, each once."""
    with HttpFaultProxy("127.0.0.1", s3_port(seaweedfs)) as proxy:
        dc = collectors(f"s3://{bucket}", options(seaweedfs, endpoint_url=proxy.endpoint, timeout=5, retries=0))
        collected = [f"r4-a{i}" for i in range(20)]
        dc.collect([[i] for i in collected])
        assert dc.flush(timeout=30)  # storage fine before the fault
        proxy.add(Rule(RESPOND, status=403, code="ExpiredToken"))
        for batch in range(3):
            ids = [f"r4-b{batch}-{i}" for i in range(20)]
            dc.collect([[i] for i in ids])
            collected += ids
            during = dc.flush(timeout=30)
            assert not during and during.dropped_rows == 0 and during.spooled_rows == 20 * (batch + 1), during
        assert dc.stats()["dropped"] == {} and proxy.faults["respond:403:ExpiredToken"] >= 3
        assert sorted(spooled_ids(dc)) == sorted(collected[20:])
        proxy.clear()
        dc.collect([["r4-last"]])
        collected.append("r4-last")
        status = dc.flush(timeout=30)
        assert status and status.spooled_rows == 0 and status.dropped_rows == 0, status
    written = s3_ids(s3, bucket)
    check_accounting(collected, written, spooled_ids(dc), sum(dc.stats()["dropped"].values()))
    assert sorted(written) == sorted(collected)


# -- 5. close() with a dead sink ----------------------------------------------------------


def test_close_with_a_blackholed_sink_returns_by_its_deadline(seaweedfs, s3, bucket, collectors) -> None:  # noqa: F811
    """Storage accepts connections and never answers (timeout 30 s): close(2) still returns by
    its deadline, saying the rows are not in storage but safe in the spool."""
    with HttpFaultProxy("127.0.0.1", s3_port(seaweedfs)) as proxy:
        dc = collectors(f"s3://{bucket}", options(seaweedfs, endpoint_url=proxy.endpoint, timeout=30, retries=0))
        proxy.add(Rule(BLACKHOLE))
        collected = [f"r5-{i}" for i in range(30)]
        dc.collect([[i] for i in collected])
        started = time.monotonic()
        status = dc.close(timeout=2)
        elapsed = time.monotonic() - started
        assert not status and status.pending_rows + status.spooled_rows == 30, status
        assert elapsed < 2 + 5, elapsed  # generous margin: the point is it does not wait 30 s
        assert wait_until(lambda: proxy.faults[BLACKHOLE] > 0, 5)
        # while the upload hangs: nothing in storage, every row in the spool (durable)
        written = s3_ids(s3, bucket)
        assert written == []
        assert wait_until(lambda: sorted(spooled_ids(dc)) == sorted(collected), 5)
        check_accounting(collected, written, spooled_ids(dc), sum(dc.stats()["dropped"].values()))
        proxy.release()


# -- 6. short-lived SAS tokens expire mid-run (Azurite) ------------------------------------


def test_short_lived_sas_tokens_are_renewed_by_their_provider(azurite, collectors) -> None:  # noqa: F811
    """Every SAS token lives 2 s; rows keep coming for 5 s. When Azurite refuses an expired token
    (403), the backend asks the sas_token provider for a new one and retries: every row lands
    once, none is dropped or left in the spool."""
    import datetime as dt

    service = blob.BlobServiceClient.from_connection_string(azurite.connection_string)
    container = f"t-{uuid.uuid4().hex[:16]}"
    service.create_container(container)
    issued: list[dt.datetime] = []

    def provider() -> str:
        expiry = dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=2)
        issued.append(expiry)
        permission = blob.ContainerSasPermissions(read=True, write=True, create=True, list=True)
        return blob.generate_container_sas(azurite.account_name, container, account_key=azurite.account_key,
                                           permission=permission, expiry=expiry)

    try:
        with HttpFaultProxy("127.0.0.1", azurite.port) as proxy:  # no fault: it only logs the answers
            endpoint = f"http://127.0.0.1:{proxy.port}/{azurite.account_name}"
            dc = collectors(f"abfs://{container}", {"account_url": endpoint, "sas_token": provider,
                                                    "timeout": 5, "retries": 0})
            with Steady(dc, "r6", period=0.02) as steady:
                time.sleep(5.0)  # the run during which tokens expire
            status = dc.flush(timeout=30)
            assert status and status.spooled_rows == 0 and status.dropped_rows == 0, status
            refused = Counter(proxy.statuses("PUT"))[403]
            assert refused >= 1 and len(issued) >= 2, (refused, len(issued))  # tokens really expired
        written = azure_ids(service, container)
        check_accounting(steady.collected, written, spooled_ids(dc), sum(dc.stats()["dropped"].values()))
        assert sorted(written) == sorted(steady.collected)
    finally:
        with contextlib.suppress(Exception):
            service.delete_container(container)


# -- 7. storage hangs: its process is stopped (SIGSTOP) ------------------------------------


@pytest.fixture
def own_azurite(azurite, tmp_path):  # noqa: F811  (the shared one only decides skip or fail)
    """An Azurite of this test's own, since the test stops it."""
    from servers import start_azurite

    server = start_azurite(tmp_path / "own-azurite")
    try:
        yield server
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(os.getpgid(server.pid), signal.SIGCONT)
        server.stop()


def test_stopped_storage_process_hangs_uploads_without_losing_rows(own_azurite, collectors) -> None:
    """Azurite is frozen with SIGSTOP for 5 s while rows keep coming: connections are accepted by
    the kernel and never answered, uploads time out and their batches wait in the spool; after
    SIGCONT every row is written exactly once, even those whose request Azurite still had queued."""
    server = own_azurite
    service = blob.BlobServiceClient.from_connection_string(server.connection_string)
    container = f"t-{uuid.uuid4().hex[:16]}"
    service.create_container(container)
    dc = collectors(f"abfs://{container}", {"connection_string": server.connection_string, "timeout": 1,
                                            "retries": 0}, retries=2)
    group = os.getpgid(server.pid)
    with Steady(dc, "r7") as steady:
        assert wait_until(lambda: dc.stats()["written"] > 0, 10), "nothing written before the hang"
        os.killpg(group, signal.SIGSTOP)
        try:
            time.sleep(5.0)  # the deliberate hang
            during = dc.stats()
        finally:
            os.killpg(group, signal.SIGCONT)
    assert during["spooled"] > 0 and during["retries"] > 0 and during["dropped"] == {}, during  # it really hung
    settle_and_check(dc, steady.collected, "r7-last", lambda: azure_ids(service, container))


# -- 8. a slow sink under a small memory bound ----------------------------------------------


def test_slow_sink_spills_to_the_spool_instead_of_dropping(seaweedfs, s3, bucket, collectors) -> None:  # noqa: F811
    """Every upload to SeaweedFS takes 2 s longer for 4 s while 200 rows/s keep coming and memory
    is bounded to ~300 rows (the flusher alone could upload ~75 rows/s): the spill policy moves
    sealed batches to the spool instead of dropping them, memory never exceeds twice the bound,
    and afterwards every row is written once."""
    from faults.httpfaults import LATENCY
    from mdc_core.pipeline import get_pipeline

    pipeline = get_pipeline()
    saved = pipeline.max_bytes, pipeline.on_full
    BOUND = 300 * (9 * 16 + 64)  # noqa: N806  (estimate_bytes of 300 one-column rows)
    with HttpFaultProxy("127.0.0.1", s3_port(seaweedfs)) as proxy:
        dc = collectors(f"s3://{bucket}", options(seaweedfs, endpoint_url=proxy.endpoint, timeout=5, retries=0))
        proxy.add(Rule(LATENCY, method="PUT", path=S3_OBJECT_PUT, delay=2.0))
        pipeline.max_bytes, pipeline.on_full = BOUND, "spill"
        peak = 0
        try:
            with Steady(dc, "r8", period=0.005) as steady:
                stop = time.monotonic() + 4.0  # the slow period, sampled every 10 ms
                while time.monotonic() < stop:
                    peak = max(peak, pipeline._buffered_bytes)
                    steady._stop.wait(0.01)
                during = dc.stats()
        finally:
            pipeline.max_bytes, pipeline.on_full = saved
            proxy.clear()
        assert proxy.faults[LATENCY] > 0 and during["spilled"] > 0 and during["dropped"] == {}, during
        assert peak <= 2 * BOUND, peak
        status = dc.flush(timeout=60)
        assert status and status.spooled_rows == 0 and status.dropped_rows == 0, status
    written = s3_ids(s3, bucket)
    check_accounting(steady.collected, written, spooled_ids(dc), sum(dc.stats()["dropped"].values()))
    assert sorted(written) == sorted(steady.collected)
