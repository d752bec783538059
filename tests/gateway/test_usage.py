"""The pull recorder (gateway/usage.py): counts in memory, one batch per interval (or when
full), in order, bounded when the store fails, and nothing lost on a graceful stop."""

from __future__ import annotations

import asyncio

import httpx

from gateway.app import create_app
from gateway.usage import UsageRecorder
from registry import layout
from registry.config import Config, GatewayConfig
from registry.store.errors import StoreUnreachable
from registry.store.memory import MemoryStore
from registry.usage import Pull, PullKey, UsageBatch, day_of
from tests.gateway.conftest import DEMO, Seeded

NAME = "docker.io/library/app"
DIGEST = "sha256:" + "a" * 64
NOW = 1_800_000_000.0


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> float:
        return self.now


class Flaky(MemoryStore):
    """A memory store whose puts fail while ``down``; ``failed`` counts them (it fired)."""

    def __init__(self) -> None:
        super().__init__()
        self.down = False
        self.failed = 0

    async def put(self, key: str, data: bytes) -> None:
        if self.down:
            self.failed += 1
            raise StoreUnreachable("connection refused")
        await super().put(key, data)


def batches(store: MemoryStore) -> list[tuple[str, UsageBatch]]:
    return sorted((key, UsageBatch.from_json(data)) for key, data in store.objects.items()
                  if key.startswith(layout.USAGE_ROOT))


async def test_pulls_are_counted_in_memory_and_written_as_one_batch() -> None:
    store, clock = MemoryStore(), Clock()
    recorder = UsageRecorder(store, interval=60, max_entries=100, gateway="gw-1", clock=clock)
    for n in range(5):
        clock.now = NOW + n
        recorder.record(NAME, DIGEST, "1.27")
    recorder.record(NAME, DIGEST, None)  # by digest: another entry
    assert store.objects == {}  # no write per request
    clock.now = NOW + 60
    await recorder.flush()
    [(key, batch)] = batches(store)
    assert key == layout.usage_record(day_of(NOW + 60), int(NOW + 60), "gw-1")
    assert batch.pulls == {PullKey(NAME, DIGEST, "1.27"): Pull(5, NOW + 4),
                           PullKey(NAME, DIGEST, None): Pull(1, NOW + 4)}
    assert (batch.started, batch.ended, batch.gateway) == (NOW, NOW + 60, "gw-1")
    await recorder.flush()  # nothing new: nothing written
    assert len(batches(store)) == 1


class Signalling(MemoryStore):
    """Sets ``wrote`` at each put."""

    def __init__(self) -> None:
        super().__init__()
        self.wrote = asyncio.Event()

    async def put(self, key: str, data: bytes) -> None:
        await super().put(key, data)
        self.wrote.set()


async def test_a_full_batch_is_written_before_the_interval_and_keys_never_collide() -> None:
    store, clock = Signalling(), Clock()
    recorder = UsageRecorder(store, interval=3600, max_entries=3, gateway="gw", clock=clock)
    recorder.start()
    try:
        for n in range(7):
            recorder.record(NAME, DIGEST, f"t{n}")
            if n in (2, 5):  # full: written now, not in an hour
                await asyncio.wait_for(store.wrote.wait(), 5)
                store.wrote.clear()
    finally:
        await recorder.stop()
    written = batches(store)
    assert len({key for key, _ in written}) == len(written) == 3  # same second, three keys
    assert sum(len(b.pulls) for _, b in written) == 7


async def test_a_failing_store_keeps_one_batch_and_counts_what_does_not_fit() -> None:
    store, clock = Flaky(), Clock()
    recorder = UsageRecorder(store, interval=60, max_entries=2, gateway="gw", clock=clock)
    store.down = True
    recorder.record(NAME, DIGEST, "a")
    recorder.record(NAME, DIGEST, "b")
    await recorder.flush()  # fails: kept pending
    recorder.record(NAME, DIGEST, "c")
    recorder.record(NAME, DIGEST, "d")
    await recorder.flush()  # the pending batch fails again: the new one keeps filling
    recorder.record(NAME, DIGEST, "e")  # no room anywhere
    assert store.failed == 2
    assert recorder.dropped == 1
    assert len(recorder._pulls) <= 2  # bounded: this batch, and the pending one
    store.down = False
    await recorder.flush()
    written = batches(store)
    assert [sorted(k.tag or "" for k in b.pulls) for _, b in written] == [["a", "b"], ["c", "d"]]
    assert written[-1][1].dropped == 1  # said, in the batch that was missing it


async def test_stop_writes_what_is_left() -> None:
    store = MemoryStore()
    recorder = UsageRecorder(store, interval=3600, max_entries=10, gateway="gw")
    recorder.start()
    recorder.record(NAME, DIGEST, "1")
    await recorder.stop()
    assert len(batches(store)) == 1


async def test_the_gateway_records_each_manifest_served_with_the_tag_asked_for(
        seeded: Seeded) -> None:
    app = create_app(Config(gateway=GatewayConfig(usage_interval=60)), [seeded.store])
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://gateway") as client:
        digest = seeded.single["digest"]
        assert (await client.head("/v2/library/demo/manifests/single?ns=docker.io")
                ).status_code == 200
        assert (await client.get(f"/v2/library/demo/manifests/{digest}?ns=docker.io")
                ).status_code == 200
        assert (await client.get(f"/v2/library/demo/manifests/{digest}?ns=docker.io")
                ).status_code == 200
        assert (await client.get("/v2/library/demo/manifests/nothere?ns=docker.io")
                ).status_code == 404
        blob = seeded.manifest(seeded.single)["layers"][0]["digest"]
        assert (await client.get(f"/v2/library/demo/blobs/{blob}?ns=docker.io")
                ).status_code == 200
        reads = seeded.store.reads
    assert app.usage is not None
    await app.usage.flush()
    assert seeded.store.reads == reads  # recording reads nothing
    [(_, batch)] = batches(seeded.store.inner)  # type: ignore[arg-type]
    assert {k: p.count for k, p in batch.pulls.items()} == {
        PullKey(DEMO, digest, "single"): 1, PullKey(DEMO, digest, None): 2}


async def test_no_entries_no_recorder(seeded: Seeded) -> None:
    assert create_app(Config(gateway=GatewayConfig(usage_entries=0)), [seeded.store]).usage is None
