"""One worker per rule at a time: a lease object in the primary store, taken and renewed with
conditional writes (create-if-absent, replace-if-unchanged), so no lock service is needed.

A holder renews the lease every third of its TTL; a holder that dies stops renewing and the
lease expires after at most ``sync.lease_ttl``, when another worker may take it over (at once,
when the dead holder ran on the same machine and its process is gone). A worker
that fails to renew has lost the lease and must stop committing tags for that rule.
Stores need conditional writes: S3, GCS (XML API), R2 and MinIO have them (If-None-Match /
If-Match on PUT); the file store uses a lock file, which is safe on one machine or a POSIX
shared filesystem with working flock.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from registry import layout
from registry.store import NotFound, ObjectStore, PreconditionFailed

logger = logging.getLogger("regfront.sync")


class LeaseHeld(Exception):
    """Another live worker holds the rule's lease."""


class LeaseLost(Exception):
    """This worker could not renew its lease: another may be running the rule now."""


def holder_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class Lease:
    def __init__(self, store: ObjectStore, rule: str, ttl: float, *,
                 holder: str | None = None, clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.key = layout.sync_lease(rule)
        self.rule = rule
        self.ttl = ttl
        self.holder = holder or holder_id()
        self.clock = clock
        self._version: str | None = None

    def _body(self, expires: float) -> bytes:
        return json.dumps({"holder": self.holder, "expires": expires}).encode()

    async def acquire(self) -> None:
        """Take the lease, or raise ``LeaseHeld`` naming the live holder."""
        body = self._body(self.clock() + self.ttl)
        try:
            self._version = await self.store.create(self.key, body)
            return
        except PreconditionFailed:
            pass
        try:
            data, version = await self.store.get_versioned(self.key)
        except NotFound:  # released between our two calls: try once more
            self._version = await self.store.create(self.key, body)
            return
        holder, expires = _parse(data)
        if expires > self.clock() and holder != self.holder and not _dead_here(holder):
            raise LeaseHeld(f"rule {self.rule!r} is being run by {holder} "
                            f"(lease until {time.ctime(expires)})")
        try:  # expired (its holder died) or our own: take it over, if nobody beat us to it
            self._version = await self.store.replace(self.key, body, version)
        except PreconditionFailed:
            raise LeaseHeld(f"rule {self.rule!r} was just taken by another worker") from None

    async def renew(self) -> None:
        if self._version is None:
            raise LeaseLost(f"rule {self.rule!r}: lease not held")
        try:
            self._version = await self.store.replace(self.key, self._body(self.clock() + self.ttl),
                                                     self._version)
        except (PreconditionFailed, NotFound):
            self._version = None
            raise LeaseLost(f"rule {self.rule!r}: lease taken over by another worker") from None

    async def release(self) -> None:
        """Expire the lease now (conditionally: never clobber a successor's)."""
        if self._version is None:
            return
        with contextlib.suppress(PreconditionFailed, NotFound):
            await self.store.replace(self.key, self._body(0), self._version)
        self._version = None


@asynccontextmanager
async def holding(lease: Lease) -> AsyncIterator[asyncio.Event]:
    """Hold ``lease`` for the block, renewing it; the event is set if it was lost."""
    await lease.acquire()
    lost = asyncio.Event()

    async def renew() -> None:
        while True:
            await asyncio.sleep(lease.ttl / 3)
            try:
                await lease.renew()
            except LeaseLost as exc:
                logger.error("%s", exc)
                lost.set()
                return
            except Exception as exc:  # a store hiccup: try again next period, until expiry
                logger.warning("renewing the lease of rule %r failed: %r", lease.rule, exc)

    renewer = asyncio.create_task(renew())
    try:
        yield lost
    finally:
        renewer.cancel()
        await lease.release()


def _dead_here(holder: str) -> bool:
    """A holder on this machine whose process is gone (killed): no need to wait out its TTL."""
    host, _, rest = holder.partition(":")
    pid = rest.partition(":")[0]
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def _parse(data: bytes) -> tuple[str, float]:
    """(holder, expiry); an unreadable lease counts as expired."""
    try:
        value = json.loads(data)
        return str(value["holder"]), float(value["expires"])
    except (ValueError, TypeError, KeyError):
        return "", 0.0
