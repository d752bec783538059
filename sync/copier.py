"""Copy images from an upstream into the primary store: copy, verify, then commit.

Order is what makes a crash harmless: blobs first (each verified against its digest while it
streams, so a mismatch is never committed), then child manifests, then the index, then the
repository links, and the tag last (``registry.writer``). A run killed anywhere leaves no tag
pointing at missing content, and the next run skips everything already committed: a blob
already in the bucket is never downloaded again, whichever repository or registry it came from.
Every write into a repository (link, manifest, tag) and every download first asks the copy's
guard, the rule's lease (sync/lease.py): a worker that lost it commits nothing more. What a copy
writes or finds already there is claimed first (registry/claims.py), so a garbage collection
running meanwhile keeps it; a manifest or tag is committed only while those claims still hold.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from registry import layout, writer
from registry.claims import claims_for
from registry.digest import Digest
from registry.errors import RegistryError
from registry.flight import SingleFlight
from registry.mediatypes import (
    DOCKER_MANIFEST_V1_SIGNED,
    INDEX_TYPES,
    media_type_of,
    parse_manifest,
)
from registry.store import NotFound, ObjectStore
from registry.upstream.client import BlobStream, Upstream
from sync.filters import select_children

Guard = Callable[[str], None]
"""Called with what is about to be committed; raises to stop the copy (``Lease.check``)."""


class CopyError(Exception):
    """One image could not be copied; the run goes on with the others."""


def unguarded(what: str) -> None:
    """The guard of a copy that needs no lease: a dry run, which commits nothing."""


@dataclass
class CopyStats:
    """What a run did; summed across images and rules for the summary."""

    images: int = 0
    images_current: int = 0  # tag already at the upstream's digest: nothing fetched
    manifests: int = 0
    blobs: int = 0
    blobs_present: int = 0
    bytes_downloaded: int = 0
    bytes_present: int = 0
    failures: list[str] = field(default_factory=list)

    def add(self, other: CopyStats) -> None:
        for name in ("images", "images_current", "manifests", "blobs", "blobs_present",
                     "bytes_downloaded", "bytes_present"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.failures += other.failures


class Copier:
    """Copies into one store from one upstream; shared by every image of a run."""

    def __init__(self, store: ObjectStore, upstream: Upstream, *, blob_slots: asyncio.Semaphore,
                 platforms: list[str] | None = None, referrers: bool = False,
                 dry_run: bool = False, progress: Progress | None = None,
                 guard: Guard = unguarded) -> None:
        self.store = store
        self.upstream = upstream
        self.blob_slots = blob_slots
        self.platforms = platforms
        self.referrers = referrers
        self.dry_run = dry_run
        self.progress = progress or Progress()
        self.guard = guard
        self.stats = CopyStats()
        self.claims = claims_for(store)
        self._blob_flights = SingleFlight()
        self._claimed: set[Digest] = set()

    async def copy_tag(self, repository: str, tag: str, name: str) -> Digest:
        """Mirror ``repository:tag`` as ``name:tag``; a HEAD decides whether anything changed."""
        ref = await self.upstream.head_manifest(repository, tag)
        if await self._current_tag(name, tag) == ref.digest:
            self.stats.images_current += 1
            return ref.digest
        await self.copy_manifest(repository, ref.digest, name)
        if not self.dry_run:
            self.guard(f"tag {name}:{tag}")
            await self.claims.ensure([ref.digest])
            await writer.put_tag(self.store, name, tag, ref.digest)
        self.stats.images += 1
        return ref.digest

    async def copy_manifest(self, repository: str, digest: Digest, name: str, *,
                            force: bool = False) -> None:
        """A manifest and everything under it; nothing if ``name`` already has it committed.
        ``force`` (repairs) fetches every manifest again and every blob the store lacks."""
        if not force:
            if not self.dry_run:  # the revision found is relied on, with all below it
                await self.claims.claim(digest)
            if await self._exists(layout.revision_link(name, digest)):
                return
        _, data = await self.upstream.get_manifest(repository, str(digest))
        doc = parse_manifest(data)
        media_type = media_type_of(doc)
        if media_type == DOCKER_MANIFEST_V1_SIGNED:
            raise CopyError(f"{repository}@{digest}: schema 1 manifests are not supported")
        needs: list[Digest] = []
        if media_type in INDEX_TYPES:
            children = select_children(doc.get("manifests", []), self.platforms,
                                       self.referrers)
            needs = [Digest.parse(c["digest"]) for c in children]
            await _gather(self.copy_manifest(repository, child, name, force=force)
                          for child in needs)
        else:
            blobs = [b for b in [doc.get("config"), *doc.get("layers", [])] if isinstance(b, dict)]
            needs = [Digest.parse(b["digest"]) for b in blobs]
            await _gather(self._blob(repository, b, name) for b in blobs)
        if self.referrers:
            for referrer in await self.upstream.referrers(repository, digest):
                await self.copy_manifest(repository, Digest.parse(referrer["digest"]), name,
                                         force=force)
        if not self.dry_run:
            self.guard(f"manifest {name}@{digest}")
            await self.claims.ensure(needs)
            await writer.put_manifest(self.store, name, data)
        self.stats.manifests += 1

    async def _blob(self, repository: str, descriptor: dict[str, Any], name: str) -> None:
        digest = Digest.parse(descriptor["digest"])
        size = int(descriptor.get("size", 0))
        if descriptor.get("urls") and not await writer.has_blob(self.store, digest,
                                                                claim=not self.dry_run):
            return  # non-distributable (foreign) layer: clients fetch it from its own URLs
        # Two images of one run sharing a layer: one download, both wait for it; only the
        # first counts it as downloaded.
        first = digest not in self._claimed
        self._claimed.add(digest)
        fetched = await self._blob_flights.do(digest, lambda: self._fetch(repository, digest,
                                                                          size))
        if fetched and first:
            self.stats.blobs += 1
            self.stats.bytes_downloaded += size
        else:
            self.stats.blobs_present += 1
            self.stats.bytes_present += size
        if not self.dry_run:
            self.guard(f"blob link {name}@{digest}")
            await writer.link_blob(self.store, name, digest)

    async def _fetch(self, repository: str, digest: Digest, size: int) -> bool:
        """Download ``digest`` unless the store has it (a dry run only says it would)."""
        if await writer.has_blob(self.store, digest, claim=not self.dry_run):
            return False
        if self.dry_run:
            return True
        async with self.blob_slots:
            self.guard(f"blob {digest}")  # a download that could not be linked is wasted
            async with self.upstream.blob(repository, digest) as stream:
                if stream.size is not None and size and stream.size != size:
                    raise CopyError(f"{repository}@{digest}: upstream sent {stream.size} "
                                    f"bytes, the manifest says {size}")
                await writer.put_blob(self.store, digest, self._counted(stream, digest, size))
        return True

    async def _counted(self, stream: BlobStream, digest: Digest,
                       size: int) -> AsyncIterator[bytes]:
        seen = 0
        async for chunk in stream:
            seen += len(chunk)
            if size and seen > size:  # never buffer or store more than the manifest allows
                raise CopyError(f"{digest}: upstream sent more than the {size} bytes declared")
            self.progress.advance(len(chunk))
            yield chunk

    async def _current_tag(self, name: str, tag: str) -> Digest | None:
        try:
            data = await self.store.get(layout.tag_current_link(name, tag))
            digest = Digest.parse(data.decode("ascii", "replace").strip())
        except (NotFound, RegistryError):
            return None
        # The tag is current only if what it points to is committed (a crash cannot cause
        # otherwise, but a replica copied by hand might).
        return digest if await self._exists(layout.revision_link(name, digest)) else None

    async def _exists(self, key: str) -> bool:
        try:
            await self.store.size(key)
        except NotFound:
            return False
        return True


class Progress:
    """Receives byte counts while blobs stream; the terminal display overrides it."""

    def advance(self, nbytes: int) -> None:
        pass


async def _gather(coroutines: Any) -> None:
    """Run concurrently; the first failure cancels the rest and is raised."""
    async with asyncio.TaskGroup() as group:
        for coroutine in coroutines:
            group.create_task(coroutine)


def describe_error(exc: BaseException) -> str:
    """One line for a failure, unwrapping the exception groups concurrent copies raise."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return str(exc) or type(exc).__name__
