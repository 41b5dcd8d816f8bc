"""The gateway's counters and histograms, rendered as Prometheus text exposition format 0.0.4.

Observed by the log writer's thread once a record is written (tokens and cost are only known after
enrichment; with ``MODELPORT_LOGGING=false`` nothing is enriched, so only requests, errors and
latency are counted), never on the request path. The writer runs in the log service, so these count
the requests of every worker, and ``GET /metrics`` on any worker relays the same text. The ``pid``
label (the log service's) keeps apart gateways that share a host and marks a restart of the service.
"""

from __future__ import annotations

import bisect
import os
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# Seconds. Gateway overhead is sub-millisecond, upstream calls run from ~50 ms to minutes.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)

Labels = tuple[tuple[str, str], ...]


@dataclass(slots=True)
class _Histogram:
    counts: list[int] = field(default_factory=lambda: [0] * len(LATENCY_BUCKETS))
    total: float = 0.0
    count: int = 0

    def observe(self, value: float) -> None:
        index = bisect.bisect_left(LATENCY_BUCKETS, value)
        if index < len(self.counts):
            self.counts[index] += 1
        self.total += value
        self.count += 1


@dataclass(frozen=True, slots=True)
class _Family:
    name: str
    kind: str  # "counter" | "gauge" | "histogram"
    help: str


FAMILIES = {
    family.name: family
    for family in (
        _Family("modelport_requests_total", "counter", "Requests through the gateway, by provider, endpoint and status."),
        _Family("modelport_request_errors_total", "counter", "Requests that ended in an error, by provider and kind (gateway, provider, client)."),
        _Family("modelport_request_duration_seconds", "histogram", "Total request latency as the client saw it."),
        _Family("modelport_upstream_duration_seconds", "histogram", "Latency of the upstream call that answered."),
        _Family("modelport_tokens_total", "counter", "Tokens reported by providers, by direction (input, output)."),
        _Family("modelport_cost_usd_total", "counter", "Known cost in USD (priced and estimated)."),
        _Family("modelport_unpriced_requests_total", "counter", "Requests whose cost could not be known."),
        _Family("modelport_log_queue_depth", "gauge", "Log records waiting in memory to be written."),
        _Family("modelport_log_spilled_records_total", "counter", "Log records written to the spill file because the store fell behind."),
        _Family("modelport_log_spill_pending", "gauge", "Whether this process has spilled records not yet written to the store (0/1)."),
        _Family("modelport_log_written_records_total", "counter", "Log records written to the store."),
        _Family("modelport_log_degraded_records_total", "counter", "Log records stored without their metadata, headers and bodies because they could not be encoded or stored as they were (metadata.modelport_log_degraded says why)."),
        _Family("modelport_log_dropped_records_total", "counter", "Log records the store refused even in degraded form (the log service's log names each)."),
        _Family("modelport_log_write_failures_total", "counter", "Batch writes to the store that failed and were spilled."),
        _Family("modelport_log_replayed_records_total", "counter", "Log records read back from a spill file (the log service's or a worker's) into the store."),
        _Family("modelport_log_catch_ups_total", "counter", "Times the log writer fell behind and moved to normal CPU priority to catch up."),
        _Family("modelport_otel_spans_exported_total", "counter", "OpenTelemetry spans the collector accepted (MODELPORT_OTEL_ENDPOINT)."),
        _Family("modelport_otel_spans_dropped_total", "counter", "OpenTelemetry spans dropped: queue full while the collector was down or slow, refused by it, or left at shutdown."),
    )
}


