"""One garbage collection: mark, then sweep (docs/retention.md).

Runs under its lease (one collection at a time; writers take no lock), against the primary
store. Marking reads the bucket and decides; sweeping announces, lets writers claim back, and
deletes. A dry run marks only and writes nothing.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime

from lifecycle.exposure import Exposed, exposed
from lifecycle.inventory import Inventory, Lister, take_inventory
from lifecycle.manifests import Manifests
from lifecycle.mark import (
    Graph,
    Marked,
    Obj,
    by_id,
    claimed,
    layer,
    listed,
    mark,
    referrer,
    revision,
    tag,
)
from lifecycle.retention import Created, Policies, PullIndex, kept_tags
from lifecycle.sweep import Guard, Sweeper, blob_sizes, freed_bytes, unguarded
from lifecycle.usage import compact
from registry import layout
from registry.claims import SYSTEM_TIMING, Timing
from registry.config import Config
from registry.digest import Digest
from registry.gcstate import (
    GCReport,
    GCState,
    load_gc_report,
    load_gc_state,
    save_gc_report,
    save_gc_state,
)
from registry.store import ObjectStore
from registry.store.errors import StoreError
from registry.syncstate import load_selection
from registry.usage import Pulls, read_pulls
from sync.lease import SYSTEM_CLOCKS, Clocks, Lease, LeaseHeld, holding

logger = logging.getLogger("regfront.gc")

EXPOSURE_WINDOW = 86400.0  # "pulled recently", for the report's exposure count


@dataclass
class Plan:
    """What marking decided: what goes now, and what each repository frees and keeps."""

    inventory: Inventory
    marked: Marked
    manifests: Manifests
    pulls: Pulls
    sizes: dict[Digest, int] = field(default_factory=dict)  # of the doomed blobs
    freed: dict[str, int] = field(default_factory=dict)
    exposed: list[Exposed] = field(default_factory=list)

    @property
    def doomed(self) -> list[Obj]:
        return sorted(self.marked.doomed, key=by_id)


def stored_bytes(inventory: Inventory, manifests: Manifests,
                 gone: set[Obj]) -> dict[str, int]:
    """Bytes each repository's remaining images hold (manifests, configs, layers; a blob
    once per repository), from the sizes the manifests read declare."""
    result: dict[str, int] = {}
    for name, repo in inventory.repositories.items():
        digests: set[Digest] = set()
        for digest in repo.revisions:
            if revision(name, digest) in gone:
                continue
            digests.add(digest)
            manifest = manifests.known(digest)
            if manifest is not None:
                digests.update(manifest.blobs)
        result[name] = sum(manifests.size_of(d) or 0 for d in digests)
    return result


class Collector:
    """Garbage collection of one config's primary store."""

    def __init__(self, config: Config, store: ObjectStore, *, dry_run: bool = False,
                 timing: Timing = SYSTEM_TIMING, clocks: Clocks = SYSTEM_CLOCKS) -> None:
        self.config = config
        self.settings = config.gc
        self.store = store
        self.dry_run = dry_run
        self.timing = timing
        self.clocks = clocks  # the lease's
        self.policies = Policies(config)

    async def run(self) -> tuple[GCReport, Plan | None]:
        """Collect (or, dry, only plan); the report is saved unless dry."""
        report = GCReport(started=self.timing.wall(), dry_run=self.dry_run)
        previous = None if self.dry_run else await load_gc_report(self.store)
        started = self.timing.monotonic()
        plan = None
        try:
            if self.dry_run:
                plan = await self.plan(await load_gc_state(self.store))
                self._report_plan(report, plan, set())
            else:
                lease = Lease(self.store, "gc", self.config.sync.lease_ttl, clocks=self.clocks,
                              key=layout.gc_lease())
                async with holding(lease):
                    plan = await self.collect(report, lease.check)
            report.last_success = report.started
        except LeaseHeld as exc:
            report.error = f"skipped: {exc}"
            logger.warning("garbage collection %s", report.error)
            return report, None
        except BaseException as exc:
            # Recorded for the metrics (and re-raised): a collection that keeps failing alerts.
            report.error = str(exc) or type(exc).__name__
            report.failures = (previous.failures if previous else 0) + 1
            report.last_success = previous.last_success if previous else None
            report.seconds = self.timing.monotonic() - started
            if not self.dry_run:
                await self._save_report(report)
            raise
        report.seconds = self.timing.monotonic() - started
        if not self.dry_run:
            await self._save_report(report)
        return report, plan

    async def _save_report(self, report: GCReport) -> None:
        try:
            await save_gc_report(self.store, report)
        except StoreError as exc:  # the store failing is what the run reports already
            logger.warning("saving the garbage collection report failed: %r", exc)

    async def plan(self, state: GCState) -> Plan:
        """Mark: list the bucket, find the roots, decide what goes."""
        settings = self.settings
        lister = Lister(self.store, settings.concurrency)
        inventory = await take_inventory(self.store, settings.concurrency, wall=self.timing.wall)
        now = inventory.listed_at
        window = max(self.policies.longest_window, EXPOSURE_WINDOW)
        pulls = await read_pulls(self.store, now - window, now)
        manifests = Manifests(lister)
        graph = Graph(inventory, manifests)
        roots = await self.roots(inventory, manifests, PullIndex.of(pulls), now)
        marked = await mark(graph, roots, state.candidates, now=now, grace=settings.grace)
        plan = Plan(inventory, marked, manifests, pulls)
        # The doomed manifests, read now: their descriptors give the doomed blobs' sizes, and
        # the sweep orders revisions by them.
        await asyncio.gather(*(manifests.get(o.digest) for o in marked.doomed
                               if o.kind == "revision" and o.digest is not None))
        plan.sizes = await blob_sizes(marked.doomed, manifests, lister)
        plan.freed = freed_bytes(marked.doomed, plan.sizes)
        plan.exposed = await exposed(inventory, manifests, pulls, now - EXPOSURE_WINDOW,
                                     self.policies.mirrors.rules_for)
        return plan

    async def collect(self, report: GCReport, guard: Guard = unguarded) -> Plan:
        """Mark, record the candidates, sweep, record again; usage batches merged last."""
        plan = await self.plan(await load_gc_state(self.store))
        marked = plan.marked
        guard("recording garbage collection candidates")
        # Recorded before anything is deleted: every finished mark counts towards the grace.
        await save_gc_state(self.store, GCState(marked.candidates, plan.inventory.listed_at))
        sweeper = Sweeper(Lister(self.store, self.settings.concurrency),
                          Graph(plan.inventory, plan.manifests), self.settings,
                          timing=self.timing, guard=guard)
        swept = await sweeper.sweep(marked)
        gone_ids = {obj.id for obj in swept.gone}
        guard("recording garbage collection candidates")
        await save_gc_state(self.store, GCState(
            {k: v for k, v in marked.candidates.items() if k not in gone_ids},
            plan.inventory.listed_at))
        self._report_plan(report, plan, swept.gone)
        report.freed_bytes = freed_bytes(swept.gone, plan.sizes)
        report.bytes_freed = sum(report.freed_bytes.values())
        report.deleted = dict(swept.deleted)
        report.spared = swept.spared
        report.stopped = swept.stopped
        keep = max(self.policies.longest_window, EXPOSURE_WINDOW) + 86400.0
        guard("merging pull records")
        await compact(sweeper.lister, self.timing.wall(), keep)
        return plan

    def _report_plan(self, report: GCReport, plan: Plan, gone: set[Obj]) -> None:
        report.candidates = len(plan.marked.candidates)
        report.freed_bytes = dict(plan.freed)
        report.bytes_freed = sum(plan.freed.values())
        report.deleted = dict(_count(plan.marked.doomed))
        report.stored_bytes = stored_bytes(plan.inventory, plan.manifests, gone)
        report.exposed = len(plan.exposed)

    async def roots(self, inventory: Inventory, manifests: Manifests, pulls: PullIndex,
                    now: float) -> set[Obj]:
        """What is kept on its own: what retention keeps, and everything claimed."""
        return (await self.kept(inventory, manifests, pulls, now)
                | claimed(listed(inventory), inventory.claims, now))

    async def kept(self, inventory: Inventory, manifests: Manifests, pulls: PullIndex,
                   now: float) -> set[Obj]:
        """What retention keeps: its tags, rules' digests, digests pulled within the window,
        and whole repositories no policy limits."""
        selections = {rule.name: await load_selection(self.store, rule.name)
                      for rule in self.config.mirror}
        found: set[Obj] = set()
        for name, repo in inventory.repositories.items():
            policy = self.policies(name)
            if policy.keep_all:
                found |= {tag(name, t) for t in repo.tags}
                found |= {revision(name, d) for d in repo.revisions}
                found |= {layer(name, d) for d in repo.layers}
                found |= {referrer(name, s, r) for s, rs in repo.referrers.items() for r in rs}
                continue

            kept = await kept_tags(name, repo.tags, policy, selections=selections,
                                   pulls=pulls, now=now, created=_created(repo.tags, manifests))
            found |= {tag(name, t) for t in kept}
            for rule in policy.rules:
                found |= {revision(name, Digest.parse(d)) for d in rule.digests}
            if (window := policy.pulled_within) is not None:
                found |= {revision(name, d) for d in pulls.pulled_digests(name, now - window)}
        return found


def _count(objects: set[Obj]) -> dict[str, int]:
    counts: dict[str, int] = defaultdict(int)
    for obj in objects:
        counts[obj.kind] += 1
    return dict(counts)



def _created(tags: dict[str, Digest | None], manifests: Manifests) -> Created:
    async def created(name: str) -> datetime | None:
        digest = tags.get(name)
        return await manifests.created(digest) if digest is not None else None

    return created
