"""Stores in priority order: a lagging, failing or hung replica never fails a pull the primary
can serve, a failing store stops costing requests while another answers in its place, and a
store with no stand-in is waited for rather than answered for with a fast 503.
(The rules themselves, with a fake clock: test_store_health.py.)"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.app import create_app
from registry import layout
from registry.config import Config, GatewayConfig
from registry.digest import Digest
from registry.imports import import_image
from registry.store import ObjectStore
from registry.store.memory import MemoryStore
from tests.conftest import CountingStore
from tests.images import sample_layout

DEMO = "docker.io/library/demo"


class Broken(CountingStore):
    """A replica whose endpoint fails (``mode='error'``) or hangs (``mode='hang'``)."""

    def __init__(self, inner: ObjectStore, mode: str) -> None:
        super().__init__(inner)
        self.mode = mode

    async def _fail(self) -> None:
        if self.mode == "hang":
            await asyncio.sleep(3600)
        if self.mode == "error":
            raise OSError("connection reset by peer")

    async def get(self, key: str) -> bytes:
        self.calls["get"] += 1
        await self._fail()
        return await self.inner.get(key)

    async def size(self, key: str) -> int:
        self.calls["size"] += 1
        await self._fail()
        return await self.inner.size(key)

    async def children(self, prefix: str) -> list[str]:
        self.calls["children"] += 1
        await self._fail()
        return await self.inner.children(prefix)


@pytest.fixture
async def primary(tmp_path: Path) -> tuple[MemoryStore, dict[str, Any]]:
    oci = sample_layout(tmp_path / "oci")
    store = MemoryStore()
    await import_image(store, f"oci:{oci.root}:single", DEMO, "1")
    import json

    manifest = json.loads((oci.root / "blobs/sha256" / oci.refs[0]["digest"][7:]).read_bytes())
    return store, manifest


def _client(stores: list[Any], **gateway: Any) -> httpx.AsyncClient:
    config = Config(gateway=GatewayConfig(**{"store_timeout": 0.2, "store_backoff": 30,
                                             **gateway}))
    app = create_app(config, stores)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw")


async def test_a_lagging_replica_falls_through_to_the_primary(
        primary: tuple[MemoryStore, dict[str, Any]]) -> None:
    """The replica has every link and manifest but not the layers' bytes yet."""
    store, manifest = primary
    replica = MemoryStore()
    replica.objects = {k: v for k, v in store.objects.items()
                       if not any(k == layout.blob_data(Digest.parse(b["digest"]))
                                  for b in manifest["layers"])}
    async with _client([replica, store]) as client:
        assert (await client.get(f"/v2/{DEMO}/manifests/1")).status_code == 200
        layer = manifest["layers"][0]
        response = await client.get(f"/v2/{DEMO}/blobs/{layer['digest']}")
        assert response.status_code == 200
        assert Digest.from_bytes(response.content) == Digest.parse(layer["digest"])


async def test_a_corrupt_manifest_in_a_replica_is_skipped(
        primary: tuple[MemoryStore, dict[str, Any]]) -> None:
    store, _ = primary
    replica = MemoryStore()
    replica.objects = dict(store.objects)
    digest = Digest.parse(replica.objects[layout.tag_current_link(DEMO, "1")].decode())
    replica.objects[layout.blob_data(digest)] = b'{"half": "replicated"'
    async with _client([replica, store]) as client:
        response = await client.get(f"/v2/{DEMO}/manifests/1")
    assert response.status_code == 200
    assert Digest.from_bytes(response.content) == digest


@pytest.mark.parametrize("mode", ["error", "hang"])
async def test_a_failing_replica_costs_one_timeout_then_nothing(
        primary: tuple[MemoryStore, dict[str, Any]], mode: str) -> None:
    store, manifest = primary
    replica = Broken(store, mode)
    async with _client([replica, store]) as client:
        started = time.monotonic()
        assert (await client.head(f"/v2/{DEMO}/manifests/1")).status_code == 200
        first = time.monotonic() - started
        assert replica.reads == 1  # asked once, failed, then skipped
        replica.reset()
        for layer in manifest["layers"]:
            assert (await client.head(f"/v2/{DEMO}/blobs/{layer['digest']}")).status_code == 200
        assert replica.reads == 0  # unhealthy: not asked again during its back-off
        ready = await client.get("/readyz")
    assert ready.status_code == 200
    detail = ready.json()["stores"]
    assert [s["healthy"] for s in detail] == [False, True]
    assert detail[0]["last_error"] == ("timeout" if mode == "hang" else
                                       "OSError('connection reset by peer')")
    assert first < 5  # bounded by store_timeout (0.2 s), never the hang itself


