"""The one path from the gateway to its stores: nearest first, with timeouts, retries and health
designed for a pull mirror.

A 503 from a mirror sends containerd to its next host - the upstream - on every node that got
it; waiting a few seconds costs a node nothing (its resolver has no response-header timeout).
So a store is never given up on for want of trying:

- Every lookup tries the stores in order. ``NotFound`` falls to the next store (a replica may
  lag); so does a failure, after ``timeout`` on the first attempt.
- A store that failed while another answered in its place is skipped for ``backoff`` (doubling
  while it keeps failing, to 60 s): the failover cost nothing and saves every later request the
  timeout. A store with nobody standing in for it is marked down only after ``failures`` hard
  failures in a row (refused, reset, 5xx, denied) or twice as many timeouts and throttles,
  which a healthy store gives too when a burst of cold requests reaches it.
- A store marked down is still asked when no other store answers.
- When no store answered, the ones that failed for a reason worth retrying are asked again,
  each attempt's timeout doubling, until ``deadline``: only then is the lookup a failure, raised
  as the kind of the last one (registry/store/errors.py; gateway/http.py picks the answer).

Bugs are not store failures: any exception that is not a ``StoreError``, an ``OSError`` or
``NotFound`` leaves untouched.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import AsyncIterable, Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

from gateway.metrics import GatewayMetrics
from gateway.tracing import child_span
from registry.config import GatewayConfig
from registry.store import NotFound, ObjectStore, Reader
from registry.store.errors import StoreError, StoreTimeout, from_os_error
from registry.urls import redact

logger = logging.getLogger("regfront.gateway")

T = TypeVar("T")
MAX_BACKOFF = 60.0
FIRST_PAUSE = 0.1  # before a lookup's second round; doubling, with full jitter
MAX_PAUSE = 2.0
MIN_ATTEMPT = 0.1  # less time than this left: an attempt could not succeed, give up
Call = Callable[[ObjectStore], Awaitable[T]]


@dataclass(frozen=True, kw_only=True)
class StorePolicy:
    """How long reads wait and when a store is skipped; from ``GatewayConfig`` (its comments)."""

    timeout: float  # the first attempt's; each retry's doubles
    deadline: float  # a lookup's whole budget
    backoff: float  # how long a store is skipped once down
    failures: int  # hard failures in a row that mark a store down (timeouts: twice as many)

    @classmethod
    def of(cls, config: GatewayConfig) -> StorePolicy:
        return cls(timeout=config.store_timeout, deadline=config.store_deadline,
                   backoff=config.store_backoff, failures=config.store_failures)


@dataclass
class StoreHealth:
    store: ObjectStore
    label: str = ""  # the store's URL without its query: safe in logs and metric labels
    down: bool = False
    failures: int = 0  # in a row, since it last answered
    strikes: int = 0  # the same, weighted: a hard failure counts two, a timeout one
    trips: int = 0  # times marked down since it last answered: the back-off doubles
    retry_at: float = 0.0  # while down, it is asked first again from then on
    last_error: str | None = None
    last_hard: bool = False

    @property
    def healthy(self) -> bool:
        return not self.down

    def detail(self) -> dict[str, Any]:
        return {"url": self.label, "healthy": self.healthy,
                "failures": self.failures, "last_error": self.last_error}


class StoreSet:
    def __init__(self, stores: list[ObjectStore], policy: StorePolicy, *,
                 metrics: GatewayMetrics, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> None:
        self.entries = [StoreHealth(store, redact(store.url)) for store in stores]
        self._by_store = {id(entry.store): entry for entry in self.entries}
        self.policy = policy
        self.metrics = metrics
        self.metrics.watch_stores(self)
        self.clock = clock
        self.sleep = sleep

    def __iter__(self) -> Iterator[ObjectStore]:
        return iter(entry.store for entry in self.entries)

    def entry(self, store: ObjectStore) -> StoreHealth:
        return self._by_store[id(store)]

    @property
    def primary(self) -> StoreHealth:
        """The last store: the one sync (and pull-through) writes to."""
        return self.entries[-1]

    @property
    def ready(self) -> bool:
        """False only when every store is down for hard failures: then nothing cold can be
        served soon. A store down for timeouts or throttling is alive, and reads wait for it."""
        return any(not entry.down or not entry.last_hard for entry in self.entries)

    def guarded(self, entry: StoreHealth, *, retry: bool = True) -> GuardedStore:
        """``entry``'s store as an ``ObjectStore`` whose calls go through this set; with
        ``retry=False``, one attempt each (for writes that a later request repeats anyway)."""
        return GuardedStore(self, entry, retry=retry)

    def _order(self) -> tuple[list[StoreHealth], list[StoreHealth]]:
        """The stores to ask first (up, or due a probe), and the ones down, each by priority."""
        now = self.clock()
        first = [e for e in self.entries if not e.down or e.retry_at <= now]
        return first, [e for e in self.entries if e.down and e.retry_at > now]

    async def first(self, call: Call[T], what: str, *, operation: str = "read",
                    only: StoreHealth | None = None, retry: bool = True,
                    bounded: bool = True) -> tuple[ObjectStore, T]:
        """The first store's answer to ``call``; ``NotFound`` if every store that answered
        lacks ``what``; the last ``StoreError`` if none answered by the deadline.

        ``only`` asks that one store; ``retry=False`` makes one round (a write that cannot be
        replayed); ``bounded=False`` drops the per-attempt timeout (a stream of any length)."""
        deadline = self.clock() + self.policy.deadline
        timeout = self.policy.timeout
        first, down = ([only], []) if only is not None else self._order()
        failed: list[StoreHealth] = []
        error: StoreError | None = None
        round = 0
        while True:
            missing, again = False, []
            for entry in first + down:
                if missing and entry in down:
                    break  # a store answered: the ones down are only a last resort
                left = deadline - self.clock()
                if bounded and left < MIN_ATTEMPT:
                    break
                try:
                    result = await self._attempt(entry, call, operation,
                                                 min(timeout, left) if bounded else None)
                except NotFound:
                    missing = True
                    self._stood_in(failed, entry)
                    continue
                except StoreError as failure:
                    if error is None or not (isinstance(failure, StoreTimeout) and
                                             bounded and left < timeout):
                        error = failure  # not a timeout the deadline cut short: tells more
                    failed.append(entry)
                    if failure.retryable:
                        again.append(entry)
                    continue
                self._stood_in(failed, entry)
                return entry.store, result
            if missing:
                raise NotFound(what)
            if error is None:  # the deadline passed before another attempt could be made
                raise StoreTimeout(f"{what}: no answer within {self.policy.deadline:g} s")
            pause = random.random() * min(MAX_PAUSE, FIRST_PAUSE * 2 ** round)
            if not retry or not again or deadline - self.clock() - pause < MIN_ATTEMPT:
                raise error
            await self.sleep(pause)
            first, down, timeout, round = again, [], timeout * 2, round + 1

    async def each(self, call: Call[T], operation: str = "list") -> list[T]:
        """The answers of the stores not marked down, each asked once (listings are unions
        across replicas); when none answers, one answer, waited for as ``first`` waits."""
        first, _ = self._order()
        answers = []
        for entry in first:
            try:
                answers.append(await self._attempt(entry, call, operation, self.policy.timeout))
            except StoreError:
                continue
        if answers:
            return answers
        return [(await self.first(call, operation, operation=operation))[1]]

    async def _attempt(self, entry: StoreHealth, call: Call[T], operation: str,
                       limit: float | None) -> T:
        started = time.perf_counter()
        outcome = "bug"  # unless one of the outcomes below: the exception is not the store's
        try:
            with child_span(f"store {operation}", store=entry.label):
                async with asyncio.timeout(limit):
                    result = await call(entry.store)
            outcome = "ok"
        except asyncio.CancelledError:
            outcome = "cancelled"  # a caller that went away, or shutdown
            raise
        except NotFound:
            outcome = "not_found"
            self._answered(entry)
            raise
        except StoreError as failure:
            outcome = failure.reason.removeprefix("store_")
            self._failed(entry, failure, failure)
            raise
        except OSError as cause:  # a backend that did not say (and our timeout: TimeoutError)
            kind = from_os_error(cause)
            outcome = kind.reason.removeprefix("store_")
            self._failed(entry, kind, cause)
            raise kind from cause
        finally:
            self.metrics.store_calls[(entry.label, operation, outcome)] += 1
            self.metrics.store_duration[(entry.label,)].observe(time.perf_counter() - started)
        self._answered(entry)
        return result

    def _answered(self, entry: StoreHealth) -> None:
        if entry.down:
            logger.info("store %s answers again", entry.label)
        entry.down, entry.failures, entry.strikes, entry.trips = False, 0, 0, 0
        entry.last_error, entry.last_hard = None, False

    def _failed(self, entry: StoreHealth, failure: StoreError, cause: BaseException) -> None:
        entry.failures += 1
        entry.strikes += 2 if failure.hard else 1
        entry.last_error = "timeout" if isinstance(failure, StoreTimeout) else repr(cause)[:200]
        entry.last_hard = failure.hard
        if entry.strikes >= 2 * self.policy.failures:
            self._trip(entry, f"{entry.failures} failures in a row")

    def _stood_in(self, failed: list[StoreHealth], answered: StoreHealth) -> None:
        """``answered`` stood in for the stores before it that failed: skipping them costs
        nothing while it answers."""
        rank = self.entries.index(answered)
        for entry in failed:
            if self.entries.index(entry) < rank:
                self._trip(entry, "another store answered in its place")

    def _trip(self, entry: StoreHealth, why: str) -> None:
        now = self.clock()
        if entry.down and now < entry.retry_at:
            return  # down already: concurrent failures do not stretch the back-off
        entry.trips += 1
        wait = min(MAX_BACKOFF, self.policy.backoff * 2 ** (entry.trips - 1))
        entry.retry_at = now + wait
        if not entry.down:
            logger.warning("store %s failed (%s; %s): other stores first for %.0f s",
                           entry.label, entry.last_error, why, wait)
        entry.down = True


class GuardedStore:
    """One store of a ``StoreSet`` as an ``ObjectStore`` whose every call goes through the set:
    the miss queue, pull-through and sync state read and write with the hot path's timeouts,
    retries, health and metrics. A retried ``create`` may find its own first attempt's object
    (``PreconditionFailed``); ``replace`` and streams are never retried."""

    def __init__(self, stores: StoreSet, entry: StoreHealth, *, retry: bool) -> None:
        self._stores = stores
        self._entry = entry
        self._retry = retry
        self.url = entry.store.url

    async def _call(self, call: Call[T], what: str, operation: str, *, retry: bool = True,
                    bounded: bool = True) -> T:
        return (await self._stores.first(call, what, operation=operation, only=self._entry,
                                         retry=retry and self._retry, bounded=bounded))[1]

    async def get(self, key: str) -> bytes:
        return await self._call(lambda s: s.get(key), key, "read")

    async def size(self, key: str) -> int:
        return await self._call(lambda s: s.size(key), key, "read")

    async def read(self, key: str, start: int = 0, length: int | None = None) -> Reader:
        return await self._call(lambda s: s.read(key, start, length), key, "read")

    async def get_versioned(self, key: str) -> tuple[bytes, str]:
        return await self._call(lambda s: s.get_versioned(key), key, "read")

    async def children(self, prefix: str) -> list[str]:
        return await self._call(lambda s: s.children(prefix), prefix, "list")

    async def put(self, key: str, data: bytes) -> None:
        await self._call(lambda s: s.put(key, data), key, "write")

    async def put_stream(self, key: str, chunks: AsyncIterable[bytes]) -> None:
        await self._call(lambda s: s.put_stream(key, chunks), key, "write", retry=False,
                         bounded=False)

    async def create(self, key: str, data: bytes) -> str:
        return await self._call(lambda s: s.create(key, data), key, "write")

    async def replace(self, key: str, data: bytes, version: str) -> str:
        return await self._call(lambda s: s.replace(key, data, version), key, "write",
                                retry=False)

    async def delete(self, key: str) -> None:
        await self._call(lambda s: s.delete(key), key, "write")

    async def close(self) -> None:
        """Nothing: the store belongs to the ``StoreSet``'s owner, which closes it."""

