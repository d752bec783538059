"""``on_miss: pull-through`` against a fake upstream: one fetch feeds concurrent clients and
Range requests, bytes that do not match their digest are never committed, an upstream 429
never reaches the client, a tag is committed only once its image is stored, and a blob is
fetched once for every repository that has it."""

from __future__ import annotations

import asyncio
import json
import random

import httpx
import pytest

from gateway.app import create_app
from gateway.resolve import Resolver
from registry import layout, writer
from registry.config import parse_config
from registry.digest import Digest
from registry.mediatypes import OCI_INDEX, OCI_MANIFEST
from registry.store import ObjectStore
from registry.store.memory import MemoryStore
from tests.conftest import CountingStore

CONFIG = """
upstreams:
  docker.io: {urls: ["https://upstream.test"], on_miss: pull-through, retries: 0}
mirror:
  - {name: hub, registry: docker.io, repositories: [library/app, library/tools]}
"""
BLOB = random.Random(3).randbytes(3 * 1024 * 1024 + 17)
DIGEST = Digest.from_bytes(BLOB)
CONFIG_BLOB = b'{"architecture": "amd64", "os": "linux"}'


def _image(*blobs: bytes) -> bytes:
    config, *layers = [{"mediaType": "application/octet-stream", "digest": str(
        Digest.from_bytes(blob)), "size": len(blob)} for blob in blobs]
    return json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": config,
                       "layers": layers}).encode()


MANIFEST = _image(BLOB)
CHILD = _image(CONFIG_BLOB, BLOB)  # the linux/amd64 image of INDEX
OTHER_CHILD = _image(b"{}", b"arm64 layer")  # never pulled
INDEX = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
    {"mediaType": OCI_MANIFEST, "digest": str(Digest.from_bytes(child)), "size": len(child),
     "platform": {"os": "linux", "architecture": arch}}
    for child, arch in ((CHILD, "amd64"), (OTHER_CHILD, "arm64"))]}).encode()
NAME = "docker.io/library/app"


class FakeUpstream:
    def __init__(self) -> None:
        self.blob_gets = 0
        self.manifest_gets = 0
        self.corrupt = False
        self.status: int | None = None
        self.manifests = {"1.0": MANIFEST, "multi": INDEX}
        self.manifests |= {str(Digest.from_bytes(m)): m for m in (MANIFEST, CHILD, INDEX)}
        self.blobs = {str(Digest.from_bytes(b)): b for b in (BLOB, CONFIG_BLOB)}

    async def handler(self, request: httpx.Request) -> httpx.Response:
        if self.status is not None:
            return httpx.Response(self.status, headers={"Retry-After": "1"})
        kind, reference = request.url.path.split("/")[-2:]
        if kind == "blobs" and reference in self.blobs:
            self.blob_gets += 1
            await asyncio.sleep(0.05)  # long enough for concurrent requests to pile up
            body = bytearray(self.blobs[reference])
            if self.corrupt:
                body[-1] ^= 1
            return httpx.Response(200, content=bytes(body))
        if kind == "manifests" and reference in self.manifests:
            self.manifest_gets += 1
            data = self.manifests[reference]
            return httpx.Response(200, content=data,
                                  headers={"Content-Type": json.loads(data)["mediaType"]})
        return httpx.Response(404, json={"errors": [{"code": "MANIFEST_UNKNOWN"}]})


def _gateway(store: ObjectStore, fake: FakeUpstream) -> tuple[httpx.AsyncClient, Resolver]:
    app = create_app(parse_config(CONFIG), [store])
    assert app.resolver.pull_through is not None
    app.resolver.pull_through.transport = httpx.MockTransport(fake.handler)
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw")
    return client, app.resolver


async def _settled(resolver: Resolver) -> None:
    """Every fill and every check of a pending tag has finished."""
    pull_through = resolver.pull_through
    assert pull_through is not None
    while tasks := pull_through._tasks | pull_through.pending._tasks:
        await asyncio.gather(*tasks, return_exceptions=True)


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


async def test_a_tag_is_committed_once_its_image_is_stored() -> None:
    store, fake = MemoryStore(), FakeUpstream()
    counting = CountingStore(store)
    client, resolver = _gateway(counting, fake)
    digest = Digest.from_bytes(MANIFEST)
    async with client:
        first = await client.get("/v2/library/app/manifests/1.0?ns=docker.io")
        missing = await client.get("/v2/library/app/manifests/nope?ns=docker.io")
        outside = await client.get("/v2/library/other/manifests/1.0?ns=docker.io")
        await _settled(resolver)
        # The manifest is committed (pulls ask for it by digest next); the tag is not: the
        # bucket cannot serve the image yet. This gateway answers it as fetched meanwhile.
        assert await store.get(layout.revision_link(NAME, digest))
        assert layout.tag_current_link(NAME, "1.0") not in store.objects
        counting.reset()
        again = await client.get("/v2/library/app/manifests/1.0?ns=docker.io")
        assert (again.status_code, again.content) == (200, MANIFEST)
        assert fake.manifest_gets == 1
        assert counting.reads == 0  # answered from memory: the bucket has no tag to find
        assert "regfront_pullthrough_pending_tags 1.0" in (await client.get("/metrics")).text
        assert (await client.get(f"/v2/library/app/blobs/{DIGEST}?ns=docker.io")).status_code \
            == 200
        await _settled(resolver)
        assert "regfront_pullthrough_pending_tags 0.0" in (await client.get("/metrics")).text
    assert first.status_code == 200
    assert first.content == MANIFEST
    assert first.headers["docker-content-digest"] == str(digest)
    assert await store.get(layout.tag_current_link(NAME, "1.0")) == str(digest).encode()
    assert missing.status_code == 404
    assert outside.status_code == 404  # no rule covers library/other: never pulled through