class Metrics:
    """Thread-safe: the writer thread observes, the event loop renders."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counters: dict[tuple[str, Labels], float] = {}
        self._histograms: dict[tuple[str, Labels], _Histogram] = {}
        self._gauges: dict[str, Callable[[], float]] = {}
        self._pid = str(os.getpid())

    def add(self, name: str, labels: Labels = (), amount: float = 1.0) -> None:
        key = (name, labels)
        with self._lock:
            self._counters[key] = self._counters.get(key, 0.0) + amount

    def gauge(self, name: str, read: Callable[[], float]) -> None:
        """A value read when rendering (queue depth), so the hot path never updates it."""
        self._gauges[name] = read

    def observe(self, row: dict[str, Any]) -> None:
        """Count one finished request from its ``logs`` row (tokens and cost are final there)."""
        self.observe_all((row,))

    def observe_all(self, rows: Iterable[dict[str, Any]]) -> None:
        """``observe`` of each row under one lock: a written batch's, on the log writer's lane."""
        with self._lock:
            for row in rows:
                self._observe(row)

    def _observe(self, row: dict[str, Any]) -> None:
        labels = (("provider", row["provider"] or "none"),)
        self._count("modelport_requests_total", labels + (("endpoint", row["endpoint"] or ""), ("status", str(row["status"]))))
        kind = _error_kind(row)
        if kind:
            self._count("modelport_request_errors_total", labels + (("kind", kind),))
        self._histogram("modelport_request_duration_seconds", labels, (row["latency_ms"] or 0.0) / 1000)
        if row["upstream_latency_ms"] is not None:
            self._histogram("modelport_upstream_duration_seconds", labels, row["upstream_latency_ms"] / 1000)
        if row["input_tokens"]:
            self._count("modelport_tokens_total", labels + (("direction", "input"),), row["input_tokens"])
        if row["output_tokens"]:
            self._count("modelport_tokens_total", labels + (("direction", "output"),), row["output_tokens"])
        if row["cost_usd"] is not None:
            self._count("modelport_cost_usd_total", labels, row["cost_usd"])
        elif row["cost_status"] == "unpriced":
            self._count("modelport_unpriced_requests_total", labels)

    def _count(self, name: str, labels: Labels, amount: float = 1.0) -> None:
        key = (name, labels)
        self._counters[key] = self._counters.get(key, 0.0) + amount

    def _histogram(self, name: str, labels: Labels, value: float) -> None:
        key = (name, labels)
        histogram = self._histograms.get(key)
        if histogram is None:
            histogram = self._histograms[key] = _Histogram()
        histogram.observe(value)

    def render(self) -> str:
        with self._lock:
            counters = dict(self._counters)
            histograms = {key: (list(h.counts), h.total, h.count) for key, h in self._histograms.items()}
        gauges = {name: read() for name, read in self._gauges.items()}
        lines: list[str] = []
        for family in FAMILIES.values():
            lines.append(f"# HELP {family.name} {family.help}")
            lines.append(f"# TYPE {family.name} {family.kind}")
            if family.kind == "gauge":
                lines.append(f"{family.name}{self._labels(())} {_number(gauges.get(family.name, 0.0))}")
            elif family.kind == "counter":
                for (name, labels), value in sorted(counters.items()):
                    if name == family.name:
                        lines.append(f"{name}{self._labels(labels)} {_number(value)}")
            else:
                for (name, labels), (counts, total, count) in sorted(histograms.items()):
                    if name == family.name:
                        lines.extend(self._histogram_lines(name, labels, counts, total, count))
        return "\n".join(lines) + "\n"

    def _histogram_lines(self, name: str, labels: Labels, counts: list[int], total: float, count: int) -> list[str]:
        lines, cumulative = [], 0
        for bound, seen in zip(LATENCY_BUCKETS, counts):
            cumulative += seen
            lines.append(f"{name}_bucket{self._labels(labels + (('le', _number(bound)),))} {cumulative}")
        lines.append(f"{name}_bucket{self._labels(labels + (('le', '+Inf'),))} {count}")
        lines.append(f"{name}_sum{self._labels(labels)} {_number(total)}")
        lines.append(f"{name}_count{self._labels(labels)} {count}")
        return lines

    def _labels(self, labels: Labels) -> str:
        pairs = (("pid", self._pid),) + labels
        return "{" + ",".join(f'{k}="{_escape(v)}"' for k, v in pairs) + "}"


def _error_kind(row: dict[str, Any]) -> str | None:
    if row["gateway_exception"]:
        return "gateway"
    if row["status"] == 499:
        return "client"
    if (row["status"] or 0) >= 400 or row["error"]:
        return "provider"
    return None


def _escape(value: str) -> str:
    # Exposition format 0.0.4: backslash, double quote and line feed are escaped in label values.
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _number(value: float) -> str:
    return repr(float(value)) if value != int(value) else str(int(value))
