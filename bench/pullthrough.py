"""Pull-through under a rollout: N containerd nodes pull M images at once through a gateway
with ``on_miss: pull-through`` in front of a real registry:2, on an empty bucket (S3 on moto, or
a file store). Report only; not run by the test suite, nor by ``make bench``.

    .venv/bin/python -m bench.pullthrough [--nodes 20] [--images 3] [--layer-mb 10] [--store s3]

Three rounds, each through a fresh gateway process (cold caches) and with every node emptied:

1. **cold** - the bucket empty: what the upstream sent (from its own access log: manifest and
   blob GETs, bytes, as a multiple of the images' unique bytes) and the gateway's 5xx; then the
   tags the bucket holds (``regfront status --json``): each is committed only once its image is
   whole (gateway/pending.py);
2. **warm** - the same upstream: what still reached it;
3. **outage** - the gateway's upstream and the nodes' fallback both a closed port: pulls that
   failed (the bucket alone must serve every one).
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

from bench.common import (
    Json,
    Running,
    check_disk,
    log,
    regfront_cli,
    serving_regfront,
    serving_registry2,
)
from bench.fleet import MB, SETTLE, Bucket, bucket, measure
from bench.nodes import Node, containerd_nodes
from bench.sync import NAME, fill_upstream, image_blobs
from tests.e2e.harness import LOOPBACK, free_port
from tests.images import fleet_layout


def _config(work: Path, store: str | Path, upstream: str, label: str) -> Path:
    config = work / f"pullthrough-{label}.yaml"
    config.write_text(f"""
storage: [{{url: "{store}"}}]
upstreams:
  docker.io: {{urls: ["{upstream}"], on_miss: pull-through}}
mirror:
  - {{name: bench, registry: docker.io, repositories: [{NAME}], tags: []}}
""")
    return config


def _round(label: str, nodes: list[Node], refs: list[str], target: Bucket, upstream_url: str,
           fallback: str, upstream: Running, unique: dict[str, int], work: Path) -> Json:
    config = _config(work, target.store, upstream_url, label)
    with serving_regfront(target.store, work, config=config) as gateway:
        hosts = work / f"hosts-{label}"
        regfront_cli("containerd-config", "--gateway", gateway.url, "--registry",
                     f"docker.io={fallback}", "--out", str(hosts))
        log(f"pull-through: {len(nodes)} nodes x {len(refs)} images, {label}")
        try:
            result = measure(nodes, refs, hosts, gateway, upstream, unique, target)
        except Exception as exc:  # a pull failed: the round says so instead of stopping
            for node in nodes:
                node.remove_all()
            return {"round": label, "failed": str(exc)[:500]}
        time.sleep(2 * SETTLE)  # the last fills commit, and their tags with them
    status = json.loads(regfront_cli("status", "--config", str(config), "--json",
                                     s3=str(target.store).startswith("s3://")))
    tags = sum(repo["tags"] for rule in status["rules"] for repo in rule["repositories"])
    return {"round": label, "tags_in_bucket": tags, "exposed": status["exposed"], **result}


def run(*, nodes: int, images: int, layer_mb: float, store: str) -> Json:
    layer = int(layer_mb * MB)
    tags = [f"2.{i}.0" for i in range(images)]
    refs = [f"docker.io/{NAME}:{tag}" for tag in tags]
    with tempfile.TemporaryDirectory(prefix="rf-bench-pt-") as tmp:
        work = Path(tmp)
        check_disk(work, (4 + images) * layer * (3 + nodes), "pull-through")
        fleet = fleet_layout(work / "oci", tags, layer_size=layer, unique_size=layer, seed=29)
        naive, unique = image_blobs(fleet, tags)
        fill_upstream(fleet, tags, work / "upstream")
        shutil.rmtree(work / "oci")
        closed = f"http://{LOOPBACK}:{free_port()}"  # nothing listens there
        with serving_registry2(work, root=work / "upstream", accesslog=True) as upstream, \
                containerd_nodes(nodes, work / "nodes") as fleet_nodes, \
                bucket(work, store, "0") as target:
            rounds = [_round(label, fleet_nodes, refs, target, source, fallback, upstream,
                             unique, work)
                      for label, source, fallback in (
                          ("cold", upstream.url, upstream.url),
                          ("warm", upstream.url, upstream.url),
                          ("outage", closed, closed))]
    unique_bytes = sum(unique.values())
    for entry in rounds:
        sent = entry.get("upstream", {})
        if sent:
            entry["upstream_x_unique"] = round(sent["blob_bytes"] / unique_bytes, 4)
    return {"nodes": nodes, "images": images, "layer_bytes": layer, "store": store,
            "unique_bytes": unique_bytes, "image_bytes": naive // images, "rounds": rounds}


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.pullthrough", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nodes", type=int, default=20)
    parser.add_argument("--images", type=int, default=3)
    parser.add_argument("--layer-mb", type=float, default=10.0)
    parser.add_argument("--store", choices=("s3", "file"), default="s3")
    args = parser.parse_args()
    section = run(nodes=args.nodes, images=args.images, layer_mb=args.layer_mb,
                  store=args.store)
    print(json.dumps(section, indent=1, default=str))


if __name__ == "__main__":
    main()
