"""The stores a gateway reads, nearest first, with health: a failing store is skipped for a
back-off so requests stop paying its timeout, then tried again.

Every read tries the stores in order. ``NotFound`` falls to the next store (a replica may lag);
an error or a timeout marks the store unhealthy and also falls to the next. Only when every
store that could answer failed is the request a fast 503: containerd then tries its next host.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from gateway.metrics import GatewayMetrics
from gateway.tracing import child_span
from registry.errors import ErrorCode, RegistryError
from registry.store import NotFound, ObjectStore

logger = logging.getLogger("regfront.gateway")

T = TypeVar("T")
MAX_BACKOFF = 60.0


@dataclass
class StoreHealth:
    store: ObjectStore
    label: str = ""  # the store's URL without its query: safe in logs and metric labels
    healthy: bool = True
    failures: int = 0
    retry_at: float = 0.0
    last_error: str | None = None

    def detail(self) -> dict[str, Any]:
        return {"url": self.label, "healthy": self.healthy,
                "failures": self.failures, "last_error": self.last_error}


class StoreSet:
    def __init__(self, stores: list[ObjectStore], *, timeout: float, backoff: float,
                 clock: Callable[[], float] = time.monotonic,
                 metrics: GatewayMetrics | None = None) -> None:
        self.entries = [StoreHealth(store, _redact(store.url)) for store in stores]
        self.metrics = metrics or GatewayMetrics()
        self.metrics.watch_stores(self)
        self.timeout = timeout
        self.backoff = backoff
        self.clock = clock

    def __iter__(self) -> Any:
        return iter(entry.store for entry in self.entries)

    @property
    def ready(self) -> bool:
        return any(entry.healthy for entry in self.entries)

    def candidates(self) -> list[StoreHealth]:
        """Healthy stores, and unhealthy ones whose back-off is over (probed by this request)."""
        now = self.clock()
        return [e for e in self.entries if e.healthy or e.retry_at <= now]

    async def first(self, call: Callable[[ObjectStore], Awaitable[T]],
                    what: str) -> tuple[ObjectStore, T]:
        """The first store's answer to ``call``; ``NotFound`` if every reachable store lacks
        ``what``, 503 UNAVAILABLE if none could be asked or every one asked failed."""
        missing = False
        for entry in self.candidates():
            try:
                return entry.store, await self.attempt(entry, call)
            except NotFound:
                missing = True
            except StoreFailed:
                continue
        if missing:
            raise NotFound(what)
        raise RegistryError(ErrorCode.UNAVAILABLE, {"reason": "no store reachable"})

    async def each(self, call: Callable[[ObjectStore], Awaitable[T]]) -> list[T]:
        """Every reachable store's answer (listings are unions across replicas)."""
        answers = []
        for entry in self.candidates():
            try:
                answers.append(await self.attempt(entry, call, "list"))
            except StoreFailed:
                continue
        if not answers and self.entries:
            raise RegistryError(ErrorCode.UNAVAILABLE, {"reason": "no store reachable"})
        return answers

    async def attempt(self, entry: StoreHealth, call: Callable[[ObjectStore], Awaitable[T]],
                      operation: str = "read") -> T:
        started = time.perf_counter()
        outcome = "ok"
        try:
            with child_span(f"store {operation}", store=entry.label):
                result = await asyncio.wait_for(call(entry.store), self.timeout)
        except NotFound:
            outcome = "not_found"
            self._succeeded(entry)
            raise
        except Exception as exc:
            outcome = "error"
            self._failed(entry, exc)
            raise StoreFailed(entry.label) from exc
        finally:
            self.metrics.store_calls[(entry.label, operation, outcome)] += 1
            self.metrics.store_duration[(entry.label,)].observe(time.perf_counter() - started)
        self._succeeded(entry)
        return result

    def _succeeded(self, entry: StoreHealth) -> None:
        if not entry.healthy:
            logger.info("store %s is healthy again", entry.label)
        entry.healthy, entry.failures, entry.last_error = True, 0, None

    def _failed(self, entry: StoreHealth, exc: BaseException) -> None:
        entry.failures += 1
        entry.last_error = "timeout" if isinstance(exc, TimeoutError) else repr(exc)[:200]
        wait = min(MAX_BACKOFF, self.backoff * 2 ** (entry.failures - 1))
        entry.retry_at = self.clock() + wait
        if entry.healthy:
            logger.warning("store %s failed (%s); skipping it for %.0f s",
                           entry.label, entry.last_error, wait)
        entry.healthy = False


class StoreFailed(Exception):
    """A store errored or timed out (not "not found"); it is now marked unhealthy."""


def _redact(url: str) -> str:
    return url.split("?", 1)[0]
