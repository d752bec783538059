"""What a sync run tells people: JSON lines (image, rule, summary), the terminal display, and a
summary whose image counts add up - checked on a real run against the in-process upstream."""

from __future__ import annotations

import io
import json
import random
from datetime import datetime
from typing import Any

import pytest

from registry.config import parse_config
from registry.digest import Digest
from sync.copier import CopyStats
from sync.report import JsonEvents, RichEvents, Tally, image_counts, print_summary, summary
from sync.targets import TargetStats
from sync.worker import RuleResult, Syncer
from tests.sync.conftest import UPSTREAM, FakeUpstream, ManualTime, recording

DIGEST = Digest("sha256", "a" * 64)


def lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_json_events_are_one_object_a_line_with_an_iso_time() -> None:
    stream = io.StringIO()
    events = JsonEvents(stream)
    events.image_done("app", "docker.io/library/app:1", DIGEST, None, {"s3://a": None})
    events.image_done("app", f"docker.io/library/app@{DIGEST}", DIGEST, None, {"s3://a": None})
    events.image_done("app", "docker.io/library/app:2", None, "boom", {"s3://a": "boom"})
    events.rule_done(RuleResult("app", CopyStats(images=1, blobs=2, failures=["x"]),
                                seconds=1.23456))
    image, pinned, failed, rule = lines(stream)
    assert datetime.fromisoformat(image.pop("time").replace("Z", "+00:00")).tzinfo is not None
    assert image == {"event": "image", "rule": "app", "image": "docker.io/library/app:1",
                     "digest": str(DIGEST), "error": None, "targets": {"s3://a": None}}
    assert (pinned["digest"], failed["digest"], failed["error"]) == (str(DIGEST), None, "boom")
    assert rule["event"] == "rule"
    assert rule["seconds"] == 1.235
    assert (rule["images"], rule["images_copied"], rule["images_pinned"],
            rule["images_failed"]) == (3, 1, 1, 1)
    assert rule["blobs"] == 2
    assert rule["failures"] == ["x"]


def test_the_tally_keeps_each_rule_apart() -> None:
    tally = Tally()
    tally.count("a", f"r/x@{DIGEST}", None)
    tally.count("b", "r/y:1", "failed")
    tally.count("b", "r/y:2", None)  # a tag that ended well: the copier counts it
    assert (tally.digests, tally.failed) == (1, 1)
    assert (tally.rules["a"].digests, tally.rules["b"].failed, tally.rules["b"].digests) \
        == (1, 1, 0)


def test_summary_sums_the_rules_and_names_the_skipped() -> None:
    results = [RuleResult("a", CopyStats(images=2, images_current=1, blobs=3,
                                         bytes_downloaded=4_000_000, failures=["a: x"])),
               RuleResult("b", CopyStats(blobs_present=2, bytes_present=10)),
               RuleResult("c", skipped="held by w1")]
    tally = Tally()
    tally.count("a", "r/x:9", "x")
    data = summary(results, 2.0, tally)
    assert data["rules"] == 3
    assert data["rules_skipped"] == ["c"]
    assert data["mb_per_second"] == 2.0
    assert (data["images"], data["images_copied"], data["images_current"],
            data["images_failed"]) == (4, 2, 1, 1)
    assert (data["blobs"], data["blobs_present"], data["bytes_present"]) == (3, 2, 10)
    assert data["failures"] == ["a: x"]
    assert summary([], 0.0, Tally())["mb_per_second"] is None


def test_print_summary_as_json_and_for_a_terminal() -> None:
    data = summary([RuleResult("a", CopyStats(images=1, bytes_downloaded=2_500_000,
                                              failures=["a: boom"])),
                    RuleResult("b", skipped="held")], 1.0, Tally())
    stream = io.StringIO()
    print_summary(data, terminal=False, stream=stream)
    (line,) = lines(stream)
    assert line["event"] == "summary"
    assert line["rules_skipped"] == ["b"]
    stream = io.StringIO()
    print_summary(data, terminal=True, stream=stream)
    text = stream.getvalue()
    assert "images 1: copied 1, already current 0, by digest 0, failed 0" in text
    assert "downloaded 2.5 MB in 1.0 s" in text
    assert "skipped rule b: another worker holds it" in text
    assert text.rstrip().endswith("FAILED a: boom")


