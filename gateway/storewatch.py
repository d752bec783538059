"""A state object the gateway re-reads from the store in the background (sync's rule states,
GC's report), so its metrics come from the gateways alone and no request waits for the read."""

from __future__ import annotations

import asyncio
import contextlib
from abc import ABC, abstractmethod

REFRESH = 60.0


class StoreWatch(ABC):
    """Calls ``refresh`` at start and every ``REFRESH`` seconds after, until stopped."""

    def __init__(self) -> None:
        self._task: asyncio.Task[None] | None = None

    @abstractmethod
    async def refresh(self) -> None:
        """Re-read the state; a store failure keeps the last state read (the loop never ends)."""

    def start(self) -> None:
        async def loop() -> None:
            while True:
                await self.refresh()
                await asyncio.sleep(REFRESH)

        self._task = asyncio.get_running_loop().create_task(loop())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
