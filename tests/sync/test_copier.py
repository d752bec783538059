"""The copier against an in-process upstream: copy, verify, then commit - blobs, manifests,
links and the tag in that order, each repository write behind the guard, nothing unverified
ever committed, a shared blob fetched once."""

from __future__ import annotations

import asyncio
import json
import random

import pytest

from registry import layout
from registry.digest import Digest
from registry.mediatypes import DOCKER_MANIFEST_V1_SIGNED
from registry.mirrorconfig import UpstreamConfig
from registry.upstream.client import Upstream
from sync.copier import Copier, CopyError, CopyStats, Guard, describe_error, unguarded
from tests.sync.conftest import UPSTREAM, FakeUpstream, Image, RecordingStore, recording

NAME = "docker.io/library/app"
REPO = "library/app"


def layers(count: int, seed: int, size: int = 2048) -> list[bytes]:
    rng = random.Random(seed)
    return [rng.randbytes(size) for _ in range(count)]


def copier(store: RecordingStore, fake: FakeUpstream, *, guard: Guard = unguarded,
           platforms: list[str] | None = None, dry_run: bool = False) -> Copier:
    upstream = Upstream("docker.io", UpstreamConfig(urls=[UPSTREAM], retries=0),
                        transport=fake.transport())
    return Copier(store, upstream, blob_slots=asyncio.Semaphore(4), platforms=platforms,
                  dry_run=dry_run, guard=guard)


def committed(store: RecordingStore, image: Image) -> bool:
    return layout.revision_link(NAME, image.digest) in store.keys_written()


async def test_copy_tag_commits_blobs_then_links_then_manifest_then_tag() -> None:
    fake, store = FakeUpstream(), recording()
    image = fake.image(REPO, "1", layers(2, seed=1))
    assert await copier(store, fake).copy_tag(REPO, "1", NAME) == image.digest
    keys = store.keys_written()
    blob_data = [keys.index(layout.blob_data(b)) for b in image.blobs]
    links = [keys.index(layout.layer_link(NAME, b)) for b in image.blobs]
    manifest = keys.index(layout.revision_link(NAME, image.digest))
    tag = keys.index(layout.tag_current_link(NAME, "1"))
    assert max(blob_data) < min(links)
    assert max(links) < manifest < keys.index(layout.tag_index_link(NAME, "1", image.digest)) \
        < tag == len(keys) - 1
    assert await store.get(layout.blob_data(image.digest)) == image.manifest  # verbatim
    assert await store.get(layout.tag_current_link(NAME, "1")) == str(image.digest).encode()


async def test_a_current_tag_costs_one_head() -> None:
    fake, store = FakeUpstream(), recording()
    fake.image(REPO, "1", layers(2, seed=1))
    await copier(store, fake).copy_tag(REPO, "1", NAME)
    fake.requests.clear()
    again = copier(store, fake)
    await again.copy_tag(REPO, "1", NAME)
    assert fake.requests == [("HEAD", f"/v2/{REPO}/manifests/1")]
    assert (again.stats.images, again.stats.images_current) == (0, 1)


async def test_a_blob_two_images_share_is_fetched_once_and_counted_once() -> None:
    fake, store = FakeUpstream(), recording()
    base = layers(2, seed=1)
    one = fake.image(REPO, "1", [*base, *layers(1, seed=2)])
    two = fake.image(REPO, "2", [*base, *layers(1, seed=3)])
    shared = copier(store, fake)
    await asyncio.gather(shared.copy_tag(REPO, "1", NAME), shared.copy_tag(REPO, "2", NAME))
    for layer in base:
        assert fake.gets(f"/blobs/{Digest.from_bytes(layer)}") == 1
    distinct = set(one.blobs) | set(two.blobs)
    assert shared.stats.blobs == len(distinct)
    assert shared.stats.blobs + shared.stats.blobs_present == len(one.blobs) + len(two.blobs)
    assert shared.stats.bytes_downloaded == sum(len(fake.blobs[d]) for d in distinct)
    assert shared.stats.images == 2


async def test_a_corrupt_blob_commits_nothing_of_its_image() -> None:
    fake, store = FakeUpstream(), recording()
    image = fake.image(REPO, "1", layers(2, seed=1))
    fake.corrupt.add(image.blobs[-1])
    with pytest.raises(ExceptionGroup) as raised:
        await copier(store, fake).copy_tag(REPO, "1", NAME)
    assert "DIGEST_INVALID" in describe_error(raised.value)
    assert fake.gets(f"/blobs/{image.blobs[-1]}") == 1  # the fault fired
    assert layout.blob_data(image.blobs[-1]) not in store.keys_written()
    assert not committed(store, image)
    assert not [k for k in store.keys_written() if "/_manifests/tags/" in k]


async def test_more_bytes_than_the_manifest_declares_are_refused() -> None:
    fake, store = FakeUpstream(), recording()
    image = fake.image(REPO, "1", layers(1, seed=1))
    layer = image.blobs[-1]
    fake.blobs[layer] += b"extra"  # what the upstream sends no longer matches the size
    with pytest.raises(ExceptionGroup) as raised:
        await copier(store, fake).copy_tag(REPO, "1", NAME)
    assert isinstance(raised.value.exceptions[0], CopyError)
    assert "bytes" in describe_error(raised.value)
    assert layout.blob_data(layer) not in store.keys_written()


