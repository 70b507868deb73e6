"""The collectors' counters for Prometheus and OpenTelemetry, read when the metrics are scraped.

Nothing is added to ``collect()``: both exporters read the same counters ``stats()`` returns, at
scrape or export time. Collectors with the same labels in one process are summed. Both client
libraries are optional (``pip install 'mdc[metrics]'``).

Prometheus names (OpenTelemetry uses the same with dots: ``mdc.rows.collected``), labelled by
``workspace``, ``service``, ``model``, ``version``, ``designation``:

* ``mdc_rows_collected_total``, ``mdc_rows_written_total``, ``mdc_rows_dropped_total`` (and
  ``reason``), ``mdc_rows_spilled_total``, ``mdc_upload_retries_total``: counters;
* ``mdc_rows_pending``, ``mdc_rows_spooled``, ``mdc_spool_bytes``, ``mdc_oldest_spooled_age_seconds``:
  gauges;

and for the whole process: ``mdc_buffered_bytes``, ``mdc_oldest_pending_age_seconds`` (the oldest
row still only in memory), ``mdc_batch_write_seconds`` (count and sum: the flush latency),
``mdc_spool_lost_rows_total``, ``mdc_orphan_rows_replayed_total``.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from mdc_core.pipeline import get_pipeline

LABELS = ("workspace", "service", "model", "version", "designation")
INSTALL_HINT = "pip install 'mdc[metrics]'"

# (name, help, kind); kind: "counter" or "gauge"; name is the stats() key as well, unless mapped
_PER_COLLECTOR = (
    ("rows_collected", "collected", "Rows passed to collect()", "counter"),
    ("rows_written", "written", "Rows confirmed in storage", "counter"),
    ("rows_spilled", "spilled", "Rows moved to the local spool because memory was full", "counter"),
    ("upload_retries", "retries", "Upload attempts beyond the first", "counter"),
    ("rows_pending", "pending", "Rows in memory, not yet in storage or the spool", "gauge"),
    ("rows_spooled", "spooled", "Rows only in the local spool, awaiting replay", "gauge"),
    ("spool_bytes", "spool_bytes", "Bytes this process holds in the local spool", "gauge"),
    ("oldest_spooled_age_seconds", "oldest_spooled_age_s", "Age of the oldest spooled batch", "gauge"),
)


@dataclass
class Snapshot:
    """Every counter at one moment, summed per label set."""

    per_collector: dict[tuple[str, ...], dict[str, float]] = field(default_factory=dict)
    dropped: dict[tuple[str, ...], float] = field(default_factory=dict)  # labels + (reason,)
    buffered_bytes: float = 0.0
    oldest_pending_age: float | None = None
    batches: int = 0
    batch_seconds: float = 0.0
    spool_lost_rows: int = 0
    orphan_rows_replayed: int = 0


def snapshot() -> Snapshot:
    """Read the counters of every live collector in this process."""
    pipeline = get_pipeline()
    snap = Snapshot(
        buffered_bytes=pipeline.buffered_bytes,
        oldest_pending_age=pipeline.oldest_pending_age(),
        batches=pipeline.batches,
        batch_seconds=pipeline.batch_seconds,
        spool_lost_rows=pipeline.spool_lost_rows,
        orphan_rows_replayed=pipeline.orphan_rows_replayed,
    )
    for route in list(pipeline._routes):
        d = route.deployment
        labels = (d.workspace, d.service, d.model, d.version, route.name.rpartition("/")[2])
        stats = pipeline.stats(route)
        values = snap.per_collector.setdefault(labels, {})
        for _, key, _, _ in _PER_COLLECTOR:
            combine = max if key == "oldest_spooled_age_s" else sum
            values[key] = combine((values.get(key, 0.0), stats.get(key) or 0.0))
        for reason, rows in stats["dropped"].items():
            snap.dropped[labels + (reason,)] = snap.dropped.get(labels + (reason,), 0.0) + rows
    return snap


# -- Prometheus -----------------------------------------------------------------------------


class PrometheusCollector:
    """A ``prometheus_client`` custom collector: it reads ``snapshot()`` at every scrape."""

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, SummaryMetricFamily

        snap = snapshot()
        for name, key, text, kind in _PER_COLLECTOR:
            family = (CounterMetricFamily if kind == "counter" else GaugeMetricFamily)(
                f"mdc_{name}", text, labels=LABELS)
            for labels, values in snap.per_collector.items():
                family.add_metric(labels, values[key])
            yield family
        dropped = CounterMetricFamily("mdc_rows_dropped", "Rows counted as dropped, by reason",
                                      labels=(*LABELS, "reason"))
        for labels, rows in snap.dropped.items():
            dropped.add_metric(labels, rows)
        yield dropped
        yield GaugeMetricFamily("mdc_buffered_bytes", "Estimated bytes of rows held in memory",
                                value=snap.buffered_bytes)
        yield GaugeMetricFamily("mdc_oldest_pending_age_seconds", "Age of the oldest row still only in memory",
                                value=snap.oldest_pending_age or 0.0)
        yield SummaryMetricFamily("mdc_batch_write_seconds", "Time to seal and write a batch",
                                  count_value=snap.batches, sum_value=snap.batch_seconds)
        yield CounterMetricFamily("mdc_spool_lost_rows", "Rows in spool files found damaged",
                                  value=snap.spool_lost_rows)
        yield CounterMetricFamily("mdc_orphan_rows_replayed", "Rows of dead processes replayed from the spool",
                                  value=snap.orphan_rows_replayed)

    def describe(self) -> Iterable[Any]:
        return []  # no describe-time scrape (registration must not read the counters)


_registered: dict[int, PrometheusCollector] = {}
_lock = threading.Lock()


def register_prometheus(registry: Any = None) -> PrometheusCollector:
    """Expose mdc's counters through ``registry`` (default: prometheus_client's global one,
    which ``start_http_server`` and most frameworks' ``/metrics`` serve). Idempotent."""
    try:
        import prometheus_client
    except ImportError as exc:
        raise ImportError(f"Prometheus metrics need prometheus-client: {INSTALL_HINT}") from exc
    registry = prometheus_client.REGISTRY if registry is None else registry
    with _lock:
        found = _registered.get(id(registry))
        if found is None:
            found = _registered[id(registry)] = PrometheusCollector()
            registry.register(found)
        return found


