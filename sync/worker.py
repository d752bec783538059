"""Running mirror rules: once (a CronJob, a Cloud Run job) or forever on their schedules.

Each rule runs against every primary store (``storage:`` entries marked ``primary``, one per
cloud; else the last entry, whose replicas follow it by bucket replication): each upstream blob
is downloaded once and written to each (sync/copier.py, sync/fanout.py). A target that fails is
out of the rule's run and the others go on (sync/targets.py); the next run completes it.

Each rule runs under one lease, kept in the first primary: one object to compare-and-swap is
what makes the lease safe (a lease per target could be held in one and lost in another), and a
worker that cannot reach the first primary runs nothing rather than risk two workers. Every
commit, in every target, checks the lease first: a worker that lost it stops the rule and
commits nothing more (sync/lease.py). The rule's state, its selection and the gateways' miss
queue live in each target, for that target: a cloud's gateways read their own primary.
One image failing is recorded and the rule goes on; the run's exit status says whether
anything failed, in any target.
"""

from __future__ import annotations

import asyncio
import fnmatch
import functools
import json
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import httpx

from registry import layout
from registry.config import Config
from registry.digest import Digest
from registry.errors import ConfigError
from registry.mediatypes import INDEX_TYPES, media_type_of, parse_manifest
from registry.mirrorconfig import MirrorRule, covers
from registry.names import Reference, canonical_registry
from registry.store import ObjectStore, open_store
from registry.store.errors import StoreError
from registry.syncstate import (
    RuleState,
    load_selection,
    load_state,
    save_selection,
    save_state,
)
from registry.upstream.client import Upstream
from registry.upstream.errors import UpstreamError, UpstreamNotFound
from sync.copier import Copier, CopyStats, Guard, Progress, describe_error, unguarded
from sync.filters import select_tags
from sync.lease import SYSTEM_CLOCKS, Clocks, Lease, LeaseHeld, LeaseLost, holding
from sync.schedule import schedule_for
from sync.targets import Target, Targets, TargetStats

logger = logging.getLogger("regfront.sync")

IMAGES_AT_ONCE = 4  # per rule; blobs in flight are bounded separately (sync.blob_concurrency)


@dataclass
class RuleResult:
    rule: str
    stats: CopyStats = field(default_factory=CopyStats)
    skipped: str | None = None  # why the rule did not run (another worker holds it)
    seconds: float = 0.0
    targets: dict[str, TargetStats] = field(default_factory=dict)  # by label, storage order

    @property
    def failed(self) -> bool:
        return bool(self.stats.failures)


class Events:
    """What a run tells its reporter; the default says nothing."""

    progress: Progress = Progress()

    def image_done(self, rule: str, image: str, digest: Digest | None, error: str | None,
                   targets: Mapping[str, str | None]) -> None:
        """``targets``: each target's label, and why the image is not there (None: it is)."""

    def rule_done(self, result: RuleResult) -> None:
        pass


