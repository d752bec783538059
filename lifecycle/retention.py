"""Retention: which tags of a repository garbage collection keeps, and which digests it keeps
because they were pulled (docs/retention.md).

A repository a mirror rule covers keeps what the rule selects now (its filter over the tags in
the bucket, together with the tags the rule's last sync run selected upstream), the tags pulled
within the rule's ``retention.pulled_within`` and its ``retention.newest`` tags. A repository no
rule covers follows ``gc.retention``, or keeps everything when that is null. Referrer fallback
tags (``sha256-<hex>``) are never judged here: they stay exactly as long as their subject.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

from registry.config import Config
from registry.digest import Digest
from registry.errors import RegistryError
from registry.mirrorconfig import MirrorIndex, MirrorRule, Retention
from registry.usage import Pulls
from sync.filters import select_tags

FALLBACK_TAG = re.compile(r"^(sha256|sha512)-[a-f0-9]{64,128}$")

Created = Callable[[str], Awaitable[datetime | None]]
"""A tag's image creation time (its config's ``created``), None when unknown."""


@dataclass(frozen=True)
class Policy:
    """What one repository keeps, derived from the config once per name."""

    rules: tuple[MirrorRule, ...]  # the rules covering it; empty: none does
    retention: tuple[Retention, ...]  # each rule's, or gc.retention; empty: keep everything

    @property
    def keep_all(self) -> bool:
        return not self.retention

    @property
    def pulled_within(self) -> float | None:
        windows = [r.pulled_within for r in self.retention if r.pulled_within is not None]
        return max(windows) if windows else None

    @property
    def newest(self) -> int:
        return max((r.newest for r in self.retention), default=0)


class Policies:
    """Policies by stored repository name, for one config."""

    def __init__(self, config: Config) -> None:
        self.mirrors = MirrorIndex.of(config.upstreams, config.mirror)
        self.default = config.gc.retention
        self._cache: dict[str, Policy] = {}

    def __call__(self, name: str) -> Policy:
        if name not in self._cache:
            rules = self.mirrors.rules_for(name)
            if rules:
                self._cache[name] = Policy(rules, tuple(rule.retention for rule in rules))
            else:
                self._cache[name] = Policy((), (self.default,) if self.default else ())
        return self._cache[name]

    @property
    def longest_window(self) -> float:
        """The longest ``pulled_within`` of any policy: how far back pulls are read."""
        windows = [r.pulled_within for rules in self.mirrors.rules.values() for rule in rules
                   if (r := rule.retention).pulled_within is not None]
        if self.default is not None and self.default.pulled_within is not None:
            windows.append(self.default.pulled_within)
        return max(windows, default=0.0)


@dataclass
class PullIndex:
    """Recorded pulls, by what retention asks: a tag's latest pull, a digest's."""

    tags: dict[tuple[str, str], float] = field(default_factory=dict)
    digests: dict[tuple[str, Digest], float] = field(default_factory=dict)

    @classmethod
    def of(cls, pulls: Pulls) -> PullIndex:
        index = cls()
        for key, pull in pulls.items():
            try:
                digest = Digest.parse(key.digest)
            except RegistryError:  # a record naming no digest keeps nothing
                continue
            index.digests[(key.name, digest)] = max(pull.last,
                                                    index.digests.get((key.name, digest), 0))
            if key.tag is not None:
                index.tags[(key.name, key.tag)] = max(pull.last,
                                                      index.tags.get((key.name, key.tag), 0))
        return index

    def pulled_digests(self, name: str, since: float) -> set[Digest]:
        return {digest for (n, digest), last in self.digests.items()
                if n == name and last >= since}


def judged(tags: Mapping[str, Digest | None]) -> list[str]:
    """The tags retention decides about: all but referrer fallback tags."""
    return sorted(tag for tag in tags if not FALLBACK_TAG.match(tag))


async def kept_tags(name: str, tags: Mapping[str, Digest | None], policy: Policy, *,
                    selections: Mapping[str, Mapping[str, list[str]]], pulls: PullIndex,
                    now: float, created: Created) -> set[str]:
    """The tags of ``name`` (tag -> current digest) that ``policy`` keeps; ``selections`` is
    each rule's last selection upstream (rule -> repository -> tags)."""
    candidates = judged(tags)
    if policy.keep_all:
        return set(candidates)
    kept: set[str] = set()
    repository = name.partition("/")[2]
    for rule in policy.rules:
        spec = rule.tag_filter
        kept |= set(await select_tags(candidates, spec, created))
        recorded = selections.get(rule.name, {}).get(repository, [])
        # latest N ranks the upstream's tags, which only sync sees: what it chose stands, and
        # the other filters are applied again (a rule narrowed since then counts now).
        kept |= set(await select_tags(recorded, spec.model_copy(update={"latest": None}),
                                      created))
    if (window := policy.pulled_within) is not None:
        kept |= {tag for tag in candidates if pulls.tags.get((name, tag), -1.0) >= now - window}
    if policy.newest:
        kept |= set(await newest(candidates, policy.newest, created))
    return kept & set(candidates)


async def newest(tags: list[str], count: int, created: Created) -> list[str]:
    """The ``count`` tags with the newest images; a tag whose image has no readable creation
    time counts as newest (kept rather than guessed old)."""
    undated = datetime.max.replace(tzinfo=UTC)
    found = await asyncio.gather(*map(created, tags))
    times = {tag: moment or undated for tag, moment in zip(tags, found, strict=True)}
    return sorted(tags, key=lambda tag: (times[tag], tag), reverse=True)[:count]
