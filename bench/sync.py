"""Sync throughput and dedup: ``regfront sync`` against ``skopeo sync`` on the same images.

N images whose layers are 80% shared (4 shared layers and 1 of their own, all the same size)
sit in a registry:2 upstream (Debian's docker-registry, filesystem). regfront mirrors them into
a file store; skopeo syncs them into a second registry:2. Reports wall time, MB/s of unique
bytes, and bytes stored against the naive sum of image sizes. Asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.e2e.harness import (  # noqa: E402
    Skopeo,
    clean_env,
    regfront_binary,
    require_tool,
    serving_registry2,
)
from tests.images import fleet_layout  # noqa: E402


def stored_bytes(root: Path) -> int:
    return sum(p.stat().st_size for p in (root / "docker/registry/v2/blobs").rglob("data"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--images", type=int, default=10)
    parser.add_argument("--layer-mb", type=float, default=10.0,
                        help="each of the 5 layers of an image (default 10: 50 MB images)")
    args = parser.parse_args()
    layer = int(args.layer_mb * 1024 * 1024)
    tags = [f"1.{i}.0" for i in range(args.images)]
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        skopeo = Skopeo(require_tool("skopeo"), work / "registries.conf")
        (work / "registries.conf").write_text("")
        fleet = fleet_layout(work / "oci", tags, layer_size=layer, unique_size=layer)
        naive = sum(sum(b["size"] for b in json.loads(
            (fleet.root / "blobs/sha256" / r["digest"][7:]).read_bytes())["layers"])
            for r in fleet.refs if r["annotations"]["org.opencontainers.image.ref.name"] in tags)
        with serving_registry2(work / "upstream", work) as upstream, \
                serving_registry2(work / "skopeo-dest", work) as dest:
            for tag in tags:
                skopeo("copy", "--dest-tls-verify=false", f"oci:{fleet.root}:{tag}",
                       upstream.ref(f"library/app:{tag}"), timeout=600)
            config = work / "regfront.yaml"
            config.write_text(f"""
storage: [{{url: {work / 'store'}}}]
upstreams:
  docker.io: {{urls: ["{upstream.url}"]}}
mirror:
  - {{name: app, registry: docker.io, repositories: [library/app]}}
""")
            started = time.monotonic()
            out = subprocess.run([regfront_binary(), "sync", "--config", str(config), "--once",
                                  "--json"], check=True, capture_output=True, text=True,
                                 timeout=1800, env=clean_env("REGFRONT_")).stdout
            regfront_seconds = time.monotonic() - started
            summary = json.loads(out.strip().splitlines()[-1])

            started = time.monotonic()
            skopeo("sync", "--src", "docker", "--dest", "docker", "--src-tls-verify=false",
                   "--dest-tls-verify=false", f"{upstream.host}/library/app",
                   f"{dest.host}/mirror", timeout=1800)
            skopeo_seconds = time.monotonic() - started
            skopeo_stored = stored_bytes(work / "skopeo-dest")
        regfront_stored = stored_bytes(work / "store")

    mb = 1e6
    print(f"{args.images} images of {5 * layer / mb:.0f} MB, 80% of layers shared; "
          f"naive sum {naive / mb:.0f} MB")
    print(f"{'tool':10} {'seconds':>8} {'MB/s (downloaded)':>18} {'stored MB':>10} "
          f"{'stored / naive':>15}")
    rate = summary["bytes_downloaded"] / mb / regfront_seconds
    print(f"{'regfront':10} {regfront_seconds:>8.2f} {rate:>18.1f} {regfront_stored / mb:>10.0f} "
          f"{regfront_stored / naive:>15.2f}")
    print(f"{'skopeo':10} {skopeo_seconds:>8.2f} {'':>18} {skopeo_stored / mb:>10.0f} "
          f"{skopeo_stored / naive:>15.2f}")
    print(f"regfront: downloaded {summary['bytes_downloaded'] / mb:.0f} MB, "
          f"blobs {summary['blobs']} copied / {summary['blobs_present']} already present, "
          f"failures {len(summary['failures'])}")


if __name__ == "__main__":
    main()
