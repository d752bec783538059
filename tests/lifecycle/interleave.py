"""An explicit scheduler for concurrency tests: every store call of every task waits for its
turn, and the turn goes to a random waiting call (seeded), one call at a time; time is fake and
moves only when no call is waiting, to the next sleeper's wake-up. So each seed is one
interleaving of the tasks' store calls, with every call a step boundary."""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable
from typing import TypeVar

from registry.claims import Timing
from registry.store import ObjectStore, Reader
from sync.lease import Clocks

T = TypeVar("T")
SETTLE_YIELDS = 12  # loop turns given to running tasks to reach their next call before a pick
STALL = 20.0  # real seconds without any progress: the test is stuck, fail it


class Scheduler:
    def __init__(self, rng: random.Random, start: float = 0.0) -> None:
        self.rng = rng
        self.now = start
        self.steps = 0
        self._waiting: list[asyncio.Future[None]] = []
        self._sleepers: list[tuple[float, asyncio.Future[None]]] = []
        self._busy = False
        self._kick = asyncio.Event()
        self._later: list[tuple[int, asyncio.Future[None]]] = []  # (step, a task to start)

    # -- time --------------------------------------------------------------------------------

    def wall(self) -> float:
        return 1_800_000_000.0 + self.now

    def monotonic(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        future = asyncio.get_running_loop().create_future()
        self._sleepers.append((self.now + max(seconds, 0.0), future))
        self._kick.set()
        await future

    def timing(self) -> Timing:
        return Timing(wall=self.wall, monotonic=self.monotonic, sleep=self.sleep)

    def clocks(self) -> Clocks:
        return Clocks(monotonic=self.monotonic, wall=self.wall, sleep=self.sleep)

    # -- turns -------------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def turn(self) -> AsyncIterator[None]:
        """Hold the one turn for a store call."""
        future = asyncio.get_running_loop().create_future()
        self._waiting.append(future)
        self._kick.set()
        try:
            await future
        except BaseException:
            if future in self._waiting:
                self._waiting.remove(future)
            elif future.done() and not future.cancelled():
                self._release()  # granted as we were cancelled: give the turn back
            raise
        try:
            yield
        finally:
            self._release()

    async def until_step(self, step: int) -> None:
        """Start after ``step`` calls of the others (or once nothing else is left to do)."""
        if self.steps >= step:
            return
        future = asyncio.get_running_loop().create_future()
        self._later.append((step, future))
        await future

    def _release(self) -> None:
        self._busy = False
        self.steps += 1
        for step, future in self._later:
            if step <= self.steps and not future.done():
                future.set_result(None)
        self._kick.set()

    async def run(self, done: Callable[[], bool]) -> None:
        """Hand out turns, and move time, until ``done()``."""
        idle = 0.0
        while not done():
            try:
                await asyncio.wait_for(self._kick.wait(), 0.005)
                idle = 0.0
            except TimeoutError:
                idle += 0.005
                if idle > STALL:
                    raise AssertionError("interleaving stalled: no task made progress") from None
            self._kick.clear()
            if self._busy:
                continue
            for _ in range(SETTLE_YIELDS):  # let every running task reach its next call
                await asyncio.sleep(0)
            if self._busy:
                continue
            self._waiting = [f for f in self._waiting if not f.done()]
            self._sleepers = [(t, f) for t, f in self._sleepers if not f.done()]
            # Time passing is one more choice: a task that keeps calling (a reader) must not
            # stop the clock for the ones asleep.
            choices = len(self._waiting) + bool(self._sleepers)
            self._later = [(n, f) for n, f in self._later if not f.done()]
            if not choices and self._later:
                min(self._later, key=lambda later: later[0])[1].set_result(None)
                continue
            if not choices:
                continue  # tasks are between calls (in memory, or the fake upstream)
            pick = self.rng.randrange(choices)
            if pick < len(self._waiting):
                future = self._waiting.pop(pick)
                self._busy = True
                future.set_result(None)
                continue
            if self._sleepers:
                wake = min(t for t, _ in self._sleepers)
                self.now = max(self.now, wake)
                for when, sleeper in self._sleepers:
                    if when <= self.now:
                        sleeper.set_result(None)
                self._kick.set()


class SteppedStore:
    """``inner`` with every call taking a turn from ``scheduler``."""

    def __init__(self, inner: ObjectStore, scheduler: Scheduler) -> None:
        self.inner = inner
        self.url = inner.url
        self.scheduler = scheduler

    async def _call(self, work: Callable[[], Awaitable[T]]) -> T:
        async with self.scheduler.turn():
            return await work()

    async def get(self, key: str) -> bytes:
        return await self._call(lambda: self.inner.get(key))

    async def size(self, key: str) -> int:
        return await self._call(lambda: self.inner.size(key))

    async def read(self, key: str, start: int = 0, length: int | None = None) -> Reader:
        return await self._call(lambda: self.inner.read(key, start, length))

    async def put(self, key: str, data: bytes) -> None:
        await self._call(lambda: self.inner.put(key, data))

    async def put_stream(self, key: str, chunks: AsyncIterable[bytes]) -> None:
        data = b"".join([chunk async for chunk in chunks])  # read first: one call, one turn

        async def one() -> AsyncIterator[bytes]:
            yield data

        await self._call(lambda: self.inner.put_stream(key, one()))

    async def children(self, prefix: str) -> list[str]:
        return await self._call(lambda: self.inner.children(prefix))

    async def get_versioned(self, key: str) -> tuple[bytes, str]:
        return await self._call(lambda: self.inner.get_versioned(key))

    async def create(self, key: str, data: bytes) -> str:
        return await self._call(lambda: self.inner.create(key, data))

    async def replace(self, key: str, data: bytes, version: str) -> str:
        return await self._call(lambda: self.inner.replace(key, data, version))

    async def delete(self, key: str) -> None:
        await self._call(lambda: self.inner.delete(key))

    async def close(self) -> None:
        pass
