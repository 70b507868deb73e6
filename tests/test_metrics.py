"""Prometheus and OpenTelemetry see the same counters as stats(), read at scrape time."""

from __future__ import annotations

import uuid

import pytest

from mdc_core import ModelDataCollector
from mdc_core.metrics import register_opentelemetry, register_prometheus

prometheus_client = pytest.importorskip("prometheus_client")
parser = pytest.importorskip("prometheus_client.parser")


def traffic(tmp_path) -> ModelDataCollector:
    """Three rows written, one dropped (collected after close), for a model of its own (other
    tests' collectors may still be alive in this process)."""
    dc = ModelDataCollector(f"metrics-{uuid.uuid4().hex[:8]}", designation="inputs", storage=tmp_path / "store")
    dc.collect([[1], [2], [3]])
    assert dc.flush(timeout=30)
    dc.close()
    dc.collect([[4]])  # refused: closed
    return dc


def samples(registry) -> dict[tuple[str, frozenset], float]:
    text = prometheus_client.generate_latest(registry).decode()
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in parser.text_string_to_metric_families(text) for s in family.samples}


def test_prometheus_exposes_the_collectors_counters(tmp_path) -> None:
    """A scrape reports rows collected, written and dropped by reason for the collector's labels,
    and the process's batch write time, equal to stats()."""
    dc = traffic(tmp_path)
    registry = prometheus_client.CollectorRegistry()
    assert register_prometheus(registry) is register_prometheus(registry)  # idempotent
    got = samples(registry)
    labels = {"workspace": "default/default/default", "service": "default", "model": dc.model_name,
              "version": "default", "designation": "inputs"}
    key = frozenset(labels.items())
    stats = dc.stats()
    assert got[("mdc_rows_collected_total", key)] == stats["collected"] == 4
    assert got[("mdc_rows_written_total", key)] == stats["written"] == 3
    assert got[("mdc_rows_dropped_total", frozenset({**labels, "reason": "closed"}.items()))] == 1
    assert got[("mdc_rows_pending", key)] == 0
    assert got[("mdc_batch_write_seconds_count", frozenset())] >= 1
    assert got[("mdc_batch_write_seconds_sum", frozenset())] > 0


def test_opentelemetry_reports_the_same_counters(tmp_path) -> None:
    """Through an OpenTelemetry SDK meter provider and an in-memory reader."""
    sdk_metrics = pytest.importorskip("opentelemetry.sdk.metrics")
    export = pytest.importorskip("opentelemetry.sdk.metrics.export")
    dc = traffic(tmp_path)
    reader = export.InMemoryMetricReader()
    provider = sdk_metrics.MeterProvider(metric_readers=[reader])
    register_opentelemetry(provider)
    points: dict[tuple[str, frozenset], float] = {}
    for resource in reader.get_metrics_data().resource_metrics:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                for point in metric.data.data_points:
                    points[(metric.name, frozenset(point.attributes.items()))] = point.value
    labels = {"workspace": "default/default/default", "service": "default", "model": dc.model_name,
              "version": "default", "designation": "inputs"}
    assert points[("mdc.rows.written", frozenset(labels.items()))] == dc.stats()["written"] == 3
    assert points[("mdc.rows.dropped", frozenset({**labels, "reason": "closed"}.items()))] == 1
    assert points[("mdc.batches.written", frozenset())] >= 1
    provider.shutdown()
