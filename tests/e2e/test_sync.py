"""The sync worker against a real registry:2 upstream filled by skopeo.

Rules select tags and platforms; shared layers are fetched and stored once; a killed run never
leaves a tag pointing at missing content; the gateway (and containerd through it) serves what
sync wrote with the upstream stopped; registry:2 serves the same store.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from registry import layout
from registry.config import Config, parse_config
from registry.digest import Digest
from registry.mediatypes import INDEX_TYPES, media_type_of, parse_manifest
from registry.store.file import FileStore
from sync.worker import Events, RuleResult, Syncer
from tests.e2e.harness import (
    Containerd,
    Server,
    Skopeo,
    clean_env,
    regfront_binary,
    run,
    serving_regfront,
    serving_registry2,
)
from tests.e2e.relay import HoldingRelay
from tests.images import Layout, fleet_layout, layout_blob, layout_digest

pytestmark = pytest.mark.e2e

APP_TAGS = ["1.24.0", "1.25", "1.25.5", "1.26.2", "1.27.0", "1.27.1", "1.27.1-alpine", "latest"]
# exclude alpine, semver >=1.25 <2, latest 3: the versions in range are 1.25(.0), 1.25.5,
# 1.26.2, 1.27.0 and 1.27.1 (1.24.0 is below it, latest is no version): the top three stay.
APP_SELECTED = ["1.26.2", "1.27.0", "1.27.1"]


@dataclass
class Upstream:
    layout: Layout
    registry: Server
    workdir: Path


@pytest.fixture(scope="module")
def upstream(tmp_path_factory: pytest.TempPathFactory, skopeo: Skopeo) -> Iterator[Upstream]:
    """A registry:2 of its own (tests stop it) holding library/app's tags and library/multi:1."""
    work = tmp_path_factory.mktemp("sync-upstream")
    fleet = fleet_layout(work / "oci", APP_TAGS)
    with serving_registry2(work / "root", work) as registry:
        for tag in APP_TAGS:
            skopeo("copy", "--dest-tls-verify=false", f"oci:{fleet.root}:{tag}",
                   registry.ref(f"library/app:{tag}"))
        skopeo("copy", "--all", "--dest-tls-verify=false", f"oci:{fleet.root}:multi",
               registry.ref("library/multi:1"))
        yield Upstream(fleet, registry, work)


def config_text(upstream_url: str, store: Path, extra_upstream: str = "") -> str:
    return f"""
storage:
  - url: {store}
upstreams:
  docker.io:
    urls: ["{upstream_url}"]
{extra_upstream}
mirror:
  - name: app
    registry: docker.io
    repositories: [library/app]
    tags: {{exclude: [alpine], semver: '>=1.25 <2', latest: 3}}
  - name: multi
    registry: docker.io
    repositories: [library/multi]
    tags: ['1']
    platforms: [linux/arm64]
"""


def _config(upstream: Upstream, store: Path) -> Config:
    return parse_config(config_text(upstream.registry.url, store))


def _manifest(root: Layout, ref_or_digest: str) -> dict[str, Any]:
    digest = ref_or_digest if ":" in ref_or_digest else layout_digest(root.root, ref_or_digest)
    doc: dict[str, Any] = json.loads(layout_blob(root.root, digest))
    return doc


def _unique_blob_bytes(fleet: Layout, tags: list[str]) -> int:
    """The blob bytes a sync of ``tags`` downloads: each distinct config and layer once."""
    sizes: dict[str, int] = {}
    for tag in tags:
        doc = _manifest(fleet, tag)
        for blob in [doc["config"], *doc["layers"]]:
            sizes[blob["digest"]] = blob["size"]
    return sum(sizes.values())


def assert_every_tag_complete(store: Path) -> int:
    """No tag points at missing content: each manifest reachable from a tag is committed with
    every blob it names (an index may lack children a platform filter left out, never all)."""
    files = FileStore(str(store))
    repositories = store / layout.DISTRIBUTION_ROOT / "repositories"
    checked = 0
    for tags_dir in repositories.glob("**/_manifests/tags"):
        name = str(tags_dir.parent.parent.relative_to(repositories))
        for tag in [p.name for p in tags_dir.iterdir()]:
            digest = Digest.parse((store / layout.tag_current_link(name, tag)).read_text())
            _assert_manifest_complete(store, name, digest, top=True)
            checked += 1
    assert files.root == store
    return checked


