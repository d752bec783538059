"""The rule lease: one holder at a time by conditional writes, a deadline the holder counts by
its own monotonic clock from before each write, and a lost lease that every commit check sees."""

from __future__ import annotations

import asyncio
import json
import socket
import sys

import pytest

from registry import layout
from registry.store.memory import MemoryStore
from sync.lease import Lease, LeaseHeld, LeaseLost, holding
from tests.sync.conftest import ManualTime, RecordingStore, StoreDown, recording, until

TTL = 30.0
KEY = layout.sync_lease("app")


def lease(store: MemoryStore | RecordingStore, time: ManualTime, holder: str,
          skew: float = 0.0) -> Lease:
    return Lease(store, "app", TTL, holder=holder, clocks=time.clocks(skew))


async def body(store: MemoryStore | RecordingStore) -> dict[str, object]:
    value: dict[str, object] = json.loads(await store.get(KEY))
    return value


async def test_acquire_writes_holder_and_wall_expiry_and_a_second_worker_is_refused() -> None:
    store, time = MemoryStore(), ManualTime()
    first = lease(store, time, "one")
    await first.acquire()
    assert await body(store) == {"holder": "one", "expires": time.clocks().wall() + TTL}
    assert first.held
    assert first.remaining() == TTL
    with pytest.raises(LeaseHeld, match="being run by one"):
        await lease(store, time, "two").acquire()
    assert (await body(store))["holder"] == "one"


class SlowWrites(MemoryStore):
    """Each conditional write takes ``seconds`` of the manual clock."""

    def __init__(self, time: ManualTime, seconds: float) -> None:
        super().__init__()
        self.time, self.seconds = time, seconds

    async def create(self, key: str, data: bytes) -> str:
        self.time.advance(self.seconds)
        return await super().create(key, data)

    async def replace(self, key: str, data: bytes, version: str) -> str:
        self.time.advance(self.seconds)
        return await super().replace(key, data, version)


async def test_the_deadline_counts_from_before_the_write_that_took_or_renewed_it() -> None:
    time = ManualTime()
    store = SlowWrites(time, 4.0)
    held = lease(store, time, "one")
    await held.acquire()
    assert held.remaining() == TTL - 4.0  # the write's own time is not added to the lease
    time.advance(10)
    await held.renew()
    assert held.remaining() == TTL - 4.0


async def test_check_passes_with_the_margin_left_and_fails_inside_it() -> None:
    store, time = MemoryStore(), ManualTime()
    held = lease(store, time, "one")
    await held.acquire()
    time.advance(TTL - held.margin)
    held.check("tag x")  # exactly the margin left: still fine
    time.advance(0.5)
    with pytest.raises(LeaseLost, match=r"lease expiring \(7\.0s left, under the 7\.5s margin"
                       r".* stopped before committing tag x"):
        held.check("tag x")
    assert held.lost is not None
    assert not held.held
    time.advance(-TTL)  # a lease once lost stays lost, whatever the clock does after
    with pytest.raises(LeaseLost):
        held.check("tag y")


async def test_renewing_an_expired_lease_is_refused_without_a_write() -> None:
    store, time = recording(), ManualTime()
    held = lease(store, time, "one")
    await held.acquire()
    time.advance(TTL)
    with pytest.raises(LeaseLost, match="expired before it could be renewed"):
        await held.renew()
    assert [w.op for w in store.writes] == ["create"]
    assert held.lost == "lease expired before it could be renewed"


async def test_an_expired_lease_is_taken_over_and_its_old_holder_learns_on_renewal() -> None:
    store, time = MemoryStore(), ManualTime()
    old, new = lease(store, time, "one"), lease(store, time, "two", skew=TTL)
    await old.acquire()
    await new.acquire()  # by two's clock the lease has run out: it takes it over
    assert (await body(store))["holder"] == "two"
    old.check("tag x")  # one cannot know yet: its own deadline has not passed
    with pytest.raises(LeaseLost, match="taken over by another worker"):
        await old.renew()
    with pytest.raises(LeaseLost, match=r"taken over.*stopped before committing tag x"):
        old.check("tag x")
    await old.release()  # never clobbers the successor
    assert (await body(store))["holder"] == "two"


