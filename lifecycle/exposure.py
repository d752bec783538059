"""Exposure: images pulled recently that are not complete in the bucket - the pulls that would
fail (or fall through to the upstream) if that upstream went down now."""

from __future__ import annotations

import contextlib
from collections import defaultdict
from collections.abc import Callable
from contextlib import aclosing
from dataclasses import dataclass

from lifecycle.inventory import Inventory
from lifecycle.manifests import Manifests
from lifecycle.whole import listed, problems
from registry.digest import Digest
from registry.errors import RegistryError
from registry.mirrorconfig import MirrorRule
from registry.usage import Pulls


@dataclass(frozen=True, order=True)
class Exposed:
    name: str
    reference: str  # the tag asked for, else the digest
    digest: str
    missing: str  # the first thing found missing
    last_pulled: float


async def missing_part(inventory: Inventory, manifests: Manifests, name: str,
                       digest: Digest, rules: tuple[MirrorRule, ...] = (),
                       pulled: frozenset[Digest] = frozenset()) -> str | None:
    """What ``name@digest`` lacks to be pulled from the bucket alone, or None if nothing (an
    index: the children of it that were ``pulled``, else those its ``rules`` copy)."""
    if name not in inventory.repositories:
        return "the repository"
    walk = problems(inventory, manifests, name, digest, rules, listed(inventory), set(), pulled)
    async with aclosing(walk):
        async for problem in walk:
            return str(problem)
    return None


async def exposed(inventory: Inventory, manifests: Manifests, pulls: Pulls, since: float,
                  rules: Callable[[str], tuple[MirrorRule, ...]]) -> list[Exposed]:
    """Every (repository, reference) pulled since ``since`` whose image is not complete. An
    index is judged by the children nodes pulled (by digest) since: a fleet of one platform
    needs only that one, and pull-through stores only what is pulled."""
    found: list[Exposed] = []
    latest: dict[tuple[str, str], tuple[float, str]] = {}
    pulled: dict[str, set[Digest]] = defaultdict(set)
    for key, pull in pulls.items():
        if pull.last < since:
            continue
        with contextlib.suppress(RegistryError):
            pulled[key.name].add(Digest.parse(key.digest))
        reference = key.tag or key.digest
        known = latest.get((key.name, reference))
        if known is None or pull.last > known[0]:
            latest[(key.name, reference)] = (pull.last, key.digest)
    for (name, reference), (last, recorded) in sorted(latest.items()):
        repo = inventory.repositories.get(name)
        # A tag is judged by where it points now (sync may have moved it since the pull).
        current = repo.tags.get(reference) if repo is not None and reference != recorded else None
        try:
            digest = current or Digest.parse(recorded)
        except RegistryError:
            continue
        missing = await missing_part(inventory, manifests, name, digest, rules(name),
                                     frozenset(pulled[name]))
        if missing is not None:
            found.append(Exposed(name, reference, str(digest), missing, last))
    return found
