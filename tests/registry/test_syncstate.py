"""The sync state object: one format shared by workers of different versions and the gateways
that export it as metrics."""

from __future__ import annotations

import json

from registry import layout
from registry.store.memory import MemoryStore
from registry.syncstate import RuleState, load_state, save_state

# What the state looked like before ``tags`` was dropped: older workers still write it.
OLDER = {"last_run": 10.0, "last_success": 9.0, "last_error": None, "last_seconds": 1.5,
         "last_counts": {"images": 2, "failures": 0},
         "tags": {"docker.io/library/app:1": {"digest": "sha256:" + "a" * 64,
                                              "synced_at": 10.0}}}


def test_a_state_an_older_worker_wrote_is_read_without_its_tags() -> None:
    state = RuleState.from_json(json.dumps(OLDER).encode())
    assert state == RuleState(last_run=10.0, last_success=9.0, last_seconds=1.5,
                              last_counts={"images": 2, "failures": 0})
    assert "tags" not in json.loads(state.to_json())


def test_fields_a_newer_worker_adds_are_ignored() -> None:
    state = RuleState.from_json(json.dumps({"last_run": 3.0, "from_the_future": [1]}).encode())
    assert state == RuleState(last_run=3.0)


def test_what_this_version_writes_an_older_worker_can_read() -> None:
    """Older workers build RuleState(**raw) over their own fields: ours must be among them."""
    written = json.loads(RuleState(last_run=1.0, last_counts={"images": 1}).to_json())
    assert set(written) <= set(OLDER)
    several = RuleState(last_run=1.0, target="s3://a", targets={"s3://a": None, "gs://b": "x"})
    assert RuleState.from_json(several.to_json()) == several  # several primaries say which


async def test_saved_state_loads_back_and_an_unreadable_one_is_fresh() -> None:
    store = MemoryStore()
    state = RuleState(last_run=1.0, last_success=1.0, last_error="x", last_seconds=0.5,
                      last_counts={"images": 3})
    await save_state(store, "app", state)
    assert await load_state(store, "app") == state
    await store.put(layout.sync_state("app"), b"{not json")
    assert await load_state(store, "app") == RuleState()
    assert await load_state(store, "other") == RuleState()
