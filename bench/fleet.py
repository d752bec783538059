"""Fleet: N nodes (separate containerd instances) pulling M images at once through one gateway
on S3 (moto), against the same nodes pulling straight from the upstream registry:2.

The images share 80% of their layers (``tests.images.fleet_layout``). Through regfront, the
images are first mirrored into the bucket by ``regfront sync`` from the upstream, and nodes pull
through the gateway with the upstream as hosts.toml fallback; blob GETs are 307s to pre-signed
bucket URLs. The sides alternate (ABBA); each regfront round starts a fresh gateway, so every
round is a cold gateway meeting the whole fleet at once.

Every outcome is counted from the record of the system that saw it, never from a line the
gateway logs (bench/signals.py):

- the upstream's own access log (registry:2's, on here): which requests reached it in each
  round - blob GETs by digest - and the body bytes it sent. Upstream egress is the sync's bytes
  plus a round's, as a multiple of the images' unique blob bytes;
- the gateway's /metrics around each round: ``regfront_fallbacks_total`` by reason, answers by
  route and status (the 5xx), store calls that did not answer ok;
- the bucket: bytes the counting relay carried to the nodes after a 307, transfers it saw cut
  short, and moto's own request log by status.

Placement: each side's byte server on the server core (core 0): registry:2 for direct pulls;
the gateway, moto and the relay's thread for pulls through regfront. Every containerd and ctr
runs on core 1. ``bucket_cpu`` moves moto and the relay.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from bench.common import (
    REPO,
    SERVER_CPU,
    Json,
    Running,
    check_disk,
    children_cpu_seconds,
    core_ticks,
    cores_busy,
    cpu_seconds,
    log,
    median,
    moto_url,
    percentile,
    regfront_cli,
    serving_moto,
    serving_regfront,
    serving_registry2,
    thread_cpu_seconds,
    written_bytes,
)
from bench.nodes import Node, containerd_nodes, direct_hosts
from bench.proxy import CountingRelay, counting_relay
from bench.signals import (
    LogTail,
    access_log,
    bucket_outcomes,
    gateway_outcomes,
    scrape,
    upstream_outcomes,
)
from bench.sync import NAME, fill_upstream, image_blobs, mirror_config, regfront_sync
from tests.images import fleet_layout

MB = 10**6
EGRESS_GOAL = 1.02  # upstream egress, x the unique bytes
SETTLE = 1.0  # seconds for the last access-log lines after the last pull exits


@dataclass(frozen=True)
class Bucket:
    """Where the gateway's store is: a moto bucket behind the relay, or a directory."""

    store: str | Path
    relay: CountingRelay | None = None
    moto: Running | None = None


@contextlib.contextmanager
def bucket(work: Path, kind: str, cpu: str) -> Iterator[Bucket]:
    if kind == "file":
        yield Bucket(work / "store")
        return
    with serving_moto(work, ("fleet",), cpu=cpu) as moto, \
            counting_relay(int(moto.url.rsplit(":", 1)[1]), cpu=cpu) as relay:
        yield Bucket(moto_url(relay.url, "fleet"), relay, moto)  # pre-signed URLs name the relay


def pull_all(nodes: list[Node], refs: list[str], hosts: Path) -> tuple[list[float], float]:
    """Every node pulls every ref, all at once; each pull's seconds, and the wall time."""
    jobs = [(node, ref) for node in nodes for ref in refs]
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=len(jobs)) as pool:
        times = list(pool.map(lambda job: job[0].pull(job[1], hosts), jobs))
    return times, time.perf_counter() - started


def measure(nodes: list[Node], refs: list[str], hosts: Path, server: Running,
            upstream: Running, unique: dict[str, int], store: Bucket | None = None) -> Json:
    """One fleet-wide pull from ``server``, and what every party recorded of it."""
    for node in nodes:
        node.remove_all()
    upstream_log = LogTail(upstream.service.log)
    bucket_log = LogTail(store.moto.service.log) if store and store.moto else None
    relay = store.relay if store else None
    relay_before = _relay_counts(relay)
    metrics_before = scrape(server.url) if server is not upstream else {}
    upstream_before, server_before = written_bytes(upstream.pid), written_bytes(server.pid)
    cpu_before = _cpu(nodes, server, store)
    cores = core_ticks()
    times, wall = pull_all(nodes, refs, hosts)
    busy = cores_busy(cores)
    cpu = {who: round(seconds - cpu_before[who], 2)
           for who, seconds in _cpu(nodes, server, store).items()}
    time.sleep(SETTLE)
    pulls = len(times)
    result: Json = {
        "pulls": pulls, "wall_s": wall, "p50_s": percentile(times, 50),
        "p99_s": percentile(times, 99), "times": times,
        "upstream": upstream_outcomes(access_log(upstream_log.lines()), unique),
        # Cross-check: everything the upstream process wrote, headers and its log included.
        "upstream_wchar": written_bytes(upstream.pid) - upstream_before,
        "server_egress": written_bytes(server.pid) - server_before,
        "server_cpu_per_pull": cpu["server"] / pulls,
        # Who used the cores during the pulls (CPU seconds), and how busy each core was
        # (anything on the machine included): where the wall time went.
        "cpu_s": cpu, "cores_busy": busy,
    }
    if server is not upstream:
        result["gateway"] = gateway_outcomes(metrics_before, scrape(server.url))
    if relay is not None:
        after = _relay_counts(relay)
        result["bucket"] = {key: after[key] - relay_before[key] for key in after}
    if bucket_log is not None:
        result.setdefault("bucket", {})["answers"] = bucket_outcomes(bucket_log.lines())
    for node in nodes:
        node.remove_all()
    return result


