"""Copy images from an upstream into every primary store (sync/targets.py): copy, verify, then
commit, in each target.

Order is what makes a crash harmless: blobs first (each verified against its digest while it
streams, so a mismatch is never committed), then child manifests, then the index, then the
repository links, and the tag last (``registry.writer``) - per target, so a target never has a
tag before what it needs, whatever the others have. A run killed anywhere leaves no tag pointing
at missing content, and the next run skips everything already committed: a blob already in a
target is never written there again, and one that some target has is copied from it to the
others rather than downloaded again (sync/fanout.py). Manifests likewise: one GET from the
upstream (a Docker Hub pull) for all the targets that lack one, none when a target has it.
Every write into a repository (link, manifest, tag) and every transfer first asks the copy's
guard, the rule's lease (sync/lease.py): a worker that lost it commits nothing more. What a copy
writes or finds already there is claimed first in that target (registry/claims.py), so a
garbage collection running meanwhile keeps it; a manifest or tag is committed only while those
claims still hold.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from registry import layout, writer
from registry.digest import Digest
from registry.errors import RegistryError
from registry.mediatypes import (
    DOCKER_MANIFEST_V1_SIGNED,
    INDEX_TYPES,
    media_type_of,
    parse_manifest,
)
from registry.store import NotFound, ObjectStore
from registry.store.errors import StoreError
from registry.upstream.client import BlobStream, Upstream
from sync.fanout import Blobs
from sync.filters import select_children
from sync.targets import Target, Targets

T = TypeVar("T")

Guard = Callable[[str], None]
"""Called with what is about to be committed; raises to stop the copy (``Lease.check``)."""

# A target that takes no bytes of a blob for this long while other targets wait is cut off
# (sync/fanout.py); below the time an upstream waits for a stalled reader (often 60 s).
DEFAULT_STALL = 30.0


class CopyError(Exception):
    """One image could not be copied; the run goes on with the others."""


def unguarded(what: str) -> None:
    """The guard of a copy that needs no lease: a dry run, which commits nothing."""


@dataclass
class CopyStats:
    """What a run did, upstream side (each target's own: ``TargetStats``); summed across images
    and rules for the summary."""

    images: int = 0
    images_current: int = 0  # tag already at the upstream's digest in every target
    manifests: int = 0
    blobs: int = 0  # downloaded from the upstream (once, whatever the number of targets)
    blobs_refilled: int = 0  # copied from a target that had them to those that did not
    blobs_present: int = 0
    bytes_downloaded: int = 0
    bytes_refilled: int = 0
    bytes_present: int = 0
    failures: list[str] = field(default_factory=list)

    def add(self, other: CopyStats) -> None:
        for name in ("images", "images_current", "manifests", "blobs", "blobs_refilled",
                     "blobs_present", "bytes_downloaded", "bytes_refilled", "bytes_present"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.failures += other.failures


class Copier:
    """Copies from one upstream into the targets; shared by every image of a run."""

    def __init__(self, targets: ObjectStore | Targets, upstream: Upstream, *,
                 blob_slots: asyncio.Semaphore, platforms: list[str] | None = None,
                 referrers: bool = False, dry_run: bool = False,
                 progress: Progress | None = None, guard: Guard = unguarded,
                 stall: float = DEFAULT_STALL) -> None:
        """``targets``: the run's, or one store (a run of its own with one target)."""
        self.targets = targets if isinstance(targets, Targets) else Targets([targets])
        self.upstream = upstream
        self.platforms = platforms
        self.referrers = referrers
        self.dry_run = dry_run
        self.progress = progress or Progress()
        self.guard = guard
        self.stats = CopyStats()
        self.blobs = Blobs(self.targets, slots=blob_slots, stall=stall, guard=guard,
                           advance=self.progress.advance, dry_run=dry_run)
        self._counted: dict[Digest, int] = {}  # transfers of each blob counted so far

    async def copy_tag(self, repository: str, tag: str, name: str) -> Digest:
        """Mirror ``repository:tag`` as ``name:tag``; a HEAD decides whether anything changed."""
        ref = await self.upstream.head_manifest(repository, tag)
        current = await self._each(self.targets.live(), f"tag {name}:{tag}",
                                   lambda t: self._current_tag(t, name, tag))
        moved = [t for t in self.targets.live() if current.get(t) != ref.digest]
        for target in self.targets.live():
            if target not in moved:
                target.stats.images_current += 1
        if moved:
            await self.copy_manifest(repository, ref.digest, name, among=moved)

            async def commit(target: Target) -> None:
                if not self.dry_run:
                    await target.claims.ensure([ref.digest])
                    await writer.put_tag(target.store, name, tag, ref.digest)
                target.stats.images += 1

            self._guard(f"tag {name}:{tag}")
            await self._each(moved, f"tag {name}:{tag}", commit)
        if not self.down:  # an image some target lacks is reported failed, not counted here
            if moved:
                self.stats.images += 1
            else:
                self.stats.images_current += 1
        return ref.digest

    async def copy_manifest(self, repository: str, digest: Digest, name: str, *,
                            force: bool = False, among: Sequence[Target] | None = None) -> None:
        """A manifest and everything under it, in each target (of ``among``) that does not have
        it committed in ``name``. ``force`` (repairs) fetches every manifest again and every
        blob a target lacks."""
        targets = self.targets.live() if among is None else [t for t in among if t.live]
        have: dict[Target, bool] = {}
        if not force:
            async def committed(target: Target) -> bool:
                if not self.dry_run:  # the revision found is relied on, with all below it
                    await target.claims.claim(digest)
                return await _exists(target.store, layout.revision_link(name, digest))

            have = await self._each(targets, f"manifest {name}@{digest}", committed)
        need = [t for t in targets if t.live and not have.get(t, False)]
        if not need:
            return
        holders = [t for t in targets if t.live and have.get(t)]
        data = await self._manifest_bytes(repository, digest, holders or [
            t for t in self.targets.live() if t not in need])
        doc = parse_manifest(data)
        media_type = media_type_of(doc)
        if media_type == DOCKER_MANIFEST_V1_SIGNED:
            raise CopyError(f"{repository}@{digest}: schema 1 manifests are not supported")
        needs: list[Digest] = []
        if media_type in INDEX_TYPES:
            children = select_children(doc.get("manifests", []), self.platforms,
                                       self.referrers)
            needs = [Digest.parse(c["digest"]) for c in children]
            await _gather(self.copy_manifest(repository, child, name, force=force, among=need)
                          for child in needs)
        else:
            blobs = [b for b in [doc.get("config"), *doc.get("layers", [])] if isinstance(b, dict)]
            needs = [Digest.parse(b["digest"]) for b in blobs]
            await _gather(self._blob(repository, b, name, need) for b in blobs)
        if self.referrers:
            for referrer in await self.upstream.referrers(repository, digest):
                await self.copy_manifest(repository, Digest.parse(referrer["digest"]), name,
                                         force=force, among=need)

        async def commit(target: Target) -> None:
            if not self.dry_run:
                await target.claims.ensure(needs)
                await writer.put_manifest(target.store, name, data)
            target.stats.manifests += 1

        self._guard(f"manifest {name}@{digest}")
        await self._each(need, f"manifest {name}@{digest}", commit)
        self.stats.manifests += 1

    @property
    def down(self) -> list[Target]:
        return [t for t in self.targets if not t.live]

    def _guard(self, what: str) -> None:
        """Once before the targets' writes of ``what``, which start together."""
        if not self.dry_run:
            self.guard(what)

    async def _manifest_bytes(self, repository: str, digest: Digest,
                              peers: Sequence[Target]) -> bytes:
        """From a target that has it (no upstream request: a Docker Hub manifest GET counts as
        a pull), else from the upstream."""
        for peer in peers:
            with contextlib.suppress(StoreError, NotFound):
                data = await peer.store.get(layout.blob_data(digest))
                if digest.matches(data):
                    return data
        _, data = await self.upstream.get_manifest(repository, str(digest))
        return data

    async def _blob(self, repository: str, descriptor: dict[str, Any], name: str,
                    targets: Sequence[Target]) -> None:
        digest = Digest.parse(descriptor["digest"])
        size = int(descriptor.get("size", 0))
        # Two images of one run sharing a layer: one transfer, both wait for it.
        filled = await self.blobs.ensure(
            digest, targets, lambda: self._download(repository, digest, size),
            foreign=bool(descriptor.get("urls")))
        # Each transfer is counted once, by the first image to see it; an image that saw none
        # found the blob present.
        counted = self._counted.get(digest, 0)
        self._counted[digest] = len(filled.transfers)
        for source in filled.transfers[counted:]:
            if source == "upstream":
                self.stats.blobs += 1
                self.stats.bytes_downloaded += size
            else:
                self.stats.blobs_refilled += 1
                self.stats.bytes_refilled += size
        if counted == len(filled.transfers) and filled.kinds:
            self.stats.blobs_present += 1
            self.stats.bytes_present += size
        linked = [t for t in targets if t.live and filled.kinds.get(t) in ("present", "written")]
        for target in linked:
            _count(target, digest, size, filled.kinds[target], filled.via.get(target))

        async def link(target: Target) -> None:
            if not self.dry_run:
                await writer.link_blob(target.store, name, digest)

        # A foreign (non-distributable) layer a target lacks is not linked there: clients
        # fetch it from its own URLs.
        if linked:
            self._guard(f"blob link {name}@{digest}")
            await self._each(linked, f"blob link {name}@{digest}", link)

    @contextlib.asynccontextmanager
    async def _download(self, repository: str, digest: Digest,
                        size: int) -> AsyncIterator[AsyncIterator[bytes]]:
        async with self.upstream.blob(repository, digest) as stream:
            if stream.size is not None and size and stream.size != size:
                raise CopyError(f"{repository}@{digest}: upstream sent {stream.size} "
                                f"bytes, the manifest says {size}")
            yield _bounded(stream, digest, size)

    async def _current_tag(self, target: Target, name: str, tag: str) -> Digest | None:
        try:
            data = await target.store.get(layout.tag_current_link(name, tag))
            digest = Digest.parse(data.decode("ascii", "replace").strip())
        except (NotFound, RegistryError):
            return None
        # The tag is current only if what it points to is committed (a crash cannot cause
        # otherwise, but a replica copied by hand might).
        return digest if await _exists(target.store, layout.revision_link(name, digest)) \
            else None

    async def _each(self, among: Sequence[Target], what: str,
                    call: Callable[[Target], Awaitable[T]]) -> dict[Target, T]:
        """``call`` for each live target of ``among`` at once: each one's answer; a store
        failure is that target's (``Targets.failed``), the others go on."""
        answers: dict[Target, T] = {}

        async def one(target: Target) -> None:
            with self.targets.failing(target, what):
                answers[target] = await call(target)

        try:
            await _gather(one(t) for t in among if t.live)
        except BaseExceptionGroup as group:
            if len(group.exceptions) == 1:  # one target's (the last live one): as it is
                raise group.exceptions[0] from None
            raise
        return answers


def _count(target: Target, digest: Digest, size: int, kind: str, source: str | None) -> None:
    """A blob in ``target``'s counts: written (once, and whether from another target) or
    present."""
    stats = target.stats
    if kind == "written" and digest not in target.seen:
        stats.blobs += 1
        stats.bytes_written += size
        if source == "peer":
            stats.blobs_refilled += 1
            stats.bytes_refilled += size
    else:
        stats.blobs_present += 1
        stats.bytes_present += size
    target.seen.add(digest)


async def _bounded(stream: BlobStream, digest: Digest, size: int) -> AsyncIterator[bytes]:
    seen = 0
    async for chunk in stream:
        seen += len(chunk)
        if size and seen > size:  # never buffer or store more than the manifest allows
            raise CopyError(f"{digest}: upstream sent more than the {size} bytes declared")
        yield chunk


async def _exists(store: ObjectStore, key: str) -> bool:
    try:
        await store.size(key)
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
