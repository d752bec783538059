"""Running mirror rules: once (a CronJob, a Cloud Run job) or forever on their schedules.

Each rule runs under its lease, against the primary store (the last ``storage:`` entry: the
replicas follow it by bucket replication). One image failing is recorded and the rule goes on;
the run's exit status says whether anything failed.
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
from registry.names import canonical_registry
from registry.store import ObjectStore, open_store
from registry.syncstate import TagState, load_state, save_state
from registry.upstream.client import Upstream
from registry.upstream.errors import UpstreamError, UpstreamNotFound
from sync.copier import Copier, CopyStats, Progress, describe_error
from sync.filters import select_tags
from sync.lease import Lease, LeaseHeld, LeaseLost, holding
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
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.config = config
        self.transport = transport  # tests put a misbehaving upstream here
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
                await asyncio.sleep((schedule.next_after(now) - now).total_seconds())

        async with asyncio.TaskGroup() as group:
            for rule in rules:
                group.create_task(loop(rule))

    async def run_rule(self, rule: MirrorRule) -> RuleResult:
        started = time.monotonic()
        result = RuleResult(rule.name)
        lease = Lease(self.store, rule.name, self.config.sync.lease_ttl)
        try:
            if self.dry_run:
                result.stats = await self._mirror(rule, asyncio.Event())
            else:
                async with holding(lease) as lost:
                    result.stats = await self._mirror(rule, lost)
        except LeaseHeld as exc:
            result.skipped = str(exc)
        except Exception as exc:  # the rule as a whole (catalog, lease store): say why, go on
            result.stats.failures.append(f"{rule.name}: {describe_error(exc)}")
        result.seconds = time.monotonic() - started
        return result

    async def _mirror(self, rule: MirrorRule, lost: asyncio.Event) -> CopyStats:
        upstream = self.upstream(rule.registry)
        copier = Copier(self.store, upstream, blob_slots=self.blob_slots,
                        platforms=rule.platforms, referrers=rule.referrers,
                        dry_run=self.dry_run, progress=self.events.progress)
        registry = canonical_registry(rule.registry)
        state = await load_state(self.store, rule.name)
        state.last_run = time.time()
        images = asyncio.Semaphore(IMAGES_AT_ONCE)

        async def one(repository: str, reference: str) -> bool:
            """Copy one image; False if it failed for a reason a later run may not have."""
            name = f"{registry}/{repository}"
            image = f"{name}{'@' if ':' in reference else ':'}{reference}"
            async with images:
                if lost.is_set():
                    raise LeaseLost(f"rule {rule.name!r}: lease lost, stopping")
                try:
                    if ":" in reference:
                        digest = Digest.parse(reference)
                        await copier.copy_manifest(repository, digest, name)
                    else:
                        digest = await copier.copy_tag(repository, reference, name)
                        state.tags[f"{name}:{reference}"] = TagState(str(digest), time.time())
                except LeaseLost:
                    raise
                except Exception as exc:  # this image only (groups from concurrent copies too)
                    copier.stats.failures.append(f"{image}: {describe_error(exc)}")
                    self.events.image_done(rule.name, image, None, describe_error(exc))
                    return _leaf(exc, UpstreamNotFound)
            self.events.image_done(rule.name, image, digest, None)
            return True

        queued = await self._queued(rule)
        for repository in await self._repositories(rule, upstream):
            try:
                tags = await upstream.list_tags(repository)
                selected = await select_tags(tags, rule.tag_filter,
                                             functools.partial(_created, upstream, repository))
            except UpstreamError as exc:
                copier.stats.failures.append(f"{registry}/{repository}: {describe_error(exc)}")
                continue
            missing = [t for t in rule.tag_filter.names if t not in tags]
            for tag in missing:
                copier.stats.failures.append(f"{registry}/{repository}:{tag}: no such tag")
            references = [t for t in selected if t not in missing] + rule.digests
            async with asyncio.TaskGroup() as group:
                for reference in references:
                    group.create_task(one(repository, reference))
        # What gateways queued as misses (gateway/misses.py): tags through the rule's filters
        # (all but latest N, which ranks the upstream's tags, not one pulled tag), digests as
        # they are; a miss is cleared once handled, or found not to exist upstream.
        lenient = rule.tag_filter.model_copy(update={"latest": None, "names": []})
        for repository, references in queued.items():
            tags = [r for r in references if ":" not in r]
            wanted = set(await select_tags(tags, lenient, _no_time))
            wanted |= {r for r in references if ":" in r}
            async with asyncio.TaskGroup() as group:
                done = {r: group.create_task(one(repository, r)) for r in sorted(wanted)}
            for reference in references:
                handled = reference not in done or done[reference].result()
                if handled and not self.dry_run:  # filtered out, copied, or gone upstream
                    ref = Digest.parse(reference) if ":" in reference else reference
                    await self.store.delete(layout.miss(f"{registry}/{repository}", ref))
        if not self.dry_run:
            stats = copier.stats
            if not stats.failures:
                state.last_success = time.time()
            state.last_error = stats.failures[0] if stats.failures else None
            state.last_seconds = time.time() - state.last_run
            state.last_counts = {
                "images": stats.images, "blobs": stats.blobs,
                "blobs_present": stats.blobs_present, "bytes_downloaded": stats.bytes_downloaded,
                "bytes_present": stats.bytes_present, "failures": len(stats.failures)}
            await save_state(self.store, rule.name, state)
        return copier.stats

    async def _queued(self, rule: MirrorRule) -> dict[str, list[str]]:
        """Misses the gateways queued for this rule's repositories: repository -> references
        (tags, and digests as ``sha256:<hex>``)."""
        registry = canonical_registry(rule.registry)
        found: dict[str, list[str]] = {}

        async def walk(prefix: str) -> None:
            for child in await self.store.children(prefix):
                if child in ("_tags", "_digests"):
                    repository = prefix[len(layout.misses_dir(registry)):].rstrip("/")
                    if covers(rule, repository):
                        entries = await self.store.children(f"{prefix}{child}/")
                        found.setdefault(repository, []).extend(
                            e.replace("-", ":", 1) if child == "_digests" else e
                            for e in entries)
                else:
                    await walk(f"{prefix}{child}/")

        await walk(layout.misses_dir(registry))
        return found

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

