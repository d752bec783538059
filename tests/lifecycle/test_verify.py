"""Scrub (lifecycle/verify.py): every kept image checked - manifests, blobs, links, and with
hashing every byte - damage reported, and repaired from the upstream through the sync copier
where a rule covers the repository."""

from __future__ import annotations

import asyncio

import yaml

from lifecycle.verify import CORRUPT, Verifier
from registry import layout
from registry.config import Config, parse_config
from registry.mirrorconfig import UpstreamConfig
from registry.store.memory import MemoryStore
from registry.upstream.client import Upstream
from sync.copier import Copier
from tests.lifecycle.bucket import Bucket, pull
from tests.sync.conftest import UPSTREAM, FakeUpstream

REPOSITORY = "library/app"
NAME = f"docker.io/{REPOSITORY}"


def config(platforms: list[str] | None = None) -> Config:
    return parse_config(yaml.safe_dump({
        "upstreams": {"docker.io": {"urls": [UPSTREAM], "retries": 0}},
        "mirror": [{"name": "app", "registry": "docker.io", "repositories": [REPOSITORY],
                    "platforms": platforms, "retention": {"pulled_within": None}}],
        "gc": {"retention": None}}))


async def mirrored(fake: FakeUpstream, store: MemoryStore, *tags: str,
                   platforms: list[str] | None = None) -> None:
    upstream = Upstream("docker.io", UpstreamConfig(urls=[UPSTREAM], retries=0),
                        transport=fake.transport())
    copier = Copier(store, upstream, blob_slots=asyncio.Semaphore(4), platforms=platforms)
    for tag in tags:
        await copier.copy_tag(REPOSITORY, tag, NAME)


async def test_damage_is_found_and_repaired_from_the_upstream() -> None:
    fake, store = FakeUpstream(), MemoryStore()
    one = fake.image(REPOSITORY, "1", [b"layer one" * 50, b"shared" * 50])
    two = fake.image(REPOSITORY, "2", [b"layer two" * 50, b"shared" * 50])
    await mirrored(fake, store, "1", "2")
    missing, corrupt = one.blobs[1], two.blobs[1]
    await store.delete(layout.blob_data(missing))
    await store.put(layout.blob_data(corrupt), b"not what it was")
    await store.delete(layout.layer_link(NAME, two.blobs[2]))  # the shared layer's link in 2
    report = await Verifier(config(), store, hash_blobs=True, transport=fake.transport()).run()
    assert report.images == 2
    damaged = {d.reference: d for d in report.damage}
    assert set(damaged) == {"1", "2"}
    assert f"blob {missing}: missing" in damaged["1"].problems
    assert f"blob {corrupt}: {CORRUPT}" in damaged["2"].problems
    assert f"blob {two.blobs[2]}: no layer link in {NAME}" in damaged["2"].problems
    assert all(d.repaired for d in report.damage), [d.error for d in report.damage]
    for tag in ("1", "2"):
        assert await pull(store, NAME, tag) is None
    again = await Verifier(config(), store, hash_blobs=True).run()
    assert again.damage == []
    assert again.bytes_hashed > 0


async def test_without_hashing_a_corrupt_blob_passes_and_a_dry_run_repairs_nothing() -> None:
    fake, store = FakeUpstream(), MemoryStore()
    image = fake.image(REPOSITORY, "1", [b"layer" * 50])
    await mirrored(fake, store, "1")
    await store.put(layout.blob_data(image.blobs[1]), b"rotten")
    assert (await Verifier(config(), store).run()).damage == []
    before = dict(store.objects)
    report = await Verifier(config(), store, hash_blobs=True, repair=False).run()
    assert [d.repaired for d in report.damage] == [False]
    assert report.unrepaired
    assert store.objects == before


async def test_an_index_needs_only_the_platforms_its_rule_copies() -> None:
    fake, store = FakeUpstream(), MemoryStore()
    children = {"linux/amd64": fake.image(REPOSITORY, None, [b"amd" * 40]),
                "linux/arm64": fake.image(REPOSITORY, None, [b"arm" * 40], architecture="arm64")}
    fake.index(REPOSITORY, "multi", children)
    await mirrored(fake, store, "multi", platforms=["linux/amd64"])
    cfg = config(["linux/amd64"])
    assert (await Verifier(cfg, store).run()).damage == []
    await store.delete(layout.revision_link(NAME, children["linux/amd64"].digest))
    [damage] = (await Verifier(cfg, store, transport=fake.transport()).run()).damage
    assert damage.repaired
    assert await pull(store, NAME, children["linux/amd64"].digest) is None


async def test_a_repository_no_rule_covers_is_reported_not_repaired() -> None:
    store = MemoryStore()
    image = await Bucket(store).image("imported/tool", tag="1")
    await store.delete(layout.blob_data(image.blobs[-1]))
    [damage] = (await Verifier(config(), store).run()).damage
    assert damage.name == "imported/tool"
    assert not damage.repaired
    assert "no mirror rule" in (damage.error or "")
