"""The miss queue: what clients asked for that no store had, for the next sync run to mirror.

With ``on_miss: fallthrough`` (the default) the gateway answers such a request with a 404 at
once - containerd then fetches from the upstream itself - and records the miss as one small
object per distinct ``name:tag`` (or digest) in the primary store, written create-only off the
request path, through the ``StoreSet`` (a ``guarded`` store). Only repositories some mirror
rule covers are recorded: otherwise any client could make the fleet mirror anything. An image
one node pulled is then mirrored for the rest.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time

from cachetools import LRUCache

from gateway.metrics import GatewayMetrics
from registry import layout
from registry.digest import Digest
from registry.mirrorconfig import MirrorIndex
from registry.store import ObjectStore, PreconditionFailed
from registry.store.errors import StoreError

logger = logging.getLogger("regfront.gateway")


class MissQueue:
    def __init__(self, mirrors: MirrorIndex, primary: ObjectStore,
                 metrics: GatewayMetrics) -> None:
        self.mirrors = mirrors
        self.primary = primary
        self.metrics = metrics
        # Recorded (or being recorded) by this process: each miss costs one write, not one
        # per request. Bounded, so a client cycling through names cannot grow it forever.
        self.seen: LRUCache[str, bool] = LRUCache(maxsize=100_000)
        self._writes: set[asyncio.Task[None]] = set()

    def record(self, name: str, reference: str | Digest, *, again: bool = False) -> None:
        """Queue the miss if a rule covers ``name``; returns at once, never raises.
        ``again``: even if this process queued it before (a tag that moved since)."""
        if not self.mirrors.covers(name):
            return
        key = layout.miss(name, reference)
        if key in self.seen and not again:
            return
        self.seen[key] = True
        self.metrics.misses[(name.partition("/")[0],)] += 1
        task = asyncio.get_running_loop().create_task(self._write(key))
        self._writes.add(task)
        task.add_done_callback(self._writes.discard)

    async def _write(self, key: str) -> None:
        try:
            await self.primary.create(key, json.dumps({"time": time.time()}).encode())
        except PreconditionFailed:
            pass  # queued already (by another gateway, or before a restart)
        except StoreError as exc:  # the store is down: forget it, so a later miss retries
            self.seen.pop(key, None)
            logger.warning("could not queue miss %s: %r", key, exc)

    async def drain(self) -> None:
        """Wait for queued writes (tests; shutdown)."""
        while self._writes:
            await asyncio.gather(*list(self._writes), return_exceptions=True)
