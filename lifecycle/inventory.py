"""What the bucket holds, from listings: every repository's tags (and where each points), tag
histories, revisions, layer links and referrer entries; every blob; every writer's claim.

Listings may lag writes; nothing here decides anything. Keys come from registry/layout.py.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from registry import layout
from registry.digest import Digest
from registry.errors import RegistryError
from registry.store import KeyLister, NotFound, ObjectStore, batch_deleter, key_lister


@dataclass
class Repository:
    name: str
    tags: dict[str, Digest | None] = field(default_factory=dict)  # None: no readable link
    history: dict[str, set[Digest]] = field(default_factory=dict)  # tag -> its index entries
    revisions: set[Digest] = field(default_factory=set)
    layers: set[Digest] = field(default_factory=set)
    referrers: dict[Digest, set[Digest]] = field(default_factory=dict)  # subject -> referrers


@dataclass
class Inventory:
    repositories: dict[str, Repository]
    blobs: set[Digest]
    claims: list[tuple[int, str]]  # (unix time, subject key) of every claim listed
    listed_at: float  # wall clock when listing began

    def repository(self, name: str) -> Repository:
        return self.repositories.setdefault(name, Repository(name))


def parse_digest(algorithm: str, hex_part: str) -> Digest | None:
    try:
        return Digest.parse(f"{algorithm}:{hex_part}")
    except RegistryError:
        return None


DELETE_BATCH = 1000  # keys per batch delete (S3's DeleteObjects takes at most a thousand)


class Lister:
    """Store listings and small reads with at most ``concurrency`` in flight."""

    def __init__(self, store: ObjectStore, concurrency: int) -> None:
        self.store = store
        self.slots = asyncio.Semaphore(concurrency)

    async def children(self, prefix: str) -> list[str]:
        async with self.slots:
            return await self.store.children(prefix)

    async def get(self, key: str) -> bytes:
        async with self.slots:
            return await self.store.get(key)

    async def size(self, key: str) -> int:
        async with self.slots:
            return await self.store.size(key)

    async def put(self, key: str, data: bytes) -> None:
        async with self.slots:
            await self.store.put(key, data)

    async def delete(self, key: str) -> None:
        async with self.slots:
            await self.store.delete(key)

    async def delete_many(self, keys: list[str]) -> None:
        """Delete ``keys``, in no set order: batches of ``DELETE_BATCH`` on a store that takes
        them (S3: one request each), else one call per key - either way with at most
        ``concurrency`` calls in flight."""
        batched = batch_deleter(self.store)
        if batched is None:
            await asyncio.gather(*map(self.delete, keys))
            return

        async def batch(start: int) -> None:
            async with self.slots:
                await batched.delete_many(keys[start:start + DELETE_BATCH])

        await asyncio.gather(*map(batch, range(0, len(keys), DELETE_BATCH)))

    async def digests(self, parent: Callable[[str | None], str]) -> set[Digest]:
        """Digests under ``parent(algorithm)`` for every algorithm ``parent(None)`` lists."""
        found: set[Digest] = set()
        for algorithm in await self.children(parent(None)):
            for entry in await self.children(parent(algorithm)):
                if (digest := parse_digest(algorithm, entry)) is not None:
                    found.add(digest)
        return found

    async def link(self, key: str) -> Digest | None:
        try:
            data = await self.get(key)
            return Digest.parse(data.decode("ascii", "replace").strip())
        except (NotFound, RegistryError):
            return None


async def _names(lister: Lister, root: str, part: str) -> list[str]:
    """Repository names under ``root``: directories holding ``part`` (``_manifests``...)."""
    found: list[str] = []

    async def walk(path: str) -> None:
        children = await lister.children(f"{root}{path}/")
        if any(child in layout.REPOSITORY_PARTS for child in children) and (
                part in children or part == "*"):
            found.append(path)
        await asyncio.gather(*(walk(f"{path}/{child}") for child in children
                               if not child.startswith("_")))

    await asyncio.gather(*(walk(top) for top in await lister.children(root)))
    return sorted(found)


async def _repository(lister: Lister, repository: Repository) -> None:
    name = repository.name
    tags = await lister.children(layout.tags_dir(name))

    async def tag(tag: str) -> None:
        repository.tags[tag] = await lister.link(layout.tag_current_link(name, tag))
        repository.history[tag] = await lister.digests(
            lambda algorithm: layout.tag_index_dir(name, tag, algorithm))

    async def revisions() -> None:
        repository.revisions = await lister.digests(
            lambda algorithm: layout.revisions_dir(name, algorithm))

    async def layers() -> None:
        repository.layers = await lister.digests(
            lambda algorithm: layout.layers_dir(name, algorithm))

    await asyncio.gather(revisions(), layers(), *map(tag, tags))


async def _referrers(lister: Lister, repository: Repository) -> None:
    name = repository.name
    subjects = await lister.digests(lambda algorithm: layout.referrer_subjects_dir(name, algorithm))

    async def one(subject: Digest) -> None:
        entries = await lister.children(layout.referrers_dir(name, subject))
        repository.referrers[subject] = {digest for entry in entries
                                         if (digest := layout.parse_referrer_entry(entry))}

    await asyncio.gather(*map(one, subjects))


async def list_blobs(lister: Lister) -> set[Digest]:
    found: set[Digest] = set()

    async def shard(algorithm: str, prefix: str) -> None:
        for entry in await lister.children(layout.blob_shard_dir(algorithm, prefix)):
            if (digest := parse_digest(algorithm, entry)) is not None:
                found.add(digest)

    for algorithm in await lister.children(layout.blobs_dir()):
        prefixes = await lister.children(layout.blobs_dir(algorithm))
        await asyncio.gather(*(shard(algorithm, prefix) for prefix in prefixes))
    return found


async def list_claims(lister: Lister) -> list[tuple[int, str]]:
    return sorted(parsed for entry in await lister.children(layout.CLAIMS_DIR)
                  if (parsed := layout.parse_claim(entry)) is not None)


async def _from_whole_listings(lister: Lister, whole: KeyLister, inventory: Inventory) -> None:
    """The inventory from three listings of whole prefixes (a page per thousand keys on S3),
    then a read of each tag's current link."""
    currents: list[tuple[Repository, str]] = []
    for key in await whole.list_keys(layout.REPOSITORIES_ROOT):
        parsed = layout.parse_repository_key(key)
        if parsed is None:
            continue
        name, kind, tag, digest = parsed
        repo = inventory.repository(name)
        if kind == "current":
            currents.append((repo, tag))
            repo.tags[tag] = None
            repo.history.setdefault(tag, set())
        elif kind == "history" and digest is not None:
            repo.tags.setdefault(tag, None)
            repo.history.setdefault(tag, set()).add(digest)
        elif kind == "revision" and digest is not None:
            repo.revisions.add(digest)
        elif digest is not None:
            repo.layers.add(digest)

    async def current(repo: Repository, tag: str) -> None:
        repo.tags[tag] = await lister.link(layout.tag_current_link(repo.name, tag))

    async def listed_tags(repo: Repository) -> None:
        # What lists as a tag with nothing in it (a file store's empty directory): a tag too.
        for tag in await lister.children(layout.tags_dir(repo.name)):
            repo.tags.setdefault(tag, None)

    await asyncio.gather(*(current(repo, tag) for repo, tag in currents),
                         *map(listed_tags, list(inventory.repositories.values())))
    for key in await whole.list_keys(layout.REFERRER_REPOSITORIES_ROOT):
        if (entry := layout.parse_referrer_key(key)) is not None:
            name, subject, referrer = entry
            inventory.repository(name).referrers.setdefault(subject, set()).add(referrer)
    inventory.blobs = {digest for key in await whole.list_keys(layout.blobs_dir())
                       if (digest := layout.parse_blob_key(key)) is not None}


async def take_inventory(store: ObjectStore, concurrency: int = 16, *,
                         wall: Callable[[], float] = time.time) -> Inventory:
    """List everything; claims first, so a claim made after them is seen at the next look."""
    lister = Lister(store, concurrency)
    inventory = Inventory({}, set(), [], wall())
    inventory.claims = await list_claims(lister)
    if (whole := key_lister(store)) is not None:
        await _from_whole_listings(lister, whole, inventory)
        return inventory
    names = await _names(lister, layout.REPOSITORIES_ROOT, "*")
    referrer_names = await _names(lister, layout.REFERRER_REPOSITORIES_ROOT, "_referrers")
    await asyncio.gather(*(_repository(lister, inventory.repository(n)) for n in names))
    await asyncio.gather(*(_referrers(lister, inventory.repository(n)) for n in referrer_names))
    inventory.blobs = await list_blobs(lister)
    return inventory
