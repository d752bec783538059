"""Merging pull batches into daily summaries (lifecycle/usage.py): only batches old enough,
nothing counted twice after a crash between the summary and the deletes, old days dropped, and
what retention reads is the same before and after."""

from __future__ import annotations

from lifecycle.inventory import Lister
from lifecycle.usage import MERGE_AFTER, compact
from registry import layout
from registry.store.memory import MemoryStore
from registry.usage import (
    Pull,
    PullKey,
    UsageBatch,
    UsageSummary,
    day_of,
    read_pulls,
)

NAME = "docker.io/library/app"
KEY = PullKey(NAME, "sha256:" + "b" * 64, "1")
NOW = 1_800_000_000.0  # 2027-01-15, 08:00 UTC


async def batch(store: MemoryStore, when: float, gateway: str, count: int) -> str:
    key = layout.usage_record(day_of(when), int(when), gateway)
    await store.put(key, UsageBatch(gateway, when - 60, when, {KEY: Pull(count, when)}).to_json())
    return key


async def test_old_batches_merge_into_the_days_summary_exactly_once() -> None:
    store = MemoryStore()
    old = [await batch(store, NOW - 3000, "gw-a", 2), await batch(store, NOW - 2000, "gw-b", 3)]
    recent = await batch(store, NOW - 60, "gw-a", 5)
    before = await read_pulls(store, NOW - 86400, NOW)
    assert before == {KEY: Pull(10, NOW - 60)}
    assert await compact(Lister(store, 4), NOW, 7 * 86400) == 2
    assert not any(key in store.objects for key in old)
    assert recent in store.objects  # younger than MERGE_AFTER: its gateway may still be writing
    summary = UsageSummary.from_json(store.objects[layout.usage_summary(day_of(NOW))])
    assert summary.merged == {"gw-a": int(NOW - 3000), "gw-b": int(NOW - 2000)}
    assert summary.pulls == {KEY: Pull(5, NOW - 2000)}
    assert await read_pulls(store, NOW - 86400, NOW) == before  # the same, read either way
    # A crash between the summary and the deletes leaves a batch it counts: merged again, it
    # is deleted, not counted twice.
    await batch(store, NOW - 3000, "gw-a", 2)
    assert await compact(Lister(store, 4), NOW + MERGE_AFTER, 7 * 86400) == 1  # (the recent)
    assert await read_pulls(store, NOW - 86400, NOW + MERGE_AFTER) == before
    assert [k for k in store.objects if k.startswith(layout.USAGE_ROOT)] == [
        layout.usage_summary(day_of(NOW))]


async def test_days_past_the_longest_window_are_dropped() -> None:
    store = MemoryStore()
    await batch(store, NOW - 10 * 86400, "gw", 1)
    await batch(store, NOW - 86400, "gw", 1)
    await compact(Lister(store, 4), NOW, 3 * 86400)
    days = await store.children(layout.USAGE_ROOT)
    assert days == [day_of(NOW - 86400)]
