"""Metrics after a known sequence of requests, /metrics as Prometheus text, and the span tree
of one pull."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client.parser import text_string_to_metric_families

from gateway.app import Gateway, create_app
from registry.config import Config, TelemetryConfig
from registry.imports import import_image
from registry.store.memory import MemoryStore
from tests.images import sample_layout

DEMO = "docker.io/library/demo"


@pytest.fixture
async def store(tmp_path: Path) -> MemoryStore:
    oci = sample_layout(tmp_path / "oci")
    memory = MemoryStore()
    await import_image(memory, f"oci:{oci.root}:single", DEMO, "1")
    return memory


def _client(app: Gateway) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw")


async def test_counters_after_a_known_sequence(store: MemoryStore) -> None:
    app = create_app(Config(), [store])
    async with _client(app) as client:
        await client.get("/v2/library/demo/manifests/1?ns=docker.io")   # cold: 2 misses
        await client.head("/v2/library/demo/manifests/1?ns=docker.io")  # warm: 2 hits
        await client.get("/v2/library/demo/manifests/nope?ns=docker.io")  # 404
        await client.get("/v2/library/demo/tags/list?ns=docker.io")
    metrics = app.metrics
    assert dict(metrics.requests) == {
        ("manifests", "GET", "200"): 1, ("manifests", "HEAD", "200"): 1,
        ("manifests", "GET", "404"): 1, ("tags", "GET", "200"): 1}
    assert metrics.cache[("tags", "miss")] == 2  # "1", then "nope"
    assert metrics.cache[("tags", "hit")] == 1
    assert metrics.cache[("manifests", "miss")] == 1
    assert metrics.cache[("manifests", "hit")] == 1
    assert metrics.store_calls[("memory://", "read", "ok")] == 2
    assert metrics.store_calls[("memory://", "read", "not_found")] == 1
    assert metrics.store_calls[("memory://", "list", "ok")] == 1
    assert metrics.duration[("manifests",)].count == 3


async def test_metrics_endpoint_is_prometheus_text(store: MemoryStore) -> None:
    app = create_app(Config(), [store])
    async with _client(app) as client:
        await client.get("/v2/library/demo/manifests/1?ns=docker.io")
        response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    families = {f.name: f for f in text_string_to_metric_families(response.text)}
    requests = {tuple(sorted(s.labels.items())): s.value
                for s in families["regfront_http_requests"].samples
                if s.name == "regfront_http_requests_total"}
    assert requests[(("method", "GET"), ("route", "manifests"), ("status", "200"))] == 1.0
    health = [s for s in families["regfront_store_healthy"].samples]
    assert [(s.labels["store"], s.value) for s in health] == [("memory://", 1.0)]
    buckets = [s for s in families["regfront_http_request_duration_seconds"].samples
               if s.name.endswith("_bucket") and s.labels["route"] == "manifests"]
    assert buckets[-1].labels["le"] == "+Inf"
    assert buckets[-1].value == 1.0


async def test_one_pull_makes_a_span_tree(store: MemoryStore) -> None:
    exporter = InMemorySpanExporter()
    config = Config(telemetry=TelemetryConfig(trace_sample_ratio=1.0))
    app = create_app(config, [store], span_exporter=exporter)
    parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    async with _client(app) as client:
        response = await client.get("/v2/library/demo/manifests/1?ns=docker.io",
                                    headers={"traceparent": parent})
    assert response.status_code == 200
    spans = {span.name: span for span in exporter.get_finished_spans()}
    server = spans["GET manifests"]
    assert f"{server.context.trace_id:032x}" == "0af7651916cd43dd8448eb211c80319c"
    assert server.parent is not None
    assert f"{server.parent.span_id:016x}" == "b7ad6b7169203331"
    assert server.attributes is not None
    assert server.attributes["http.response.status_code"] == 200
    children = [s for s in exporter.get_finished_spans() if s.name == "store read"]
    assert len(children) == 2  # the tag's link, then the manifest
    assert all(c.parent is not None and c.parent.span_id == server.context.span_id
               for c in children)


async def test_unsampled_requests_make_no_spans(store: MemoryStore) -> None:
    exporter = InMemorySpanExporter()
    config = Config(telemetry=TelemetryConfig(trace_sample_ratio=0.0))
    app = create_app(config, [store], span_exporter=exporter)
    async with _client(app) as client:
        for _ in range(20):
            await client.get("/v2/library/demo/manifests/1?ns=docker.io")
        unsampled = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00"
        await client.get("/v2/library/demo/manifests/1?ns=docker.io",
                         headers={"traceparent": unsampled})
    assert exporter.get_finished_spans() == ()
