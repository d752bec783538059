"""The gateway's metrics: every family declared here, counted where it happens.

Names are exported with the ``regfront_`` prefix; docs/operations.md lists them all.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from registry.telemetry import Metrics

if TYPE_CHECKING:
    from gateway.freshness import Freshness
    from gateway.stores import StoreSet


class GatewayMetrics:
    def __init__(self) -> None:
        self.registry = Metrics()
        m = self.registry
        self.requests = m.counter(
            "http_requests", "HTTP requests answered, by route, method and status",
            ("route", "method", "status"))
        self.duration = m.histogram(
            "http_request_duration_seconds", "Time to answer (to the first body byte for "
            "streamed blobs), by route", ("route",))
        self.cache = m.counter(
            "cache_lookups", "In-memory cache lookups by cache and result (hit, miss)",
            ("cache", "result"))
        self.store_calls = m.counter(
            "store_calls", "Store call attempts by store, operation and outcome (ok, not_found, "
            "timeout, throttled, server_error, unreachable, access_denied, rejected, cancelled, "
            "bug)", ("store", "operation", "outcome"))
        self.store_duration = m.histogram(
            "store_call_duration_seconds", "Store call latency by store", ("store",))
        self.upstream = m.counter(
            "upstream_events", "Upstream calls by registry and event (tag_check, tag_moved, "
            "check_failed, manifest_pulled, blob_pulled, tag_committed, pull_failed)",
            ("registry", "event"))
        self.misses = m.counter(
            "misses_queued", "Misses queued for the sync worker, by registry", ("registry",))
        self.fallbacks = m.counter(
            "fallbacks", "Answers that send containerd to its next host (the upstream), by "
            "reason: a 5xx, or a 404 in a repository a mirror rule covers", ("reason",))

    def watch_stores(self, stores: StoreSet) -> None:
        def healthy() -> Iterable[tuple[dict[str, str], float]]:
            for entry in stores.entries:
                yield {"store": entry.label}, 1.0 if entry.healthy else 0.0

        self.registry.gauge("store_healthy", "1 while the store answers, 0 while it is "
                            "marked down (asked only when no other store answers)", ("store",),
                            healthy)

    def watch_breakers(self, freshness: Freshness) -> None:
        def open_breakers() -> Iterable[tuple[dict[str, str], float]]:
            now = freshness.clock()
            for registry, breaker in list(freshness.breakers.items()):
                yield {"registry": registry}, 1.0 if breaker.open_until > now else 0.0

        self.registry.gauge("upstream_breaker_open", "1 while tag checks against the upstream "
                            "are paused after failures", ("registry",), open_breakers)


def start_otlp_metrics(metrics: GatewayMetrics, endpoint: str | None,
                       service_name: str) -> Any:
    """Export the same numbers over OTLP/HTTP every 30 s, if an endpoint is configured."""
    if endpoint is None:
        return None
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
    from opentelemetry.sdk.resources import Resource

    reader = PeriodicExportingMetricReader(
        OTLPMetricExporter(endpoint=f"{endpoint.rstrip('/')}/v1/metrics"),
        export_interval_millis=30_000)
    provider = MeterProvider(metric_readers=[reader],
                             resource=Resource.create({"service.name": service_name}))
    metrics.registry.observe_with(provider.get_meter("regfront.gateway"))
    return provider
