"""Is an image whole in the bucket: one walk of its manifests (an index: the children its rules
copy, or those nodes pulled) and their blobs, shared by exposure (the first thing missing) and
scrub (everything wrong, with ``--hash`` a blob's bytes too)."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Awaitable, Callable
from dataclasses import dataclass

from lifecycle.inventory import Inventory
from lifecycle.manifests import Manifests, mirrored_children
from registry.digest import Digest
from registry.mirrorconfig import MirrorRule

MISSING = "missing"

# A blob's problem (None: fine); a manifest's own blob is checked the same way.
BlobCheck = Callable[[Digest], Awaitable[str | None]]


@dataclass(frozen=True)
class Problem:
    kind: str  # "manifest" or "blob"
    digest: Digest
    problem: str

    def __str__(self) -> str:
        return f"{self.kind} {self.digest}: {self.problem}"


def listed(inventory: Inventory) -> BlobCheck:
    """The cheap check: the blob is in the inventory's listing."""
    async def check(digest: Digest) -> str | None:
        return None if digest in inventory.blobs else MISSING
    return check


async def problems(inventory: Inventory, manifests: Manifests, name: str, top: Digest,
                   rules: tuple[MirrorRule, ...], check: BlobCheck,
                   walked: set[Digest], pulled: frozenset[Digest] = frozenset()
                   ) -> AsyncGenerator[Problem]:
    """What keeps ``name@top`` from being pulled from the bucket alone, in walk order; adds the
    manifests walked to ``walked`` (those already in it are not walked again). An index whose
    children include some of ``pulled`` needs those (what nodes pull of it), else what its
    rules copy."""
    repo = inventory.repositories[name]
    pending = [top]
    while pending:
        digest = pending.pop()
        if digest in walked:
            continue
        walked.add(digest)
        if digest not in repo.revisions:
            yield Problem("manifest", digest, "no revision link")
        if (problem := await check(digest)) is not None:
            yield Problem("manifest", digest, problem)
            continue
        manifest = await manifests.get(digest)
        if manifest is None:
            yield Problem("manifest", digest, "unreadable")
            continue
        pending += [c for c in manifest.children if c in pulled] or \
            mirrored_children(manifest, rules)
        for blob in manifest.blobs:
            if (problem := await check(blob)) is not None:
                yield Problem("blob", blob, problem)
            elif blob not in repo.layers:
                yield Problem("blob", blob, f"no layer link in {name}")