class Syncer:
    """The rules of one config, their upstream clients and the primary stores."""

    def __init__(self, config: Config, *, stores: Sequence[ObjectStore] | None = None,
                 events: Events | None = None, dry_run: bool = False,
                 transport: httpx.AsyncBaseTransport | None = None,
                 clocks: Clocks = SYSTEM_CLOCKS) -> None:
        """``stores``: the primaries (tests pass theirs); by default the config's, opened."""
        self.config = config
        self.transport = transport  # tests put a misbehaving upstream here
        self.clocks = clocks  # the leases' time; tests pass a fake one
        self.stores = list(stores) if stores is not None else [
            open_store(primary.url) for primary in config.primaries]
        self.store = self.stores[0]  # the leases' home
        self.events = events or Events()
        self.dry_run = dry_run
        self.upstreams: dict[str, Upstream] = {}
        self.blob_slots = asyncio.Semaphore(config.sync.blob_concurrency)

    def rules(self, names: Sequence[str] = ()) -> list[MirrorRule]:
        known = {rule.name: rule for rule in self.config.mirror}
        unknown = [n for n in names if n not in known]
        if unknown:
            raise ConfigError(f"--rule {unknown[0]}: no mirror rule of that name "
                              f"(rules: {', '.join(known) or 'none'})")
        return [known[n] for n in names] if names else list(known.values())

    def upstream(self, registry: str) -> Upstream:
        if registry not in self.upstreams:
            self.upstreams[registry] = Upstream(registry, self.config.upstreams[registry],
                                                transport=self.transport)
        return self.upstreams[registry]

    async def aclose(self) -> None:
        for upstream in self.upstreams.values():
            await upstream.aclose()
        for store in self.stores:
            await store.close()

    async def run_once(self, rules: Sequence[MirrorRule]) -> list[RuleResult]:
        results = []
        for rule in rules:
            result = await self.run_rule(rule)
            self.events.rule_done(result)
            results.append(result)
        return results

    async def run_forever(self, rules: Sequence[MirrorRule]) -> None:
        """Each rule on its own schedule; a rule without one runs once, at start."""
        async def loop(rule: MirrorRule) -> None:
            schedule = schedule_for(rule.schedule)
            while True:
                self.events.rule_done(await self.run_rule(rule))
                if schedule is None:
                    return
                now = datetime.now(UTC)
                await self.clocks.sleep((schedule.next_after(now) - now).total_seconds())

        async with asyncio.TaskGroup() as group:
            for rule in rules:
                group.create_task(loop(rule))

    async def run_rule(self, rule: MirrorRule) -> RuleResult:
        started = time.monotonic()
        result = RuleResult(rule.name)
        lease = None if self.dry_run else Lease(self.store, rule.name,
                                                self.config.sync.lease_ttl, clocks=self.clocks)
        targets = Targets(self.stores)
        try:
            run = self._run(rule, targets, lease.check if lease else unguarded)
            result.stats = run.copier.stats  # what was copied counts if the run stops midway
            if lease is None:
                await self._mirror(run)
            else:
                async with holding(lease):
                    await self._mirror(run)
        except LeaseHeld as exc:
            result.skipped = str(exc)
        except Exception as exc:  # the rule as a whole (catalog, lease store): say why, go on
            lost = _lease_lost(exc)
            failure = str(lost) if lost else f"{rule.name}: {describe_error(exc)}"
            result.stats.failures.append(failure)
            for target in targets.live():
                target.stats.failures.append(failure)
        result.stats.failures += [f"{t.label}: {t.down}" for t in targets if t.down]
        result.targets = {t.label: t.stats for t in targets}
        result.seconds = time.monotonic() - started
        return result

    def _run(self, rule: MirrorRule, targets: Targets, guard: Guard) -> RuleRun:
        upstream = self.upstream(rule.registry)
        copier = Copier(targets, upstream, blob_slots=self.blob_slots,
                        platforms=rule.platforms, referrers=rule.referrers,
                        dry_run=self.dry_run, progress=self.events.progress, guard=guard,
                        stall=self.config.sync.target_stall)
        return RuleRun(rule, upstream, copier, self.events)

    async def _mirror(self, run: RuleRun) -> None:
        """The rule's selected tags and digests, then what gateways queued, then its state:
        each target's own, in that target."""
        rule, guard, targets = run.rule, run.copier.guard, run.targets
        states: dict[Target, RuleState] = {}
        for target in targets.live():
            with targets.failing(target, f"reading the state of rule {rule.name}"):
                states[target] = await load_state(target.store, rule.name)
        started = time.time()
        queued = await self._queued(rule, targets)
        await run.mirror_selected(await self._repositories(rule, run.upstream))
        if not self.dry_run and run.selected:
            guard(f"the selection of rule {rule.name}")
            for target in targets.live():
                with targets.failing(target, f"the selection of rule {rule.name}"):
                    selection = await load_selection(target.store, rule.name)
                    selection.update(run.selected)  # a repository whose listing failed keeps
                    await save_selection(target.store, rule.name, selection)  # its own
        for repository, references in queued.items():
            await run.mirror_queued(repository, list(references))
            if not self.dry_run:
                await self._clear_misses(run, repository, references)
        if not self.dry_run:
            guard(f"the state of rule {rule.name}")
            verdicts = {t.label: t.stats.failures[0] if t.stats.failures else None
                        for t in targets}
            for target in targets:  # one that is out gets its state too, if it takes it
                state = states.get(target, RuleState())
                state.last_run = started
                try:
                    await save_state(target.store, rule.name,
                                     _after(state, target, run.copier.stats, verdicts))
                except StoreError as exc:
                    targets.failed(target, f"the state of rule {rule.name}", exc)

    async def _queued(self, rule: MirrorRule,
                      targets: Targets) -> dict[str, dict[Reference, list[Target]]]:
        """Misses the gateways queued for this rule's repositories, in any target:
        repository -> reference -> the targets holding that miss."""
        registry = canonical_registry(rule.registry)
        found: dict[str, dict[Reference, list[Target]]] = {}

        async def walk(target: Target, prefix: str) -> None:
            for child in await target.store.children(prefix):
                parsed = layout.parse_miss(prefix + child)
                if parsed is None:  # a directory on the way down
                    await walk(target, f"{prefix}{child}/")
                    continue
                repository = parsed[0].partition("/")[2]
                if covers(rule, repository):
                    found.setdefault(repository, {}).setdefault(parsed[1], []).append(target)

        for target in targets.live():
            with targets.failing(target, "reading the miss queue"):
                await walk(target, layout.misses_dir(registry))
        return found

    async def _clear_misses(self, run: RuleRun, repository: str,
                            references: Mapping[Reference, list[Target]]) -> None:
        """A miss is cleared once handled (filtered out, copied, or gone upstream), in each
        target that holds it and has the image."""
        name = run.name(repository)
        for reference, holders in references.items():
            if run.handled.get((repository, reference), True):
                run.copier.guard(f"clearing the miss {name} {reference}")
                for target in holders:
                    if target.live:
                        with run.targets.failing(target, f"clearing the miss {name}"):
                            await target.store.delete(layout.miss(name, reference))

    async def _repositories(self, rule: MirrorRule, upstream: Upstream) -> list[str]:
        plain = [r for r in rule.repositories if not any(ch in r for ch in "*?[")]
        globs = [r for r in rule.repositories if r not in plain]
        if not globs:
            return plain
        catalog = await upstream.catalog()
        if catalog is None:
            raise UpstreamError(f"{rule.registry}: no catalog to expand {globs[0]!r}; "
                                "list the repositories instead")
        matched = {r for r in catalog for g in globs if fnmatch.fnmatchcase(r, g)}
        return plain + sorted(matched - set(plain))


