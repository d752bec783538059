"""Tag freshness: served from the store at once, re-checked in the background after tag_ttl,
a moved tag queued for sync, and a failing upstream skipped by a circuit breaker."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest

from gateway.app import create_app
from gateway.freshness import BREAKER_FAILURES, Freshness
from gateway.metrics import GatewayMetrics
from gateway.misses import MissQueue
from gateway.resolve import Resolver
from registry import layout
from registry.config import parse_config
from registry.digest import Digest
from registry.imports import import_image
from registry.mirrorconfig import MirrorIndex
from registry.store.memory import MemoryStore
from tests.images import sample_layout

CONFIG = """
upstreams:
  docker.io: {urls: ["https://upstream.invalid"]}
mirror:
  - {name: hub, registry: docker.io, repositories: [library/demo], tag_ttl: 60s}
"""
NAME = "docker.io/library/demo"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class FakeUpstream:
    """Answers manifest HEADs with ``digest`` (or fails), counting them."""

    def __init__(self, digest: str) -> None:
        self.digest = digest
        self.heads = 0
        self.down = False

    def handler(self, request: httpx.Request) -> httpx.Response:
        self.heads += 1
        if self.down:
            raise httpx.ConnectError("connection refused", request=request)
        return httpx.Response(200, headers={
            "Docker-Content-Digest": self.digest, "Content-Length": "100",
            "Content-Type": "application/vnd.oci.image.manifest.v1+json"})


@pytest.fixture
async def setup(tmp_path: Path) -> tuple[MemoryStore, str]:
    oci = sample_layout(tmp_path / "oci")
    store = MemoryStore()
    result = await import_image(store, f"oci:{oci.root}:single", NAME, "1")
    return store, str(result.digest)


def _gateway(store: MemoryStore, fake: FakeUpstream,
             clock: Clock) -> tuple[httpx.AsyncClient, Resolver]:
    config = parse_config(CONFIG)
    app = create_app(config, [store])
    misses = MissQueue(MirrorIndex.of(config.upstreams, config.mirror), store,
                       app.resolver.metrics)
    freshness = Freshness(config.mirror_index(), misses, clock=clock, metrics=app.resolver.metrics,
                          transport=httpx.MockTransport(fake.handler))
    app.resolver.misses, app.resolver.freshness = misses, freshness
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw")
    return client, app.resolver


async def _settle(resolver: Resolver) -> None:
    assert resolver.freshness is not None
    while resolver.freshness._running:
        await asyncio.gather(*resolver.freshness._running.values(), return_exceptions=True)
    assert resolver.misses is not None
    await resolver.misses.drain()


async def test_within_the_ttl_the_upstream_is_not_asked(
        setup: tuple[MemoryStore, str]) -> None:
    store, digest = setup
    fake, clock = FakeUpstream(digest), Clock()
    client, resolver = _gateway(store, fake, clock)
    async with client:
        for _ in range(3):
            response = await client.head("/v2/library/demo/manifests/1?ns=docker.io")
            assert response.headers["docker-content-digest"] == digest
            clock.now += 10
        await _settle(resolver)
    assert fake.heads == 0


async def test_after_the_ttl_one_background_head_and_an_unmoved_tag_stays(
        setup: tuple[MemoryStore, str]) -> None:
    store, digest = setup
    fake, clock = FakeUpstream(digest), Clock()
    client, resolver = _gateway(store, fake, clock)
    async with client:
        await client.head("/v2/library/demo/manifests/1?ns=docker.io")
        clock.now += 61
        answers = await asyncio.gather(*[
            client.head("/v2/library/demo/manifests/1?ns=docker.io") for _ in range(10)])
        await _settle(resolver)
    assert {a.status_code for a in answers} == {200}
    assert fake.heads == 1  # one check, shared by ten requests
    assert not [k for k in store.objects if k.startswith(layout.MISSES_ROOT)]


async def test_warm_answers_are_told_to_freshness_too(setup: tuple[MemoryStore, str]) -> None:
    store, digest = setup
    fake, clock = FakeUpstream(digest), Clock()
    client, resolver = _gateway(store, fake, clock)
    async with client:
        for _ in range(3):  # the third from its warm answer (gateway/answers.py)
            await client.head("/v2/library/demo/manifests/1?ns=docker.io")
        clock.now += 61
        await client.head("/v2/library/demo/manifests/1?ns=docker.io")
        await _settle(resolver)
    assert resolver.metrics.cache[("answers", "hit")] == 2
    assert fake.heads == 1


async def test_a_moved_tag_is_served_as_stored_and_queued_for_sync(
        setup: tuple[MemoryStore, str]) -> None:
    store, digest = setup
    moved = "sha256:" + "c" * 64
    fake, clock = FakeUpstream(moved), Clock()
    client, resolver = _gateway(store, fake, clock)
    async with client:
        await client.head("/v2/library/demo/manifests/1?ns=docker.io")
        clock.now += 61
        response = await client.head("/v2/library/demo/manifests/1?ns=docker.io")
        await _settle(resolver)
    assert response.headers["docker-content-digest"] == digest  # what the bucket holds
    assert layout.miss(NAME, "1") in store.objects


async def test_a_down_upstream_trips_the_breaker_and_costs_nothing(
        setup: tuple[MemoryStore, str]) -> None:
    store, digest = setup
    fake, clock = FakeUpstream(digest), Clock()
    fake.down = True
    client, resolver = _gateway(store, fake, clock)
    async with client:
        await client.head("/v2/library/demo/manifests/1?ns=docker.io")
        clock.now += 61
        for _ in range(BREAKER_FAILURES + 5):
            clock.now += 1  # each request finds the tag due: checks until the breaker opens
            response = await client.head("/v2/library/demo/manifests/1?ns=docker.io")
            assert response.status_code == 200  # stale-if-error
            await _settle(resolver)
    assert fake.heads == BREAKER_FAILURES  # then the breaker skipped every check
    assert Digest.parse(digest)


async def test_rules_without_tag_ttl_cost_nothing(setup: tuple[MemoryStore, str]) -> None:
    store, _ = setup
    config = parse_config(CONFIG.replace(", tag_ttl: 60s", ""))
    app = create_app(config, [store])
    assert app.resolver.freshness is None


def test_a_pull_through_upstreams_tag_ttl_applies_to_its_rules() -> None:
    config = parse_config(CONFIG.replace(", tag_ttl: 60s", "").replace(
        '["https://upstream.invalid"]}',
        '["https://upstream.invalid"], on_miss: pull-through, tag_ttl: 5m}'))
    checks = Freshness(config.mirror_index(), None, metrics=GatewayMetrics())
    assert checks.ttl(NAME) == 300.0
    assert checks.ttl("docker.io/library/other") is None
