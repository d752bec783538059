"""Tags pulled through wait here until their image is whole in the primary store.

A tag in the bucket promises a pull that works without the upstream: sync commits one only after
everything below it, and so does pull-through. Its manifest is committed at once (a pull asks
for it by digest next), its tag only when the image is complete: for an image manifest, its
config and layers stored and linked into the repository; for an index, one child it lists that
is complete (the platform a node pulled - an index tag must resolve from the bucket in an
outage, and no node pulls every platform). Until then this gateway answers the tag from here,
so a rollout asks the upstream once, not once per node. A tag someone else committed meanwhile
(sync, another gateway) is left as they wrote it.

What is missing is learnt from the store when the tag is fetched (blobs shared with other images
are usually there already, and are linked into the repository then), updated as this gateway's
fills commit blobs, and looked up again now and then (``RECHECK``): behind a load balancer, the
fill of a blob a node asked another replica for is not seen here. Everything is bounded: a tag
whose image no node completes within ``PENDING_TTL`` is forgotten (``regfront status`` lists
such an image as exposed), which keeps the manifest's claim in force when the tag commits
(``CLAIM_WINDOW``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine, Iterable
from dataclasses import dataclass, field
from typing import Any

from cachetools import TTLCache

from gateway.metrics import GatewayMetrics
from registry import layout, writer
from registry.claims import CLAIM_WINDOW
from registry.digest import Digest
from registry.mediatypes import media_type_of, needs, parse_manifest
from registry.store import NotFound, ObjectStore

logger = logging.getLogger("regfront.gateway")

PENDING_TTL = 3600.0
assert PENDING_TTL < CLAIM_WINDOW  # the manifest committed with the fetch is still claimed
RECHECK = (2.0, 120.0)  # first look again after 2 s, then twice as long each time, up to 2 min
_MAX_TAGS = 1024
_MAX_MANIFESTS = 8192

Key = tuple[str, Digest]  # a manifest in a repository
TagKey = tuple[str, str]  # (repository, tag)


@dataclass(frozen=True)
class Tag:
    digest: Digest
    media_type: str
    data: bytes
    fetched: float  # monotonic


@dataclass
class _Manifest:
    """A manifest some pending tag needs complete."""

    tags: set[TagKey] = field(default_factory=set)  # pending tags that point at it
    indexes: set[Key] = field(default_factory=set)  # pending indexes that list it
    index: bool = False
    # An image's blobs not stored yet; an index's children, until one is complete. None: the
    # manifest has not been read yet.
    missing: set[Digest] | None = None


class PendingTags:
    def __init__(self, primary: ObjectStore, metrics: GatewayMetrics, *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.primary = primary
        self.metrics = metrics
        self.clock = clock
        self.recheck = RECHECK
        self.tags: TTLCache[TagKey, Tag] = TTLCache(_MAX_TAGS, PENDING_TTL, timer=clock)
        self._manifests: TTLCache[Key, _Manifest] = TTLCache(_MAX_MANIFESTS, PENDING_TTL,
                                                             timer=clock)
        self._tasks: set[asyncio.Task[None]] = set()  # reading what is stored
        self._watchers: set[asyncio.Task[None]] = set()  # looking again later (_watch)
        metrics.registry.gauge("pullthrough_pending_tags", "Tags pulled through and answered by "
                               "this gateway, not yet committed: their image is not whole in "
                               "the bucket yet", (), lambda: [({}, float(len(self.tags)))])

    def answer(self, name: str, tag: str,
               max_age: Callable[[str], float | None]) -> Tag | None:
        """The pending tag's manifest while it is younger than ``max_age(name)`` (None: any
        age), asked only when there is one (the hot path's cold lookups pass here)."""
        pending = self.tags.get((name, tag))
        if pending is None:
            return None
        limit = max_age(name)
        return None if limit is not None and self.clock() - pending.fetched > limit else pending

    def tagged(self, name: str, tag: str, digest: Digest, data: bytes) -> None:
        """``tag`` was fetched and points at ``digest`` (committed): commit it once complete."""
        doc = parse_manifest(data)
        self.tags[(name, tag)] = Tag(digest, media_type_of(doc), data, self.clock())
        self._need(name, digest).tags.add((name, tag))
        self._spawn(self._read(name, digest, doc))

    def manifest_stored(self, name: str, digest: Digest, data: bytes) -> None:
        """A manifest was committed: if a pending tag needs it, learn what it lacks."""
        needed = self._manifests.get((name, digest))
        if needed is not None and needed.missing is None:
            self._spawn(self._read(name, digest, parse_manifest(data)))

    async def blob_stored(self, digest: Digest, linked: Iterable[str]) -> None:
        """A blob was committed and linked into ``linked``; linked here into the other
        repositories whose pending images need it. Never raises: the blob is committed, and a
        tag that could not be is fetched and tried again by the next pull."""
        linked = set(linked)
        for key, needed in list(self._manifests.items()):
            if needed.index or needed.missing is None or digest not in needed.missing:
                continue
            try:
                if key[0] not in linked:
                    await writer.link_blob(self.primary, key[0], digest)
                    linked.add(key[0])
                needed.missing.discard(digest)
                await self._check(key)
            except Exception as exc:
                logger.warning("pull-through of %s@%s: tag not committed: %r", *key, exc)

    async def aclose(self) -> None:
        for task in self._tasks | self._watchers:
            task.cancel()

    # -- learning what a manifest lacks ----------------------------------------------------

    def _need(self, name: str, digest: Digest) -> _Manifest:
        needed = self._manifests.get((name, digest))
        if needed is None:
            needed = self._manifests[(name, digest)] = _Manifest()
        return needed

    def _spawn(self, work: Coroutine[Any, Any, None],
               tasks: set[asyncio.Task[None]] | None = None) -> None:
        tasks = self._tasks if tasks is None else tasks
        task = asyncio.get_running_loop().create_task(work)
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    async def _read(self, name: str, digest: Digest, doc: dict[str, Any]) -> None:
        needed = self._manifests.get((name, digest))
        if needed is None or needed.missing is not None:
            return
        children, blobs = needs(doc)
        # Everything counts as missing until the store says otherwise; a fill that commits a
        # blob meanwhile takes it off (``blob_stored``), so no commit goes unnoticed.
        needed.index, needed.missing = bool(children), set(children or blobs)
        try:
            for child in children:
                self._need(name, child).indexes.add((name, digest))
            await self._look((name, digest), needed)
        except Exception as exc:  # looked at again by _watch
            logger.warning("pull-through of %s@%s: cannot tell what is stored: %r",
                           name, digest, exc)
        if needed.missing:
            self._spawn(self._watch((name, digest)), self._watchers)

    async def _look(self, key: Key, needed: _Manifest) -> None:
        """Ask the store for what ``key`` still lacks: an image's blobs, an index's children
        not read yet (those read look for themselves)."""
        name = key[0]
        missing = list(needed.missing or ())
        if needed.index:
            await asyncio.gather(*(self._read_stored(name, child) for child in missing
                                   if self._unread(name, child)))
        else:
            await asyncio.gather(*(self._adopt(name, blob) for blob in missing))
        await self._check(key)

    def _unread(self, name: str, digest: Digest) -> bool:
        child = self._manifests.get((name, digest))
        return child is not None and child.missing is None

    async def _watch(self, key: Key) -> None:
        delay = self.recheck[0]
        while True:
            await asyncio.sleep(delay)
            delay = min(2 * delay, self.recheck[1])
            needed = self._manifests.get(key)
            if needed is None or not needed.missing:
                return  # complete, or forgotten
            try:
                await self._look(key, needed)
            except Exception as exc:  # (a store hiccup): the next look may do
                logger.debug("pull-through of %s@%s: looking again failed: %r", *key, exc)

    async def _read_stored(self, name: str, digest: Digest) -> None:
        """A child already committed is read from the store; one that is not is read when
        pull-through commits it (``manifest_stored``)."""
        try:
            await self.primary.get(layout.revision_link(name, digest))
            data = await self.primary.get(layout.blob_data(digest))
        except NotFound:
            return
        if digest.matches(data):
            await self._read(name, digest, parse_manifest(data))

    async def _adopt(self, name: str, blob: Digest) -> None:
        """A blob already stored (for any repository) is linked into ``name``."""
        if await writer.has_blob(self.primary, blob):
            await writer.link_blob(self.primary, name, blob)
            await self.blob_stored(blob, [name])

    # -- committing ------------------------------------------------------------------------

    async def _check(self, key: Key) -> None:
        needed = self._manifests.get(key)
        if needed is None or needed.missing is None or needed.missing:
            return
        self._manifests.pop(key, None)
        name, digest = key
        for index_key in needed.indexes:
            index = self._manifests.get(index_key)
            if index is not None and index.missing is not None:
                index.missing.clear()  # one complete child completes an index
                await self._check(index_key)
        for tag_key in needed.tags:
            tag = self.tags.get(tag_key)
            if tag is None or tag.digest != digest:
                continue  # forgotten, or fetched again meanwhile and moved
            self.tags.pop(tag_key, None)
            if await self._committed_elsewhere(name, tag_key[1]):
                continue
            await writer.put_tag(self.primary, name, tag_key[1], digest)
            registry = name.partition("/")[0]
            self.metrics.upstream[(registry, "tag_committed")] += 1

    async def _committed_elsewhere(self, name: str, tag: str) -> bool:
        """Whether the tag, absent when it was fetched, is in the bucket now: sync (or another
        gateway) committed it meanwhile, from a look at the upstream no older than ours, and
        an older answer must not overwrite it."""
        try:
            await self.primary.get(layout.tag_current_link(name, tag))
        except NotFound:
            return False
        return True
