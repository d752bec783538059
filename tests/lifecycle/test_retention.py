"""Retention semantics on a memory store: what a rule selects now stays, tags no rule keeps go
after the grace period, pulled and newest tags stay, and whatever a kept tag needs (an index's
children, referrers of a kept manifest) stays with it."""

from __future__ import annotations

from typing import Any

import yaml

from lifecycle.gc import Collector
from registry import layout
from registry.claims import CLAIM_TTL
from registry.config import Config, parse_config
from registry.gcstate import load_gc_report
from registry.store.memory import MemoryStore
from registry.syncstate import save_selection
from registry.usage import Pull, PullKey, UsageBatch, day_of
from tests.lifecycle.bucket import Bucket, FakeTime, blob_exists, pull, tags

APP = "docker.io/library/app"
IMPORTED = "imported/tool"


def config(rule: dict[str, Any] | None = None, gc: dict[str, Any] | None = None,
           upstream: dict[str, Any] | None = None) -> Config:
    doc: dict[str, Any] = {
        "upstreams": {"docker.io": {"urls": ["https://registry-1.docker.io"], **(upstream or {})}},
        "mirror": [{"name": "app", "registry": "docker.io", "repositories": ["library/app"],
                    "retention": {"pulled_within": None}, **(rule or {})}],
        "gc": {"grace": "0s", "settle": "0s", "retention": None, **(gc or {})},
    }
    return parse_config(yaml.safe_dump(doc))


async def collect(store: MemoryStore, cfg: Config, time: FakeTime, *,
                  dry_run: bool = False) -> Any:
    """Collect once the writers' claims have lapsed (they keep what was just written)."""
    time.now = max(time.now, CLAIM_TTL + 1)
    report, plan = await Collector(cfg, store, timing=time.timing(), dry_run=dry_run).run()
    return report, plan


async def four_versions(bucket: Bucket) -> dict[str, Any]:
    shared = bucket.layer()
    return {version: await bucket.image(APP, [shared, bucket.layer()], tag=version)
            for version in ("1.0", "1.1", "1.2", "1.3")}


async def record_pulls(store: MemoryStore, time: FakeTime, *pulled: PullKey) -> None:
    """One gateway's batch, as gateway/usage.py writes it."""
    now = time.wall()
    batch = UsageBatch("gw-test", now - 60, now, {key: Pull(1, now) for key in pulled})
    await store.put(layout.usage_record(day_of(now), int(now), "gw-test"), batch.to_json())


async def test_a_rule_narrowed_to_latest_two_keeps_two() -> None:
    store, time = MemoryStore(), FakeTime()
    bucket = Bucket(store, time)
    images = await four_versions(bucket)
    report, _ = await collect(store, config({"tags": {"latest": 2}}), time)
    assert await tags(store, APP) == ["1.2", "1.3"]
    for version in ("1.2", "1.3"):
        assert await pull(store, APP, version) is None
    gone = images["1.0"]
    assert not await blob_exists(store, gone.digest)
    assert not await blob_exists(store, gone.blobs[-1])  # its own layer
    assert await blob_exists(store, gone.blobs[1])  # the layer it shares with 1.2 and 1.3
    assert report.deleted["tag"] == 2
    assert report.deleted["blob"] == 6
    assert report.bytes_freed == sum(report.freed_bytes.values()) > 0
    assert set(report.freed_bytes) == {APP}
    assert (await load_gc_report(store)) == report


async def test_nothing_goes_before_the_grace_period_has_passed_twice() -> None:
    store, time = MemoryStore(), FakeTime()
    images = await four_versions(Bucket(store, time))
    cfg = config({"tags": {"latest": 2}}, {"grace": "1h"})
    first, _ = await collect(store, cfg, time)
    assert first.candidates > 0
    assert not first.deleted
    time.now += 3599
    assert not (await collect(store, cfg, time))[0].deleted
    assert await pull(store, APP, "1.0") is None
    time.now += 2
    assert (await collect(store, cfg, time))[0].deleted["tag"] == 2
    assert await tags(store, APP) == ["1.2", "1.3"]
    assert not await blob_exists(store, images["1.1"].digest)


async def test_a_candidate_that_was_live_in_between_starts_its_grace_again() -> None:
    store, time = MemoryStore(), FakeTime()
    bucket = Bucket(store, time)
    images = await four_versions(bucket)
    cfg = config({"tags": {"latest": 2}}, {"grace": "1h"})
    await collect(store, cfg, time)  # 1.0 and 1.1 candidates from now
    time.now += 1800
    # 1.0's image is kept again, by a tag written as registry:2 would (no claim: the grace
    # period alone has to see that it was live in between).
    await store.put(layout.tag_current_link(APP, "1.4"), layout.link_content(images["1.0"].digest))
    await collect(store, cfg, time)
    time.now += 1800
    await store.delete(layout.tag_current_link(APP, "1.4"))  # and dropped again
    await collect(store, cfg, time)
    assert not await blob_exists(store, images["1.1"].digest)  # a candidate throughout
    time.now += 1801
    await collect(store, cfg, time)
    assert await blob_exists(store, images["1.0"].digest)  # 1.0's image: 1801 s, not 3600
    time.now += 1800
    await collect(store, cfg, time)
    assert not await blob_exists(store, images["1.0"].digest)


