"""Several primaries (sync/targets.py): each upstream blob and manifest crosses from the
upstream once, whatever the number of primaries; one primary failing mid-run (a store fault, a
hang) leaves the others complete, and the next run completes it from them with nothing
downloaded again; the lease lives in the first primary, each primary keeps its own state and
miss queue. Upstream egress is counted by the in-process upstream itself (the blob bytes the
client read), not by the worker's own stats."""

from __future__ import annotations

import io
import json
import random
import time

import pytest

from registry import layout
from registry.config import parse_config
from registry.digest import Digest
from registry.syncstate import load_state
from sync.lease import Lease
from sync.report import JsonEvents
from sync.targets import Targets
from sync.worker import Events, RuleResult, Syncer, exit_status
from tests.sync.conftest import (
    UPSTREAM,
    FakeUpstream,
    Image,
    ManualTime,
    RecordingStore,
    StoreDown,
    recording,
)

NAME = "docker.io/library/app"
REPO = "library/app"
CLOUDS = ("aws", "gcp", "azure")
LEASE = layout.sync_lease("app")


def config(tags: str = "{exclude: [alpine]}", stall: str = "30s") -> str:
    return f"""
upstreams:
  docker.io: {{urls: ["{UPSTREAM}"], retries: 0}}
mirror:
  - {{name: app, registry: docker.io, repositories: [{REPO}], tags: {tags}}}
sync: {{lease_ttl: 30s, target_stall: {stall}}}
"""


def world(fake: FakeUpstream) -> dict[str, Image]:
    """Three tags sharing a base layer, each with a layer of its own (two chunks each)."""
    rng = random.Random(7)
    base = rng.randbytes(48 * 1024)
    return {tag: fake.image(REPO, tag, [base, rng.randbytes(16 * 1024 * int(tag))])
            for tag in ("1", "2", "3")}


def primaries(count: int = 3) -> list[RecordingStore]:
    return [recording(f"memory://{cloud}") for cloud in CLOUDS[:count]]


async def run(fake: FakeUpstream, stores: list[RecordingStore], text: str | None = None,
              events: Events | None = None) -> RuleResult:
    sync = Syncer(parse_config(text or config()), stores=stores, transport=fake.transport(),
                  clocks=ManualTime().clocks(), events=events or Events())
    try:
        (result,) = await sync.run_once(sync.rules())
    finally:
        await sync.aclose()
    return result


def tags(store: RecordingStore) -> list[str]:
    prefix = layout.tags_dir(NAME)
    return sorted({key[len(prefix):].split("/")[0] for key in store.memory.objects
                   if key.startswith(prefix) and key.endswith("/current/link")})


def blobs_of(images: dict[str, Image]) -> set[Digest]:
    return {blob for image in images.values() for blob in image.blobs}


def size_of(fake: FakeUpstream, blobs: set[Digest]) -> int:
    return sum(len(fake.blobs[blob]) for blob in blobs)


def manifest_gets(fake: FakeUpstream) -> int:
    return sum(1 for method, path in fake.requests if method == "GET" and "/manifests/" in path)


async def test_each_blob_crosses_from_the_upstream_once_for_one_two_or_three_primaries() -> None:
    egress: dict[int, int] = {}
    for count in (1, 2, 3):
        fake, stores = FakeUpstream(), primaries(count)
        images = world(fake)
        result = await run(fake, stores)
        assert result.stats.failures == []
        egress[count] = fake.blob_bytes_sent
        expected = size_of(fake, blobs_of(images))
        assert egress[count] == expected  # each distinct blob once, whatever ``count``
        assert manifest_gets(fake) == len(images)  # each manifest GET once, for every target
        assert result.stats.bytes_downloaded == expected
        for store in stores:
            assert tags(store) == ["1", "2", "3"]
            for blob in blobs_of(images):
                assert store.memory.objects[layout.blob_data(blob)] == fake.blobs[blob]
            mine = result.targets[store.url]
            assert (mine.images, mine.bytes_written, mine.bytes_refilled) == (3, expected, 0)
    assert egress[1] == egress[2] == egress[3]


