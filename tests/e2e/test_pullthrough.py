"""``on_miss: pull-through`` with real components: containerd pulls an image the bucket does
not have through the gateway (the hosts.toml fallback is a closed port); afterwards it is in
the bucket, and a second pull with the upstream stopped succeeds. A client that hangs up in the
middle of a blob leaves the bucket with the whole, verified blob or nothing."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import pytest

from registry import layout
from registry.digest import Digest
from tests.e2e.harness import (
    Containerd,
    Skopeo,
    regfront_binary,
    run,
    serving_regfront,
    serving_registry2,
)
from tests.images import fleet_layout, layout_blob, layout_digest

pytestmark = pytest.mark.e2e

APP = "docker.io/library/app"


def test_pull_through_then_served_without_the_upstream(
        tmp_path: Path, skopeo: Skopeo, containerd: Containerd) -> None:
    fleet = fleet_layout(tmp_path / "oci", ["1.0.0", "2.0.0"], seed=9,
                         layer_size=2 * 1024 * 1024)
    store = tmp_path / "store"
    config = tmp_path / "regfront.yaml"
    hosts = tmp_path / "certs.d"
    with serving_registry2(tmp_path / "upstream", tmp_path) as upstream:
        for tag in ("1.0.0", "2.0.0"):
            skopeo("copy", "--dest-tls-verify=false", f"oci:{fleet.root}:{tag}",
                   upstream.ref(f"library/app:{tag}"))
        config.write_text(f"""
storage: [{{url: {store}}}]
upstreams:
  docker.io: {{urls: ["{upstream.url}"], on_miss: pull-through}}
mirror:
  - {{name: app, registry: docker.io, repositories: [library/app]}}
""")
        with serving_regfront(store, tmp_path, config=config) as gateway:
            # The fallback is a closed port: only the gateway can have served this pull.
            run([regfront_binary(), "containerd-config", "--gateway", gateway.url,
                 "--registry", "docker.io=http://127.0.0.1:9", "--out", str(hosts)])
            containerd.remove_all_images()
            containerd.ctr("images", "pull", "--hosts-dir", str(hosts), "--platform",
                           "linux/amd64", f"{APP}:1.0.0")
            assert containerd.images()[f"{APP}:1.0.0"] == layout_digest(fleet.root, "1.0.0")
            # The tag is committed once the image is whole in the bucket: the fills commit
            # each blob just after its last bytes reached containerd.
            _wait_for(store / layout.tag_current_link(APP, "1.0.0"))

            # A client that hangs up after the first bytes of a layer of 2.0.0.
            manifest = json.loads(layout_blob(fleet.root, layout_digest(fleet.root, "2.0.0")))
            layer = manifest["layers"][0]
            url = f"{gateway.url}/v2/library/app/blobs/{layer['digest']}?ns=docker.io"
            with httpx.Client(timeout=10) as client, client.stream("GET", url) as response:
                assert response.status_code == 200
                next(response.iter_raw(64 * 1024))
            blob = store / layout.blob_data(Digest.parse(layer["digest"]))
            _wait_for(blob)
            # The fill went on without its client, and committed only verified bytes.
            assert Digest.from_bytes(blob.read_bytes()) == Digest.parse(layer["digest"])

    tags = sorted(p.name for p in (store / layout.tags_dir(APP)).iterdir())
    assert tags == ["1.0.0"]
    # Upstream gone: the gateway serves the pulled-through image from the bucket.
    with serving_regfront(store, tmp_path, config=config) as gateway:
        run([regfront_binary(), "containerd-config", "--gateway", gateway.url,
             "--registry", "docker.io=http://127.0.0.1:9", "--out", str(hosts)])
        containerd.remove_all_images()
        containerd.ctr("images", "pull", "--hosts-dir", str(hosts), "--platform",
                       "linux/amd64", f"{APP}:1.0.0")
    assert containerd.images()[f"{APP}:1.0.0"] == layout_digest(fleet.root, "1.0.0")


def _wait_for(path: Path) -> None:
    deadline = time.monotonic() + 15
    while not path.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
