"""A gateway worker's background loops (sync's and GC's state re-read, pull records written):
one step repeated in a task from ``start`` (the app's lifespan) until ``stop``."""

from __future__ import annotations

import asyncio
import contextlib
from abc import ABC, abstractmethod


class Background(ABC):
    """Repeats ``_step`` in a background task from ``start`` until ``stop``."""

    def __init__(self) -> None:
        self._task: asyncio.Task[None] | None = None

    @abstractmethod
    async def _step(self) -> None:
        """One round, its wait included; an expected failure is handled inside (the loop
        never ends but by ``stop``)."""

    def start(self) -> None:
        async def loop() -> None:
            while True:
                await self._step()

        self._task = asyncio.get_running_loop().create_task(loop())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