def _cpu(nodes: list[Node], server: Running, store: Bucket | None) -> dict[str, float]:
    """CPU seconds so far of the server, the bucket (moto, the relay's thread), the nodes'
    containerd and the ctr clients."""
    out = {"server": cpu_seconds(server.pid),
           "containerd": sum(cpu_seconds(node.service.process.pid) for node in nodes),
           "ctr": children_cpu_seconds()}
    if store is not None and store.moto is not None:
        out["moto"] = cpu_seconds(store.moto.pid)
    if store is not None and store.relay is not None:
        out["relay"] = thread_cpu_seconds(store.relay.thread_id)
    return out


def _relay_counts(relay: CountingRelay | None) -> dict[str, int]:
    if relay is None:
        return {}
    return {"egress": relay.sent_to_clients, "connections": relay.connections,
            "refused": relay.target_refused, "client_gone": relay.client_gone,
            "target_failed": relay.target_failed}


def _sum(counts: list[dict[str, int]]) -> dict[str, int]:
    total: Counter[str] = Counter()
    for count in counts:
        total.update(count)
    return dict(sorted(total.items()))


def _latencies(rounds: list[dict[str, Json]]) -> dict[str, Json]:
    """Histogram summaries of several rounds as one: counts added, the slowest bound kept."""
    out: dict[str, Json] = {}
    for summary in rounds:
        for group, counts in summary.items():
            into = out.setdefault(group, {})
            for key, value in counts.items():
                if key == "slowest_under_s":
                    known = [v for v in (into.get(key), value) if v is not None]
                    into[key] = max(known) if known else None
                else:
                    into[key] = into.get(key, 0) + value
    return out


def combine(rounds: list[Json], sync_bytes: int, unique_bytes: int) -> Json:
    """Rounds of one side: what went wrong over every round, the warm-up's included (the
    worst round's upstream egress, fallbacks and 5xx added up); times and CPU over the
    measured rounds (percentiles over every pull, medians of wall and CPU)."""
    timed = [r for r in rounds if not r["warm_up"]]
    times = [t for r in timed for t in r["times"]]
    egress = [sync_bytes + r["upstream"]["bytes"] for r in rounds]
    out: Json = {
        "rounds": len(timed), "pulls": len(times), "times": times,
        "p50_s": percentile(times, 50), "p99_s": percentile(times, 99),
        "wall_s": median([r["wall_s"] for r in timed]),
        "walls_s": [r["wall_s"] for r in timed],
        "server_cpu_per_pull": median([r["server_cpu_per_pull"] for r in timed]),
        "server_egress": max(r["server_egress"] for r in timed),
        "upstream_egress": max(egress),
        "egress_x": [e / unique_bytes for e in egress],
        "upstream_blob_gets": [r["upstream"]["blob_gets"] for r in rounds],
        "cpu_s": {who: median([r["cpu_s"][who] for r in timed]) for who in timed[0]["cpu_s"]},
        "cores_busy": {core: median([r["cores_busy"][core] for r in timed])
                       for core in timed[0]["cores_busy"]},
    }
    if "gateway" in rounds[0]:
        for histogram in ("answer_seconds", "store_call_seconds"):
            out[histogram] = _latencies([r["gateway"][histogram] for r in rounds])
        out["fallbacks"] = _sum([r["gateway"]["fallbacks"] for r in rounds])
        out["5xx"] = _sum([r["gateway"]["5xx"] for r in rounds])
        out["store_calls_failed"] = _sum([r["gateway"]["store_calls_failed"] for r in rounds])
    if "bucket" in rounds[0]:
        out["store_egress"] = max(r["bucket"].get("egress", 0) for r in rounds)
        out["bucket"] = _sum([{k: v for k, v in r["bucket"].items() if k != "answers"}
                              for r in rounds])
        out["bucket_answers"] = _sum([r["bucket"].get("answers", {}) for r in rounds])
    return out


