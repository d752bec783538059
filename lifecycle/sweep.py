"""Sweeping: announce what will go, let writers claim it back, then delete in the order that
keeps every reader safe (docs/retention.md).

1. Announce: each doomed object's subject goes into its doomed shard, with a deadline.
2. Settle: wait ``gc.settle``, the longest a listing may lag a write.
3. Look at the claims once more: whatever a writer claimed since marking is spared.
4. Delete, before the deadline: tags first (their history, then the current link), then referrer
   entries, revision links (an index before its children; history entries naming them), layer
   links, and blobs last. No object that stays needs a doomed one (marking saw to that), and
   what is left of a doomed image is whole below any manifest left, so stopping (or a crash)
   between any two deletions leaves a valid bucket.
5. Withdraw the announcements, and delete claims older than ``CLAIM_TTL``.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field

from lifecycle.inventory import DELETE_BATCH, Inventory, Lister, list_claims
from lifecycle.manifests import Manifests
from lifecycle.mark import Graph, Marked, Obj, by_id, revision, spare
from registry import layout
from registry.claims import CLAIM_TTL, SYSTEM_TIMING, Doomed, Timing
from registry.digest import Digest
from registry.gcconfig import GCConfig
from registry.store import NotFound

STAGES = ("tag", "referrer", "revision", "layer", "blob")
UNLINKED = "(unlinked)"  # freed bytes of blobs no repository linked

Guard = Callable[[str], None]
"""Raises to stop before a deletion (the GC lease's check)."""


def unguarded(what: str) -> None:
    """A collection that needs no lease: tests driving one collector at a time."""


def keys_of(obj: Obj, inventory: Inventory, doomed: set[Obj]) -> list[str]:
    """The store keys deleting ``obj`` removes, in order."""
    repo = inventory.repositories.get(obj.name)
    digest = obj.digest
    if obj.kind == "tag":
        # The history first: a tag stopped halfway still resolves (and lists) as before.
        history = repo.history.get(obj.tag, set()) if repo else set()
        return [*(layout.tag_index_link(obj.name, obj.tag, h) for h in sorted(history, key=str)),
                layout.tag_current_link(obj.name, obj.tag), layout.tag_directory(obj.name, obj.tag)]
    assert digest is not None
    if obj.kind == "blob":
        return [layout.blob_data(digest)]
    if obj.kind == "layer":
        return [layout.layer_link(obj.name, digest)]
    if obj.kind == "referrer":
        assert obj.subject is not None
        return [layout.referrer_entry(obj.name, obj.subject, digest)]
    # A revision: its link, then the history entries of tags that stay and once named it.
    staying = [t for t, history in (repo.history.items() if repo else ())
               if digest in history and Obj("tag", obj.name, tag=t) not in doomed]
    return [layout.revision_link(obj.name, digest),
            *(layout.tag_index_link(obj.name, t, digest) for t in sorted(staying))]


async def blob_sizes(doomed: set[Obj], manifests: Manifests, lister: Lister) -> dict[Digest, int]:
    """The size of every doomed blob: as a manifest read declares it, else asked (before it
    is deleted)."""

    async def size(digest: Digest) -> tuple[Digest, int]:
        known = manifests.size_of(digest)
        if known is not None:
            return digest, known
        try:
            return digest, await lister.size(layout.blob_data(digest))
        except NotFound:
            return digest, 0

    blobs = [obj.digest for obj in doomed if obj.kind == "blob" and obj.digest is not None]
    return dict(await asyncio.gather(*map(size, blobs)))


def freed_bytes(deleted: set[Obj], sizes: dict[Digest, int]) -> dict[str, int]:
    """Bytes each repository frees: the blobs deleted, each counted for every repository whose
    deleted link named it (one no repository linked counts as ``UNLINKED``)."""
    owners: dict[Digest, set[str]] = defaultdict(set)
    for obj in deleted:
        if obj.kind in ("layer", "revision") and obj.digest is not None:
            owners[obj.digest].add(obj.name)
    freed: dict[str, int] = defaultdict(int)
    for obj in deleted:
        if obj.kind == "blob" and obj.digest is not None:
            for name in owners.get(obj.digest) or {UNLINKED}:
                freed[name] += sizes.get(obj.digest, 0)
    return dict(freed)


@dataclass
class Swept:
    deleted: Counter[str] = field(default_factory=Counter)
    gone: set[Obj] = field(default_factory=set)
    spared: int = 0
    stopped: str | None = None


class Sweeper:
    def __init__(self, lister: Lister, graph: Graph, settings: GCConfig, *,
                 timing: Timing = SYSTEM_TIMING, guard: Guard = unguarded) -> None:
        self.lister = lister
        self.store = lister.store
        self.graph = graph
        self.settings = settings
        self.timing = timing
        self.guard = guard
        self.run = f"{int(timing.wall())}-{uuid.uuid4().hex[:8]}"

    async def sweep(self, marked: Marked) -> Swept:
        result = Swept()
        if not marked.doomed:
            await self._tidy()
            return result
        deadline = await self._announce(marked.doomed)
        await self.timing.sleep(self.settings.settle)
        claims = await list_claims(self.lister)
        result.spared = len(await spare(self.graph, marked, claims, self.timing.wall()))
        for stage in STAGES:
            objects = [o for o in marked.doomed if o.kind == stage]
            for layer in await self._layers(objects) if stage == "revision" else [objects]:
                await self._delete(layer, marked.doomed, deadline, result)
                if result.stopped:
                    break
            if result.stopped:
                break
        # Not after a failure: with the lease lost, the shards may be another run's by now.
        await self._tidy()
        return result

    async def _announce(self, doomed: set[Obj]) -> float:
        """Write every doomed shard; returns the monotonic deadline for deletions."""
        settings = self.settings
        budget = settings.settle + settings.sweep_budget
        deadline = self.timing.monotonic() + budget
        wall_deadline = self.timing.wall() + budget + settings.clock_skew
        shards: dict[str, set[str]] = defaultdict(set)
        for obj in doomed:
            shards[layout.doomed_shard(obj.subject_key)].add(obj.subject_key)
        self.guard("announcing what garbage collection deletes")
        await asyncio.gather(*(self.lister.put(key, Doomed(self.run, wall_deadline, keys).to_json())
                               for key, keys in shards.items()))
        return deadline

    async def _layers(self, revisions: list[Obj]) -> list[list[Obj]]:
        """Doomed revisions in the order that keeps what remains whole below: an index before
        the children it lists. Stopped (or killed) between any two deletions, every revision
        left still has every revision it needs."""
        doomed = set(revisions)
        parents: dict[Obj, set[Obj]] = {obj: set() for obj in revisions}
        for obj in revisions:
            assert obj.digest is not None
            manifest = await self.graph.manifests.get(obj.digest)
            for child in manifest.children if manifest is not None else ():
                if (needed := revision(obj.name, child)) in doomed:
                    parents[needed].add(obj)
        layers, left = [], set(revisions)
        while left:
            layer = {obj for obj in left if not parents[obj] & left} or left  # (no cycles)
            layers.append(sorted(layer, key=by_id))
            left -= layer
        return layers

    async def _delete(self, objects: list[Obj], doomed: set[Obj], deadline: float,
                      result: Swept) -> None:
        """Delete ``objects`` a batch at a time (as many keys as ``concurrency`` batch deletes
        take at once), the deadline and the lease checked before each. Within a batch the
        objects' first keys go, then their second ones...: each object's keys in ``keys_of``'s
        order, whatever order a batch delete keeps."""
        inventory = self.graph.inventory
        ordered = sorted(objects, key=by_id)
        size = DELETE_BATCH * self.settings.concurrency
        for start in range(0, len(ordered), size):
            batch = ordered[start:start + size]
            if self.timing.monotonic() >= deadline:
                result.stopped = "the sweep's deadline passed (gc.sweep_budget)"
                return
            self.guard(f"deleting {batch[0].id} and {len(batch) - 1} more")
            keys = [keys_of(obj, inventory, doomed) for obj in batch]
            for position in range(max(map(len, keys))):
                await self.lister.delete_many([k[position] for k in keys if position < len(k)])
            result.gone.update(batch)
            result.deleted.update(obj.kind for obj in batch)

    async def _tidy(self) -> None:
        """Withdraw every announcement (ours, and any a crashed run left) and delete claims
        past their lifetime."""
        await self.lister.delete_many([layout.doomed_shard_of(shard) for shard in
                                       await self.lister.children(layout.DOOMED_DIR)])
        oldest = self.timing.wall() - CLAIM_TTL
        await self.lister.delete_many([layout.claim(key, when) for when, key
                                       in await list_claims(self.lister) if when < oldest])

