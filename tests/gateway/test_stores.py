"""Stores in priority order: a lagging, failing or hung replica never fails a pull the primary
can serve, and a failing store stops costing requests while it is marked unhealthy."""

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


async def test_all_stores_down_is_a_fast_503_and_not_ready(
        primary: tuple[MemoryStore, dict[str, Any]]) -> None:
    store, _ = primary
    async with _client([Broken(store, "hang"), Broken(store, "error")]) as client:
        started = time.monotonic()
        response = await client.get(f"/v2/{DEMO}/manifests/1")
        assert response.status_code == 503
        assert response.json()["errors"][0]["code"] == "UNAVAILABLE"
        again = await client.get(f"/v2/{DEMO}/manifests/1")
        elapsed = time.monotonic() - started
        ready = await client.get("/readyz")
    assert again.status_code == 503
    assert elapsed < 5
    assert ready.status_code == 503
    assert ready.json()["status"] == "unavailable"


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

