"""The background re-read shared by sync's and GC's metrics (gateway/storewatch.py): it reads
at start, keeps reading, and stop ends the loop."""

from __future__ import annotations

import asyncio

import pytest

import gateway.storewatch
from gateway.storewatch import StoreWatch


class Counting(StoreWatch):
    def __init__(self) -> None:
        super().__init__()
        self.reads = 0
        self.read = asyncio.Event()

    async def refresh(self) -> None:
        self.reads += 1
        if self.reads >= 3:
            self.read.set()


async def test_refreshes_until_stopped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(gateway.storewatch, "REFRESH", 0.0)
    watch = Counting()
    watch.start()
    await asyncio.wait_for(watch.read.wait(), 5)
    await watch.stop()
    reads = watch.reads
    await asyncio.sleep(0.01)
    assert watch.reads == reads  # stopped: no read after stop
