"""Garbage collection racing the writers, one random interleaving per seed (tests/lifecycle/
interleave.py: every store call is a step boundary), on a file store and on moto's S3.

Each seed: a bucket where a narrowed rule left garbage (old tags, their images, an orphan blob);
then, at once, the sync copier mirrors a new tag whose layers are that garbage's, a
pull-through-like fill commits a garbage image again under a new tag, a collection runs, and a
reader keeps pulling every image that is kept or committed. Every such pull must succeed, during
and after; the garbage no writer took back must be gone. With the writers' claims switched off
the same runs must break an image: the race is real, and the claims are what wins it.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from lifecycle.gc import Collector
from registry import layout, writer
from registry.claims import CLAIM_TTL, Claims, use_claims
from registry.config import Config, parse_config
from registry.digest import Digest
from registry.mirrorconfig import UpstreamConfig
from registry.store import ObjectStore
from registry.store.file import FileStore
from registry.store.s3 import S3Store
from registry.upstream.client import Upstream
from sync.copier import Copier
from tests.lifecycle.bucket import FakeTime, blob_exists, pull
from tests.lifecycle.interleave import Scheduler, SteppedStore
from tests.sync.conftest import UPSTREAM, FakeUpstream
from tests.sync.conftest import Image as UpstreamImage

REPOSITORY = "library/app"
NAME = f"docker.io/{REPOSITORY}"
SEEDS = {"file": 12, "s3": 3}


def gc_config(store_url: str) -> Config:
    return parse_config(yaml.safe_dump({
        "storage": [{"url": store_url}],
        "upstreams": {"docker.io": {"urls": [UPSTREAM]}},
        "mirror": [{"name": "app", "registry": "docker.io", "repositories": [REPOSITORY],
                    "tags": {"include": ["^k", "^pt$"]}, "retention": {"pulled_within": None}}],
        "gc": {"grace": "0s", "settle": "1s", "sweep_budget": "300s", "clock_skew": "1s",
               "retention": None}}))


def copier(store: ObjectStore, fake: FakeUpstream) -> Copier:
    upstream = Upstream("docker.io", UpstreamConfig(urls=[UPSTREAM], retries=0),
                        transport=fake.transport())
    return Copier(store, upstream, blob_slots=asyncio.Semaphore(4))


@dataclass
class World:
    fake: FakeUpstream
    images: dict[str, UpstreamImage]
    orphan: Digest


def world(rng: random.Random) -> World:
    fake = FakeUpstream()
    layers = [rng.randbytes(rng.randrange(100, 3000)) for _ in range(6)]
    images = {
        "k1": fake.image(REPOSITORY, "k1", [layers[0], layers[1]]),
        "k2": fake.image(REPOSITORY, "k2", [layers[0], layers[2]]),
        "old1": fake.image(REPOSITORY, "old1", [layers[3], layers[4]]),
        "old2": fake.image(REPOSITORY, "old2", [layers[3], layers[5]]),
    }
    # New upstream: k3 is old1's layers under another config (a new image made of garbage).
    images["k3"] = fake.image(REPOSITORY, "k3", [layers[3], layers[4]], architecture="arm64")
    return World(fake, images, Digest.from_bytes(rng.randbytes(64)))


@dataclass
class Outcome:
    failures: list[str] = field(default_factory=list)
    events: Counter[str] = field(default_factory=Counter)


async def one_run(inner: ObjectStore, seed: int, *, claims: bool = True) -> Outcome:
    rng = random.Random(seed)
    w = world(rng)
    scheduler = Scheduler(rng)
    outcome = Outcome()
    # Before: the bucket as a rule that mirrored every tag left it, and a stray blob.
    use_claims(inner, Claims(inner, scheduler.timing()))
    for tag in ("k1", "k2", "old1", "old2"):
        await copier(inner, w.fake).copy_tag(REPOSITORY, tag, NAME)
    await inner.put(layout.blob_data(w.orphan), b"stray")
    scheduler.now = CLAIM_TTL + 60  # the writes above are old now: their claims lapsed

    store = SteppedStore(inner, scheduler)
    writer_claims = use_claims(store, Claims(store, scheduler.timing()))
    if not claims:
        async def no_claim(subject: Any) -> None:
            return None

        writer_claims.claim = no_claim  # type: ignore[method-assign]
        writer_claims.ensure = lambda subjects: no_claim(None)  # type: ignore[method-assign]
    committed: dict[str, Digest] = {"k1": w.images["k1"].digest, "k2": w.images["k2"].digest}
    running = {"sync", "fill", "gc"}

    # Writers start at a random point of the collection's work (it makes ~100 calls).
    sync_at, fill_at = rng.randrange(150), rng.randrange(150)

    async def sync() -> None:
        try:
            await scheduler.until_step(sync_at)
            run = copier(store, w.fake)
            committed["k3"] = await run.copy_tag(REPOSITORY, "k3", NAME)
            await run.copy_tag(REPOSITORY, "k1", NAME)
        finally:
            running.discard("sync")

    async def fill() -> None:
        """Pull-through's order (gateway/pullthrough.py, pending.py): old2's image, pulled
        again under tag pt - its manifest committed first, then blob by blob, the tag last."""
        try:
            await scheduler.until_step(fill_at)
            image = w.images["old2"]
            await writer.put_manifest(store, NAME, image.manifest)
            for digest in image.blobs:
                data = w.fake.blobs[digest]

                async def chunks(data: bytes = data) -> AsyncIterator[bytes]:
                    yield data

                await writer.put_blob(store, digest, chunks())
                await writer.link_blob(store, NAME, digest)
            await writer.put_tag(store, NAME, "pt", image.digest)
            committed["pt"] = image.digest
        finally:
            running.discard("fill")

    async def collect() -> None:
        try:
            report, _ = await Collector(gc_config(inner.url), store, timing=scheduler.timing(),
                                        clocks=scheduler.clocks()).run()
            outcome.events["spared"] += report.spared
            outcome.events["deleted"] += sum(report.deleted.values())
        finally:
            running.discard("gc")

    async def read() -> None:
        while running:
            tag = rng.choice(sorted(committed))
            if (failed := await pull(store, NAME, tag)) is not None:
                outcome.failures.append(f"during, {tag}: {failed}")
            outcome.events["pulls"] += 1

    tasks = [asyncio.ensure_future(c) for c in (sync(), fill(), collect(), read())]
    try:
        await scheduler.run(lambda: all(t.done() for t in tasks))
    finally:
        for task in tasks:
            task.cancel()
        results = await asyncio.gather(*tasks, return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException) and not isinstance(result, asyncio.CancelledError):
            raise result
    outcome.events["waits"] += writer_claims.stats.waits
    # After: every image committed or kept is whole, and stays so through a collection once
    # the claims have lapsed, which takes the garbage nobody took back.
    for tag in sorted(committed):
        if (failed := await pull(inner, NAME, tag)) is not None:
            outcome.failures.append(f"after, {tag}: {failed}")
    if outcome.failures or not claims:
        return outcome
    later = FakeTime()
    later.now = scheduler.now + CLAIM_TTL + 60
    use_claims(inner, Claims(inner, later.timing()))
    report, _ = await Collector(gc_config(inner.url), inner, timing=later.timing()).run()
    assert report.error is None
    for tag in sorted(committed):
        if (failed := await pull(inner, NAME, tag)) is not None:
            outcome.failures.append(f"after a second collection, {tag}: {failed}")
    tags = await inner.children(layout.tags_dir(NAME))
    assert "old1" not in tags
    assert "old2" not in tags
    assert not await blob_exists(inner, w.orphan)
    return outcome


@pytest.fixture(params=sorted(SEEDS))
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, Any]]:
    """(kind, a factory of a fresh store per seed)."""
    if request.param == "file":
        counter = iter(range(1000))
        yield "file", lambda: FileStore(str(tmp_path / f"bucket-{next(counter)}"))
    else:
        moto = request.getfixturevalue("moto_s3")
        yield "s3", lambda: S3Store(moto.url(moto.new_bucket()))


async def test_no_interleaving_breaks_a_kept_or_committed_image(
        backend: tuple[str, Any]) -> None:
    kind, new_store = backend
    events: Counter[str] = Counter()
    for seed in range(SEEDS[kind]):
        store = new_store()
        try:
            outcome = await one_run(store, seed)
        finally:
            await store.close()
        assert outcome.failures == [], f"seed {seed}: {json.dumps(outcome.failures, indent=1)}"
        events += outcome.events
    # Not vacuous: collections deleted, readers pulled while they did, and the race the claims
    # exist for happened - a writer waited out an announcement, or a collection spared what a
    # writer claimed after marking.
    assert events["deleted"] > 0
    assert events["pulls"] >= 4 * SEEDS[kind]
    assert events["waits"] + events["spared"] > 0, dict(events)


async def test_without_claims_some_interleaving_breaks_an_image(tmp_path: Path) -> None:
    """The same runs, writers claiming nothing: the test above can fail."""
    broken = 0
    for seed in range(SEEDS["file"]):
        store = FileStore(str(tmp_path / f"bucket-{seed}"))
        broken += bool((await one_run(store, seed, claims=False)).failures)
    assert broken > 0
