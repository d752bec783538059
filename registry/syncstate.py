"""What sync knows between runs, kept in the bucket (no database): per rule, when it last ran
and succeeded, how long it took and what it copied. Operators and the gateway's metrics read it;
sync itself needs none of it to be correct (the bucket's links are the truth).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from registry import layout
from registry.store import NotFound, ObjectStore


@dataclass
class RuleState:
    last_run: float | None = None
    last_success: float | None = None
    last_error: str | None = None
    last_seconds: float | None = None  # how long the last run took
    # The last run's counts in this store: images, blobs, blobs_present, bytes_downloaded,
    # bytes_present, failures (gateways export them as metrics); with several primaries also
    # images_failed, blobs_refilled and bytes_refilled (copied from another primary instead of
    # downloaded) and upstream_bytes_downloaded (the run's, for every primary together).
    last_counts: dict[str, int] = field(default_factory=dict)
    # The store this state describes (its URL without options), and every primary of the last
    # run with its first failure (None: complete there): each primary keeps its own state, as
    # each cloud's gateways read theirs.
    target: str | None = None
    targets: dict[str, str | None] = field(default_factory=dict)

    def to_json(self) -> bytes:
        raw = asdict(self)
        # Only a run with several primaries says which: workers and gateways older than that
        # build RuleState(**raw) and would read a state carrying these keys as unreadable.
        for key in ("target", "targets"):
            if not raw[key]:
                del raw[key]
        return json.dumps(raw, sort_keys=True, indent=1).encode()

    @classmethod
    def from_json(cls, data: bytes) -> RuleState:
        """Fields this version does not know are left out, so workers of different versions
        share one state object: older ones wrote ``tags`` (every mirrored tag, never read)."""
        raw: dict[str, Any] = json.loads(data)
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in raw.items() if k in known})


async def load_state(store: ObjectStore, rule: str) -> RuleState:
    try:
        return RuleState.from_json(await store.get(layout.sync_state(rule)))
    except (NotFound, ValueError, TypeError):
        return RuleState()


async def save_state(store: ObjectStore, rule: str, state: RuleState) -> None:
    await store.put(layout.sync_state(rule), state.to_json())


async def load_selection(store: ObjectStore, rule: str) -> dict[str, list[str]]:
    """Upstream repository -> the tags ``rule`` selected there on its last listing; kept apart
    from the state, whose fields older workers read strictly."""
    try:
        raw = json.loads(await store.get(layout.sync_selection(rule)))
        return {str(repository): [str(t) for t in tags] for repository, tags in raw.items()}
    except (NotFound, ValueError, TypeError, AttributeError):
        return {}


async def save_selection(store: ObjectStore, rule: str, selected: dict[str, list[str]]) -> None:
    await store.put(layout.sync_selection(rule),
                    json.dumps(selected, sort_keys=True, separators=(",", ":")).encode())
