"""Scrub: every kept image checked whole - each manifest and blob there (``--hash``: read and
matching its digest), each link in place - and damage repaired from the upstream where a rule
covers the repository, through the sync copier (a forced copy: every manifest fetched again,
every missing blob downloaded, every link written)."""

from __future__ import annotations

import asyncio
import functools
import json
from dataclasses import asdict, dataclass, field

import click
import httpx

from lifecycle.gc import Collector
from lifecycle.inventory import Inventory, Lister, take_inventory
from lifecycle.manifests import Manifests
from lifecycle.mark import Obj
from lifecycle.retention import Policies, PullIndex
from lifecycle.whole import MISSING, problems
from registry import layout, writer
from registry.claims import claims_for
from registry.config import Config
from registry.digest import Digest
from registry.errors import RegistryError
from registry.store import NotFound, ObjectStore
from registry.upstream.client import Upstream
from registry.upstream.errors import UpstreamError
from registry.usage import read_pulls
from sync.copier import Copier, CopyError

CORRUPT = "corrupt (its bytes do not match its digest)"


@dataclass
class Damage:
    name: str
    reference: str  # the kept tag (or digest) whose image is damaged
    digest: str | None  # what the bucket says it is (None: a tag with no readable link)
    problems: list[str]
    corrupt: list[str] = field(default_factory=list)  # blobs whose bytes do not match
    repaired: bool = False
    error: str | None = None  # why it was not repaired


@dataclass
class Verification:
    images: int = 0
    blobs: int = 0
    bytes_hashed: int = 0
    damage: list[Damage] = field(default_factory=list)

    @property
    def unrepaired(self) -> list[Damage]:
        return [d for d in self.damage if not d.repaired]


class Verifier:
    def __init__(self, config: Config, store: ObjectStore, *, hash_blobs: bool = False,
                 repair: bool = True, transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.config = config
        self.store = store
        self.hash_blobs = hash_blobs
        self.repair = repair
        self.transport = transport  # tests: the fake upstream
        self.policies = Policies(config)
        self.lister = Lister(store, config.gc.concurrency)
        self._hashed: dict[Digest, str | None] = {}  # blob -> its problem (None: intact)

    async def run(self) -> Verification:
        # The kept images, as the next collection would keep them: retention's tags, rules'
        # digests, recent pulls (not what writers claimed: that is work in progress).
        inventory = await take_inventory(self.store, self.config.gc.concurrency)
        manifests = Manifests(self.lister)
        now = inventory.listed_at
        pulls = PullIndex.of(await read_pulls(self.store, now - self.policies.longest_window, now))
        roots = await Collector(self.config, self.store).kept(inventory, manifests, pulls, now)
        # Tags first; then revisions no tag reached (a rule's digest, a pull by digest).
        images = sorted(((o.kind != "tag", o.name, self._reference(o, inventory)) for o in roots
                         if o.kind in ("tag", "revision")), key=str)
        result = Verification()
        covered: set[tuple[str, Digest]] = set()
        for _, name, (reference, digest) in images:
            if reference.startswith("@"):
                continue  # named by a rule or a pull, not in the bucket: nothing kept yet
            if digest is not None and reference == str(digest) and (name, digest) in covered:
                continue
            damage = Damage(name, reference, str(digest) if digest else None, [])
            if digest is None:
                damage.problems.append(f"tag {reference}: no readable current link")
            else:
                covered |= {(name, d) for d in
                            await self._check(inventory, manifests, digest, damage, result)}
            if damage.problems:
                result.damage.append(damage)
            result.images += 1
        if self.repair:
            for damage in result.damage:
                await self._repair(damage)
        return result

    @staticmethod
    def _reference(obj: Obj, inventory: Inventory) -> tuple[str, Digest | None]:
        if obj.kind == "tag":
            repo = inventory.repositories.get(obj.name)
            return obj.tag, repo.tags.get(obj.tag) if repo else None
        assert obj.digest is not None
        repo = inventory.repositories.get(obj.name)
        present = repo is not None and obj.digest in repo.revisions
        return (str(obj.digest) if present else f"@{obj.digest}"), obj.digest

    async def _check(self, inventory: Inventory, manifests: Manifests, top: Digest,
                     damage: Damage, result: Verification) -> set[Digest]:
        """Walk the image from ``top``, noting problems in ``damage``; returns the manifests
        it walked."""
        walked: set[Digest] = set()
        check = functools.partial(self._blob, inventory=inventory, result=result)
        async for problem in problems(inventory, manifests, damage.name, top,
                                      self.policies(damage.name).rules, check, walked):
            damage.problems.append(str(problem))
            if problem.problem == CORRUPT:
                damage.corrupt.append(str(problem.digest))
        return walked

    async def _blob(self, digest: Digest, inventory: Inventory,
                    result: Verification) -> str | None:
        if digest not in inventory.blobs:
            return MISSING
        if not self.hash_blobs:
            return None
        if digest not in self._hashed:
            self._hashed[digest] = await self._hash(digest, result)
        return self._hashed[digest]

    async def _hash(self, digest: Digest, result: Verification) -> str | None:
        verifier = digest.verifier()
        try:
            async for chunk in await self.store.read(layout.blob_data(digest)):
                verifier.update(chunk)
        except NotFound:
            return MISSING
        result.blobs += 1
        result.bytes_hashed += verifier.size
        try:
            verifier.verify()
        except RegistryError:
            return CORRUPT
        return None

    async def _repair(self, damage: Damage) -> None:
        rules = self.policies(damage.name).rules
        if not rules:
            damage.error = "no mirror rule covers the repository: nothing to repair from"
            return
        rule = rules[0]
        repository = damage.name.partition("/")[2]
        upstream = Upstream(rule.registry, self.config.upstreams[rule.registry],
                            transport=self.transport)
        copier = Copier(self.store, upstream,
                        blob_slots=asyncio.Semaphore(self.config.sync.blob_concurrency),
                        platforms=rule.platforms, referrers=rule.referrers)
        try:
            # A corrupt blob is deleted first (claimed, as any write): the copy then fetches it.
            for corrupt in map(Digest.parse, damage.corrupt):
                await claims_for(self.store).claim(corrupt)
                await self.store.delete(layout.blob_data(corrupt))
            if damage.digest is not None:
                digest = Digest.parse(damage.digest)
            else:  # the tag itself is broken: where the upstream's points now
                digest = (await copier.upstream.head_manifest(repository, damage.reference)).digest
            await copier.copy_manifest(repository, digest, damage.name, force=True)
            if damage.digest is None:
                await claims_for(self.store).ensure([digest])
                await writer.put_tag(self.store, damage.name, damage.reference, digest)
            damage.repaired = True
        except (UpstreamError, CopyError, RegistryError) as exc:
            damage.error = str(exc) or type(exc).__name__
        finally:
            await upstream.aclose()


def print_verification(result: Verification, *, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps({"images": result.images, "blobs_hashed": result.blobs,
                               "bytes_hashed": result.bytes_hashed,
                               "damage": [asdict(d) for d in result.damage]}, sort_keys=True))
        return
    for damage in result.damage:
        state = "repaired" if damage.repaired else f"NOT repaired: {damage.error}"
        click.echo(f"{damage.name}:{damage.reference} damaged, {state}")
        for problem in damage.problems:
            click.echo(f"  {problem}")
    hashed = (f", {result.blobs} blobs ({result.bytes_hashed / 1e6:.1f} MB) hashed"
              if result.blobs else "")
    click.echo(f"{result.images} kept images checked{hashed}: {len(result.damage)} damaged, "
               f"{len(result.unrepaired)} not repaired")