async def test_an_unhealthy_store_is_probed_again_after_its_backoff(
        primary: tuple[MemoryStore, dict[str, Any]]) -> None:
    store, _ = primary
    replica = Broken(store, "error")
    async with _client([replica, store], store_backoff=0.05) as client:
        await client.head(f"/v2/{DEMO}/manifests/1")
        replica.mode = "ok"
        await asyncio.sleep(0.1)
        replica.reset()
        assert (await client.head(f"/v2/{DEMO}/manifests/other")).status_code == 404
        assert replica.reads == 1  # probed, answered: healthy again
        ready = await client.get("/readyz")
    assert [s["healthy"] for s in ready.json()["stores"]] == [True, True]


async def test_with_every_store_failing_reads_wait_for_the_deadline_then_503(
        primary: tuple[MemoryStore, dict[str, Any]]) -> None:
    """Never a fast 503: a 503 sends containerd to the upstream, waiting costs it nothing."""
    store, _ = primary
    hung, failing = Broken(store, "hang"), Broken(store, "error")
    async with _client([hung, failing], store_deadline=1.0) as client:
        started = time.monotonic()
        response = await client.get(f"/v2/{DEMO}/manifests/1")
        elapsed = time.monotonic() - started
        ready = await client.get("/readyz")
        metrics = (await client.get("/metrics")).text
    assert response.status_code == 503
    error = response.json()["errors"][0]
    assert error["code"] == "UNAVAILABLE"
    assert error["detail"]["reason"] in ("store_timeout", "store_server_error")
    assert 0.9 < elapsed < 5  # the whole deadline, not the first timeout
    assert failing.reads >= 2  # asked again: no store stands in for it
    assert hung.reads >= 2
    fallbacks = [line for line in metrics.splitlines()
                 if line.startswith("regfront_fallbacks_total{")]
    assert fallbacks == [f'regfront_fallbacks_total{{reason="{error["detail"]["reason"]}"}} 1.0']
    # The hung store is down for timeouts only: alive as far as anyone knows, so still ready.
    assert ready.status_code == 200


async def test_not_ready_only_when_every_store_is_down_for_hard_failures(
        primary: tuple[MemoryStore, dict[str, Any]]) -> None:
    store, _ = primary
    async with _client([Broken(store, "error"), Broken(store, "error")],
                       store_deadline=0.5) as client:
        assert (await client.get("/readyz")).status_code == 200  # nothing known yet
        assert (await client.head(f"/v2/{DEMO}/manifests/1")).status_code == 503
        ready = await client.get("/readyz")
    assert ready.status_code == 503
    assert ready.json()["status"] == "unavailable"
    assert [s["healthy"] for s in ready.json()["stores"]] == [False, False]


async def test_one_slow_call_on_the_only_store_is_waited_for_not_a_503(
        primary: tuple[MemoryStore, dict[str, Any]]) -> None:
    """The fleet case: one store, one call slower than store_timeout (a burst, a stall)."""
    store, _ = primary

    class SlowOnce(CountingStore):
        slow = True

        async def get(self, key: str) -> bytes:
            self.calls["get"] += 1
            if self.slow:
                self.slow = False
                await asyncio.sleep(0.6)  # three times store_timeout
            return await self.inner.get(key)

    only = SlowOnce(store)
    async with _client([only]) as client:
        responses = await asyncio.gather(*(client.get(f"/v2/{DEMO}/manifests/1")
                                           for _ in range(20)))
        ready = await client.get("/readyz")
    assert [r.status_code for r in responses] == [200] * 20
    assert only.calls["get"] == 3  # the slow tag read, its retry, the manifest: shared by all
    assert ready.json()["stores"][0]["healthy"]  # one slow call is not "down"


async def test_a_miss_in_a_reachable_store_is_404_not_503(
        primary: tuple[MemoryStore, dict[str, Any]]) -> None:
    store, _ = primary
    async with _client([Broken(store, "error"), store]) as client:
        response = await client.get(f"/v2/{DEMO}/manifests/absent")
    assert response.status_code == 404


async def test_tags_list_is_the_union_of_reachable_stores(
        primary: tuple[MemoryStore, dict[str, Any]]) -> None:
    store, _ = primary
    replica = MemoryStore()
    replica.objects = {k: v for k, v in store.objects.items()}
    replica.objects[layout.tag_current_link(DEMO, "replica-only")] = b"x"
    async with _client([replica, store]) as client:
        response = await client.get(f"/v2/{DEMO}/tags/list")
    assert response.json()["tags"] == ["1", "replica-only"]

