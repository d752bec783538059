"""``regfront status`` (lifecycle/status.py): per rule and repository - tags, last sync and its
result, bytes, last pull - and the recently pulled images not complete in the bucket."""

from __future__ import annotations

import json
import time

import click.testing
import yaml

from lifecycle.status import print_status, take_status
from registry import layout, writer
from registry.config import Config, parse_config
from registry.store.memory import MemoryStore
from registry.syncstate import RuleState, save_state
from registry.usage import Pull, PullKey, UsageBatch, day_of
from tests.lifecycle.bucket import Bucket

APP = "docker.io/library/app"


def config() -> Config:
    return parse_config(yaml.safe_dump({
        "upstreams": {"docker.io": {"urls": ["https://registry-1.docker.io"]}},
        "mirror": [{"name": "app", "registry": "docker.io", "repositories": ["library/app"]}]}))


async def test_status_says_what_each_repository_holds_and_what_needs_its_upstream() -> None:
    store, now = MemoryStore(), time.time()
    bucket = Bucket(store)
    whole = await bucket.image(APP, [bucket.layer(1000)], tag="whole")
    broken = await bucket.image(APP, [bucket.layer(1000)], tag="broken")
    await store.delete(layout.blob_data(broken.blobs[-1]))
    # A tag whose blobs are not in the bucket (as pull-through committed tags before their
    # blobs, up to the gateway of issue 15).
    lazy = await bucket.image("elsewhere/tmp", [bucket.layer()])
    await writer.put_manifest(store, APP, lazy.data)
    await writer.put_tag(store, APP, "lazy", lazy.digest)
    await bucket.image("imported/tool", tag="1")
    await save_state(store, "app", RuleState(last_run=now - 120, last_success=now - 3600,
                                             last_error="docker.io/library/app:x: 429"))
    pulls = {PullKey(APP, str(image.digest), tag): Pull(3, now - 60)
             for image, tag in ((whole, "whole"), (broken, "broken"), (lazy, "lazy"))}
    await store.put(layout.usage_record(day_of(now), int(now), "gw"),
                    UsageBatch("gw", now - 60, now, pulls).to_json())

    status = await take_status(config(), store, 86400)
    [rule] = status.rules
    assert rule.state.last_error == "docker.io/library/app:x: 429"
    [app] = rule.repositories
    assert (app.name, app.tags) == (APP, 3)
    assert app.bytes >= 2000
    assert app.last_pulled is not None
    assert abs(app.last_pulled - (now - 60)) < 1
    assert sorted(e.reference for e in app.exposed) == ["broken", "lazy"]
    missing = {e.reference: e.missing for e in app.exposed}
    assert missing["broken"] == f"blob {broken.blobs[-1]}: missing"  # the first thing missing
    assert [r.name for r in status.unruled] == ["elsewhere/tmp", "imported/tool"]

    runner = click.testing.CliRunner()
    text = runner.invoke(click.command()(lambda: print_status(status, as_json=False))).output
    assert "rule app (docker.io): last run 2m ago, FAILED: docker.io/library/app:x: 429" in text
    assert "would break if docker.io went down now: broken (pulled 1m ago; blob " in text
    assert "2 recently pulled image(s) need their upstream" in text
    data = json.loads(runner.invoke(click.command()(
        lambda: print_status(status, as_json=True))).output)
    assert data["exposed"] == 2
    assert data["rules"][0]["repositories"][0]["tags"] == 3


async def test_an_index_needs_the_platforms_nodes_pulled() -> None:
    """Pull-through stores the platforms nodes pull: an index is exposed when one of those is
    not whole, not because a platform nobody pulls is absent."""
    store, now = MemoryStore(), time.time()
    bucket = Bucket(store)
    amd64 = await bucket.image(APP, [bucket.layer()])
    arm64 = await bucket.image("elsewhere/arm64", [bucket.layer()])  # never in APP
    whole = await bucket.index(APP, [amd64, arm64], tag="multi")
    damaged = await bucket.image(APP, [bucket.layer()])
    await store.delete(layout.blob_data(damaged.blobs[-1]))
    broken = await bucket.index(APP, [damaged, arm64], tag="broken")
    unpulled = await bucket.index(APP, [await bucket.image(APP, [bucket.layer()]), arm64],
                                  tag="children-unknown")
    pulls = {PullKey(APP, str(image.digest), tag): Pull(1, now - 60) for image, tag in (
        (whole, "multi"), (broken, "broken"), (amd64, None), (damaged, None))}
    pulls[PullKey(APP, str(unpulled.digest), "children-unknown")] = Pull(1, now - 60)
    await store.put(layout.usage_record(day_of(now), int(now), "gw"),
                    UsageBatch("gw", now - 60, now, pulls).to_json())

    [rule] = (await take_status(config(), store, 86400)).rules
    [app] = rule.repositories
    exposed = {e.reference: e.missing for e in app.exposed}
    assert exposed.pop("broken") == f"blob {damaged.blobs[-1]}: missing"
    assert exposed.pop(str(damaged.digest)) == f"blob {damaged.blobs[-1]}: missing"
    # None of its children pulled since: every platform the rule copies is needed.
    assert exposed.pop("children-unknown") == f"manifest {arm64.digest}: no revision link"
    assert exposed == {}
