"""Fleet: N nodes (separate containerd instances) pulling M images at once through one gateway,
against the same nodes pulling straight from the upstream registry:2.

The images share 80% of their layers (``tests.images.fleet_layout``). Through regfront, the
images are first mirrored into the gateway's file store by ``regfront sync`` from the upstream,
and nodes pull through the gateway with the upstream as hosts.toml fallback. Upstream egress is
read from the upstream process's /proc/<pid>/io (bytes written, sockets included: its access log
is off) around the sync and around the pulls; the serving process's egress and CPU time the same
way around the pulls. Servers run on core 0, every containerd and ctr on core 1.
"""

from __future__ import annotations

import shutil
import tempfile
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from bench.common import (
    Json,
    Running,
    check_disk,
    cpu_seconds,
    log,
    median,
    moto_url,
    percentile,
    regfront_cli,
    serving_moto,
    serving_regfront,
    serving_registry2,
    written_bytes,
)
from bench.nodes import Node, containerd_nodes, direct_hosts
from bench.proxy import CountingRelay, counting_relay
from bench.sync import NAME, fill_upstream, image_blobs, regfront_sync
from tests.images import fleet_layout

MB = 10**6

def store_failures(server: Running) -> int:
    """The gateway's 503s for failing stores so far, from its /metrics (the outcome it counts,
    not a log line); a server without regfront's metrics (registry:2) has none."""
    try:
        with urllib.request.urlopen(f"{server.url}/metrics", timeout=10) as response:
            text = response.read().decode()
    except urllib.error.HTTPError:
        return 0
    return sum(int(float(line.rsplit(" ", 1)[1])) for line in text.splitlines()
               if line.startswith('regfront_fallbacks_total{reason="store_'))


def pull_all(nodes: list[Node], refs: list[str], hosts: Path) -> tuple[list[float], float]:
    """Every node pulls every ref, all at once; each pull's seconds, and the wall time."""
    jobs = [(node, ref) for node in nodes for ref in refs]
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=len(jobs)) as pool:
        times = list(pool.map(lambda job: job[0].pull(job[1], hosts), jobs))
    return times, time.perf_counter() - started


def measure(nodes: list[Node], refs: list[str], hosts: Path, server: Running,
            upstream: Running, store: CountingRelay | None = None) -> Json:
    """One fleet-wide pull: times, the serving side's CPU and egress, the upstream's egress
    (and with ``store``, the bucket's: what the nodes fetched after a 307)."""
    for node in nodes:
        node.remove_all()
    upstream_before, server_before = written_bytes(upstream.pid), written_bytes(server.pid)
    store_before = store.sent_to_clients if store is not None else 0
    cpu_before = cpu_seconds(server.pid)
    failures_before = store_failures(server)
    times, wall = pull_all(nodes, refs, hosts)
    pulls = len(times)
    result: Json = {
        "pulls": pulls, "wall_s": wall, "p50_s": percentile(times, 50),
        "p99_s": percentile(times, 99), "times": times,
        "upstream_egress_during_pulls": written_bytes(upstream.pid) - upstream_before,
        "server_egress": written_bytes(server.pid) - server_before,
        "server_cpu_per_pull": (cpu_seconds(server.pid) - cpu_before) / pulls,
        # The gateway's 503s for a failing store: containerd then falls back to the upstream.
        "store_failures": store_failures(server) - failures_before,
    }
    if store is not None:
        result["store_egress"] = store.sent_to_clients - store_before
        result["store_connections_refused"] = store.target_refused
    for node in nodes:
        node.remove_all()
    return result


def combine(runs: list[Json]) -> Json:
    """Rounds of one side: percentiles over every pull, medians of wall and CPU, the largest
    egress any round caused."""
    times = [t for run in runs for t in run["times"]]
    out: Json = {"rounds": len(runs), "pulls": len(times), "times": times,
                 "p50_s": percentile(times, 50), "p99_s": percentile(times, 99),
                 "wall_s": median([r["wall_s"] for r in runs]),
                 "server_cpu_per_pull": median([r["server_cpu_per_pull"] for r in runs])}
    for key in ("upstream_egress_during_pulls", "server_egress", "store_egress",
                "store_failures"):
        if key in runs[0]:
            out[key] = max(r[key] for r in runs)
    return out


