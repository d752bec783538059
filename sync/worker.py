"""Running mirror rules: once (a CronJob, a Cloud Run job) or forever on their schedules.

Each rule runs under its lease, against the primary store (the last ``storage:`` entry: the
replicas follow it by bucket replication), and every commit checks the lease first: a worker
that lost it stops the rule and commits nothing more (sync/lease.py). One image failing is
recorded and the rule goes on; the run's exit status says whether anything failed.
"""

from __future__ import annotations

import asyncio
import fnmatch
import functools
import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import httpx

from registry import layout
from registry.config import Config
from registry.digest import Digest
from registry.mediatypes import INDEX_TYPES, media_type_of, parse_manifest
from registry.mirrorconfig import MirrorRule, covers
from registry.names import Reference, canonical_registry
from registry.store import ObjectStore, open_store
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

logger = logging.getLogger("regfront.sync")

IMAGES_AT_ONCE = 4  # per rule; blobs in flight are bounded separately (sync.blob_concurrency)


@dataclass
class RuleResult:
    rule: str
    stats: CopyStats = field(default_factory=CopyStats)
    skipped: str | None = None  # why the rule did not run (another worker holds it)
    seconds: float = 0.0

    @property
    def failed(self) -> bool:
        return bool(self.stats.failures)


class Events:
    """What a run tells its reporter; the default says nothing."""

    progress: Progress = Progress()

    def image_done(self, rule: str, image: str, digest: Digest | None, error: str | None) -> None:
        pass

    def rule_done(self, result: RuleResult) -> None:
        pass


class Syncer:
    """The rules of one config, their upstream clients and the primary store."""

    def __init__(self, config: Config, *, store: ObjectStore | None = None,
                 events: Events | None = None, dry_run: bool = False,
                 transport: httpx.AsyncBaseTransport | None = None,
                 clocks: Clocks = SYSTEM_CLOCKS) -> None:
        self.config = config
        self.transport = transport  # tests put a misbehaving upstream here
        self.clocks = clocks  # the leases' time; tests pass a fake one
        self.store = store or open_store(config.primary.url)
        self.events = events or Events()
        self.dry_run = dry_run
        self.upstreams: dict[str, Upstream] = {}
        self.blob_slots = asyncio.Semaphore(config.sync.blob_concurrency)

    def rules(self, names: Sequence[str] = ()) -> list[MirrorRule]:
        known = {rule.name: rule for rule in self.config.mirror}
        unknown = [n for n in names if n not in known]
        if unknown:
            raise KeyError(f"no mirror rule named {unknown[0]!r} "
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
        await self.store.close()

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
        try:
            run = self._run(rule, lease.check if lease else unguarded)
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
            result.stats.failures.append(str(lost) if lost else
                                         f"{rule.name}: {describe_error(exc)}")
        result.seconds = time.monotonic() - started
        return result

    def _run(self, rule: MirrorRule, guard: Guard) -> RuleRun:
        upstream = self.upstream(rule.registry)
        copier = Copier(self.store, upstream, blob_slots=self.blob_slots,
                        platforms=rule.platforms, referrers=rule.referrers,
                        dry_run=self.dry_run, progress=self.events.progress, guard=guard)
        return RuleRun(rule, upstream, copier, self.events)

    async def _mirror(self, run: RuleRun) -> None:
        """The rule's selected tags and digests, then what gateways queued, then its state."""
        rule, guard = run.rule, run.copier.guard
        state = await load_state(self.store, rule.name)
        state.last_run = time.time()
        queued = await self._queued(rule)
        await run.mirror_selected(await self._repositories(rule, run.upstream))
        if not self.dry_run and run.selected:
            selection = await load_selection(self.store, rule.name)
            selection.update(run.selected)  # a repository whose listing failed keeps its own
            guard(f"the selection of rule {rule.name}")
            await save_selection(self.store, rule.name, selection)
        for repository, references in queued.items():
            await run.mirror_queued(repository, references)
            if not self.dry_run:
                await self._clear_misses(run, repository, references)
        if not self.dry_run:
            guard(f"the state of rule {rule.name}")
            await save_state(self.store, rule.name, _after(state, run.copier.stats))

    async def _queued(self, rule: MirrorRule) -> dict[str, list[Reference]]:
        """Misses the gateways queued for this rule's repositories: repository -> references."""
        registry = canonical_registry(rule.registry)
        found: dict[str, list[Reference]] = {}

        async def walk(prefix: str) -> None:
            for child in await self.store.children(prefix):
                parsed = layout.parse_miss(prefix + child)
                if parsed is None:  # a directory on the way down
                    await walk(f"{prefix}{child}/")
                    continue
                repository = parsed[0].partition("/")[2]
                if covers(rule, repository):
                    found.setdefault(repository, []).append(parsed[1])

        await walk(layout.misses_dir(registry))
        return found

    async def _clear_misses(self, run: RuleRun, repository: str,
                            references: list[Reference]) -> None:
        """A miss is cleared once handled: filtered out, copied, or gone upstream."""
        name = run.name(repository)
        for reference in references:
            if run.handled.get((repository, reference), True):
                run.copier.guard(f"clearing the miss {name} {reference}")
                await self.store.delete(layout.miss(name, reference))

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
                self.copier.stats.failures.append(f"{self.name(repository)}:{tag}: no such tag")
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
                self._failed(image, exc)
                self.events.image_done(self.rule.name, image, None, describe_error(exc))
                self.handled[(repository, reference)] = _leaf(exc, UpstreamNotFound)
                return
        self.handled[(repository, reference)] = True
        self.events.image_done(self.rule.name, image, digest, None)

    def _failed(self, what: str, exc: BaseException) -> None:
        self.copier.stats.failures.append(f"{what}: {describe_error(exc)}")


def _after(state: RuleState, stats: CopyStats) -> RuleState:
    """``state`` with the run that started at ``state.last_run`` and did ``stats``."""
    if not stats.failures:
        state.last_success = time.time()
    state.last_error = stats.failures[0] if stats.failures else None
    state.last_seconds = time.time() - (state.last_run or time.time())
    state.last_counts = {
        "images": stats.images, "blobs": stats.blobs, "blobs_present": stats.blobs_present,
        "bytes_downloaded": stats.bytes_downloaded, "bytes_present": stats.bytes_present,
        "failures": len(stats.failures)}
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

