"""One worker per rule at a time: a lease object in the primary store, taken and renewed with
conditional writes (create-if-absent, replace-if-unchanged), so no lock service is needed.

The object says who holds the lease and until when (wall-clock time, for other workers to
read). The holder keeps its own deadline by its monotonic clock, counted from before the write
that took or renewed the lease: the lease cannot have expired for anyone else before it, so far
as the workers' clocks agree. The holder renews every third of the TTL; before every commit
(``check``) it must hold the lease with ``margin`` (a quarter of the TTL) still to run, which
absorbs the commit's own writes and skew between the workers' clocks. A renewal that finds
the lease taken over, or a deadline that passes because renewals kept failing, loses the lease
for good: the worker commits nothing more for that rule. A holder that dies stops renewing and
its lease expires after at most ``sync.lease_ttl`` (at once, when it ran on the same machine
and its process is gone), when another worker may take it over.

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
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

from registry import layout
from registry.store import NotFound, ObjectStore, PreconditionFailed

logger = logging.getLogger("regfront.sync")

RENEWALS_PER_TTL = 3
# One failed renewal still leaves a third of the TTL at the next attempt, above this margin, so
# a single store hiccup does not stop a run; two in a row do, before the lease runs out.
MARGIN_FRACTION = 0.25


class LeaseHeld(Exception):
    """Another live worker holds the rule's lease."""


class LeaseLost(Exception):
    """This worker no longer holds its lease: another may be running the rule now."""


@dataclass(frozen=True)
class Clocks:
    """Time as the sync worker sees it; tests pass fakes, so leases expire without waiting."""

    monotonic: Callable[[], float] = time.monotonic  # the holder's own deadlines
    wall: Callable[[], float] = time.time  # what the lease object says, for other workers
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep


SYSTEM_CLOCKS = Clocks()


def holder_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class Lease:
    """One rule's lease as one worker holds it (or not)."""

    def __init__(self, store: ObjectStore, rule: str, ttl: float, *,
                 holder: str | None = None, clocks: Clocks = SYSTEM_CLOCKS,
                 key: str | None = None) -> None:
        self.store = store
        self.key = key or layout.sync_lease(rule)  # another key: garbage collection's lease
        self.rule = rule
        self.ttl = ttl
        self.margin = ttl * MARGIN_FRACTION
        self.holder = holder or holder_id()
        self.clocks = clocks
        self.lost: str | None = None  # why the lease was lost; None while held or never taken
        self._version: str | None = None
        self._deadline = 0.0  # by clocks.monotonic

    @property
    def held(self) -> bool:
        """Taken, not lost, and not past its deadline (no margin)."""
        return self._version is not None and self.remaining() > 0

    def remaining(self) -> float:
        """Seconds until the lease may be taken over; 0 when not held."""
        if self._version is None:
            return 0.0
        return max(0.0, self._deadline - self.clocks.monotonic())

    def check(self, what: str) -> None:
        """Raise ``LeaseLost`` unless the lease is held with ``margin`` to spare: call it
        before committing ``what``."""
        left = self.remaining()
        if self._version is not None and left < self.margin:
            self._lose("lease expired (not renewed in time)" if left <= 0 else
                       f"lease expiring ({left:.1f}s left, under the {self.margin:.1f}s margin: "
                       "not renewed in time)")
        if self._version is None:
            reason = self.lost or "lease not held"
            raise LeaseLost(f"rule {self.rule!r}: {reason}; stopped before committing {what}")

    def _body(self, expires: float) -> bytes:
        return json.dumps({"holder": self.holder, "expires": expires}).encode()

    def _took(self, version: str, started: float) -> None:
        self._version, self._deadline, self.lost = version, started + self.ttl, None

    def _lose(self, reason: str) -> None:
        if self._version is not None:
            logger.error("rule %r: %s", self.rule, reason)
        self._version, self.lost = None, reason

    async def acquire(self) -> None:
        """Take the lease, or raise ``LeaseHeld`` naming the live holder."""
        started = self.clocks.monotonic()
        body = self._body(self.clocks.wall() + self.ttl)
        try:
            self._took(await self.store.create(self.key, body), started)
            return
        except PreconditionFailed:
            pass
        try:
            data, version = await self.store.get_versioned(self.key)
        except NotFound:  # released between our two calls: try once more
            self._took(await self.store.create(self.key, body), started)
            return
        holder, expires = _parse(data)
        if expires > self.clocks.wall() and holder != self.holder and not _dead_here(holder):
            raise LeaseHeld(f"rule {self.rule!r} is being run by {holder} "
                            f"(lease until {time.ctime(expires)})")
        # Expired (its holder died) or our own: take it over, if nobody beat us to it.
        started = self.clocks.monotonic()
        body = self._body(self.clocks.wall() + self.ttl)
        try:
            self._took(await self.store.replace(self.key, body, version), started)
        except PreconditionFailed:
            raise LeaseHeld(f"rule {self.rule!r} was just taken by another worker") from None

    async def renew(self) -> None:
        """Extend the lease by a TTL from now; ``LeaseLost`` if it expired or was taken over.
        A store failure propagates and leaves the deadline where it was."""
        if self._version is None:
            raise LeaseLost(f"rule {self.rule!r}: {self.lost or 'lease not held'}")
        if self.remaining() <= 0:
            self._lose("lease expired before it could be renewed")
            raise LeaseLost(f"rule {self.rule!r}: {self.lost}")
        started = self.clocks.monotonic()
        body = self._body(self.clocks.wall() + self.ttl)
        try:
            version = await self.store.replace(self.key, body, self._version)
        except (PreconditionFailed, NotFound):
            try:
                version = await self._ours_after_all(body)
            except (PreconditionFailed, NotFound):
                self._lose("lease taken over by another worker")
                raise LeaseLost(f"rule {self.rule!r}: {self.lost}") from None
        self._took(version, started)

    async def _ours_after_all(self, body: bytes) -> str:
        """Renew a lease whose last renewal's answer was lost (a timeout) but was written: the
        object still names us, and as no other worker writes our name, nobody took it in
        between. ``PreconditionFailed`` if it names another."""
        data, version = await self.store.get_versioned(self.key)
        if _parse(data)[0] != self.holder:
            raise PreconditionFailed(self.key)
        return await self.store.replace(self.key, body, version)

    async def release(self) -> None:
        """Expire the lease now (conditionally: never clobber a successor's)."""
        if self._version is None:
            return
        version, self._version = self._version, None
        try:
            await self.store.replace(self.key, self._body(0), version)
        except (PreconditionFailed, NotFound):
            pass  # taken over meanwhile: it is the successor's now
        except Exception as exc:  # the store failing (see renew): the lease runs out instead
            logger.warning("releasing the lease of rule %r failed: %r", self.rule, exc)


@asynccontextmanager
async def holding(lease: Lease) -> AsyncIterator[Lease]:
    """Hold ``lease`` for the block, renewing it in the background; ``lease.check`` before
    each commit tells whether it still holds."""
    await lease.acquire()

    async def renew() -> None:
        while True:
            await lease.clocks.sleep(lease.ttl / RENEWALS_PER_TTL)
            try:
                await lease.renew()
            except LeaseLost:
                return  # recorded in lease.lost; every later check fails
            # The store protocol's failures have no common type (NotFound aside): any other
            # exception is the store failing, and the deadline shrinking is the answer to it.
            except Exception as exc:
                logger.warning("renewing the lease of rule %r failed (%.0fs left): %r",
                               lease.rule, lease.remaining(), exc)

    renewer = asyncio.create_task(renew())
    try:
        yield lease
    finally:
        renewer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await renewer
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