def _assert_manifest_complete(store: Path, name: str, digest: Digest, *, top: bool) -> bool:
    revision = store / layout.revision_link(name, digest)
    if not revision.exists():
        assert not top, f"{name}@{digest} is tagged but not committed"
        return False
    data = (store / layout.blob_data(digest)).read_bytes()
    assert digest.matches(data)
    doc = parse_manifest(data)
    if media_type_of(doc) in INDEX_TYPES:
        present = [_assert_manifest_complete(store, name, Digest.parse(c["digest"]), top=False)
                   for c in doc["manifests"]]
        assert any(present), f"index {name}@{digest} has none of its children"
        return True
    for blob in [doc["config"], *doc["layers"]]:
        blob_digest = Digest.parse(blob["digest"])
        assert (store / layout.blob_data(blob_digest)).stat().st_size == blob["size"]
        assert (store / layout.layer_link(name, blob_digest)).exists()
    return True


def _tags(store: Path, name: str) -> list[str]:
    return sorted(p.name for p in (store / layout.tags_dir(name)).iterdir())


async def test_rules_copy_exactly_the_selected_tags_and_platforms(upstream: Upstream,
                                                                  tmp_path: Path) -> None:
    store = tmp_path / "store"
    syncer = Syncer(_config(upstream, store))
    try:
        results = await syncer.run_once(syncer.rules())
    finally:
        await syncer.aclose()
    assert [r.stats.failures for r in results] == [[], []]
    assert _tags(store, "docker.io/library/app") == APP_SELECTED
    assert _tags(store, "docker.io/library/multi") == ["1"]
    # The index is kept byte-for-byte (same digest); only its linux/arm64/v8 child is copied.
    index_digest = layout_digest(upstream.layout.root, "multi")
    link = store / layout.tag_current_link("docker.io/library/multi", "1")
    assert link.read_text() == index_digest
    children = {c["platform"]["architecture"]: Digest.parse(c["digest"])
                for c in _manifest(upstream.layout, index_digest)["manifests"]}
    copied = {arch for arch, digest in children.items()
              if (store / layout.revision_link("docker.io/library/multi", digest)).exists()}
    assert copied == {"arm64"}
    # Shared layers crossed the wire once: bytes downloaded are the distinct blobs' bytes.
    app = results[0].stats
    assert app.bytes_downloaded == _unique_blob_bytes(upstream.layout, APP_SELECTED)
    assert app.blobs_present > 0  # the base layers, linked into the later images
    assert assert_every_tag_complete(store) == 4


async def test_a_second_run_downloads_nothing(upstream: Upstream, tmp_path: Path) -> None:
    store = tmp_path / "store"
    for _ in range(2):
        syncer = Syncer(_config(upstream, store))
        try:
            results = await syncer.run_once(syncer.rules())
        finally:
            await syncer.aclose()
    assert results[0].stats.bytes_downloaded == 0
    assert results[0].stats.images_current == len(APP_SELECTED)
    assert results[1].stats.images_current == 1