# -- OpenTelemetry --------------------------------------------------------------------------


def register_opentelemetry(meter_provider: Any = None) -> Any:
    """Report mdc's counters as observable instruments of the meter ``mdc`` of ``meter_provider``
    (default: the global one the OpenTelemetry SDK or distro set up). Returns the meter."""
    try:
        from opentelemetry import metrics
    except ImportError as exc:
        raise ImportError(f"OpenTelemetry metrics need opentelemetry-api: {INSTALL_HINT}") from exc
    from mdc_core import __version__

    meter = (meter_provider or metrics.get_meter_provider()).get_meter("mdc", __version__)
    for name, key, text, kind in _PER_COLLECTOR:
        make = meter.create_observable_counter if kind == "counter" else meter.create_observable_gauge
        unit = "s" if name.endswith("seconds") else "By" if name.endswith("bytes") else "{row}"
        make(f"mdc.{name.removesuffix('_seconds').replace('_', '.')}", callbacks=[_per_collector(key, metrics)],
             unit=unit, description=text)
    meter.create_observable_counter("mdc.rows.dropped", callbacks=[_dropped(metrics)], unit="{row}",
                                    description="Rows counted as dropped, by reason")
    process = (
        ("mdc.buffered.bytes", "gauge", "By", lambda s: s.buffered_bytes),
        ("mdc.oldest.pending.age", "gauge", "s", lambda s: s.oldest_pending_age or 0.0),
        ("mdc.batches.written", "counter", "{batch}", lambda s: s.batches),
        ("mdc.batch.write.time", "counter", "s", lambda s: s.batch_seconds),
        ("mdc.spool.lost.rows", "counter", "{row}", lambda s: s.spool_lost_rows),
        ("mdc.orphan.rows.replayed", "counter", "{row}", lambda s: s.orphan_rows_replayed),
    )
    for name, kind, unit, read in process:
        make = meter.create_observable_counter if kind == "counter" else meter.create_observable_gauge
        make(name, callbacks=[_process(read, metrics)], unit=unit)
    return meter


def _per_collector(key: str, metrics: Any) -> Any:
    def observe(options: Any) -> Iterator[Any]:
        for labels, values in snapshot().per_collector.items():
            yield metrics.Observation(values[key], dict(zip(LABELS, labels)))
    return observe


def _dropped(metrics: Any) -> Any:
    def observe(options: Any) -> Iterator[Any]:
        for labels, rows in snapshot().dropped.items():
            yield metrics.Observation(rows, dict(zip((*LABELS, "reason"), labels)))
    return observe


def _process(read: Any, metrics: Any) -> Any:
    def observe(options: Any) -> Iterator[Any]:
        yield metrics.Observation(read(snapshot()))
    return observe
