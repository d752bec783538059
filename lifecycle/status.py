"""``regfront status``: per rule and repository, what the bucket holds and how exposed it is -
tags mirrored, the last sync and its result, bytes, the last pull, and the images pulled
recently that are not complete in the bucket (they need their upstream: if it went down now,
their next pull would fail, or fall through to it)."""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import click

from lifecycle.exposure import Exposed, exposed
from lifecycle.gc import stored_bytes
from lifecycle.inventory import Lister, take_inventory
from lifecycle.manifests import Manifests
from lifecycle.mark import Graph, revision, tag
from lifecycle.retention import FALLBACK_TAG, Policies
from registry.config import Config
from registry.gcstate import GCReport, load_gc_report
from registry.names import canonical_registry
from registry.store import ObjectStore
from registry.syncstate import RuleState, load_state
from registry.usage import read_pulls


@dataclass
class RepositoryStatus:
    name: str
    tags: int
    bytes: int  # the images its tags and revisions hold
    last_pulled: float | None
    exposed: list[Exposed] = field(default_factory=list)


@dataclass
class RuleStatus:
    name: str
    upstream: str
    state: RuleState
    repositories: list[RepositoryStatus] = field(default_factory=list)

    @property
    def exposed(self) -> int:
        return sum(len(r.exposed) for r in self.repositories)


@dataclass
class Status:
    taken: float
    rules: list[RuleStatus]
    unruled: list[RepositoryStatus]
    gc: GCReport | None

    def to_json(self) -> dict[str, Any]:
        def repo(r: RepositoryStatus) -> dict[str, Any]:
            return {**asdict(r), "exposed": [asdict(e) for e in r.exposed]}

        return {"taken": self.taken,
                "rules": [{"name": r.name, "upstream": r.upstream, "sync": asdict(r.state),
                           "exposed": r.exposed, "repositories": list(map(repo, r.repositories))}
                          for r in self.rules],
                "unruled": list(map(repo, self.unruled)),
                "gc": asdict(self.gc) if self.gc is not None else None,
                "exposed": sum(r.exposed for r in self.rules)}


async def take_status(config: Config, store: ObjectStore, since: float) -> Status:
    """Read the bucket once: its listing, each rule's sync state, the GC report and the pull
    records of the last ``max(since, longest retention window)``."""
    concurrency = config.gc.concurrency
    inventory = await take_inventory(store, concurrency)
    now = inventory.listed_at
    policies = Policies(config)
    pulls = await read_pulls(store, now - max(since, policies.longest_window), now)
    manifests = Manifests(Lister(store, concurrency))
    graph = Graph(inventory, manifests)
    # Read what every tag and revision needs, so sizes are known for the byte counts.
    await graph.closure([tag(n, t) for n, r in inventory.repositories.items() for t in r.tags] +
                        [revision(n, d) for n, r in inventory.repositories.items()
                         for d in r.revisions])
    sizes = stored_bytes(inventory, manifests, set())
    exposures = await exposed(inventory, manifests, pulls, now - since,
                              policies.mirrors.rules_for)
    last_pulled: dict[str, float] = {}
    for key, pull in pulls.items():
        last_pulled[key.name] = max(pull.last, last_pulled.get(key.name, 0.0))

    def repository(name: str) -> RepositoryStatus:
        repo = inventory.repositories.get(name)
        tags = [t for t in (repo.tags if repo else {}) if not FALLBACK_TAG.match(t)]
        return RepositoryStatus(name, len(tags), sizes.get(name, 0), last_pulled.get(name),
                                [e for e in exposures if e.name == name])

    rules = []
    names = set(inventory.repositories) | {e.name for e in exposures}
    for rule in config.mirror:
        covered = sorted(n for n in names if rule in policies.mirrors.rules_for(n))
        rules.append(RuleStatus(rule.name, canonical_registry(rule.registry),
                                await load_state(store, rule.name),
                                [repository(n) for n in covered]))
    unruled = [repository(n) for n in sorted(names) if not policies.mirrors.rules_for(n)]
    return Status(time.time(), rules, unruled, await load_gc_report(store))


def _ago(moment: float | None, now: float) -> str:
    if moment is None:
        return "never"
    seconds = max(0.0, now - moment)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f}{unit} ago"
    return f"{seconds:.0f}s ago"


def print_status(status: Status, *, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(status.to_json(), sort_keys=True))
        return
    now = status.taken
    for rule in status.rules:
        state = rule.state
        result = ("never ran" if state.last_run is None else
                  f"last run {_ago(state.last_run, now)}, "
                  + (f"FAILED: {state.last_error}" if state.last_error else "ok"))
        click.echo(f"rule {rule.name} ({rule.upstream}): {result}; last success "
                   f"{_ago(state.last_success, now)}")
        _repositories(rule.repositories, now, rule.upstream)
    if status.unruled:
        click.echo("no rule (imported, or pulled through before a rule changed):")
        _repositories(status.unruled, now, None)
    gc = status.gc
    if gc is not None:
        outcome = f"FAILED: {gc.error}" if gc.error else (
            f"deleted {sum(gc.deleted.values())} objects, {gc.bytes_freed / 1e6:.1f} MB")
        click.echo(f"garbage collection: {_ago(gc.started, now)}, {outcome}")
    total = sum(r.exposed for r in status.rules)
    click.echo(f"{total} recently pulled image(s) need their upstream")


def _repositories(repositories: list[RepositoryStatus], now: float,
                  upstream: str | None) -> None:
    for repo in repositories:
        click.echo(f"  {repo.name}: {repo.tags} tags, {repo.bytes / 1e6:.1f} MB, "
                   f"last pulled {_ago(repo.last_pulled, now)}")
        for item in repo.exposed:
            click.echo(f"    would break if {upstream or 'its upstream'} went down now: "
                       f"{item.reference} (pulled {_ago(item.last_pulled, now)}; "
                       f"{item.missing})")
