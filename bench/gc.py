"""Garbage collection of a bucket of N objects (100k by default) on moto's S3: wall time and the
collector's peak memory, for a dry run, the collection, and a second run with nothing to do.
Reports only; not run by the test suite, nor by ``make bench``.

    .venv/bin/python -m bench.gc [--objects 100000] [--garbage 0.5] [--json]

The bucket holds images of nine objects each (manifest, config and layer blobs, their three
repository links, a revision link, a tag and its history entry) in 20 repositories; a mirror
rule keeps the tags named ``keep-*`` and no longer selects the others (``--garbage`` of them),
so the collection deletes those images. Written straight to the layout (no writers' claims, as
an old bucket has none). Each collection runs in a child process of its own, whose peak RSS is
read with getrusage.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from bench.common import S3_ENV, moto_url, serving_moto
from registry import layout
from registry.digest import Digest
from registry.store import ObjectStore, open_store

OBJECTS_PER_IMAGE = 9
REPOSITORIES = 20
CONFIG_TYPE = "application/vnd.oci.image.config.v1+json"
LAYER_TYPE = "application/vnd.oci.image.layer.v1.tar+gzip"
MANIFEST_TYPE = "application/vnd.oci.image.manifest.v1+json"


async def fill(store: ObjectStore, objects: int, garbage: float, seed: int = 1) -> int:
    """Write ``objects`` (rounded to whole images) at 64 puts in flight; returns images."""
    rng = random.Random(seed)
    slots = asyncio.Semaphore(64)

    async def put(key: str, data: bytes) -> None:
        async with slots:
            await store.put(key, data)

    images = objects // OBJECTS_PER_IMAGE
    writes = []
    for n in range(images):
        name = f"docker.io/bench/app{n % REPOSITORIES}"
        tag = f"old-{n}" if rng.random() < garbage else f"keep-{n}"
        config = json.dumps({"architecture": "amd64", "os": "linux", "n": n}).encode()
        layer = rng.randbytes(256)
        blobs = {Digest.from_bytes(data): data for data in (config, layer)}
        manifest = json.dumps({
            "schemaVersion": 2, "mediaType": MANIFEST_TYPE,
            "config": {"mediaType": CONFIG_TYPE, "digest": str(Digest.from_bytes(config)),
                       "size": len(config)},
            "layers": [{"mediaType": LAYER_TYPE, "digest": str(Digest.from_bytes(layer)),
                        "size": len(layer)}]}).encode()
        digest = Digest.from_bytes(manifest)
        for blob, data in blobs.items():
            writes += [(layout.blob_data(blob), data),
                       (layout.layer_link(name, blob), layout.link_content(blob))]
        writes += [(layout.blob_data(digest), manifest),
                   (layout.revision_link(name, digest), layout.link_content(digest)),
                   (layout.layer_link(name, digest), layout.link_content(digest)),
                   (layout.tag_index_link(name, tag, digest), layout.link_content(digest)),
                   (layout.tag_current_link(name, tag), layout.link_content(digest))]
    for start in range(0, len(writes), 5000):
        await asyncio.gather(*(put(k, d) for k, d in writes[start:start + 5000]))
    return images


def config(url: str) -> dict[str, Any]:
    return {"storage": [{"url": url}],
            "upstreams": {"docker.io": {"urls": ["https://registry-1.docker.io"]}},
            "mirror": [{"name": "bench", "registry": "docker.io",
                        "repositories": [f"bench/app{n}" for n in range(REPOSITORIES)],
                        "tags": {"include": ["^keep-"]}, "retention": {"pulled_within": None}}],
            "gc": {"grace": "0s", "settle": "0s", "sweep_budget": "2h", "concurrency": 32}}


def collect(config_file: str, dry_run: bool) -> dict[str, Any]:
    """One collection in this process: its numbers, and this process's peak RSS."""
    from lifecycle.gc import Collector
    from registry.config import load_config

    loaded = load_config(config_file)

    async def run() -> dict[str, Any]:
        store = open_store(loaded.primary.url)
        try:
            started = time.monotonic()
            report, _ = await Collector(loaded, store, dry_run=dry_run).run()
            return {"seconds": round(time.monotonic() - started, 2),
                    "candidates": report.candidates, "deleted": report.deleted,
                    "bytes_freed": report.bytes_freed, "error": report.error}
        finally:
            await store.close()

    result = asyncio.run(run())
    result["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    return result


def child(config_file: Path, *flags: str) -> dict[str, Any]:
    env = {**S3_ENV, "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-m", "bench.gc", "--collect", str(config_file),
                          *flags], capture_output=True, env=env, check=False, timeout=7200,
                         cwd=Path(__file__).resolve().parent.parent)
    if out.returncode != 0:
        raise RuntimeError(f"collection failed:\n{out.stderr.decode()[-3000:]}")
    result: dict[str, Any] = json.loads(out.stdout.decode().strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--objects", type=int, default=100_000)
    parser.add_argument("--garbage", type=float, default=0.5)
    parser.add_argument("--collect", help=argparse.SUPPRESS)
    parser.add_argument("--dry-run", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.collect:
        print(json.dumps(collect(args.collect, args.dry_run)))
        return
    with tempfile.TemporaryDirectory(prefix="regfront-bench-gc-") as tmp:
        work = Path(tmp)
        with serving_moto(work, ("bench",)) as moto:
            url = moto_url(moto.url, "bench")
            import os

            os.environ.update(S3_ENV)
            store = open_store(url)
            started = time.monotonic()
            images = asyncio.run(_fill_and_close(store, args.objects, args.garbage))
            filled = time.monotonic() - started
            print(f"filled {images} images in {filled:.0f}s", file=sys.stderr)
            config_file = work / "regfront.yaml"
            config_file.write_text(yaml.safe_dump(config(url)))
            results = {"objects": images * OBJECTS_PER_IMAGE, "images": images,
                       "garbage": args.garbage, "fill_seconds": round(filled, 1),
                       "dry_run": child(config_file, "--dry-run"),
                       "collect": child(config_file),
                       "again": child(config_file)}
    print(json.dumps(results, indent=1))


async def _fill_and_close(store: ObjectStore, objects: int, garbage: float) -> int:
    try:
        return await fill(store, objects, garbage)
    finally:
        await store.close()


if __name__ == "__main__":
    main()
