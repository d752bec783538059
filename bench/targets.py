"""The issue's targets, each checked against the measured value it names (never tuned to it).

A target whose section was not measured, or failed, is reported as such, not as met.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from bench.common import Json


@dataclass(frozen=True)
class Verdict:
    target: str
    measured: str
    met: bool | None  # None: not measured


def _ratio(result: Json, backend: str, workload: str, connections: int = 32) -> Json | None:
    for row in result.get("hotpath", {}).get("ratios", []):
        if (row["backend"], row["workload"], row["connections"]) == (backend, workload,
                                                                      connections):
            return dict(row)
    return None


def _hot(result: Json, backend: str, workload: str, versus_file: bool = False) -> Verdict:
    target = (f"warm {workload} ({backend}) at c=32: >= 10x registry:2 on the filesystem, "
              ">= 0.5x the ASGI ceiling")
    row = _ratio(result, backend, workload)
    if row is None:
        return Verdict(target, "not measured", None)
    vs_r2 = row["vs_registry2"]
    note = ""
    if versus_file:  # the target names registry:2 on the filesystem
        file_row = _ratio(result, "file", workload)
        if file_row is not None:
            vs_r2 = row["regfront_rps"] / file_row["registry2_rps"]
            note = f" (vs registry:2 on S3: {row['vs_registry2']:.1f}x)"
    measured = (f"{row['regfront_rps']:,.0f} req/s = {vs_r2:.1f}x registry:2{note}, "
                f"{row['vs_ceiling']:.2f}x ceiling")
    return Verdict(target, measured, vs_r2 >= 10 and row["vs_ceiling"] >= 0.5)


def _store_calls(result: Json) -> Verdict:
    target = "cold: at most 2 store calls per request"
    rows = result.get("hotpath", {}).get("store_calls", [])
    if not rows:
        return Verdict(target, "not measured", None)
    worst = max(rows, key=lambda r: r["cold_reads"])
    parts = [f"{r['backend']} {r['workload']}: {r['cold_reads']}" for r in rows
             if r["cold_reads"] > 2]
    measured = (f"max {worst['cold_reads']} ({worst['backend']} {worst['workload']}: "
                f"{', '.join(f'{k} {v}' for k, v in sorted(worst['cold'].items()))})")
    if parts:
        measured += "; over 2: " + "; ".join(parts)
    return Verdict(target, measured, worst["cold_reads"] <= 2)


def _pulls(result: Json) -> Verdict:
    target = "full pulls through regfront within 10% of direct from registry:2"
    rows = [r for r in result.get("pulls", {}).get("rows", []) if r.get("ratio")]
    if not rows:
        return Verdict(target, _why(result, "pulls"), None)
    worst = max(rows, key=lambda r: r["ratio"])
    measured = (f"worst {worst['ratio']:.2f}x ({worst['client']} {worst['image']} on "
                f"{worst['backend']}: {worst['regfront_s']:.2f} s vs {worst['direct_s']:.2f} s); "
                f"median {sorted(r['ratio'] for r in rows)[len(rows) // 2]:.2f}x")
    return Verdict(target, measured, worst["ratio"] <= 1.10)


def _sync(result: Json) -> Verdict:
    target = "sync downloads only unique bytes and finishes faster than skopeo sync"
    section = result.get("sync", {})
    if "regfront" not in section:
        return Verdict(target, _why(result, "sync"), None)
    regfront, skopeo = section["regfront"], section["skopeo"]
    only_unique = regfront["upstream_blob_bytes"] <= section["unique_bytes"]
    measured = (f"downloaded {regfront['bytes_downloaded'] / 1e6:,.0f} MB of "
                f"{section['unique_bytes'] / 1e6:,.0f} MB unique (upstream sent "
                f"{regfront['upstream_egress'] / 1e6:,.0f} MB); {regfront['seconds']:.1f} s vs "
                f"skopeo {skopeo['seconds']:.1f} s")
    return Verdict(target, measured, only_unique and regfront["seconds"] < skopeo["seconds"])


FLEET_RUNS = 3


def _fleet(result: Json) -> Verdict:
    target = ("fleet on S3, 20 nodes x 3 images: upstream egress <= 1.02x the unique bytes, "
              "0 mirror 5xx, wall time no worse than direct pulls - in 3 runs of 3")
    section = result.get("fleet", {})
    if "summary" not in section:
        return Verdict(target, _why(result, "fleet"), None)
    this = section["summary"]
    runs = [r for r in section.get("history", [this]) if not r.get("label")
            and (r["store"], r["nodes"], r["images"]) == ("s3", 20, 3)][-FLEET_RUNS:]
    if not runs:
        return Verdict(target, f"not measured at that size (last run: {this['store']}, "
                               f"{this['nodes']} nodes x {this['images']} images)", None)
    measured = "; ".join(
        f"{r['egress_x']:.2f}x, {sum(r['5xx'].values())} 5xx, wall {r['wall_s']:.1f} s vs "
        f"{r['direct_wall_s']:.1f} s ({r['wall_ratio']:.2f}x)" for r in runs)
    measured = f"last {len(runs)} run(s): {measured}"
    if not all(r["met"] for r in runs):
        return Verdict(target, measured, False)
    return Verdict(target, measured, True if len(runs) == FLEET_RUNS else None)


def _coldstart(result: Json) -> Verdict:
    target = "cold start (process start to first 200 manifest HEAD) under 1.5 s"
    section = result.get("coldstart", {})
    if "start_s" not in section:
        return Verdict(target, _why(result, "coldstart"), None)
    seconds = section["start_s"]["median"]
    measured = f"{seconds:.2f} s on the file store (median of {len(section['start_s']['runs'])})"
    if "s3_start_s" in section:
        measured += f", {section['s3_start_s']['median']:.2f} s on S3 (moto)"
        seconds = max(seconds, section["s3_start_s"]["median"])
    return Verdict(target, measured, seconds < 1.5)


def _memory(result: Json) -> Verdict:
    target = "under 150 MB resident per worker after a long run with full caches"
    section = result.get("coldstart", {})
    if "memory" not in section:
        return Verdict(target, _why(result, "coldstart"), None)
    memory = section["memory"]
    measured = (f"{memory['rss_after'] / 2**20:.0f} MiB after {memory['requests']:,} requests "
                f"over {memory['distinct_urls']:,} URLs (started at "
                f"{memory['rss_before'] / 2**20:.0f} MiB)")
    return Verdict(target, measured, memory["rss_after"] < 150 * 2**20)


def _why(result: Json, section: str) -> str:
    if section not in result:
        return "not measured"
    error = result[section].get("error")
    return f"failed: {error.splitlines()[0][:200]}" if error else "not measured"


CHECKS: list[Callable[[Json], Verdict]] = [
    lambda r: _hot(r, "file", "manifest GET by tag"),
    lambda r: _hot(r, "file", "manifest HEAD by tag"),
    lambda r: _hot(r, "s3", "manifest GET by tag", versus_file=True),
    lambda r: _hot(r, "s3", "manifest HEAD by tag", versus_file=True),
    lambda r: _hot(r, "file", "blob HEAD"),
    lambda r: _hot(r, "s3", "blob HEAD", versus_file=True),
    lambda r: _hot(r, "s3", "blob GET", versus_file=True),
    _store_calls, _pulls, _sync, _fleet, _coldstart, _memory,
]


def verdicts(result: Json) -> list[Verdict]:
    return [check(result) for check in CHECKS]


def mark(verdict: Verdict) -> str:
    return {True: "met", False: "**missed**", None: "not measured"}[verdict.met]