def summary(section: Json) -> Json:
    """One run's verdict on the goal: worst egress multiple, every 5xx, wall against direct."""
    through, direct = section["regfront"], section["direct"]
    ratio = through["wall_s"] / direct["wall_s"]
    fivexx = sum(through["5xx"].values())
    egress = max(through["egress_x"])
    return {
        "commit": _commit(), "store": section["store"], "bucket_cpu": section["bucket_cpu"],
        "nodes": section["nodes"],
        "images": section["images"], "rounds": section["rounds"],
        "egress_x": round(egress, 4), "direct_egress_x": round(max(direct["egress_x"]), 4),
        "upstream_blob_gets": sum(through["upstream_blob_gets"]),
        "5xx": through["5xx"], "fallbacks": through["fallbacks"],
        "wall_s": round(through["wall_s"], 2), "direct_wall_s": round(direct["wall_s"], 2),
        "wall_ratio": round(ratio, 3),
        "met": egress <= EGRESS_GOAL and fivexx == 0 and ratio <= 1.0,
    }


def _commit() -> str:
    """The commit measured, '+dirty' when the gateway or registry differ from it."""
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True,
                              timeout=30, check=False).stdout.strip()

    dirty = git("status", "--porcelain", "--", "gateway", "registry", "regfront")
    return git("rev-parse", "--short", "HEAD") + ("+dirty" if dirty else "")


def run(*, nodes: int, images: int, layer_mb: float, store: str = "s3", rounds: int = 2,
        warm_up: int = 1, bucket_cpu: str = SERVER_CPU, keep_logs: Path | None = None) -> Json:
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
        unique_bytes = sum(unique.values())
        fill_upstream(fleet, tags, work / "upstream")
        shutil.rmtree(work / "oci")
        log(f"fleet: starting {nodes} containerd nodes")
        try:
            with serving_registry2(work, root=work / "upstream", accesslog=True) as upstream, \
                    containerd_nodes(nodes, work / "nodes") as fleet_nodes, \
                    bucket(work, store, bucket_cpu) as target:
                synced = LogTail(upstream.service.log)
                sync_seconds, sync_summary = regfront_sync(work, upstream, target.store)
                time.sleep(SETTLE)
                sync = upstream_outcomes(access_log(synced.lines()), unique)
                config = mirror_config(work, upstream, target.store)
                direct = direct_hosts(work / "hosts-direct", "docker.io", upstream.url)
                runs: list[Json] = []
                # ABBA...: neither side always goes first (page cache, the machine's other
                # work). Before them one round of each side, not counted: a fresh containerd's
                # first pull costs it more CPU than any later one, whichever side it pulls from.
                order = (["regfront", "direct", "direct", "regfront"] * rounds)[:2 * rounds]
                order = ["regfront", "direct"] * warm_up + order
                for i, side in enumerate(order):
                    log(f"fleet: {nodes} nodes x {images} images, {side} on {store} "
                        f"({i + 1}/{len(order)}{', warm-up' if i < 2 * warm_up else ''})")
                    if side == "direct":
                        runs.append({"side": side, "warm_up": i < 2 * warm_up,
                                     **measure(fleet_nodes, refs, direct, upstream, upstream,
                                               unique)})
                        continue
                    with serving_regfront(target.store, work, config=config) as gateway:
                        via = work / f"hosts-via-{i}"
                        regfront_cli("containerd-config", "--gateway", gateway.url,
                                     "--registry", f"docker.io={upstream.url}", "--out",
                                     str(via))
                        runs.append({"side": side, "warm_up": i < 2 * warm_up,
                                     **measure(fleet_nodes, refs, via, gateway, upstream,
                                               unique, target)})
                snapshotter = fleet_nodes[0].snapshotter
        finally:
            if keep_logs is not None:
                keep_logs.mkdir(parents=True, exist_ok=True)
                for found in work.rglob("*.log"):
                    shutil.copy(found, keep_logs / "-".join(found.relative_to(work).parts))
    section: Json = {
        "nodes": nodes, "images": images, "layer_bytes": layer, "rounds": rounds,
        "image_bytes": naive // images, "unique_bytes": unique_bytes, "store": store,
        "snapshotter": snapshotter, "bucket_cpu": bucket_cpu if store == "s3" else None,
        "sync": {"seconds": sync_seconds, "upstream": sync,
                 "bytes_downloaded": sync_summary["bytes_downloaded"]},
        "warm_up_rounds": warm_up,
        "regfront": combine([r for r in runs if r["side"] == "regfront"], sync["bytes"],
                            unique_bytes),
        "direct": combine([r for r in runs if r["side"] == "direct"], 0, unique_bytes),
        "runs": runs,
    }
    section["summary"] = summary(section)
    return section
