"""Store calls per request: none when warm, at most two per store when cold."""

from __future__ import annotations

import asyncio

import httpx

from tests.gateway.conftest import DEMO, Seeded, make_client


async def test_manifest_by_tag_cold_then_warm(seeded: Seeded) -> None:
    async with make_client(seeded) as client:
        seeded.store.reset()
        assert (await client.head(f"/v2/{DEMO}/manifests/single")).status_code == 200
        assert seeded.store.reads == 2  # the tag's link, then the manifest's bytes
        seeded.store.reset()
        for _ in range(5):
            assert (await client.get(f"/v2/{DEMO}/manifests/single")).status_code == 200
        assert seeded.store.reads == 0


async def test_manifest_by_digest_cold_then_warm(seeded: Seeded) -> None:
    async with make_client(seeded) as client:
        url = f"/v2/{DEMO}/manifests/{seeded.single['digest']}"
        seeded.store.reset()
        assert (await client.get(url)).status_code == 200
        assert seeded.store.reads == 2  # the revision link, then the bytes
        seeded.store.reset()
        assert (await client.head(url)).status_code == 200
        assert seeded.store.reads == 0


async def test_blob_head_cold_then_warm(seeded: Seeded) -> None:
    layer = seeded.manifest(seeded.single)["layers"][1]
    async with make_client(seeded) as client:
        url = f"/v2/{DEMO}/blobs/{layer['digest']}"
        seeded.store.reset()
        assert (await client.head(url)).status_code == 200
        assert seeded.store.reads == 2  # the layer link, then the size
        seeded.store.reset()
        assert (await client.head(url)).status_code == 200
        assert seeded.store.reads == 0
        # A GET on the embedded store must read the bytes, and nothing else.
        assert (await client.get(url)).status_code == 200
        assert dict(seeded.store.calls) == {"read": 1}


async def test_blob_get_cold_is_two_store_calls(seeded: Seeded) -> None:
    """On the embedded store the gateway sends the bytes itself: the link, then the read,
    which reports the size (no separate ``size`` call); warm, the read alone."""
    layer = seeded.manifest(seeded.single)["layers"][1]
    async with make_client(seeded) as client:
        url = f"/v2/{DEMO}/blobs/{layer['digest']}"
        seeded.store.reset()
        response = await client.get(url)
        assert response.status_code == 200
        assert response.content == seeded.blob(layer)
        assert response.headers["content-length"] == str(layer["size"])
        assert seeded.store.reads == 2
        assert dict(seeded.store.calls) == {"get": 1, "read": 1}
        seeded.store.reset()
        assert (await client.head(url)).status_code == 200  # its size is known now
        assert seeded.store.reads == 0
        ranged = await client.get(url, headers={"Range": "bytes=1-2"})
        assert ranged.status_code == 206
        assert ranged.content == seeded.blob(layer)[1:3]
        assert dict(seeded.store.calls) == {"read": 1}


async def test_a_tag_is_reread_after_its_ttl(seeded: Seeded) -> None:
    async with make_client(seeded, tag_ttl=0.05) as client:
        url = f"/v2/{DEMO}/manifests/single"
        await client.get(url)
        seeded.store.reset()
        await asyncio.sleep(0.1)
        assert (await client.get(url)).status_code == 200
        assert seeded.store.reads == 1  # the link again; the manifest is still cached


async def test_concurrent_misses_share_one_store_call(seeded: Seeded) -> None:
    async with make_client(seeded) as client:
        seeded.store.reset()
        responses = await asyncio.gather(
            *[client.get(f"/v2/{DEMO}/manifests/multi") for _ in range(20)])
        assert {r.status_code for r in responses} == {200}
        assert seeded.store.reads == 2


async def test_misses_are_not_cached(seeded: Seeded) -> None:
    """A 404 must not outlive the import that fixes it."""
    async with make_client(seeded) as client:
        assert (await client.get(f"/v2/{DEMO}/manifests/later")).status_code == 404
        from registry import writer
        from registry.digest import Digest

        await writer.put_tag(seeded.store, DEMO, "later", Digest.parse(seeded.single["digest"]))
        assert (await client.get(f"/v2/{DEMO}/manifests/later")).status_code == 200


async def test_client_fixture_is_usable(client: httpx.AsyncClient) -> None:
    assert (await client.get("/v2/")).status_code == 200
