"""A state object the gateway re-reads from the store in the background (sync's rule states,
GC's report), so its metrics come from the gateways alone and no request waits for the read."""

from __future__ import annotations

import asyncio
from abc import abstractmethod

from gateway.background import Background

REFRESH = 60.0


class StoreWatch(Background):
    """Calls ``refresh`` at start and every ``REFRESH`` seconds after, until stopped."""

    @abstractmethod
    async def refresh(self) -> None:
        """Re-read the state; a store failure keeps the last state read."""

    async def _step(self) -> None:
        await self.refresh()
        await asyncio.sleep(REFRESH)