class RuleRun:
    """One run of one rule: which images it copies, a few at a time, and how each ended."""

    def __init__(self, rule: MirrorRule, upstream: Upstream, copier: Copier,
                 events: Events) -> None:
        self.rule = rule
        self.upstream = upstream
        self.copier = copier
        self.targets = copier.targets
        self.events = events
        self.registry = canonical_registry(rule.registry)
        self.images = asyncio.Semaphore(IMAGES_AT_ONCE)
        # (repository, reference) -> done, or failed for a reason a later run may not have
        self.handled: dict[tuple[str, Reference], bool] = {}
        self.selected: dict[str, list[str]] = {}  # repository -> tags selected (and existing)

    def name(self, repository: str) -> str:
        return f"{self.registry}/{repository}"

    async def mirror_selected(self, repositories: list[str]) -> None:
        """Each repository's tags through the rule's filters, and the rule's digests."""
        digests: list[Reference] = [Digest.parse(d) for d in self.rule.digests]
        for repository in repositories:
            try:
                tags = await self.upstream.list_tags(repository)
                selected = await select_tags(tags, self.rule.tag_filter,
                                             functools.partial(_created, self.upstream,
                                                               repository))
            except UpstreamError as exc:
                self._failed(self.name(repository), exc)
                continue
            missing = [t for t in self.rule.tag_filter.names if t not in tags]
            for tag in missing:
                self._failure(f"{self.name(repository)}:{tag}: no such tag")
            self.selected[repository] = [t for t in selected if t not in missing]
            await self._copy(repository, [*(t for t in selected if t not in missing), *digests])

    async def mirror_queued(self, repository: str, references: list[Reference]) -> None:
        """Queued tags through the rule's filters (all but latest N, which ranks the upstream's
        tags, not one pulled tag), queued digests as they are."""
        lenient = self.rule.tag_filter.model_copy(update={"latest": None, "names": []})
        tags = [r for r in references if isinstance(r, str)]
        wanted: set[Reference] = set(await select_tags(tags, lenient, _no_time))
        wanted |= {r for r in references if isinstance(r, Digest)}
        await self._copy(repository, sorted(wanted, key=str))

    async def _copy(self, repository: str, references: Sequence[Reference]) -> None:
        async with asyncio.TaskGroup() as group:
            for reference in references:
                group.create_task(self._image(repository, reference))

    async def _image(self, repository: str, reference: Reference) -> None:
        """Copy one image; a failure is recorded and the run goes on, except a lost lease."""
        name = self.name(repository)
        image = f"{name}@{reference}" if isinstance(reference, Digest) else f"{name}:{reference}"
        async with self.images:
            self.copier.guard(f"image {image}")
            try:
                if isinstance(reference, Digest):
                    await self.copier.copy_manifest(repository, reference, name)
                    digest = reference
                else:
                    digest = await self.copier.copy_tag(repository, reference, name)
            except Exception as exc:  # this image only (groups from concurrent copies too)
                if lost := _lease_lost(exc):
                    raise lost from None
                error = describe_error(exc)
                failed: dict[str, str | None] = {t.label: t.down or error for t in self.targets}
                for target in self.targets:
                    target.stats.images_failed += 1
                self._failed(image, exc)
                self.events.image_done(self.rule.name, image, None, error, failed)
                self.handled[(repository, reference)] = _leaf(exc, UpstreamNotFound)
                return
        # A target out of the run lacks the image: it is failed there (and counted so), the
        # next run completes it.
        verdicts = {t.label: t.down for t in self.targets}
        down = [t for t in self.targets if t.down]
        for target in down:
            target.stats.images_failed += 1
        self.handled[(repository, reference)] = True
        self.events.image_done(self.rule.name, image, digest, "; ".join(
            f"not in {t.label}: {t.down}" for t in down) or None, verdicts)

    def _failed(self, what: str, exc: BaseException) -> None:
        self._failure(f"{what}: {describe_error(exc)}")

    def _failure(self, failure: str) -> None:
        """A failure of the rule's, so of every target still in the run."""
        self.copier.stats.failures.append(failure)
        for target in self.targets.live():
            target.stats.failures.append(failure)