def through_s3(work: Path, nodes: list[Node], refs: list[str], upstream: Running) -> Json:
    """The regfront side again with the images synced into a moto bucket: blob GETs are 307s."""
    with serving_moto(work, ("fleet",)) as moto, \
            counting_relay(int(moto.url.rsplit(":", 1)[1])) as relay:
        store = moto_url(relay.url, "fleet")  # pre-signed URLs name the relay: it counts
        before = written_bytes(upstream.pid)
        _, summary = regfront_sync(work, upstream, store)
        sync_egress = written_bytes(upstream.pid) - before
        with serving_regfront(store, work) as gateway:
            hosts = work / "hosts-via-s3"
            regfront_cli("containerd-config", "--gateway", gateway.url, "--registry",
                         f"docker.io={upstream.url}", "--out", str(hosts))
            log(f"fleet: {len(nodes)} nodes through regfront on S3 (moto)")
            result = measure(nodes, refs, hosts, gateway, upstream, store=relay)
    result["sync_egress"] = sync_egress
    result["sync_bytes_downloaded"] = summary["bytes_downloaded"]
    result["upstream_egress"] = sync_egress + result["upstream_egress_during_pulls"]
    return result


def run(*, nodes: int, images: int, layer_mb: float, with_s3: bool = False,
        rounds: int = 1) -> Json:
    """The fleet benchmark's JSON section."""
    layer = int(layer_mb * MB)
    tags = [f"2.{i}.0" for i in range(images)]
    refs = [f"docker.io/{NAME}:{tag}" for tag in tags]
    with tempfile.TemporaryDirectory(prefix="rf-bench-fleet-") as tmp:
        work = Path(tmp)
        check_disk(work, (4 + images) * layer * (3 + nodes) + nodes * images * 5 * layer,
                   "fleet")
        fleet = fleet_layout(work / "oci", tags, layer_size=layer, unique_size=layer, seed=23)
        naive, unique = image_blobs(fleet, tags)
        fill_upstream(fleet, tags, work / "upstream")
        shutil.rmtree(work / "oci")
        log(f"fleet: starting {nodes} containerd nodes")
        with serving_registry2(work, root=work / "upstream") as upstream, \
                containerd_nodes(nodes, work / "nodes") as fleet_nodes:
            before = written_bytes(upstream.pid)
            sync_seconds, summary = regfront_sync(work, upstream, work / "store")
            sync_egress = written_bytes(upstream.pid) - before
            via = work / "hosts-via"
            direct = direct_hosts(work / "hosts-direct", "docker.io", upstream.url)
            runs: dict[str, list[Json]] = {"regfront": [], "direct": []}
            with serving_regfront(work / "store", work) as gateway:
                regfront_cli("containerd-config", "--gateway", gateway.url, "--registry",
                             f"docker.io={upstream.url}", "--out", str(via))
                # ABBA: neither side always goes first (cold node directories, page cache).
                order = ["regfront", "direct", "direct", "regfront"][:2 * rounds]
                for i, side in enumerate(order):
                    log(f"fleet: {nodes} nodes x {images} images, {side} "
                        f"({i + 1}/{len(order)})")
                    runs[side].append(measure(fleet_nodes, refs, via, gateway, upstream)
                                      if side == "regfront" else
                                      measure(fleet_nodes, refs, direct, upstream, upstream))
            through, straight = combine(runs["regfront"]), combine(runs["direct"])
            on_s3 = through_s3(work, fleet_nodes, refs, upstream) if with_s3 else None
            snapshotter = fleet_nodes[0].snapshotter
    through["sync_seconds"] = sync_seconds
    through["sync_egress"] = sync_egress
    through["sync_bytes_downloaded"] = summary["bytes_downloaded"]
    through["upstream_egress"] = sync_egress + through["upstream_egress_during_pulls"]
    straight["upstream_egress"] = straight["upstream_egress_during_pulls"]
    return {"nodes": nodes, "images": images, "layer_bytes": layer, "rounds": rounds,
            "image_bytes": naive // images, "unique_bytes": sum(unique.values()),
            "snapshotter": snapshotter, "regfront": through, "direct": straight,
            **({"regfront_s3": on_s3} if on_s3 is not None else {})}