class CorruptBlob(httpx.AsyncBaseTransport):
    """The upstream, except one blob's bytes arrive with a flipped bit."""

    def __init__(self, digest: str) -> None:
        self.digest = digest
        self.inner = httpx.AsyncHTTPTransport()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self.inner.handle_async_request(request)
        if request.method == "GET" and request.url.path.endswith(f"/blobs/{self.digest}"):
            body = bytearray(await response.aread())
            body[len(body) // 2] ^= 1
            return httpx.Response(response.status_code, headers=response.headers,
                                  content=bytes(body))
        return response

    async def aclose(self) -> None:
        await self.inner.aclose()


async def test_a_corrupt_blob_fails_its_image_only(upstream: Upstream, tmp_path: Path) -> None:
    victim = "1.26.2"
    unique_layer = _manifest(upstream.layout, victim)["layers"][-1]["digest"]
    store = tmp_path / "store"
    transport = CorruptBlob(unique_layer)
    syncer = Syncer(_config(upstream, store), transport=transport)
    try:
        results = await syncer.run_once(syncer.rules(["app"]))
    finally:
        await syncer.aclose()
        await transport.aclose()
    failures = results[0].stats.failures
    assert len(failures) == 1
    assert f"docker.io/library/app:{victim}" in failures[0]
    assert "DIGEST_INVALID" in failures[0] or "digest" in failures[0]
    assert _tags(store, "docker.io/library/app") == ["1.27.0", "1.27.1"]
    assert not (store / layout.blob_data(Digest.parse(unique_layer))).exists()
    assert_every_tag_complete(store)


def _sync(config: Path, *args: str, timeout: float = 60) -> dict[str, Any]:
    """``regfront sync --once --json``; returns the summary line."""
    done = subprocess.run([regfront_binary(), "sync", "--config", str(config), "--once",
                           "--json", *args], capture_output=True, text=True, timeout=timeout,
                          env=clean_env("REGFRONT_"), check=False)
    lines = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    summaries = [line for line in lines if line["event"] == "summary"]
    assert summaries, f"no summary (exit {done.returncode}): {done.stdout}\n{done.stderr}"
    summary: dict[str, Any] = summaries[-1]
    summary["exit"] = done.returncode
    return summary


def _until(condition: Callable[[], object], what: str, timeout: float = 60) -> None:
    """Poll a condition on the store (nothing can tell the test of it) until it holds."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def _tags_now(store: Path, name: str) -> list[str]:
    directory = store / layout.tags_dir(name)
    return sorted(p.name for p in directory.iterdir()) if directory.is_dir() else []


def _tagged(store: Path, name: str, tags: list[str]) -> bool:
    return _tags_now(store, name) == tags


def _staging(store: Path, digest: str) -> list[Path]:
    """Partial objects beside where ``digest``'s blob goes: an upload under way, or killed."""
    final = store / layout.blob_data(Digest.parse(digest))
    return list(final.parent.glob(f"{final.name}?*")) if final.parent.is_dir() else []


def _blob_sizes(fleet: Layout, tags: list[str]) -> dict[str, int]:
    return {blob["digest"]: blob["size"] for tag in tags
            for blob in [_manifest(fleet, tag)["config"], *_manifest(fleet, tag)["layers"]]}


def _sync_argv(config: Path) -> list[str]:
    return [regfront_binary(), "sync", "--config", str(config), "--once", "--json",
            "--rule", "app"]


def test_sigkill_mid_blob_leaves_no_broken_tag_and_the_rerun_fetches_only_the_rest(
        upstream: Upstream, tmp_path: Path) -> None:
    """Each run is killed while a blob is half sent and its upload open in the store: first in
    a layer every image needs (nothing tagged yet), then in the last tag's own layer once the
    other tags are committed."""
    store, config = tmp_path / "store", tmp_path / "regfront.yaml"
    name = "docker.io/library/app"
    base = _manifest(upstream.layout, APP_SELECTED[0])["layers"][0]["digest"]
    own = _manifest(upstream.layout, APP_SELECTED[-1])["layers"][-1]["digest"]
    assert all(base in json.dumps(_manifest(upstream.layout, t)) for t in APP_SELECTED)
    assert not any(own in json.dumps(_manifest(upstream.layout, t)) for t in APP_SELECTED[:-1])
    with HoldingRelay(upstream.registry.url).serving() as relay:
        config.write_text(config_text(relay.url, store))
        for held, committed in ((base, []), (own, APP_SELECTED[:-1])):
            relay.arm(held)
            process = subprocess.Popen(_sync_argv(config), stdout=subprocess.DEVNULL,
                                       stderr=subprocess.DEVNULL, env=clean_env("REGFRONT_"))
            try:
                assert relay.holding.wait(60), "the sync never fetched the held blob"
                _until(functools.partial(_staging, store, held), "the held blob's upload")
                _until(functools.partial(_tagged, store, name, committed), f"tags {committed}")
            finally:
                process.send_signal(signal.SIGKILL)
                process.wait(timeout=10)
            assert process.returncode == -signal.SIGKILL  # killed, not finished
            assert _staging(store, held)  # the upload it was in the middle of, left behind
            assert not (store / layout.blob_data(Digest.parse(held))).exists()
            assert _tags_now(store, name) == committed
            assert_every_tag_complete(store)
    sizes = _blob_sizes(upstream.layout, APP_SELECTED)
    missing = {d: n for d, n in sizes.items()
               if not (store / layout.blob_data(Digest.parse(d))).exists()}
    assert base not in missing  # the second run committed it
    assert own in missing
    config.write_text(config_text(upstream.registry.url, store))
    summary = _sync(config, "--rule", "app")
    assert summary["exit"] == 0, summary
    assert summary["failures"] == []
    # Only what the killed runs had not committed is downloaded again.
    assert summary["bytes_downloaded"] == sum(missing.values())
    assert _tags(store, name) == APP_SELECTED
    assert_every_tag_complete(store)


def test_two_workers_on_one_rule_one_runs(upstream: Upstream, tmp_path: Path) -> None:
    """The second worker starts while the first is held mid-copy: it finds the lease held."""
    store, config = tmp_path / "store", tmp_path / "regfront.yaml"
    base = _manifest(upstream.layout, APP_SELECTED[0])["layers"][0]["digest"]
    with HoldingRelay(upstream.registry.url).serving() as relay:
        config.write_text(config_text(relay.url, store))
        relay.arm(base)
        first = subprocess.Popen(_sync_argv(config), stdout=subprocess.PIPE,
                                 stderr=subprocess.DEVNULL, text=True,
                                 env=clean_env("REGFRONT_"))
        try:
            assert relay.holding.wait(60), "the first worker never fetched the held blob"
            second = subprocess.run(_sync_argv(config), capture_output=True, text=True,
                                    timeout=60, env=clean_env("REGFRONT_"), check=False)
        finally:
            relay.release.set()
        outputs = [first.communicate(timeout=60)[0], second.stdout]
    summaries = [json.loads(line) for out in outputs for line in out.splitlines()
                 if '"summary"' in line]
    assert [s["rules_skipped"] for s in summaries] == [[], ["app"]]
    assert summaries[0]["images"] == len(APP_SELECTED)
    assert _tags(store, "docker.io/library/app") == APP_SELECTED


def test_the_gateway_serves_containerd_with_the_upstream_stopped(
        tmp_path_factory: pytest.TempPathFactory, skopeo: Skopeo, containerd: Containerd) -> None:
    """Its own upstream, since it stops it: the mirror must stand alone."""
    work = tmp_path_factory.mktemp("sync-outage")
    fleet = fleet_layout(work / "oci", ["1.30.0"], seed=11)
    store = work / "store"
    config = work / "regfront.yaml"
    with serving_registry2(work / "root", work) as registry:
        skopeo("copy", "--dest-tls-verify=false", f"oci:{fleet.root}:1.30.0",
               registry.ref("library/app:1.30.0"))
        skopeo("copy", "--all", "--dest-tls-verify=false", f"oci:{fleet.root}:multi",
               registry.ref("library/multi:1"))
        config.write_text(config_text(registry.url, store))
        upstream_url = registry.url
        assert _sync(config)["exit"] == 0
    # The upstream is gone now; the hosts.toml still names it as the fallback.
    hosts = work / "certs.d"
    with serving_regfront(store, work) as gateway:
        run([regfront_binary(), "containerd-config", "--gateway", gateway.url,
             "--registry", f"docker.io={upstream_url}", "--out", str(hosts)])
        containerd.remove_all_images()
        containerd.ctr("images", "pull", "--hosts-dir", str(hosts), "--platform",
                       "linux/amd64", "docker.io/library/app:1.30.0")
        containerd.ctr("images", "pull", "--hosts-dir", str(hosts), "--platform",
                       "linux/arm64", "docker.io/library/multi:1")
    images = containerd.images()
    assert images["docker.io/library/app:1.30.0"] == layout_digest(fleet.root, "1.30.0")
    assert images["docker.io/library/multi:1"] == layout_digest(fleet.root, "multi")


def test_registry2_serves_what_sync_wrote(upstream: Upstream, tmp_path: Path,
                                          skopeo: Skopeo) -> None:
    store = tmp_path / "store"
    config = tmp_path / "regfront.yaml"
    config.write_text(config_text(upstream.registry.url, store))
    assert _sync(config, "--rule", "app")["exit"] == 0
    with serving_registry2(store, tmp_path) as registry2:
        for tag in APP_SELECTED:
            assert (registry2.manifest_digest("docker.io/library/app", tag)
                    == layout_digest(upstream.layout.root, tag))
        skopeo("copy", "--src-tls-verify=false", registry2.ref("docker.io/library/app:1.27.1"),
               f"oci:{tmp_path / 'out'}:x")
    assert layout_digest(tmp_path / "out", "x") == layout_digest(upstream.layout.root, "1.27.1")


async def test_dry_run_reports_and_writes_nothing(upstream: Upstream, tmp_path: Path) -> None:
    store = tmp_path / "store"
    syncer = Syncer(_config(upstream, store), dry_run=True)
    try:
        results = await syncer.run_once(syncer.rules(["app"]))
    finally:
        await syncer.aclose()
    stats = results[0].stats
    assert stats.failures == []
    assert stats.images == len(APP_SELECTED)
    assert stats.bytes_downloaded == _unique_blob_bytes(upstream.layout, APP_SELECTED)
    assert not store.exists() or not any(p.is_file() for p in store.rglob("*"))


class Counting(Events):
    def __init__(self, stop_after: int) -> None:
        self.runs: list[RuleResult] = []
        self.stop_after = stop_after
        self.done = asyncio.Event()

    def rule_done(self, result: RuleResult) -> None:
        self.runs.append(result)
        if len(self.runs) >= self.stop_after:
            self.done.set()


async def test_forever_runs_each_rule_again_on_its_schedule(upstream: Upstream,
                                                            tmp_path: Path) -> None:
    text = config_text(upstream.registry.url, tmp_path / "store").replace(
        "    platforms: [linux/arm64]\n",
        "    platforms: [linux/arm64]\n    schedule: {every: 300ms}\n")
    events = Counting(stop_after=3)
    syncer = Syncer(parse_config(text), events=events)
    forever = asyncio.create_task(syncer.run_forever(syncer.rules(["multi"])))
    try:
        await asyncio.wait_for(events.done.wait(), timeout=20)
    finally:
        forever.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await forever
        await syncer.aclose()
    assert [r.rule for r in events.runs[:3]] == ["multi"] * 3
    assert events.runs[0].stats.images == 1
    assert events.runs[1].stats.images_current == 1  # the later runs found it current
