"""Pull records: which manifests were pulled, under which tag, how often and when last.

Gateways write one batch per worker per interval (gateway/usage.py); garbage collection merges a
day's batches into that day's summary and deletes them (lifecycle/usage.py); retention's
``pulled_within`` and ``regfront status`` read both. The format is in docs/retention.md.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from registry import layout
from registry.store import NotFound, ObjectStore

FORMAT_VERSION = 1
_READS_AT_ONCE = 16


@dataclass(frozen=True)
class PullKey:
    """A manifest served: repository, digest, and the tag asked for (None: by digest)."""

    name: str
    digest: str
    tag: str | None


@dataclass
class Pull:
    count: int
    last: float  # unix time of the latest

    def add(self, other: Pull) -> None:
        self.count += other.count
        self.last = max(self.last, other.last)


Pulls = dict[PullKey, Pull]


def merge(into: Pulls, more: Pulls) -> Pulls:
    for key, pull in more.items():
        if key in into:
            into[key].add(pull)
        else:
            into[key] = Pull(pull.count, pull.last)
    return into


def _encode(pulls: Pulls) -> list[dict[str, Any]]:
    ordered = sorted(pulls.items(), key=lambda item: (item[0].name, item[0].digest,
                                                      item[0].tag or ""))
    return [{"name": k.name, "digest": k.digest, "tag": k.tag, "count": p.count,
             "last": round(p.last, 3)} for k, p in ordered]


def _decode(items: Iterable[Any]) -> Pulls:
    pulls: Pulls = {}
    for item in items:
        tag = item.get("tag")
        key = PullKey(str(item["name"]), str(item["digest"]), None if tag is None else str(tag))
        merge(pulls, {key: Pull(int(item["count"]), float(item["last"]))})
    return pulls


@dataclass
class UsageBatch:
    """What one gateway worker served between ``started`` and ``ended`` (unix times);
    ``dropped`` counts pulls it could not keep (its batch was full and a write failed)."""

    gateway: str
    started: float
    ended: float
    pulls: Pulls = field(default_factory=dict)
    dropped: int = 0

    def to_json(self) -> bytes:
        return json.dumps({"version": FORMAT_VERSION, "gateway": self.gateway,
                           "from": round(self.started, 3), "to": round(self.ended, 3),
                           "dropped": self.dropped, "pulls": _encode(self.pulls)},
                          separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, data: bytes) -> UsageBatch:
        raw = json.loads(data)
        return cls(str(raw["gateway"]), float(raw["from"]), float(raw["to"]),
                   _decode(raw["pulls"]), int(raw.get("dropped", 0)))


@dataclass
class UsageSummary:
    """A day's batches merged; ``merged`` names the batches in it (gateway -> the newest
    batch time of that gateway merged), so merging again never counts one twice."""

    day: str
    merged: dict[str, int] = field(default_factory=dict)
    pulls: Pulls = field(default_factory=dict)

    def includes(self, when: int, gateway: str) -> bool:
        return when <= self.merged.get(gateway, -1)

    def to_json(self) -> bytes:
        return json.dumps({"version": FORMAT_VERSION, "day": self.day,
                           "merged": dict(sorted(self.merged.items())),
                           "pulls": _encode(self.pulls)}, separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, data: bytes) -> UsageSummary:
        raw = json.loads(data)
        return cls(str(raw["day"]), {str(k): int(v) for k, v in raw["merged"].items()},
                   _decode(raw["pulls"]))


def day_of(when: float) -> str:
    """The UTC day (``YYYY-MM-DD``) a batch written at ``when`` is filed under."""
    return datetime.fromtimestamp(when, UTC).strftime("%Y-%m-%d")


def days_between(since: float, until: float) -> list[str]:
    """Every UTC day from ``since``'s to ``until``'s, oldest first."""
    first = datetime.fromtimestamp(since, UTC).date()
    last = datetime.fromtimestamp(until, UTC).date()
    return [(first + timedelta(days=n)).isoformat() for n in range((last - first).days + 1)]


async def load_summary(store: ObjectStore, day: str) -> UsageSummary:
    try:
        return UsageSummary.from_json(await store.get(layout.usage_summary(day)))
    except NotFound:
        return UsageSummary(day)


async def day_batches(store: ObjectStore, day: str) -> list[tuple[int, str]]:
    """(when, gateway) of every batch filed under ``day``, oldest first."""
    found = [parsed for entry in await store.children(layout.usage_day_dir(day))
             if (parsed := layout.parse_usage_record(entry)) is not None]
    return sorted(found)


async def read_day(store: ObjectStore, day: str) -> tuple[UsageSummary, list[tuple[int, str]]]:
    """The day's summary with every batch not yet in it merged in (in memory only), and the
    batches that were."""
    summary = await load_summary(store, day)
    pending = [(when, gw) for when, gw in await day_batches(store, day)
               if not summary.includes(when, gw)]
    slots = asyncio.Semaphore(_READS_AT_ONCE)

    async def one(when: int, gateway: str) -> Pulls:
        async with slots:
            try:
                data = await store.get(layout.usage_record(day, when, gateway))
            except NotFound:  # merged and deleted meanwhile: the summary we read lacks it
                return {}
        try:
            return UsageBatch.from_json(data).pulls
        except (ValueError, KeyError, TypeError):
            return {}  # not ours to judge here; a broken batch keeps nothing

    for pulls in await asyncio.gather(*(one(w, g) for w, g in pending)):
        merge(summary.pulls, pulls)
    return summary, pending


async def read_pulls(store: ObjectStore, since: float, until: float) -> Pulls:
    """Every pull recorded from ``since`` to ``until`` (a pull's ``last`` may be a little older
    than ``since``: days are read whole)."""
    pulls: Pulls = {}
    for day in days_between(since, until):
        summary, _ = await read_day(store, day)
        merge(pulls, {k: p for k, p in summary.pulls.items() if p.last >= since})
    return pulls
