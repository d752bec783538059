"""Writers' claims: how a writer and a concurrent garbage collection agree, with no lock, on
what may be deleted (docs/retention.md has the protocol and why it holds).

Before a writer writes an object of a *subject* (a digest: its blob and every link naming it;
or a tag: its current link), or relies on one existing, it *claims* the subject: it writes a
claim object (its time in its name), then reads the subject's *doomed* shard, in which a
running collection announces what it will delete and by when. Collection announces first,
waits ``gc.settle``, lists the claims, and deletes only announced subjects nobody claimed, before
the announced deadline. So either collection sees the claim (and keeps the subject), or the
writer sees the announcement (and waits out the deadline, then looks again). A claim keeps its
subject for ``CLAIM_TTL`` after it was written: collection deletes older claims.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import weakref
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field

from cachetools import LRUCache

from registry import layout
from registry.digest import Digest
from registry.store import NotFound, ObjectStore

logger = logging.getLogger("regfront.claims")

Subject = Digest | tuple[str, str]
"""A digest, or a tag as (name, tag)."""

# A claim keeps its subject this long (by the claim's own time); collection ignores and then
# deletes older ones. Whatever a writer commits is therefore kept at least this long.
CLAIM_TTL = 6 * 3600.0
# A claim this process wrote is trusted this long before it writes a new one: claims cost a
# write and a read, and a layer shared by many images is claimed once per window.
CLAIM_REUSE = 1800.0
# Work that relied on a claim must commit before the claim is this old (CLAIM_TTL less room for
# the reuse window, listing lag and clock skew); the sync copier fails an image that takes
# longer, and its next run finds the blobs already there.
CLAIM_WINDOW = CLAIM_TTL / 2 - CLAIM_REUSE
_CACHE_ENTRIES = 200_000
# A writer waiting on an announcement reads it again after 1 s, then less and less often.
_POLL_FIRST, _POLL_MAX = 1.0, 15.0


class ClaimExpired(Exception):
    """Work took so long that its claims may have lapsed: commit nothing, retry from scratch."""


@dataclass(frozen=True)
class Timing:
    """Time as claims see it; tests pass fakes so announcements expire without waiting."""

    wall: Callable[[], float] = time.time
    monotonic: Callable[[], float] = time.monotonic
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep


SYSTEM_TIMING = Timing()


@dataclass
class Doomed:
    """A doomed shard: subject keys the running collection deletes before ``deadline``
    (unix time, its clock skew allowance included)."""

    run: str
    deadline: float
    keys: set[str] = field(default_factory=set)

    def to_json(self) -> bytes:
        return json.dumps({"run": self.run, "deadline": self.deadline,
                           "subjects": sorted(self.keys)}, separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, data: bytes) -> Doomed:
        raw = json.loads(data)
        return cls(str(raw["run"]), float(raw["deadline"]), set(map(str, raw["subjects"])))


@dataclass
class ClaimStats:
    """What claims cost and caught; the concurrency tests read ``waits`` to show the race
    they exercise really happened."""

    written: int = 0
    waits: int = 0


class Claims:
    """One process's claims in one store (``claims_for(store)``)."""

    def __init__(self, store: ObjectStore, timing: Timing = SYSTEM_TIMING) -> None:
        self.store = store
        self.timing = timing
        self.stats = ClaimStats()
        self._fresh: LRUCache[str, float] = LRUCache(_CACHE_ENTRIES)  # key -> monotonic

    async def claim(self, subject: Subject) -> None:
        """Return once ``subject`` is claimed and no running collection will delete it: call it
        before writing any of its objects or relying on one existing."""
        key = layout.subject_key(subject)
        claimed = self._fresh.get(key)
        if claimed is not None and self.timing.monotonic() - claimed < CLAIM_REUSE:
            return
        started = self.timing.monotonic()
        await self.store.put(layout.claim(key, int(self.timing.wall())), b"")
        self.stats.written += 1
        # Only after the claim is written: a collection that announced too late to see the
        # announcement here lists claims after it, and sees ours.
        await self._wait_until_spared(key)
        self._fresh[key] = started

    async def claim_all(self, subjects: Iterable[Subject]) -> None:
        for subject in subjects:
            await self.claim(subject)

    async def ensure(self, subjects: Iterable[Subject]) -> None:
        """Before committing what relies on ``subjects`` (claimed earlier by this work): renew
        their claims, or raise ``ClaimExpired`` if one is too old to be sure it never lapsed."""
        now = self.timing.monotonic()
        for subject in subjects:
            key = layout.subject_key(subject)
            claimed = self._fresh.get(key)
            if claimed is None or now - claimed > CLAIM_WINDOW:
                raise ClaimExpired(f"{key}: claimed too long ago (more than "
                                   f"{CLAIM_WINDOW / 3600:.0f} h) to commit what relies on it")
            await self.claim(subject)  # renews it if older than the reuse window

    async def _wait_until_spared(self, key: str) -> None:
        poll = _POLL_FIRST
        while True:
            try:
                doomed = Doomed.from_json(await self.store.get(layout.doomed_shard(key)))
            except NotFound:
                return
            except (ValueError, KeyError, TypeError):
                return  # unreadable: no collection can be relying on it being read
            remaining = doomed.deadline - self.timing.wall()
            if key not in doomed.keys or remaining <= 0:
                return
            # The collection may delete the subject until the deadline, or may have seen our
            # claim and spared it: either way, after the deadline it is settled. Look again
            # then (a later collection sees our claim, which is older than its listing).
            self.stats.waits += 1
            logger.info("waiting %.1fs: garbage collection %s may be deleting %s",
                        remaining, doomed.run, key)
            await self.timing.sleep(min(remaining + 0.001, poll))
            poll = min(poll * 2, _POLL_MAX)


_CLAIMS: weakref.WeakKeyDictionary[ObjectStore, Claims] = weakref.WeakKeyDictionary()


def claims_for(store: ObjectStore) -> Claims:
    """The claims of this process in ``store``: one per store object, so every writer sharing
    the store shares the reuse window (a process-wide cache keyed by the store it describes)."""
    found = _CLAIMS.get(store)
    if found is None:
        found = _CLAIMS[store] = Claims(store)
    return found


def use_claims(store: ObjectStore, claims: Claims) -> Claims:
    """Make ``claims`` (fake timing, in tests) the one ``claims_for(store)`` returns."""
    _CLAIMS[store] = claims
    return claims
