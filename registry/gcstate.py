"""What garbage collection keeps between runs, in the bucket under ``regfront/v1/gc/``: its state
(each deletion candidate and when a mark first found it one) and its report (the last run in
numbers, which gateways export as metrics, as they do sync's state)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from registry import layout
from registry.store import NotFound, ObjectStore


@dataclass
class GCState:
    candidates: dict[str, float] = field(default_factory=dict)  # object id -> first seen
    last_mark: float | None = None

    def to_json(self) -> bytes:
        return json.dumps({"last_mark": self.last_mark, "candidates": self.candidates},
                          sort_keys=True, separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, data: bytes) -> GCState:
        raw = json.loads(data)
        return cls({str(k): float(v) for k, v in raw["candidates"].items()}, raw.get("last_mark"))


@dataclass
class GCReport:
    """One run. ``deleted`` counts objects by kind (tag, referrer, revision, layer, blob);
    ``stored_bytes`` is what each repository's images hold afterwards (a layer shared by two
    repositories counts in both); ``exposed`` is how many recently pulled images are not
    complete in the bucket (they need their upstream)."""

    started: float = 0.0
    seconds: float = 0.0
    dry_run: bool = False
    error: str | None = None
    last_success: float | None = None
    candidates: int = 0
    deleted: dict[str, int] = field(default_factory=dict)
    bytes_freed: int = 0
    freed_bytes: dict[str, int] = field(default_factory=dict)  # repository -> bytes freed
    stored_bytes: dict[str, int] = field(default_factory=dict)  # repository -> bytes kept
    spared: int = 0  # doomed, then claimed by a writer before the sweep
    stopped: str | None = None  # why deletions stopped early (deadline, lease)
    failures: int = 0  # runs in a row that failed
    exposed: int = 0

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), sort_keys=True, indent=1).encode()

    @classmethod
    def from_json(cls, data: bytes) -> GCReport:
        raw: dict[str, Any] = json.loads(data)
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in raw.items() if k in known})


async def load_gc_state(store: ObjectStore) -> GCState:
    try:
        return GCState.from_json(await store.get(layout.gc_state()))
    except NotFound:
        return GCState()
    except (ValueError, KeyError, TypeError, AttributeError):
        # Unreadable: start over. Candidates then wait a full grace period again - later
        # deletion, never earlier.
        return GCState()


async def save_gc_state(store: ObjectStore, state: GCState) -> None:
    await store.put(layout.gc_state(), state.to_json())


async def load_gc_report(store: ObjectStore) -> GCReport | None:
    try:
        return GCReport.from_json(await store.get(layout.gc_report()))
    except NotFound:
        return None
    except (ValueError, TypeError):
        return None


async def save_gc_report(store: ObjectStore, report: GCReport) -> None:
    await store.put(layout.gc_report(), report.to_json())
