"""Tag freshness for mirror rules (or pull-through upstreams) that set ``tag_ttl``:
stale-while-revalidate, stale-if-error.

A tag older than its rule's ``tag_ttl`` is checked against the upstream with one manifest HEAD
(which Docker Hub does not count against its pull limit), in the background: the request that
noticed it is served the stored tag at once, as is every request while the upstream is slow
or down. One check per tag runs at a time. When the upstream has moved the tag, the move is
queued as a miss, so sync mirrors the new content; the stored tag keeps being served until its
new content is in the bucket (the gateway never serves a digest it does not hold). While an
upstream fails, a circuit breaker skips its checks, so cached pulls pay nothing for it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import httpx

from gateway.metrics import GatewayMetrics
from gateway.misses import MissQueue
from registry.digest import Digest
from registry.mirrorconfig import MirrorIndex
from registry.upstream.client import Upstream

logger = logging.getLogger("regfront.gateway")

CHECK_TIMEOUT = 2.0  # a freshness check is a HEAD; an upstream slower than this is "down"
BREAKER_FAILURES = 3
BREAKER_OPEN = 30.0


@dataclass
class Breaker:
    failures: int = 0
    open_until: float = 0.0


class Freshness:
    def __init__(self, mirrors: MirrorIndex, misses: MissQueue | None, *,
                 clock: Callable[[], float] = time.monotonic,
                 transport: httpx.AsyncBaseTransport | None = None,
                 metrics: GatewayMetrics) -> None:
        self.mirrors = mirrors
        self.enabled = mirrors.checks_tags  # no TTL anywhere: nothing on the hot path
        self.metrics = metrics  # the app's: a private one would count what nobody exports
        self.transport = transport  # tests: a fake upstream
        self.misses = misses
        self.clock = clock
        self.checked: dict[tuple[str, str], float] = {}
        self.breakers: dict[str, Breaker] = {}
        self._upstreams: dict[str, Upstream] = {}
        self._ttl: dict[str, float | None] = {}
        self._running: dict[tuple[str, str], asyncio.Task[None]] = {}

    def ttl(self, name: str) -> float | None:
        """The tag TTL of the rules covering ``name``; cached, as this is on the hot path."""
        if name not in self._ttl:
            if len(self._ttl) > 100_000:
                self._ttl.clear()
            self._ttl[name] = self.mirrors.tag_ttl(name)
        return self._ttl[name]

    def served(self, name: str, tag: str, digest: Digest) -> None:
        """Called for every tag resolution; starts a background check when one is due."""
        if not self.enabled:
            return
        ttl = self.ttl(name)
        if ttl is None:
            return
        now = self.clock()
        key = (name, tag)
        last = self.checked.setdefault(key, now)  # first sight: fresh as of now
        if now - last < ttl or key in self._running:
            return
        registry = name.partition("/")[0]
        if self.breakers.get(registry, Breaker()).open_until > now:
            return
        task = asyncio.get_running_loop().create_task(self._check(name, tag, digest))
        self._running[key] = task
        task.add_done_callback(lambda _: self._running.pop(key, None))

    async def _check(self, name: str, tag: str, stored: Digest) -> None:
        registry, _, repository = name.partition("/")
        breaker = self.breakers.setdefault(registry, Breaker())
        self.metrics.upstream[(registry, "tag_check")] += 1
        try:
            upstream = self._upstream(registry)
            ref = await asyncio.wait_for(upstream.head_manifest(repository, tag), CHECK_TIMEOUT)
        except Exception as exc:  # stale-if-error: keep serving what we have
            self.metrics.upstream[(registry, "check_failed")] += 1
            breaker.failures += 1
            if breaker.failures >= BREAKER_FAILURES:
                breaker.open_until = self.clock() + BREAKER_OPEN
                logger.warning("upstream %s failing (%r): tag checks paused for %.0f s",
                               registry, exc, BREAKER_OPEN)
            return
        breaker.failures, breaker.open_until = 0, 0.0
        self.checked[(name, tag)] = self.clock()
        if ref.digest != stored:
            self.metrics.upstream[(registry, "tag_moved")] += 1
        if ref.digest != stored and self.misses is not None:
            logger.info("%s:%s moved upstream to %s; queued for sync", name, tag, ref.digest)
            self.misses.record(name, tag, again=True)

    def _upstream(self, registry: str) -> Upstream:
        if registry not in self._upstreams:
            configured, upstream = self.mirrors.upstreams[registry]
            quick = upstream.model_copy(
                update={"timeout": CHECK_TIMEOUT, "connect_timeout": CHECK_TIMEOUT,
                        "retries": 0})
            self._upstreams[registry] = Upstream(configured, quick, transport=self.transport)
        return self._upstreams[registry]

    async def aclose(self) -> None:
        for task in list(self._running.values()):
            task.cancel()
        for upstream in self._upstreams.values():
            await upstream.aclose()