def _after(state: RuleState, target: Target, stats: CopyStats,
           verdicts: dict[str, str | None]) -> RuleState:
    """``state`` with the run that started at ``state.last_run`` and did ``target.stats``
    there (``stats``: upstream side); ``verdicts``: every target's first failure, or None."""
    mine = target.stats
    if not mine.failures:
        state.last_success = time.time()
    state.last_error = mine.failures[0] if mine.failures else None
    state.last_seconds = time.time() - (state.last_run or time.time())
    # The kinds gateways have exported all along, for this target (bytes_downloaded: what it
    # got from the upstream), then what only several targets tell apart.
    state.last_counts = {
        "images": mine.images, "blobs": mine.blobs, "blobs_present": mine.blobs_present,
        "bytes_downloaded": mine.bytes_written - mine.bytes_refilled,
        "bytes_present": mine.bytes_present, "failures": len(mine.failures),
        "images_failed": mine.images_failed, "blobs_refilled": mine.blobs_refilled,
        "bytes_refilled": mine.bytes_refilled, "upstream_bytes_downloaded": stats.bytes_downloaded}
    if len(verdicts) > 1:  # one primary: the state keeps the shape every version reads
        state.target, state.targets = target.label, verdicts
    return state


def _lease_lost(exc: BaseException) -> LeaseLost | None:
    """The ``LeaseLost`` in ``exc`` or anywhere in its groups: it stops the whole rule."""
    if isinstance(exc, LeaseLost):
        return exc
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            if found := _lease_lost(inner):
                return found
    return None


def _leaf(exc: BaseException, kind: type[BaseException]) -> bool:
    """Whether ``exc`` (or the first exception of its group) is a ``kind``."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return isinstance(exc, kind)


async def _no_time(tag: str) -> datetime | None:
    return None


async def _created(upstream: Upstream, repository: str, tag: str) -> datetime | None:
    """The image config's ``created`` time, for ``latest: N`` over tags that are not versions."""
    try:
        _, data = await upstream.get_manifest(repository, tag)
        doc = parse_manifest(data)
        if media_type_of(doc) in INDEX_TYPES:
            children = doc.get("manifests") or []
            if not children:
                return None
            _, data = await upstream.get_manifest(repository, children[0]["digest"])
            doc = parse_manifest(data)
        config_digest = Digest.parse(doc["config"]["digest"])
        async with upstream.blob(repository, config_digest) as stream:
            config = json.loads(b"".join([chunk async for chunk in stream]))
        return datetime.fromisoformat(config["created"].replace("Z", "+00:00"))
    except (UpstreamError, KeyError, ValueError, TypeError):
        return None


def exit_status(results: Sequence[RuleResult]) -> int:
    return 1 if any(r.failed for r in results) else 0

