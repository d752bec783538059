"""``regfront sync`` collects on ``gc.schedule`` (lifecycle/schedule.py): each primary at each
time the schedule names, a failed run logged and the next one on time, none without one."""

from __future__ import annotations

import asyncio

import pytest

from lifecycle.schedule import collect_forever
from registry.config import parse_config
from registry.gcstate import load_gc_report
from registry.store.errors import StoreUnreachable
from registry.store.memory import MemoryStore


class Broken(MemoryStore):
    async def children(self, prefix: str) -> list[str]:
        raise StoreUnreachable("refused")


async def test_each_primary_is_collected_at_each_scheduled_time() -> None:
    config = parse_config("gc: {schedule: {every: 1h}, settle: 0s}")
    good, broken = MemoryStore(), Broken()
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)
        if len(waits) == 3:
            raise asyncio.CancelledError  # the worker stops

    with pytest.raises(asyncio.CancelledError):
        await collect_forever(config, [broken, good], sleep=sleep)
    assert [round(w) for w in waits] == [3600, 3600, 3600]
    report = await load_gc_report(good)
    assert report is not None
    assert report.error is None  # the broken store failed first; this one ran all the same
    assert report.last_success is not None
    failed = await load_gc_report(broken)
    assert failed is not None
    assert failed.failures == 2  # two scheduled runs, both recorded for the metrics
    assert "refused" in (failed.error or "")


async def test_no_schedule_no_collection() -> None:
    async def never(seconds: float) -> None:
        raise AssertionError("slept")

    await collect_forever(parse_config(""), [MemoryStore()], sleep=never)