async def test_a_failed_renewal_leaves_the_deadline_where_it_was() -> None:
    store, time = recording(), ManualTime()
    held = lease(store, time, "one")
    await held.acquire()
    fault = store.fault("replace", lambda key: key == KEY, times=1)
    time.advance(10)
    with pytest.raises(StoreDown):
        await held.renew()
    assert fault.fired == 1
    assert held.held
    assert held.remaining() == TTL - 10
    await held.renew()  # the store is back
    assert held.remaining() == TTL


async def test_a_renewal_written_but_unanswered_is_recognised_as_ours() -> None:
    store, time = recording(), ManualTime()
    held = lease(store, time, "one")
    await held.acquire()
    fault = store.fault("replace", lambda key: key == KEY, "written", times=1)
    time.advance(10)
    with pytest.raises(StoreDown):
        await held.renew()
    assert fault.fired == 1  # the write went through, the answer did not
    time.advance(10)
    await held.renew()  # our version is stale, but the object still names us
    assert held.held
    assert held.remaining() == TTL
    assert (await body(store))["holder"] == "one"


async def test_release_lets_the_next_worker_in_at_once() -> None:
    store, time = MemoryStore(), ManualTime()
    first = lease(store, time, "one")
    await first.acquire()
    await first.release()
    assert not first.held
    second = lease(store, time, "two")
    await second.acquire()
    assert second.held
    assert (await body(store))["holder"] == "two"


async def test_a_holder_that_died_on_this_machine_is_taken_over_before_expiry() -> None:
    dead = await asyncio.create_subprocess_exec(sys.executable, "-c", "pass")
    await dead.wait()
    store, time = MemoryStore(), ManualTime()
    await lease(store, time, f"{socket.gethostname()}:{dead.pid}:x").acquire()
    alive = lease(store, time, f"{socket.gethostname()}:1:y")  # pid 1 always lives
    await alive.acquire()
    with pytest.raises(LeaseHeld):
        await lease(store, time, "elsewhere").acquire()


async def test_an_unreadable_lease_counts_as_expired() -> None:
    store, time = MemoryStore(), ManualTime()
    await store.put(KEY, b"not json")
    held = lease(store, time, "one")
    await held.acquire()
    assert (await body(store))["holder"] == "one"


async def test_holding_renews_every_third_of_the_ttl_and_releases_at_the_end() -> None:
    store, time = recording(), ManualTime()
    async with holding(lease(store, time, "one")) as held:
        for _ in range(4):
            await until(lambda: time.sleeping == 1, "the renewer to sleep")
            time.advance(TTL / 3)
            await until(lambda: held.remaining() == TTL, "the renewal")
        assert [w.op for w in store.writes] == ["create"] + ["replace"] * 4
    assert (await body(store))["expires"] == 0
    assert not held.held


async def test_holding_survives_one_failed_renewal_but_not_a_ttl_of_them() -> None:
    store, time = recording(), ManualTime()
    fault = store.fault("replace", lambda key: key == KEY)
    async with holding(lease(store, time, "one")) as held:
        await until(lambda: time.sleeping == 1, "the renewer to sleep")
        time.advance(TTL / 3)
        await until(lambda: fault.fired == 1, "a failed renewal")
        time.advance(TTL / 3)
        await until(lambda: fault.fired == 2, "a second failed renewal")
        held.check("tag x")  # a third of the TTL left: above the margin
        time.advance(TTL / 3)
        await until(lambda: held.lost is not None, "the renewer to give up")
        with pytest.raises(LeaseLost, match="expired"):
            held.check("tag x")
        assert time.sleeping == 0  # the renewer has stopped
    assert fault.fired == 2  # the expired lease was not written again, nor released
