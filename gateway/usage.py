"""Pull records: which manifests this gateway worker served (repository, digest, the tag asked
for) and when, counted in memory and written as one batch per interval to the primary store -
never a store write per request (format: registry/usage.py, docs/retention.md).

Memory is bounded: a batch holds at most ``max_entries`` distinct manifests (a full one is
written at once), plus one batch whose write failed, kept for the next attempt; pulls that fit
in neither are counted as dropped. Batches are written one at a time, in order (garbage
collection's merge relies on it). A crash loses the batch being filled: one interval at most.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import socket
import time
import uuid
from collections.abc import Callable

from gateway.background import Background
from gateway.metrics import GatewayMetrics
from registry import layout
from registry.store import ObjectStore
from registry.store.errors import StoreError
from registry.usage import Pull, PullKey, Pulls, UsageBatch, day_of

logger = logging.getLogger("regfront.gateway")

_NOT_ID = re.compile(r"[^a-z0-9.]+")


def gateway_id() -> str:
    """This worker, in a key: host, process, and a random part (a restarted worker is new)."""
    host = _NOT_ID.sub("-", socket.gethostname().lower()).strip("-") or "gateway"
    return f"{host[:40]}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


class UsageRecorder(Background):
    def __init__(self, store: ObjectStore, *, interval: float, max_entries: int,
                 gateway: str | None = None, clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.interval = interval
        self.max_entries = max_entries
        self.gateway = gateway or gateway_id()
        self.clock = clock
        self.written = 0  # batches
        self.dropped = 0  # pulls not kept
        self._pulls: Pulls = {}
        self._started = clock()
        self._pending: UsageBatch | None = None  # written, failed: tried again first
        self._last_when = 0
        self._full = asyncio.Event()
        self._writing = asyncio.Lock()
        super().__init__()

    def record(self, name: str, digest: str, tag: str | None) -> None:
        """Count one manifest served (the hot path: a dict update, no I/O)."""
        key = PullKey(name, digest, tag)
        now = self.clock()
        pull = self._pulls.get(key)
        if pull is not None:
            pull.count += 1
            pull.last = now
            return
        if len(self._pulls) >= self.max_entries:
            self.dropped += 1  # full, and its early write has not happened yet
            self._full.set()
            return
        self._pulls[key] = Pull(1, now)
        if len(self._pulls) >= self.max_entries:
            self._full.set()

    async def flush(self) -> None:
        """Write what was counted (after any batch still pending); one write at a time."""
        async with self._writing:
            if self._pending is not None:
                if not await self._write(self._pending):
                    return  # the store is still failing: keep filling the current batch
                self._pending = None
            if not self._pulls:
                return
            now = self.clock()
            batch = UsageBatch(self.gateway, self._started, now, self._pulls, self.dropped)
            self._pulls, self._started, self.dropped = {}, now, 0
            self._full.clear()
            if not await self._write(batch):
                self._pending = batch

    async def _write(self, batch: UsageBatch) -> bool:
        # A key per batch, its time strictly increasing (two batches in one second stay two).
        when = max(int(batch.ended), self._last_when + 1)
        try:
            await self.store.put(layout.usage_record(day_of(when), when, self.gateway),
                                 batch.to_json())
        except StoreError as exc:
            logger.warning("writing pull records failed (kept for the next attempt): %r", exc)
            return False
        self._last_when = when
        self.written += 1
        return True

    def export(self, metrics: GatewayMetrics) -> None:
        """Its counts as gauges (a recorder per worker, as every metric here)."""
        metrics.registry.gauge("usage_batches_written", "Pull record batches this worker wrote",
                               (), lambda: [({}, float(self.written))])
        metrics.registry.gauge("usage_pulls_dropped", "Pulls not recorded now: the batch was "
                               "full and the one before it could not be written", (),
                               lambda: [({}, float(self.dropped))])

    async def _step(self) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.interval):
                await self._full.wait()
        await self.flush()

    async def stop(self) -> None:
        """Stop the loop and write what is left (a graceful shutdown loses nothing)."""
        await super().stop()
        await self.flush()