async def test_a_tag_committed_meanwhile_is_not_overwritten() -> None:
    """Sync moved the tag while its pulled-through image was on its way: sync's stands."""
    store, fake = MemoryStore(), FakeUpstream()
    client, resolver = _gateway(store, fake)
    async with client:
        assert (await client.get("/v2/library/app/manifests/1.0?ns=docker.io")).status_code \
            == 200
        await _settled(resolver)
        synced = Digest.from_bytes(CHILD)
        await writer.put_manifest(store, NAME, CHILD)
        await writer.put_tag(store, NAME, "1.0", synced)
        assert (await client.get(f"/v2/library/app/blobs/{DIGEST}?ns=docker.io")).status_code \
            == 200
        await _settled(resolver)
    assert await store.get(layout.tag_current_link(NAME, "1.0")) == str(synced).encode()


async def test_an_index_tag_is_committed_once_the_platform_pulled_is_stored() -> None:
    store, fake = MemoryStore(), FakeUpstream()
    client, resolver = _gateway(store, fake)
    child = Digest.from_bytes(CHILD)
    async with client:
        for path in ("manifests/multi", f"manifests/{child}", f"blobs/{DIGEST}"):
            assert (await client.get(f"/v2/library/app/{path}?ns=docker.io")).status_code == 200
            await _settled(resolver)
        # The config is still missing: the child is not complete, so neither is the index.
        assert layout.tag_current_link(NAME, "multi") not in store.objects
        config = Digest.from_bytes(CONFIG_BLOB)
        assert (await client.get(f"/v2/library/app/blobs/{config}?ns=docker.io")).status_code \
            == 200
        await _settled(resolver)
    # One platform complete is enough (no node pulls them all); the arm64 child never came.
    assert await store.get(layout.tag_current_link(NAME, "multi")) == \
        str(Digest.from_bytes(INDEX)).encode()


async def test_a_tag_is_committed_when_another_replica_stores_its_blobs() -> None:
    """Behind a load balancer the tag's fetch and the blob's fill land on different gateways;
    the one holding the tag looks at the store again and commits it."""
    store, fake = MemoryStore(), FakeUpstream()
    first, holder = _gateway(store, fake)
    second, filler = _gateway(store, fake)
    assert holder.pull_through is not None
    holder.pull_through.pending.recheck = (0.01, 0.05)
    async with first, second:
        assert (await first.get("/v2/library/app/manifests/1.0?ns=docker.io")).status_code \
            == 200
        await _settled(holder)
        assert (await second.get(f"/v2/library/app/blobs/{DIGEST}?ns=docker.io")).status_code \
            == 200
        await _settled(filler)
        for _ in range(1000):  # at most 10 s
            if layout.tag_current_link(NAME, "1.0") in store.objects:
                break
            await asyncio.sleep(0.01)
    assert layout.tag_current_link(NAME, "1.0") in store.objects
    assert fake.blob_gets == 1


async def test_blobs_stored_for_another_repository_are_linked_not_fetched() -> None:
    store, fake = MemoryStore(), FakeUpstream()
    client, resolver = _gateway(store, fake)
    async with client:
        url = f"/v2/library/app/blobs/{DIGEST}?ns=docker.io"
        assert (await client.get(url)).status_code == 200
        await _settled(resolver)
        # The same layer in another repository, and then a tag whose image it completes.
        shared = await client.get(url.replace("library/app", "library/tools"))
        assert (shared.status_code, shared.content) == (200, BLOB)
        fake.manifests["2.0"] = MANIFEST
        await client.get("/v2/library/tools/manifests/2.0?ns=docker.io")
        await _settled(resolver)
    assert fake.blob_gets == 1
    tools = "docker.io/library/tools"
    assert await store.get(layout.layer_link(tools, DIGEST))
    assert await store.get(layout.tag_current_link(tools, "2.0")) == \
        str(Digest.from_bytes(MANIFEST)).encode()


async def test_one_fill_links_every_repository_that_asked() -> None:
    store, fake = MemoryStore(), FakeUpstream()
    client, resolver = _gateway(store, fake)
    async with client:
        answers = await asyncio.gather(*(client.get(
            f"/v2/library/{repo}/blobs/{DIGEST}?ns=docker.io") for repo in ("app", "tools")))
        await _settled(resolver)
    assert [a.status_code for a in answers] == [200, 200]
    assert fake.blob_gets == 1
    for repo in ("app", "tools"):
        assert await store.get(layout.layer_link(f"docker.io/library/{repo}", DIGEST))
