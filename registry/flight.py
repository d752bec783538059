"""Concurrent misses for one key share one store call."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable
from typing import Any, TypeVar

T = TypeVar("T")


class SingleFlight:
    """``do(key, load)`` runs ``load`` once per key at a time; every caller gets its result.

    The load runs as its own task, so a caller that goes away (a client disconnect cancels
    its request) neither cancels the others' wait nor leaves the key stuck.
    """

    def __init__(self) -> None:
        self._tasks: dict[Hashable, asyncio.Task[Any]] = {}

    async def do(self, key: Hashable, load: Callable[[], Awaitable[T]]) -> T:
        task = self._tasks.get(key)
        if task is None:
            task = asyncio.ensure_future(load())
            self._tasks[key] = task
            task.add_done_callback(lambda done: self._finish(key, done))
        result: T = await asyncio.shield(task)
        return result

    def _finish(self, key: Hashable, task: asyncio.Task[Any]) -> None:
        self._tasks.pop(key, None)
        if not task.cancelled():
            task.exception()  # mark retrieved: every waiter may have gone

    def __len__(self) -> int:
        return len(self._tasks)
