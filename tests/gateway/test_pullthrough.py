"""``on_miss: pull-through`` against a fake upstream: one fetch feeds concurrent clients and
Range requests, bytes that do not match their digest are never committed, an upstream 429
never reaches the client, and a manifest is committed with its tag."""

from __future__ import annotations

import asyncio
import json
import random

import httpx
import pytest

from gateway.app import create_app
from gateway.resolve import Resolver
from registry import layout
from registry.config import parse_config
from registry.digest import Digest
from registry.mediatypes import OCI_MANIFEST
from registry.store.memory import MemoryStore

CONFIG = """
upstreams:
  docker.io: {urls: ["https://upstream.test"], on_miss: pull-through, retries: 0}
mirror:
  - {name: hub, registry: docker.io, repositories: [library/app]}
"""
BLOB = random.Random(3).randbytes(3 * 1024 * 1024 + 17)
DIGEST = Digest.from_bytes(BLOB)
MANIFEST = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                       "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                                  "digest": str(DIGEST), "size": len(BLOB)},
                       "layers": []}).encode()


class FakeUpstream:
    def __init__(self) -> None:
        self.blob_gets = 0
        self.corrupt = False
        self.status: int | None = None

    async def handler(self, request: httpx.Request) -> httpx.Response:
        if self.status is not None:
            return httpx.Response(self.status, headers={"Retry-After": "1"})
        path = request.url.path
        if path.endswith(f"/blobs/{DIGEST}"):
            self.blob_gets += 1
            await asyncio.sleep(0.05)  # long enough for concurrent requests to pile up
            body = bytearray(BLOB)
            if self.corrupt:
                body[-1] ^= 1
            return httpx.Response(200, content=bytes(body))
        if path.endswith("/manifests/1.0"):
            return httpx.Response(200, content=MANIFEST, headers={"Content-Type": OCI_MANIFEST})
        return httpx.Response(404, json={"errors": [{"code": "MANIFEST_UNKNOWN"}]})


def _gateway(store: MemoryStore, fake: FakeUpstream) -> tuple[httpx.AsyncClient, Resolver]:
    app = create_app(parse_config(CONFIG), [store])
    assert app.resolver.pull_through is not None
    app.resolver.pull_through.transport = httpx.MockTransport(fake.handler)
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw")
    return client, app.resolver


async def _settled(resolver: Resolver) -> None:
    assert resolver.pull_through is not None
    while resolver.pull_through._tasks:
        await asyncio.gather(*resolver.pull_through._tasks, return_exceptions=True)


async def test_one_upstream_fetch_feeds_every_concurrent_client() -> None:
    store, fake = MemoryStore(), FakeUpstream()
    client, resolver = _gateway(store, fake)
    url = f"/v2/library/app/blobs/{DIGEST}?ns=docker.io"
    async with client:
        answers = await asyncio.gather(*[client.get(url) for _ in range(8)],
                                       client.get(url, headers={"Range": "bytes=100-199"}))
        await _settled(resolver)
        again = await client.head(url)
    assert fake.blob_gets == 1
    for answer in answers[:-1]:
        assert answer.status_code == 200
        assert answer.content == BLOB
    assert answers[-1].status_code == 206
    assert answers[-1].content == BLOB[100:200]
    assert answers[-1].headers["content-range"] == f"bytes 100-199/{len(BLOB)}"
    assert await store.get(layout.blob_data(DIGEST)) == BLOB  # committed, verified
    assert await store.get(layout.layer_link("docker.io/library/app", DIGEST))
    assert again.status_code == 200  # now a hit from the store
    assert fake.blob_gets == 1
    # Pulled through or stored, a blob is answered with the same headers.
    header_names = ("docker-content-digest", "etag", "accept-ranges", "content-type")
    assert {h: answers[0].headers[h] for h in header_names} == \
        {h: again.headers[h] for h in header_names}


async def test_a_corrupt_upstream_blob_is_never_committed() -> None:
    store, fake = MemoryStore(), FakeUpstream()
    fake.corrupt = True
    client, resolver = _gateway(store, fake)
    async with client:
        with pytest.raises(Exception, match="DIGEST_INVALID"):
            await client.get(f"/v2/library/app/blobs/{DIGEST}?ns=docker.io")
        await _settled(resolver)
    assert layout.blob_data(DIGEST) not in store.objects


@pytest.mark.parametrize("status", [429, 408, 503])
async def test_upstream_throttling_never_reaches_containerd(status: int) -> None:
    store, fake = MemoryStore(), FakeUpstream()
    fake.status = status
    client, _ = _gateway(store, fake)
    async with client:
        blob = await client.get(f"/v2/library/app/blobs/{DIGEST}?ns=docker.io")
        manifest = await client.get("/v2/library/app/manifests/1.0?ns=docker.io")
    assert blob.status_code == manifest.status_code == 503
    assert blob.json()["errors"][0]["code"] == "UNAVAILABLE"


async def test_a_manifest_is_fetched_committed_and_tagged() -> None:
    store, fake = MemoryStore(), FakeUpstream()
    client, _ = _gateway(store, fake)
    async with client:
        first = await client.get("/v2/library/app/manifests/1.0?ns=docker.io")
        missing = await client.get("/v2/library/app/manifests/nope?ns=docker.io")
        outside = await client.get("/v2/library/other/manifests/1.0?ns=docker.io")
    assert first.status_code == 200
    assert first.content == MANIFEST
    digest = Digest.from_bytes(MANIFEST)
    assert first.headers["docker-content-digest"] == str(digest)
    name = "docker.io/library/app"
    assert await store.get(layout.tag_current_link(name, "1.0")) == str(digest).encode()
    assert await store.get(layout.revision_link(name, digest))
    assert missing.status_code == 404
    assert outside.status_code == 404  # no rule covers library/other: never pulled through