def test_the_terminal_display_prints_a_line_per_image_and_skipped_rule(
        capsys: pytest.CaptureFixture[str]) -> None:
    events = RichEvents()
    try:
        events.progress.advance(10)
        events.image_done("app", "r/x:1", DIGEST, None, {})
        events.image_done("app", "r/x:2", None, "boom", {})
        events.rule_done(RuleResult("other", skipped="held by w1"))
    finally:
        events.stop()
    err = " ".join(capsys.readouterr().err.split())  # rich wraps at its width
    assert f"✓ r/x:1 {DIGEST} (app)" in err
    assert "✗ r/x:2 (app): boom" in err
    assert "- rule other: held by w1" in err
    assert events.tally.failed == 1


async def test_a_real_runs_image_counts_add_up() -> None:
    fake, store = FakeUpstream(), recording()
    rng = random.Random(5)
    for tag in ("1", "2", "3"):
        fake.image("library/app", tag, [rng.randbytes(512)])
    pinned = fake.image("library/app", None, [rng.randbytes(512)])
    fake.corrupt.add(fake.image("library/app", "4", [rng.randbytes(512)]).blobs[-1])
    config = parse_config(f"""
upstreams:
  docker.io: {{urls: ["{UPSTREAM}"], retries: 0}}
mirror:
  - {{name: app, registry: docker.io, repositories: [library/app], digests: ["{pinned.digest}"]}}
""")
    for run in range(2):  # the second finds the tags current
        stream = io.StringIO()
        events = JsonEvents(stream)
        sync = Syncer(config, stores=[store], transport=fake.transport(),
                      clocks=ManualTime().clocks(), events=events)
        try:
            results = await sync.run_once(sync.rules())
        finally:
            await sync.aclose()
        data = summary(results, 1.0, events.tally)
        reported = [line for line in lines(stream) if line["event"] == "image"]
        assert data["images"] == len(reported) == 5
        assert data["images_failed"] == 1
        assert data["images_pinned"] == 1
        assert (data["images_copied"], data["images_current"]) == ((3, 0) if run == 0 else (0, 3))
        (rule,) = [line for line in lines(stream) if line["event"] == "rule"]
        assert image_counts(results[0].stats, events.tally.rules["app"]) == {
            key: rule[key] for key in ("images", "images_copied", "images_current",
                                       "images_pinned", "images_failed")}


def test_the_summary_sums_each_primary_over_the_rules_and_a_terminal_gets_a_line_each() -> None:
    aws, gcp = "s3://images/mirror", "gs://images/mirror"
    results = [
        RuleResult("a", CopyStats(images=2, bytes_downloaded=3_000_000), targets={
            aws: TargetStats(images=2, blobs=3, bytes_written=3_000_000),
            gcp: TargetStats(images=1, images_failed=1, blobs=1, bytes_written=1_000_000,
                             failures=["blob sha256:x: StoreDown: injected"])}),
        RuleResult("b", CopyStats(), targets={
            aws: TargetStats(images_current=1),
            gcp: TargetStats(blobs=2, bytes_written=2_000_000, blobs_refilled=2,
                             bytes_refilled=2_000_000)})]
    data = summary(results, 1.0, Tally())
    assert data["bytes_downloaded"] == 3_000_000  # the upstream's, once for both primaries
    assert data["targets"][aws]["images"] == 2
    assert data["targets"][gcp]["bytes_written"] == 3_000_000
    assert data["targets"][gcp]["bytes_refilled"] == 2_000_000
    assert data["targets"][gcp]["failures"] == ["blob sha256:x: StoreDown: injected"]
    stream = io.StringIO()
    print_summary(data, terminal=True, stream=stream)
    text = stream.getvalue()
    assert f"  {aws}: images copied 2, current 1, failed 0; wrote 3 blobs (3.0 MB, 0.0 MB of " \
        "them from another primary); complete" in text
    assert f"  {gcp}: images copied 1, current 0, failed 1; wrote 3 blobs (3.0 MB, 2.0 MB of " \
        "them from another primary); FAILED: blob sha256:x: StoreDown: injected" in text
    one = summary([RuleResult("a", targets={aws: TargetStats(images=1)})], 1.0, Tally())
    stream = io.StringIO()
    print_summary(one, terminal=True, stream=stream)
    assert aws not in stream.getvalue()  # one primary: the run's lines are its own
