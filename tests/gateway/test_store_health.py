"""The StoreSet's rules with a fake clock and scripted stores: when a store is skipped, when it
is asked anyway, how long a lookup keeps trying, and what a bug does. No test sleeps."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from gateway.metrics import GatewayMetrics
from gateway.resolve import Resolver
from gateway.stores import StorePolicy, StoreSet
from registry.config import GatewayConfig
from registry.store import NotFound, ObjectStore
from registry.store.errors import (
    StoreAccessDenied,
    StoreError,
    StoreServerError,
    StoreThrottled,
    StoreTimeout,
    StoreUnreachable,
)
from registry.store.memory import MemoryStore

POLICY = StorePolicy(timeout=2.0, deadline=20.0, backoff=5.0, failures=3)
Answer = bytes | BaseException


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += seconds


class Scripted(MemoryStore):
    """``get`` answers from a script (bytes, or an exception to raise), each after ``cost``
    seconds of the fake clock (cut short at the attempt's limit, as a real call is); the last
    entry repeats."""

    def __init__(self, name: str, clock: Clock, *script: Answer, cost: float = 0.0) -> None:
        super().__init__()
        self.url = f"memory://{name}"
        self.clock, self.script, self.cost = clock, list(script), cost
        self.calls = 0
        self.limits: list[float | None] = []

    async def get(self, key: str) -> bytes:
        self.calls += 1
        limit = self.limits[-1] if self.limits else None
        if limit is not None and self.cost > limit:
            self.clock.now += limit
            raise StoreTimeout("cut short")
        self.clock.now += self.cost
        answer = self.script.pop(0) if len(self.script) > 1 else self.script[0]
        if isinstance(answer, BaseException):
            raise answer
        return answer


class Recording(StoreSet):
    """Remembers each attempt's time limit."""

    limits: list[float | None]

    async def _attempt(self, entry: Any, call: Any, operation: str, limit: float | None) -> Any:
        self.limits.append(limit)
        return await super()._attempt(entry, call, operation, limit)


def _set(clock: Clock, *stores: ObjectStore, policy: StorePolicy = POLICY) -> Recording:
    stores_set = Recording(list(stores), policy, metrics=GatewayMetrics(), clock=clock,
                           sleep=clock.sleep)
    stores_set.limits = []
    for store in stores:
        if isinstance(store, Scripted):
            store.limits = stores_set.limits
    return stores_set


async def _get(stores: StoreSet) -> bytes:
    return (await stores.first(lambda s: s.get("k"), "k"))[1]


async def test_one_timeout_on_the_only_store_is_retried_and_does_not_mark_it_down() -> None:
    clock = Clock()
    only = Scripted("only", clock, StoreTimeout("slow"), b"ok")
    stores = _set(clock, only)
    assert await _get(stores) == b"ok"
    assert only.calls == 2
    assert stores.limits == [2.0, 4.0]  # the retry waits twice as long
    assert not stores.entries[0].down


@pytest.mark.parametrize(("failure", "tolerated"), [
    (StoreUnreachable("refused"), 2), (StoreServerError("500"), 2),
    (StoreTimeout("slow"), 5), (StoreThrottled("SlowDown"), 5)])
async def test_a_store_is_marked_down_after_failures_in_a_row(failure: StoreError,
                                                              tolerated: int) -> None:
    """Hard failures: store_failures (3) in a row; timeouts and throttles: twice as many."""
    clock = Clock()
    stores = _set(clock, Scripted("s", clock, failure))
    entry = stores.entries[0]
    for _ in range(tolerated):
        stores._failed(entry, failure, failure)
    assert not entry.down
    stores._failed(entry, failure, failure)
    assert entry.down
    assert entry.retry_at == clock.now + POLICY.backoff


async def test_an_answer_resets_the_count() -> None:
    clock = Clock()
    stores = _set(clock, Scripted("s", clock, b"ok"))
    entry = stores.entries[0]
    for _ in range(5):
        stores._failed(entry, StoreTimeout("slow"), StoreTimeout("slow"))
    assert await _get(stores) == b"ok"
    assert (entry.failures, entry.strikes, entry.down) == (0, 0, False)


async def test_a_store_another_answered_for_is_skipped_at_once_and_probed_after_backoff() -> None:
    clock = Clock()
    replica = Scripted("replica", clock, StoreTimeout("hung"), b"replica")
    primary = Scripted("primary", clock, b"primary")
    stores = _set(clock, replica, primary)
    assert await _get(stores) == b"primary"
    assert stores.entries[0].down  # one failure: the primary stood in, skipping is free
    assert await _get(stores) == b"primary"
    assert replica.calls == 1  # skipped during its back-off
    clock.now += POLICY.backoff
    assert await _get(stores) == b"replica"  # probed first again, and answers
    assert not stores.entries[0].down


async def test_a_store_down_is_asked_anyway_when_no_other_store_answers() -> None:
    clock = Clock()
    replica = Scripted("replica", clock, StoreUnreachable("refused"), b"replica")
    primary = Scripted("primary", clock, b"primary", StoreUnreachable("refused"))
    stores = _set(clock, replica, primary)
    assert await _get(stores) == b"primary"
    assert stores.entries[0].down
    assert await _get(stores) == b"replica"  # the primary failed: the replica, though down
    assert (replica.calls, primary.calls) == (2, 2)


async def test_a_store_down_is_not_asked_when_another_said_not_found() -> None:
    clock = Clock()
    replica = Scripted("replica", clock, StoreUnreachable("refused"), b"replica")
    primary = Scripted("primary", clock, b"primary", NotFound("k"))
    stores = _set(clock, replica, primary)
    await _get(stores)
    with pytest.raises(NotFound):
        await _get(stores)
    assert replica.calls == 1


async def test_the_only_store_marked_down_is_still_asked_first_thing() -> None:
    clock = Clock()
    only = Scripted("only", clock, *[StoreUnreachable("refused")] * 3, b"ok")
    stores = _set(clock, only)
    for _ in range(3):
        stores._failed(stores.entries[0], StoreUnreachable("x"), StoreUnreachable("x"))
    assert stores.entries[0].down
    assert await _get(stores) == b"ok"  # not a fast 503: tried, retried, answered
    assert not stores.entries[0].down


async def test_a_lookup_retries_until_its_deadline_then_raises_the_last_failure() -> None:
    clock = Clock()
    only = Scripted("only", clock, StoreThrottled("SlowDown"), cost=1.0)
    stores = _set(clock, only)
    started = clock.now
    with pytest.raises(StoreThrottled):
        await _get(stores)
    assert POLICY.deadline - 2 < clock.now - started <= POLICY.deadline
    assert only.calls > 5  # fast failures: asked again and again, with pauses between
    assert all(limit is not None and limit <= POLICY.deadline for limit in stores.limits)


async def test_a_hung_store_gets_growing_attempts_within_the_deadline() -> None:
    clock = Clock()

    class Hung(MemoryStore):
        async def get(self, key: str) -> bytes:
            clock.now += stores.limits[-1] or 0.0  # no answer until the attempt gives up
            raise StoreTimeout("hung")

    stores = _set(clock, Hung())
    started = clock.now
    with pytest.raises(StoreTimeout):
        await _get(stores)
    assert stores.limits[:3] == [2.0, 4.0, 8.0]
    assert len(stores.limits) == 4  # 2 + 4 + 8 s, then what is left of the 20
    assert clock.now - started <= POLICY.deadline


async def test_a_failure_no_retry_mends_is_raised_at_once() -> None:
    clock = Clock()
    only = Scripted("only", clock, StoreAccessDenied("403"), b"never")
    stores = _set(clock, only)
    with pytest.raises(StoreAccessDenied):
        await _get(stores)
    assert only.calls == 1


async def test_a_write_that_cannot_be_replayed_gets_one_round() -> None:
    clock = Clock()
    only = Scripted("only", clock, StoreServerError("500"), b"ok")
    stores = _set(clock, only)
    with pytest.raises(StoreServerError):
        await stores.first(lambda s: s.get("k"), "k", retry=False, bounded=False)
    assert stores.limits == [None]


async def test_concurrent_failures_do_not_stretch_the_backoff() -> None:
    clock = Clock()
    stores = _set(clock, Scripted("s", clock, b"x"))
    entry = stores.entries[0]
    for _ in range(20):
        stores._failed(entry, StoreUnreachable("x"), StoreUnreachable("x"))
    assert entry.retry_at == clock.now + POLICY.backoff
    clock.now = entry.retry_at  # the probe fails: twice as long
    stores._failed(entry, StoreUnreachable("x"), StoreUnreachable("x"))
    assert entry.retry_at == clock.now + 2 * POLICY.backoff


async def test_ready_unless_every_store_is_down_for_hard_failures() -> None:
    clock = Clock()
    stores = _set(clock, Scripted("a", clock, b""), Scripted("b", clock, b""))
    a, b = stores.entries
    for _ in range(6):
        stores._failed(a, StoreTimeout("slow"), StoreTimeout("slow"))
    for _ in range(3):
        stores._failed(b, StoreUnreachable("x"), StoreUnreachable("x"))
    assert a.down
    assert b.down
    assert stores.ready  # a is slow, not gone: reads wait for it
    for _ in range(3):
        stores._failed(a, StoreUnreachable("x"), StoreUnreachable("x"))
    assert not stores.ready


async def test_a_bug_is_not_a_store_failure() -> None:
    clock = Clock()
    only = Scripted("only", clock, KeyError("a bug"))
    stores = _set(clock, only)
    with pytest.raises(KeyError):
        await _get(stores)
    assert only.calls == 1
    assert stores.entries[0].failures == 0
    assert stores.metrics.store_calls[("memory://only", "read", "bug")] == 1


async def test_an_oserror_from_a_store_that_did_not_say_is_classified() -> None:
    clock = Clock()
    only = Scripted("only", clock, ConnectionRefusedError(111, "refused"), b"ok")
    stores = _set(clock, only)
    assert await _get(stores) == b"ok"
    assert stores.metrics.store_calls[("memory://only", "read", "unreachable")] == 1


async def test_a_late_joiner_of_a_failed_lookup_tries_again_within_its_own_deadline() -> None:
    """One failure is not handed to every node that happened to be waiting for the same key."""
    clock = Clock()
    stores = _set(clock, MemoryStore())
    resolver = Resolver(stores, GatewayConfig(), stores.metrics)
    release = asyncio.Event()
    loads = 0

    async def load() -> str:
        nonlocal loads
        loads += 1
        if loads == 1:
            await release.wait()
            raise StoreTimeout("the first lookup ran out of time")
        return "answer"

    early = asyncio.ensure_future(resolver._shared("key", load))
    await asyncio.sleep(0)
    clock.now += POLICY.deadline - 5  # a node asks when the lookup has 5 s left
    late = asyncio.ensure_future(resolver._shared("key", load))
    await asyncio.sleep(0)
    clock.now += 5
    release.set()
    with pytest.raises(StoreTimeout):
        await early  # its whole deadline is spent
    assert await late == "answer"
    assert loads == 2



def test_the_policy_comes_from_the_config_and_the_deadline_covers_a_first_attempt() -> None:
    assert StorePolicy.of(GatewayConfig()) == StorePolicy(timeout=2.0, deadline=20.0,
                                                          backoff=5.0, failures=3)
    with pytest.raises(ValueError, match="store_deadline is shorter than store_timeout"):
        GatewayConfig(store_timeout=5.0, store_deadline=2.0)
