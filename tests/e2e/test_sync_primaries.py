"""``regfront sync`` writing several primaries (file stores) from a real registry:2, as the
command runs. Upstream egress is what registry:2's own access log says it sent for blobs: with
two primaries, each distinct blob once - the same as with one. A primary that fails mid-run (the
shard directory of one blob is a file, so that blob cannot be written) leaves the other complete,
and the rerun completes it from the other primary with no blob GET at registry:2."""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from registry import layout
from registry.digest import Digest
from tests.e2e.harness import Server, Skopeo, clean_env, regfront_binary, serving_registry2
from tests.e2e.test_sync import assert_every_tag_complete
from tests.images import Layout, fleet_layout, layout_blob, layout_digest

pytestmark = pytest.mark.e2e

TAGS = ["1.0.0", "1.1.0", "1.2.0"]
NAME = "docker.io/library/app"
# registry:2's access log: "GET /v2/library/app/blobs/sha256:... HTTP/1.1" 200 <bytes>
BLOB_GET = re.compile(r'"GET /v2/[^ ]+/blobs/(sha256:[0-9a-f]{64}) HTTP/[0-9.]+" 200 (\d+)')


@dataclass
class Upstream:
    fleet: Layout
    registry: Server

    def blob_gets(self, since: int = 0) -> list[tuple[str, int]]:
        """(digest, bytes sent) of each blob GET registry:2 answered, after log offset
        ``since``."""
        text = self.registry.service.log_text()[since:]
        return [(m.group(1), int(m.group(2))) for m in BLOB_GET.finditer(text)]

    def log_offset(self) -> int:
        return len(self.registry.service.log_text())


@pytest.fixture(scope="module")
def upstream(tmp_path_factory: pytest.TempPathFactory, skopeo: Skopeo) -> Iterator[Upstream]:
    work = tmp_path_factory.mktemp("primaries-upstream")
    fleet = fleet_layout(work / "oci", TAGS, seed=23)
    with serving_registry2(work / "root", work) as registry:
        for tag in TAGS:
            skopeo("copy", "--dest-tls-verify=false", f"oci:{fleet.root}:{tag}",
                   registry.ref(f"library/app:{tag}"))
        yield Upstream(fleet, registry)


def write_config(path: Path, upstream: Upstream, primaries: list[Path]) -> Path:
    storage = "\n".join(f"  - {{url: {p}, primary: true}}" for p in primaries)
    path.write_text(f"""
storage:
{storage}
upstreams:
  docker.io: {{urls: ["{upstream.registry.url}"], retries: 0}}
mirror:
  - {{name: app, registry: docker.io, repositories: [library/app], tags: {json.dumps(TAGS)}}}
""")
    return path


def sync(config: Path) -> tuple[int, list[dict[str, Any]]]:
    done = subprocess.run([regfront_binary(), "sync", "--config", str(config), "--once",
                           "--json"], capture_output=True, text=True, timeout=120,
                          env=clean_env("REGFRONT_"), check=False)
    lines = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    assert any(line["event"] == "summary" for line in lines), done.stdout + done.stderr
    return done.returncode, lines


def distinct_blobs(fleet: Layout) -> dict[str, int]:
    sizes: dict[str, int] = {}
    for tag in TAGS:
        doc = json.loads(layout_blob(fleet.root, layout_digest(fleet.root, tag)))
        for blob in [doc["config"], *doc["layers"]]:
            sizes[blob["digest"]] = blob["size"]
    return sizes


def tags_in(store: Path) -> list[str]:
    directory = store / layout.tags_dir(NAME)
    return sorted(p.name for p in directory.iterdir()) if directory.is_dir() else []


def test_two_primaries_cost_the_upstream_what_one_does(upstream: Upstream,
                                                       tmp_path: Path) -> None:
    sizes = distinct_blobs(upstream.fleet)
    sent: dict[int, list[tuple[str, int]]] = {}
    for count in (1, 2):
        stores = [tmp_path / f"run{count}" / f"primary{i}" for i in range(count)]
        config = write_config(tmp_path / f"regfront-{count}.yaml", upstream, stores)
        offset = upstream.log_offset()
        status, lines = sync(config)
        assert status == 0, lines[-1]
        sent[count] = upstream.blob_gets(offset)
        for store in stores:
            assert tags_in(store) == TAGS
            assert_every_tag_complete(store)
        (summary,) = [line for line in lines if line["event"] == "summary"]
        assert summary["bytes_downloaded"] == sum(sizes.values())
        assert sorted(summary["targets"]) == sorted(str(s) for s in stores)
    assert sorted(sent[1]) == sorted(sent[2]) == sorted(sizes.items())  # each blob once
    print(f"registry:2 sent {sum(n for _, n in sent[1])} blob bytes for one primary, "
          f"{sum(n for _, n in sent[2])} for two")


def test_a_primary_failing_mid_run_is_completed_from_the_other(upstream: Upstream,
                                                               tmp_path: Path) -> None:
    sizes = distinct_blobs(upstream.fleet)
    first, second = tmp_path / "aws", tmp_path / "gcp"
    config = write_config(tmp_path / "regfront.yaml", upstream, [first, second])
    last = json.loads(layout_blob(upstream.fleet.root, layout_digest(upstream.fleet.root,
                                                                       TAGS[-1])))
    victim = Digest.parse(last["layers"][-1]["digest"])  # the last tag's own layer
    shard = (second / layout.blob_data(victim)).parent.parent
    shard.parent.mkdir(parents=True)
    shard.write_text("a file where the blob's shard directory goes")  # the fault
    offset = upstream.log_offset()
    status, lines = sync(config)
    assert status == 1
    assert tags_in(first) == TAGS
    assert_every_tag_complete(first)
    assert TAGS[-1] not in tags_in(second)  # the fault fired: that image is not there
    assert_every_tag_complete(second)  # and nothing there is half-committed
    (summary,) = [line for line in lines if line["event"] == "summary"]
    assert summary["targets"][str(second)]["failures"][0].startswith(f"blob {victim}: ")
    assert summary["targets"][str(first)]["failures"] == []
    assert sorted(upstream.blob_gets(offset)) == sorted(sizes.items())  # still once

    shard.unlink()
    missing = {d: n for d, n in sizes.items()
               if not (second / layout.blob_data(Digest.parse(d))).exists()}
    assert str(victim) in missing
    offset = upstream.log_offset()
    status, lines = sync(config)
    assert status == 0
    assert tags_in(second) == TAGS
    assert_every_tag_complete(second)
    assert upstream.blob_gets(offset) == []  # every missing byte came from the other primary
    (summary,) = [line for line in lines if line["event"] == "summary"]
    assert summary["bytes_downloaded"] == 0
    assert summary["targets"][str(second)]["bytes_refilled"] == sum(missing.values())
