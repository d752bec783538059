"""``on_miss: fallthrough``: a pull the gateway cannot serve goes to the upstream (containerd
falls through on the 404), the miss is queued, the next sync mirrors it, and the image is then
served with the upstream stopped."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest

from registry import layout
from tests.e2e.harness import (
    Containerd,
    Skopeo,
    clean_env,
    regfront_binary,
    run,
    serving_regfront,
    serving_registry2,
)
from tests.images import fleet_layout, layout_digest

pytestmark = pytest.mark.e2e

APP = "docker.io/library/app"


def _wait_for(path: Path, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists():
            return True
        time.sleep(0.05)
    return False


def test_a_miss_is_queued_then_mirrored_then_served_without_the_upstream(
        tmp_path: Path, skopeo: Skopeo, containerd: Containerd) -> None:
    fleet = fleet_layout(tmp_path / "oci", ["1.0.0", "1.1.0"], seed=5)
    store = tmp_path / "store"
    config = tmp_path / "regfront.yaml"
    hosts = tmp_path / "certs.d"
    miss = store / layout.miss(APP, "1.0.0")
    with serving_registry2(tmp_path / "upstream", tmp_path) as upstream:
        for tag in ("1.0.0", "1.1.0"):
            skopeo("copy", "--dest-tls-verify=false", f"oci:{fleet.root}:{tag}",
                   upstream.ref(f"library/app:{tag}"))
        skopeo("copy", "--dest-tls-verify=false", f"oci:{fleet.root}:1.0.0",
               upstream.ref("library/other:1"))
        # Normally only the newest 1.x tag is mirrored; a pulled older one gets in as a miss.
        config.write_text(f"""
storage: [{{url: {store}}}]
upstreams:
  docker.io: {{urls: ["{upstream.url}"]}}
mirror:
  - name: app
    registry: docker.io
    repositories: [library/app]
    tags: {{include: ['^1\\.'], latest: 1}}
""")
        upstream_url = upstream.url
        with serving_regfront(store, tmp_path, config=config) as gateway:
            run([regfront_binary(), "containerd-config", "--gateway", gateway.url,
                 "--registry", f"docker.io={upstream.url}", "--out", str(hosts)])
            containerd.remove_all_images()
            containerd.ctr("images", "pull", "--hosts-dir", str(hosts), "--platform",
                           "linux/amd64", f"{APP}:1.0.0")
            containerd.ctr("images", "pull", "--hosts-dir", str(hosts), "--platform",
                           "linux/amd64", "docker.io/library/other:1")
            assert _wait_for(miss), "the miss was not queued"
            assert json.loads(miss.read_bytes())["time"] > 0
            # library/other is in no rule: never queued.
            assert not (store / layout.misses_dir("docker.io/library/other")).exists()

            done = subprocess.run([regfront_binary(), "sync", "--config", str(config),
                                   "--once", "--json"], capture_output=True, text=True,
                                  timeout=120, env=clean_env("REGFRONT_"), check=False)
            assert done.returncode == 0, done.stdout + done.stderr
            tags = sorted(p.name for p in (store / layout.tags_dir(APP)).iterdir())
            assert tags == ["1.0.0", "1.1.0"]
            assert not miss.exists(), "the miss was not cleared"

    # The upstream is gone; the gateway restarts over the same store and serves the image.
    with serving_regfront(store, tmp_path, config=config) as gateway:
        run([regfront_binary(), "containerd-config", "--gateway", gateway.url,
             "--registry", f"docker.io={upstream_url}", "--out", str(hosts)])
        containerd.remove_all_images()
        containerd.ctr("images", "pull", "--hosts-dir", str(hosts), "--platform",
                       "linux/amd64", f"{APP}:1.0.0")
    assert containerd.images()[f"{APP}:1.0.0"] == layout_digest(fleet.root, "1.0.0")