async def test_a_primary_failing_mid_run_leaves_the_others_complete_and_is_refilled() -> None:
    fake, stores = FakeUpstream(), primaries()
    aws, gcp, azure = stores
    images = world(fake)
    own = images["2"].blobs[-1]  # the layer only tag 2 has
    fault = gcp.fault("put_stream", lambda key: key == layout.blob_data(own))
    stream = io.StringIO()
    result = await run(fake, stores, events=JsonEvents(stream))
    assert fault.fired == 1
    assert tags(aws) == tags(azure) == ["1", "2", "3"]
    assert "2" not in tags(gcp)  # out of the run from the failure on
    assert layout.blob_data(own) not in gcp.memory.objects
    assert exit_status([result]) == 1
    assert result.stats.failures == [
        f"memory://gcp: blob {own}: StoreDown: injected: put_stream {layout.blob_data(own)}"]
    assert fake.blob_bytes_sent == size_of(fake, blobs_of(images))  # still once
    # What the run said, per primary: the image events, and each primary's own state.
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    (image,) = [line for line in lines if line["event"] == "image" and line["image"].endswith(":2")]
    assert image["targets"]["memory://aws"] is None
    assert image["targets"]["memory://gcp"].startswith(f"blob {own}: StoreDown")
    assert image["error"].startswith("not in memory://gcp: blob")
    (rule,) = [line for line in lines if line["event"] == "rule"]
    assert rule["images_failed"] >= 1
    assert rule["targets"]["memory://aws"]["images"] == 3
    assert rule["targets"]["memory://gcp"]["failures"][0].startswith(f"blob {own}")
    for store in stores:
        state = await load_state(store, "app")
        assert state.target == store.url
        assert state.targets["memory://gcp"] is not None
        assert (state.last_error is None) == (store is not gcp)

    missing = {blob for blob in blobs_of(images)
               if layout.blob_data(blob) not in gcp.memory.objects}
    assert own in missing
    gcp.faults.clear()
    fake.blob_bytes_sent, fake.requests = 0, []
    again = await run(fake, stores)
    assert again.stats.failures == []
    assert tags(gcp) == ["1", "2", "3"]
    assert fake.blob_bytes_sent == 0  # every byte gcp lacked came from aws or azure
    assert manifest_gets(fake) == 0  # and every manifest: only tag HEADs went upstream
    assert again.targets["memory://gcp"].bytes_refilled == size_of(fake, missing)
    assert again.stats.bytes_refilled == size_of(fake, missing)
    assert again.targets["memory://aws"].images_current == 3
    assert (await load_state(gcp, "app")).last_error is None


async def test_a_hung_primary_is_cut_after_the_stall_and_the_others_complete() -> None:
    fake, stores = FakeUpstream(), primaries()
    aws, gcp, azure = stores
    images = world(fake)
    hung = gcp.fault("put_stream", lambda key: key.startswith(layout.blob_data(
        images["1"].blobs[-1])), "hang")
    started = time.monotonic()
    result = await run(fake, stores, config(stall="200ms"))
    assert hung.fired == 1
    assert time.monotonic() - started < 10  # the stall, not forever
    assert tags(aws) == tags(azure) == ["1", "2", "3"]
    assert "1" not in tags(gcp)
    assert result.targets["memory://gcp"].failures[0].startswith(
        f"blob {images['1'].blobs[-1]}: TargetStalled: took no bytes for 0.2s")
    assert fake.blob_bytes_sent == size_of(fake, blobs_of(images))


async def test_one_lease_in_the_first_primary_and_state_in_each() -> None:
    fake, stores = FakeUpstream(), primaries()
    world(fake)
    await run(fake, stores)
    aws, gcp, azure = stores
    assert LEASE in aws.keys_written()
    assert all(LEASE not in store.keys_written() for store in (gcp, azure))
    for store in stores:
        state = await load_state(store, "app")
        assert state.target == store.url
        assert state.targets == dict.fromkeys(("memory://aws", "memory://gcp",
                                               "memory://azure"))
        assert state.last_counts["images"] == 3

    # A worker holding the first primary's lease holds the rule, whatever the others say.
    clock = ManualTime()
    await Lease(aws.inner, "app", 30.0, holder="other:1:x", clocks=clock.clocks()).acquire()
    fake.requests = []
    skipped = await run(fake, stores)
    assert skipped.skipped is not None
    assert fake.requests == []


async def test_a_miss_queued_in_one_primary_is_copied_to_every_one_and_cleared_there() -> None:
    fake, stores = FakeUpstream(), primaries()
    world(fake)
    untagged = fake.image(REPO, None, [b"queued by a gateway in gcp"])
    gcp = stores[1]
    await gcp.put(layout.miss(NAME, untagged.digest), b"{}")
    result = await run(fake, stores)
    assert result.stats.failures == []
    for store in stores:
        assert layout.revision_link(NAME, untagged.digest) in store.memory.objects
    assert layout.miss(NAME, untagged.digest) not in gcp.memory.objects


async def test_a_dry_run_counts_what_would_be_refilled_and_writes_nothing() -> None:
    fake, stores = FakeUpstream(), primaries(2)
    images = world(fake)
    await run(fake, stores[:1])  # aws has everything, gcp nothing
    fake.blob_bytes_sent = 0
    for store in stores:
        store.writes.clear()
    sync = Syncer(parse_config(config()), stores=stores, transport=fake.transport(),
                  clocks=ManualTime().clocks(), dry_run=True)
    try:
        (result,) = await sync.run_once(sync.rules())
    finally:
        await sync.aclose()
    assert [store.writes for store in stores] == [[], []]
    assert fake.blob_bytes_sent == 0
    assert result.stats.bytes_downloaded == 0
    assert result.stats.bytes_refilled == size_of(fake, blobs_of(images))
    assert result.targets["memory://gcp"].images == 3


def test_the_last_primary_in_the_run_is_never_taken_out() -> None:
    """A failure there fails the image only, as with a single primary; a failure that is no
    store's (a lost lease, a bug) is nobody's."""
    targets = Targets([recording("memory://a"), recording("memory://b")])
    first, last = targets
    with targets.failing(first, "blob x"):
        raise StoreDown("boom")
    assert first.down == "blob x: StoreDown: boom"
    with pytest.raises(StoreDown), targets.failing(last, "blob y"):
        raise StoreDown("again")
    assert last.live
    with pytest.raises(KeyError), targets.failing(last, "blob z"):
        raise KeyError("a bug")
    assert last.live
