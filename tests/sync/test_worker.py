"""The worker: rules run under their lease against an in-process upstream; an image failing
fails only itself; queued misses are copied and cleared; a lease lost mid-copy stops every
commit after it."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import random
from collections.abc import Mapping

from registry import layout
from registry.config import parse_config
from registry.digest import Digest
from registry.names import Reference
from registry.syncstate import load_selection, load_state
from sync.lease import Lease
from sync.worker import Events, RuleResult, Syncer, exit_status
from tests.sync.conftest import (
    UPSTREAM,
    FakeUpstream,
    Gate,
    Image,
    ManualTime,
    RecordingStore,
    recording,
    until,
)

NAME = "docker.io/library/app"
REPO = "library/app"
TTL = 30.0
LEASE = layout.sync_lease("app")


def config(tags: str = "{exclude: [alpine]}", repositories: str = "[library/app]",
           schedule: str = "", registry: str = "docker.io") -> str:
    return f"""
upstreams:
  {registry}: {{urls: ["{UPSTREAM}"], retries: 0}}
mirror:
  - {{name: app, registry: {registry}, repositories: {repositories}, tags: {tags}{schedule}}}
sync: {{lease_ttl: {TTL:.0f}s}}
"""


class Recorded(Events):
    def __init__(self) -> None:
        self.images: list[tuple[str, str | None]] = []
        self.rules: list[RuleResult] = []

    def image_done(self, rule: str, image: str, digest: Digest | None, error: str | None,
                   targets: Mapping[str, str | None]) -> None:
        self.images.append((image, error))

    def rule_done(self, result: RuleResult) -> None:
        self.rules.append(result)


def syncer(store: RecordingStore, fake: FakeUpstream, time: ManualTime | None = None,
           text: str | None = None, events: Events | None = None,
           dry_run: bool = False) -> Syncer:
    return Syncer(parse_config(text or config()), stores=[store], transport=fake.transport(),
                  clocks=(time or ManualTime()).clocks(), events=events or Events(),
                  dry_run=dry_run)


def image(fake: FakeUpstream, tag: str | None, seed: int, repository: str = REPO) -> Image:
    rng = random.Random(seed)
    return fake.image(repository, tag, [rng.randbytes(1024), rng.randbytes(4096)])


def tags(store: RecordingStore, name: str = NAME) -> list[str]:
    prefix = layout.tags_dir(name)
    return sorted({key[len(prefix):].split("/")[0] for key in store.keys_written()
                   if key.startswith(prefix) and key.endswith("/current/link")})


async def run(sync: Syncer) -> RuleResult:
    try:
        (result,) = await sync.run_once(sync.rules())
    finally:
        await sync.aclose()
    return result


async def test_a_run_copies_the_selected_tags_under_its_lease_and_records_its_state() -> None:
    fake, store, events = FakeUpstream(), recording(), Recorded()
    for seed, tag in enumerate(["1", "2", "2-alpine"]):
        image(fake, tag, seed)
    result = await run(syncer(store, fake, events=events))
    assert result.stats.failures == []
    assert tags(store) == ["1", "2"]
    assert sorted(events.images) == [(f"{NAME}:1", None), (f"{NAME}:2", None)]
    assert events.rules == [result]
    state = await load_state(store, "app")
    assert state.last_success is not None
    assert state.last_counts["images"] == 2
    assert "tags" not in json.loads(await store.get(layout.sync_state("app")))
    assert store.writes[0].key == LEASE  # taken first, released (expired) last
    assert store.writes[-1].key == LEASE
    assert json.loads(await store.get(LEASE))["expires"] == 0


async def test_one_image_failing_fails_only_itself() -> None:
    fake, store = FakeUpstream(), recording()
    broken = image(fake, "1", seed=1)
    image(fake, "2", seed=2)
    fake.corrupt.add(broken.blobs[-1])
    result = await run(syncer(store, fake))
    assert len(result.stats.failures) == 1
    assert result.stats.failures[0].startswith(f"{NAME}:1: ")
    assert tags(store) == ["2"]
    assert exit_status([result]) == 1
    assert (await load_state(store, "app")).last_error == result.stats.failures[0]


async def test_queued_misses_are_copied_or_dropped_and_cleared_once_handled() -> None:
    fake, store = FakeUpstream(), recording()
    for seed, tag in enumerate(["1", "2-alpine", "3"]):
        image(fake, tag, seed)
    untagged = image(fake, None, seed=7)
    fake.corrupt.add(image(fake, "4", seed=8).blobs[-1])
    image(fake, "1", seed=9, repository="library/other")
    queued: dict[Reference, bool] = {"1": True, "2-alpine": True, untagged.digest: True,
                                     "gone": True, "4": False}
    for reference in queued:
        await store.put(layout.miss(NAME, reference), b"{}")
    uncovered = layout.miss("docker.io/library/other", "1")
    await store.put(uncovered, b"{}")
    result = await run(syncer(store, fake, text=config(tags="{exclude: [alpine], latest: 1}")))
    # latest: 1 selects 4 (which fails); the queue adds 1 and the untagged digest; 2-alpine is
    # filtered out and gone is not upstream: both are cleared, the failed 4 stays queued.
    assert tags(store) == ["1"]
    assert layout.revision_link(NAME, untagged.digest) in store.keys_written()
    for reference, cleared in queued.items():
        assert (layout.miss(NAME, reference) not in store.memory.objects) == cleared, reference
    assert uncovered in store.memory.objects
    assert tags(store, "docker.io/library/other") == []
    assert any(f.startswith(f"{NAME}:gone: ") for f in result.stats.failures)
    assert any(f.startswith(f"{NAME}:4: ") for f in result.stats.failures)  # corrupt: fired


async def test_a_rule_another_worker_holds_is_skipped_untouched() -> None:
    fake, store, time = FakeUpstream(), recording(), ManualTime()
    image(fake, "1", seed=1)
    await Lease(store.inner, "app", TTL, holder="other:1:x", clocks=time.clocks()).acquire()
    result = await run(syncer(store, fake, time))
    assert result.skipped is not None
    assert "other:1:x" in result.skipped
    assert store.keys_written() == []
    assert fake.requests == []
    assert exit_status([result]) == 0


async def test_dry_run_takes_no_lease_and_writes_nothing() -> None:
    fake, store = FakeUpstream(), recording()
    image(fake, "1", seed=1)
    result = await run(syncer(store, fake, dry_run=True))
    assert result.stats.images == 1
    assert store.writes == []


async def test_globs_expand_through_the_catalog_and_fail_the_rule_without_one() -> None:
    fake, store = FakeUpstream(), recording()
    image(fake, "1", seed=1)
    image(fake, "1", seed=2, repository="library/api")
    image(fake, "1", seed=3, repository="tools/x")
    text = config(repositories="['library/*']", registry="reg.test")
    result = await run(syncer(store, fake, text=text))
    assert result.stats.failures == [
        "app: reg.test: no catalog to expand 'library/*'; list the repositories instead"]
    fake.catalog = ["library/api", "library/app", "tools/x"]
    result = await run(syncer(store, fake, text=text))
    assert result.stats.failures == []
    assert tags(store, "reg.test/library/app") == ["1"]
    assert tags(store, "reg.test/library/api") == ["1"]
    assert tags(store, "reg.test/tools/x") == []


async def test_forever_runs_the_rule_again_on_its_schedule() -> None:
    fake, store, time, events = FakeUpstream(), recording(), ManualTime(), Recorded()
    image(fake, "1", seed=1)
    sync = syncer(store, fake, time, config(schedule=", schedule: {every: 60s}"), events)
    forever = asyncio.create_task(sync.run_forever(sync.rules()))
    try:
        await until(lambda: len(events.rules) == 1 and time.sleeping == 1, "the first run")
        time.advance(60)
        await until(lambda: len(events.rules) == 2, "the second run")
    finally:
        forever.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await forever
        await sync.aclose()
    assert events.rules[0].stats.images == 1
    assert events.rules[1].stats.images_current == 1


# -- a lease lost mid-copy -------------------------------------------------------------------


async def mid_copy(store: RecordingStore, victim: Image, gate: Gate) -> None:
    """Until the gated blob is half sent and every other blob of ``victim`` linked."""
    await gate.sent_part.wait()
    others = [layout.layer_link(NAME, blob) for blob in victim.blobs[:-1]]
    await until(lambda: set(others) <= set(store.keys_written()), "the other blobs")


def writes_after(store: RecordingStore, start: int) -> list[str]:
    return store.keys_written(start)


async def test_a_lease_that_runs_out_mid_copy_and_is_taken_stops_every_commit() -> None:
    """One renewal fails, the next hangs, the lease runs out; another worker takes it while a
    blob is half downloaded. The blob finishes, and nothing is committed after the steal:
    the commit check itself sees the deadline passed (the renewer is stuck)."""
    fake, store, time = FakeUpstream(), recording(), ManualTime()
    victim = image(fake, "1", seed=1)
    gate = fake.gate(victim.blobs[-1])
    failed = store.fault("replace", lambda key: key == LEASE, times=1)
    hung = store.fault("replace", lambda key: key == LEASE, "hang", times=1)
    running = asyncio.create_task(run(syncer(store, fake, time)))
    await mid_copy(store, victim, gate)
    await until(lambda: time.sleeping == 1, "the renewer to wait")
    time.advance(TTL / 3)
    await until(lambda: failed.fired == 1, "a renewal to fail")
    await until(lambda: time.sleeping == 1, "the renewer to wait again")
    time.advance(TTL / 3)
    await until(lambda: hung.fired == 1, "a renewal to hang")
    time.advance(TTL / 3)
    thief = Lease(store.inner, "app", TTL, holder="thief", clocks=time.clocks())
    await thief.acquire()  # the other worker's conditional write
    stolen = len(store.writes)
    gate.release.set()
    result = await running
    assert thief.held
    assert json.loads(await store.get(LEASE))["holder"] == "thief"
    assert (failed.fired, hung.fired) == (1, 1)
    (failure,) = result.stats.failures
    assert failure.startswith("rule 'app': lease expired")
    # It went on to the link of the blob it was downloading, and stopped there: the blob
    # itself (content-addressed, in no repository) is the only write after the steal.
    assert failure.endswith(f"stopped before committing blob link {NAME}@{victim.blobs[-1]}")
    assert writes_after(store, stolen) == [layout.blob_data(victim.blobs[-1])]
    assert tags(store) == []
    assert layout.sync_state("app") not in store.keys_written()


async def test_a_lease_taken_by_a_worker_whose_clock_runs_ahead_is_lost_at_renewal() -> None:
    """Another worker, its clock a TTL ahead, takes the lease mid-copy while this worker's
    own deadline is far off: the next renewal finds it taken, and nothing more is committed."""
    fake, store, time = FakeUpstream(), recording(), ManualTime()
    victim = image(fake, "1", seed=1)
    gate = fake.gate(victim.blobs[-1])
    sync = syncer(store, fake, time)
    running = asyncio.create_task(run(sync))
    await mid_copy(store, victim, gate)
    thief = Lease(store.inner, "app", TTL, holder="thief", clocks=time.clocks(skew=TTL))
    await thief.acquire()
    stolen = len(store.writes)
    await until(lambda: time.sleeping == 1, "the renewer to wait")
    time.advance(TTL / 3)
    await until(lambda: [(w.op, w.outcome) for w in store.writes[stolen:]]
                == [("replace", "PreconditionFailed")], "the renewal to find the lease taken")
    gate.release.set()
    result = await running
    assert thief.held
    assert json.loads(await store.get(LEASE))["holder"] == "thief"
    assert result.stats.failures == [
        "rule 'app': lease taken over by another worker; stopped before committing blob link "
        f"{NAME}@{victim.blobs[-1]}"]
    assert writes_after(store, stolen) == [layout.blob_data(victim.blobs[-1])]
    assert tags(store) == []


async def test_a_run_whose_lease_holds_commits_the_same_image() -> None:
    """The control for the two above: the same gated copy, time passing within renewals,
    commits its tag - so their empty tag lists are the lease's doing."""
    fake, store, time = FakeUpstream(), recording(), ManualTime()
    victim = image(fake, "1", seed=1)
    gate = fake.gate(victim.blobs[-1])
    running = asyncio.create_task(run(syncer(store, fake, time)))
    await mid_copy(store, victim, gate)
    for renewals in (1, 2, 3):
        await until(lambda: time.sleeping == 1, "the renewer to wait")
        time.advance(TTL / 3)
        await until(functools.partial(_renewed, store, renewals), "a renewal")
    gate.release.set()
    result = await running
    assert result.stats.failures == []
    assert tags(store) == ["1"]


def _renewed(store: RecordingStore, times: int) -> bool:
    return [w.op for w in store.writes].count("replace") == times


async def test_a_run_records_what_the_rule_selected_upstream_for_retention() -> None:
    """Garbage collection keeps what sync last selected (latest N ranks the upstream's tags,
    which only sync sees); a repository whose listing fails keeps its old selection."""
    fake, store = FakeUpstream(), recording()
    for seed, tag in enumerate(["1.0", "1.1", "1.2"]):
        image(fake, tag, seed)
    image(fake, "9", 9, repository="library/other")
    text = config(tags="{latest: 2}", repositories="[library/app, library/other]")
    await run(syncer(store, fake, text=text))
    assert await load_selection(store, "app") == {"library/app": ["1.1", "1.2"],
                                                  "library/other": ["9"]}
    image(fake, "1.3", 3)
    del fake.manifests["library/other"]  # its listing now fails: its selection stays
    await run(syncer(store, fake, text=text))
    assert await load_selection(store, "app") == {"library/app": ["1.2", "1.3"],
                                                  "library/other": ["9"]}