async def test_an_index_keeps_its_bytes_and_only_the_selected_platform() -> None:
    fake, store = FakeUpstream(), recording()
    base = layers(1, seed=1)
    children = {"linux/amd64": fake.image(REPO, None, base, architecture="amd64"),
                "linux/arm64": fake.image(REPO, None, [*base, b"arm"], architecture="arm64")}
    index = fake.index(REPO, "multi", children)
    await copier(store, fake, platforms=["linux/arm64"]).copy_tag(REPO, "multi", NAME)
    assert await store.get(layout.blob_data(index.digest)) == index.manifest
    assert committed(store, index)
    assert committed(store, children["linux/arm64"])
    assert not committed(store, children["linux/amd64"])
    assert fake.gets(f"/manifests/{children['linux/amd64'].digest}") == 0


async def test_the_guard_is_asked_before_every_repository_write_and_download() -> None:
    fake, store = FakeUpstream(), recording()
    image = fake.image(REPO, "1", layers(2, seed=1))
    asked: list[tuple[str, int]] = []  # what, and how many writes had happened by then
    await copier(store, fake, guard=lambda what: asked.append((what, len(store.writes)))
                 ).copy_tag(REPO, "1", NAME)
    manifest, tag = f"manifest {NAME}@{image.digest}", f"tag {NAME}:1"
    assert [what for what, _ in asked][-2:] == [manifest, tag]
    guard_of = {layout.blob_data(image.digest): manifest,
                layout.revision_link(NAME, image.digest): manifest,
                layout.tag_index_link(NAME, "1", image.digest): tag,
                layout.tag_current_link(NAME, "1"): tag}
    for blob in image.blobs:
        guard_of[layout.blob_data(blob)] = f"blob {blob}"
        guard_of[layout.layer_link(NAME, blob)] = f"blob link {NAME}@{blob}"
    # Claims (registry/claims.py) are not repository writes: they only keep GC away.
    claims = [w for w in store.writes if w.key.startswith(layout.CLAIMS_DIR)]
    assert claims
    assert set(store.keys_written()) - {w.key for w in claims} == set(guard_of)
    writes_before = dict(asked)
    for index, write in enumerate(store.writes):
        if write not in claims:
            assert writes_before[guard_of[write.key]] <= index, write.key


async def test_a_guard_that_refuses_stops_the_copy_at_that_commit() -> None:
    fake, store = FakeUpstream(), recording()
    image = fake.image(REPO, "1", layers(2, seed=1))

    class Refused(Exception):
        pass

    def refuse(what: str) -> None:
        if what.startswith("manifest"):
            raise Refused(what)

    with pytest.raises(Refused, match=f"manifest {NAME}@{image.digest}"):
        await copier(store, fake, guard=refuse).copy_tag(REPO, "1", NAME)
    assert not committed(store, image)
    assert not [k for k in store.keys_written() if "/_manifests/" in k]
    assert all(layout.layer_link(NAME, b) in store.keys_written() for b in image.blobs)


async def test_dry_run_counts_and_writes_nothing() -> None:
    fake, store = FakeUpstream(), recording()
    image = fake.image(REPO, "1", layers(2, seed=1))
    dry = copier(store, fake, dry_run=True)
    assert await dry.copy_tag(REPO, "1", NAME) == image.digest
    assert store.writes == []
    assert dry.stats.images == 1
    assert dry.stats.bytes_downloaded == sum(len(fake.blobs[b]) for b in image.blobs)
    assert not [r for r in fake.requests if "/blobs/" in r[1]]


async def test_foreign_layers_are_left_to_their_urls() -> None:
    fake, store = FakeUpstream(), recording()
    image = fake.image(REPO, "1", layers(1, seed=1), urls=["https://foreign.test/layer"])
    await copier(store, fake).copy_tag(REPO, "1", NAME)
    foreign = image.blobs[-1]
    assert fake.gets(f"/blobs/{foreign}") == 0
    assert layout.blob_data(foreign) not in store.keys_written()
    assert committed(store, image)


async def test_schema1_manifests_are_refused() -> None:
    fake, store = FakeUpstream(), recording()
    digest = fake.push(REPO, "old", json.dumps({"schemaVersion": 1,
                                                "mediaType": DOCKER_MANIFEST_V1_SIGNED}).encode())
    with pytest.raises(Exception, match="schema 1"):
        await copier(store, fake).copy_manifest(REPO, digest, NAME)
    assert [w.key for w in store.writes if not w.key.startswith(layout.CLAIMS_DIR)] == []


def test_stats_add_up_and_errors_unwrap_their_groups() -> None:
    total = CopyStats(images=1, blobs=2, bytes_downloaded=10, failures=["a"])
    total.add(CopyStats(images=2, blobs_present=3, bytes_present=5, failures=["b"]))
    assert total == CopyStats(images=3, blobs=2, blobs_present=3, bytes_downloaded=10,
                              bytes_present=5, failures=["a", "b"])
    nested = ExceptionGroup("outer", [ExceptionGroup("inner", [ValueError("the cause")])])
    assert describe_error(nested) == "the cause"
    assert describe_error(KeyError()) == "KeyError"