async def test_tags_pulled_within_the_window_stay() -> None:
    store, time = MemoryStore(), FakeTime()
    images = await four_versions(Bucket(store, time))
    cfg = config({"tags": {"latest": 1}, "retention": {"pulled_within": "1d"}})
    await record_pulls(store, time, PullKey(APP, str(images["1.1"].digest), "1.1"),
                       PullKey(APP, str(images["1.0"].digest), None))  # by digest
    await collect(store, cfg, time)
    assert await tags(store, APP) == ["1.1", "1.3"]
    assert await pull(store, APP, images["1.0"].digest) is None  # its revision stays
    time.now += 86401
    await collect(store, cfg, time)
    assert await tags(store, APP) == ["1.3"]
    assert await pull(store, APP, images["1.0"].digest) is not None


async def test_a_pull_through_rule_selecting_no_tags_keeps_what_was_pulled() -> None:
    """docs/retention.md's on-demand rule: ``tags: []`` with pull-through upstream: only pulls
    (and the newest) keep a tag; a rule with no ``tags:`` would keep them all."""
    store, time = MemoryStore(), FakeTime()
    images = await four_versions(Bucket(store, time))
    pulled = PullKey(APP, str(images["1.0"].digest), "1.0")
    await record_pulls(store, time, pulled)
    await collect(store, config({"retention": {"pulled_within": "1d"}}), time)
    assert await tags(store, APP) == ["1.0", "1.1", "1.2", "1.3"]  # no tags: selects all
    on_demand = config({"tags": [], "retention": {"pulled_within": "1d", "newest": 1}},
                       upstream={"on_miss": "pull-through"})
    await collect(store, on_demand, time)
    assert await tags(store, APP) == ["1.0", "1.3"]  # pulled, and the newest image


async def test_unruled_repositories_keep_their_newest_and_null_keeps_everything() -> None:
    store, time = MemoryStore(), FakeTime()
    bucket = Bucket(store, time)
    for day in range(1, 6):
        await bucket.image(IMPORTED, created=f"2026-01-0{day}T00:00:00Z", tag=f"build{day}")
    await bucket.image(IMPORTED, created=None, tag="undated")  # counts as newest
    untagged = await bucket.image(IMPORTED)
    await collect(store, config(gc={"retention": None}), time)
    assert len(await tags(store, IMPORTED)) == 6
    assert await pull(store, IMPORTED, untagged.digest) is None
    await collect(store, config(gc={"retention": {"newest": 3}}), time)
    assert await tags(store, IMPORTED) == ["build4", "build5", "undated"]
    assert await pull(store, IMPORTED, untagged.digest) is not None


async def test_an_index_keeps_its_children_and_referrers_follow_their_subject() -> None:
    store, time = MemoryStore(), FakeTime()
    bucket = Bucket(store, time)
    amd, arm = await bucket.image(APP), await bucket.image(APP)
    kept = await bucket.index(APP, [amd, arm], tag="2.0")
    signature = await bucket.image(APP, subject=kept, artifact_type="application/x-signature")
    gone = await bucket.image(APP, tag="1.0")
    orphan_sig = await bucket.image(APP, subject=gone, artifact_type="application/x-signature")
    # A registry:2-style fallback tag for the old image's referrers goes with it.
    await bucket.tag(APP, layout.referrers_tag(gone.digest), orphan_sig)
    await collect(store, config({"tags": ["2.0"]}), time)
    assert await tags(store, APP) == ["2.0"]
    assert await pull(store, APP, "2.0") is None
    assert await pull(store, APP, signature.digest) is None
    assert await store.children(layout.referrers_dir(APP, kept.digest)) == [
        f"sha256-{signature.digest.hex}"]
    assert await store.children(layout.referrers_dir(APP, gone.digest)) == []
    assert not await blob_exists(store, orphan_sig.digest)


async def test_the_selection_sync_recorded_upstream_stays_and_rule_digests_stay() -> None:
    store, time = MemoryStore(), FakeTime()
    images = await four_versions(Bucket(store, time))
    # Upstream, 1.1 was among the latest two (newer tags were deleted there).
    await save_selection(store, "app", {"library/app": ["1.1", "1.3"]})
    pinned = str(images["1.0"].digest)
    await collect(store, config({"tags": {"latest": 2}, "digests": [pinned]}), time)
    assert await tags(store, APP) == ["1.1", "1.2", "1.3"]
    assert await pull(store, APP, images["1.0"].digest) is None


async def test_a_dry_run_writes_nothing_and_says_what_would_go() -> None:
    store, time = MemoryStore(), FakeTime()
    await four_versions(Bucket(store, time))
    before = dict(store.objects)
    report, plan = await collect(store, config({"tags": {"latest": 2}}), time, dry_run=True)
    assert store.objects == before
    assert {o.id for o in plan.doomed if o.kind == "tag"} == {f"tag {APP}:1.0", f"tag {APP}:1.1"}
    assert report.freed_bytes[APP] > 0
    assert report.dry_run
