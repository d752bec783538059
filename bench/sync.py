"""Sync: ``regfront sync`` against ``skopeo sync`` mirroring the same images from registry:2.

N images whose layers are 80% shared (4 shared layers and 1 of their own, all one size, random
incompressible bytes) sit in a registry:2 upstream (filesystem, pinned to core 0). regfront
mirrors them into a file store; skopeo syncs them into a second registry:2 (both on core 1).
The upstream's egress is read from its /proc/<pid>/io (bytes written to sockets) around each
run; bytes stored are the blob files in each destination, against the naive sum of image sizes.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from bench.common import (
    LOAD_CPU,
    Json,
    Running,
    check_disk,
    log,
    pinned,
    regfront_cli,
    regfront_env,
    serving_registry2,
    written_bytes,
)
from tests.e2e.harness import clean_env, regfront_binary
from tests.images import Layout, fleet_layout

NAME = "library/app"
MB = 10**6


def stored_bytes(root: Path) -> int:
    return sum(p.stat().st_size for p in (root / "docker/registry/v2/blobs").rglob("data"))


def image_blobs(layout: Layout, tags: list[str]) -> tuple[int, dict[str, int]]:
    """The naive sum of the images' sizes, and each distinct blob's size (config and layers)."""
    naive, unique = 0, {}
    for entry in layout.refs:
        if entry["annotations"]["org.opencontainers.image.ref.name"] not in tags:
            continue
        manifest = json.loads((layout.root / "blobs/sha256" / entry["digest"][7:]).read_bytes())
        for blob in [manifest["config"], *manifest["layers"]]:
            naive += blob["size"]
            unique[blob["digest"]] = blob["size"]
    return naive, unique


def fill_upstream(layout: Layout, tags: list[str], root: Path) -> None:
    """Each tag imported into the upstream's filesystem root (what registry:2 serves)."""
    for tag in tags:
        regfront_cli("import", f"oci:{layout.root}:{tag}", f"{NAME}:{tag}", "--storage", str(root))


def mirror_config(work: Path, upstream: Running, store: Path | str, name: str = NAME,
                  registry: str = "docker.io") -> Path:
    """A config mirroring ``name`` from ``upstream`` into ``store``: sync's, and the gateway's
    (its rule makes a 404 in ``name`` a counted fallback)."""
    s3 = str(store).startswith("s3://")
    config = work / f"sync-{'s3' if s3 else Path(store).name}.yaml"
    config.write_text(f"""
storage: [{{url: "{store}"}}]
upstreams:
  {registry}: {{urls: ["{upstream.url}"]}}
mirror:
  - {{name: bench, registry: {registry}, repositories: [{name}]}}
""")
    return config


def regfront_sync(work: Path, upstream: Running, store: Path | str, name: str = NAME,
                  registry: str = "docker.io") -> tuple[float, Json]:
    """``regfront sync --once`` of ``name`` into ``store`` on the load core: seconds, summary."""
    s3 = str(store).startswith("s3://")
    config = mirror_config(work, upstream, store, name, registry)
    started = time.perf_counter()
    result = subprocess.run(pinned(LOAD_CPU, [regfront_binary(), "sync", "--config", str(config),
                                              "--once", "--json"]),
                            capture_output=True, text=True, timeout=3600, env=regfront_env(s3),
                            check=False)
    seconds = time.perf_counter() - started
    if result.returncode != 0:
        raise RuntimeError(f"regfront sync exited {result.returncode}:\n{result.stderr[-3000:]}")
    summary: Json = json.loads(result.stdout.strip().splitlines()[-1])
    return seconds, summary


def skopeo_sync(work: Path, upstream: Running, dest: Running) -> float:
    conf = work / "registries.conf"
    conf.write_text("")
    skopeo = shutil.which("skopeo") or "skopeo"
    argv = pinned(LOAD_CPU, [skopeo, "--insecure-policy", "--registries-conf", str(conf), "sync",
                             "--src", "docker", "--dest", "docker", "--src-tls-verify=false",
                             "--dest-tls-verify=false", f"{upstream.host}/{NAME}",
                             f"{dest.host}/mirror"])
    started = time.perf_counter()
    result = subprocess.run(argv, capture_output=True, text=True, timeout=3600,
                            env=clean_env("CONTAINERS_", "REGISTRY_AUTH_FILE"), check=False)
    seconds = time.perf_counter() - started
    if result.returncode != 0:
        raise RuntimeError(f"skopeo sync exited {result.returncode}:\n{result.stderr[-3000:]}")
    return seconds


def run(*, images: int, layer_mb: float) -> Json:
    """The sync benchmark's JSON section."""
    layer = int(layer_mb * MB)
    tags = [f"1.{i}.0" for i in range(images)]
    unique_estimate = (4 + images) * layer
    with tempfile.TemporaryDirectory(prefix="rf-bench-sync-") as tmp:
        work = Path(tmp)
        check_disk(work, 4 * unique_estimate, "sync")
        log(f"sync: building {images} images of {5 * layer / MB:,.0f} MB")
        fleet = fleet_layout(work / "oci", tags, layer_size=layer, unique_size=layer)
        naive, unique = image_blobs(fleet, tags)
        fill_upstream(fleet, tags, work / "upstream")
        shutil.rmtree(work / "oci")
        with serving_registry2(work, root=work / "upstream") as upstream, \
                serving_registry2(work, root=work / "skopeo-dest", cpu=LOAD_CPU) as dest:
            log("sync: regfront sync")
            before = written_bytes(upstream.pid)
            regfront_seconds, summary = regfront_sync(work, upstream, work / "store")
            regfront_egress = written_bytes(upstream.pid) - before
            log("sync: skopeo sync")
            before = written_bytes(upstream.pid)
            skopeo_seconds = skopeo_sync(work, upstream, dest)
            skopeo_egress = written_bytes(upstream.pid) - before
        regfront_stored = stored_bytes(work / "store")
        skopeo_stored = stored_bytes(work / "skopeo-dest")
    unique_bytes = sum(unique.values())
    return {
        "images": images, "layer_bytes": layer, "image_bytes": naive // images,
        "naive_bytes": naive, "unique_bytes": unique_bytes,
        "regfront": {"seconds": regfront_seconds, "upstream_egress": regfront_egress,
                     "bytes_downloaded": summary["bytes_downloaded"],
                     # regfront's own count is of blob bytes: the upstream's includes headers
                     # and manifests, so compare its count with the unique blob bytes.
                     "upstream_blob_bytes": summary["bytes_downloaded"],
                     "stored_bytes": regfront_stored, "blobs": summary["blobs"],
                     "blobs_present": summary["blobs_present"],
                     "failures": summary["failures"]},
        "skopeo": {"seconds": skopeo_seconds, "upstream_egress": skopeo_egress,
                   "stored_bytes": skopeo_stored},
    }
