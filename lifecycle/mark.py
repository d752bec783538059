"""Marking: what in the bucket is live, and what a collection may delete.

The bucket's objects (tags, revision links, layer links, referrer entries, blobs) form a graph:
a tag needs the revision it points to; a revision needs its manifest's blob and, in its
repository, its children (an index's manifests, an image's config and layers) and its
referrers; a layer link needs its blob; a referrer entry needs the referrer's revision. Roots
are what retention keeps, what rules name by digest, what was pulled recently, and whatever a
writer has claimed. Everything the roots reach is live; the rest are candidates. A candidate is
deleted only once it has been one for the grace period and nothing that stays reaches it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass

from lifecycle.inventory import Inventory
from lifecycle.manifests import Manifests
from registry import layout
from registry.claims import CLAIM_TTL
from registry.digest import Digest


@dataclass(frozen=True)
class Obj:
    """One deletable thing: ``kind`` is tag, revision, layer, referrer or blob."""

    kind: str
    name: str = ""  # repository ("" for a blob)
    digest: Digest | None = None  # what it names (a tag: None)
    tag: str = ""
    subject: Digest | None = None  # a referrer entry's subject

    @property
    def id(self) -> str:
        """Stable across runs: the GC state keys candidates by it."""
        if self.kind == "tag":
            return f"tag {self.name}:{self.tag}"
        if self.kind == "blob":
            return f"blob {self.digest}"
        if self.kind == "referrer":
            return f"referrer {self.name}@{self.subject}>{self.digest}"
        return f"{self.kind} {self.name}@{self.digest}"

    @property
    def subject_key(self) -> str:
        """The claim that protects it (registry/claims.py)."""
        if self.kind == "tag":
            return layout.subject_key((self.name, self.tag))
        assert self.digest is not None
        return layout.subject_key(self.digest)


def by_id(obj: Obj) -> str:
    return obj.id


def tag(name: str, tag_name: str) -> Obj:
    return Obj("tag", name, tag=tag_name)


def revision(name: str, digest: Digest) -> Obj:
    return Obj("revision", name, digest)


def layer(name: str, digest: Digest) -> Obj:
    return Obj("layer", name, digest)


def blob(digest: Digest) -> Obj:
    return Obj("blob", digest=digest)


def referrer(name: str, subject: Digest, digest: Digest) -> Obj:
    return Obj("referrer", name, digest, subject=subject)


def listed(inventory: Inventory) -> set[Obj]:
    """Every object the inventory found."""
    found = {blob(d) for d in inventory.blobs}
    for name, repo in inventory.repositories.items():
        found |= {tag(name, t) for t in repo.tags}
        found |= {revision(name, d) for d in repo.revisions}
        found |= {layer(name, d) for d in repo.layers}
        found |= {referrer(name, s, r) for s, rs in repo.referrers.items() for r in rs}
    return found


class Graph:
    """The edges between objects, reading manifests as they are needed."""

    def __init__(self, inventory: Inventory, manifests: Manifests) -> None:
        self.inventory = inventory
        self.manifests = manifests

    async def needs(self, obj: Obj) -> list[Obj]:
        repo = self.inventory.repositories.get(obj.name)
        if obj.kind == "tag":
            current = repo.tags.get(obj.tag) if repo else None
            return [revision(obj.name, current)] if current else []
        if obj.kind in ("layer", "referrer"):
            assert obj.digest is not None
            if obj.kind == "layer":
                return [blob(obj.digest)]
            return [revision(obj.name, obj.digest), blob(obj.digest)]
        if obj.kind != "revision":
            return []
        digest = obj.digest
        assert digest is not None
        found = [blob(digest)]
        if repo is not None:
            found += [referrer(obj.name, digest, r) for r in repo.referrers.get(digest, ())]
            fallback = layout.referrers_tag(digest)
            if fallback in repo.tags:
                found.append(tag(obj.name, fallback))
        manifest = await self.manifests.get(digest)
        if manifest is not None:
            for child in manifest.children:
                found += [revision(obj.name, child), blob(child)]
            for needed in manifest.blobs:
                found += [layer(obj.name, needed), blob(needed)]
        return found

    async def closure(self, start: Iterable[Obj], seen: set[Obj] | None = None) -> set[Obj]:
        """Everything ``start`` reaches, itself included; ``seen`` (already closed) is not
        walked again."""
        reached = set(seen or ())
        frontier = [obj for obj in set(start) if obj not in reached]
        reached.update(frontier)
        while frontier:
            found = await asyncio.gather(*map(self.needs, frontier))
            frontier = [obj for objs in found for obj in objs if obj not in reached]
            frontier = list(dict.fromkeys(frontier))
            reached.update(frontier)
        return reached


def claimed(objects: Iterable[Obj], claims: Iterable[tuple[int, str]], now: float) -> set[Obj]:
    """The objects a claim still in force protects (made within ``CLAIM_TTL`` of ``now``)."""
    keys = {key for when, key in claims if when >= now - CLAIM_TTL}
    return {obj for obj in objects if obj.subject_key in keys}


@dataclass
class Marked:
    listed: set[Obj]
    live: set[Obj]  # reached from the roots
    candidates: dict[str, float]  # object id -> first seen (carried over from the state)
    doomed: set[Obj]  # candidates past the grace period that nothing staying reaches


async def mark(graph: Graph, roots: Iterable[Obj], previous: dict[str, float], *,
               now: float, grace: float) -> Marked:
    """Live objects, candidates (first seen now unless ``previous`` saw them earlier) and what
    may go: a candidate for ``grace`` that no object staying needs."""
    objects = listed(graph.inventory)
    live = await graph.closure(roots)
    candidates = {obj.id: previous.get(obj.id, now) for obj in objects - live}
    ready = {obj for obj in objects - live if candidates[obj.id] <= now - grace}
    staying = await graph.closure(objects - ready, seen=live)
    return Marked(objects, live, candidates, ready - staying)


async def spare(graph: Graph, marked: Marked, claims: Iterable[tuple[int, str]],
                now: float) -> set[Obj]:
    """Take out of ``marked.doomed`` what claims made since marking protect, with all they
    need; returns what was spared."""
    protected = await graph.closure(claimed(marked.listed, claims, now))
    spared = marked.doomed & protected
    marked.doomed -= spared
    return spared
