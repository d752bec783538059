"""docs/benchmarks.md and its plots (docs/benchmarks/*.png), generated from the result JSON.

The page names the machine and the versions, never a local path. Every number on it comes from
the result file; prose that explains a number says what was measured, not what was hoped for.
"""

from __future__ import annotations

from pathlib import Path

from bench import findings, plots, prose
from bench.common import REPO, Json
from bench.targets import mark, verdicts

DOCS = REPO / "docs" / "benchmarks.md"
PLOTS = REPO / "docs" / "benchmarks"


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _mb(value: float) -> str:
    return f"{value / 1e6:,.0f} MB"


def summary(result: Json) -> str:
    """The targets, one line each: printed after every run."""
    lines = ["targets:"]
    for verdict in verdicts(result):
        lines.append(f"  [{mark(verdict).strip('*'):>12}] {verdict.target}: {verdict.measured}")
    return "\n".join(lines)


def _machine(result: Json) -> str:
    machine = result["machine"]
    versions = ", ".join(f"{k} {v}" for k, v in machine["versions"].items())
    return (f"Measured on {machine['cpu']}, {machine['cores']} cores, "
            f"{machine['memory_gib']} GiB, Linux {machine['kernel']}.\n\nVersions: {versions}.")


def _targets(result: Json) -> str:
    rows = [[v.target, v.measured, mark(v)] for v in verdicts(result)]
    return _table(["target", "measured", ""], rows)


def _hotpath(section: Json) -> str:
    if "warm" not in section:
        return f"Not measured in this run ({section.get('error', 'skipped')})."
    out = [prose.HOTPATH.format(**section["settings"])]
    rows = []
    for r in section["ratios"]:
        regfront = _find(section["warm"], r["backend"], "regfront", r["workload"], r["connections"])
        other = _find(section["warm"], r["backend"], "registry2", r["workload"], r["connections"])
        rows.append([r["backend"], r["workload"], str(r["connections"]),
                     f"{r['regfront_rps']:,.0f}", f"{regfront['p50_ms']:.2f} / "
                     f"{regfront['p99_ms']:.2f}", f"{r['registry2_rps']:,.0f}",
                     f"{other['p50_ms']:.2f} / {other['p99_ms']:.2f}",
                     f"{r['vs_registry2']:.1f}x", f"{r['vs_ceiling']:.2f}x"])
    out.append(_table(["store", "workload", "conns", "regfront req/s", "p50 / p99 ms",
                       "registry:2 req/s", "p50 / p99 ms", "regfront / registry:2",
                       "regfront / ceiling"], rows))
    ceiling = [[r["tool"], str(r["connections"]), f"{r['rps']:,.0f}",
                f"{r['p50_ms']:.2f} / {r['p99_ms']:.2f}"]
               for r in section["warm"] if r["server"] == "ceiling"]
    out.append("The ceiling, a hello-world ASGI app under the same uvicorn settings (wrk for the "
               "GET workloads' ratio, hey for the HEAD workloads'):")
    out.append(_table(["tool", "conns", "req/s", "p50 / p99 ms"], ceiling))
    out.append("![warm requests/s at c=32](benchmarks/hotpath-c32.png)")
    out.append("![requests/s by connections](benchmarks/hotpath-connections.png)")
    if section.get("cold"):
        out.append(prose.COLD)
        rows = [[c["backend"], c["workload"], c["server"], f"{c['first_ms']:.1f}",
                 f"{c['second_ms']:.2f}"] for c in section["cold"]]
        out.append(_table(["store", "workload", "server", "first request ms",
                           "second request ms"], rows))
    out.append(prose.STORE_CALLS)
    rows = [[c["backend"], c["workload"], str(c["cold_reads"]),
             ", ".join(f"{k} {v}" for k, v in sorted(c["cold"].items())) or "-",
             str(c["warm_reads"]), ", ".join(f"{k} {v}" for k, v in sorted(c["warm"].items()))
             or "-"] for c in section["store_calls"]]
    out.append(_table(["store", "workload", "cold reads", "cold calls", "warm reads",
                       "warm calls"], rows))
    return "\n\n".join(out)


def _find(rows: list[Json], backend: str, server: str, workload: str, conns: int) -> Json:
    return next(r for r in rows if (r["backend"], r["server"], r["workload"],
                                    r["connections"]) == (backend, server, workload, conns))


def _pulls(section: Json) -> str:
    if "rows" not in section:
        return f"Not measured in this run ({section.get('error', 'skipped')})."
    out = [prose.PULLS.format(**section["settings"])]
    rows = [[r["client"], r["image"], r["backend"], f"{r['regfront_s']:.2f}",
             f"{r['direct_s']:.2f}", f"{r['ratio']:.2f}x",
             f"{r['regfront_mbps']:,.0f} / {r['direct_mbps']:,.0f}"] for r in section["rows"]]
    out.append(_table(["client", "image", "store", "via regfront s", "direct s",
                       "regfront / direct", "MB/s (regfront / direct)"], rows))
    out.append("![pull times](benchmarks/pulls.png)")
    if section.get("notes"):
        out.append("\n".join(f"- {n}" for n in section["notes"]))
    return "\n\n".join(out)


def _sync(section: Json) -> str:
    if "regfront" not in section:
        return f"Not measured in this run ({section.get('error', 'skipped')})."
    out = [prose.SYNC.format(images=section["images"], image_mb=section["image_bytes"] / 1e6,
                             layer_mb=section["layer_bytes"] / 1e6)]
    rows = []
    for tool in ("regfront", "skopeo"):
        r = section[tool]
        rows.append([tool, f"{r['seconds']:.1f}", _mb(r["upstream_egress"]),
                     _mb(r["stored_bytes"]), f"{r['stored_bytes'] / section['naive_bytes']:.2f}",
                     f"{r['upstream_egress'] / r['seconds'] / 1e6:,.0f}"])
    out.append(_table(["tool", "seconds", "upstream sent", "stored", "stored / naive sum",
                       "MB/s from upstream"], rows))
    out.append(f"Naive sum of the image sizes: {_mb(section['naive_bytes'])}; unique blob bytes: "
               f"{_mb(section['unique_bytes'])}; regfront's own count of bytes downloaded: "
               f"{_mb(section['regfront']['bytes_downloaded'])}.")
    return "\n\n".join(out)


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{key} {value}" for key, value in counts.items()) or "0"


def _fleet_evidence(section: Json) -> str:
    """Where a measured round's time went (CPU by party, core load), and how fast the gateway
    and its store answered."""
    through, direct = section["regfront"], section["direct"]

    def cpu(side: Json) -> str:
        return ", ".join(f"{who} {seconds:.1f}" for who, seconds in side["cpu_s"].items())

    def busy(side: Json) -> str:
        return ", ".join(f"core {core} {share:.0%}" for core, share in side["cores_busy"].items())

    lines = [f"CPU seconds in a measured round (median; `server` is the gateway, or registry:2 "
             f"for direct pulls): through regfront {cpu(through)}; direct {cpu(direct)}. Cores "
             f"busy during the pulls, whoever ran on them: through regfront {busy(through)}; "
             f"direct {busy(direct)}."]
    for key, what in (("answer_seconds", "The gateway's answers"),
                      ("store_call_seconds", "Its store calls")):
        parts = [f"{group}: {h['count']:,}, over 1 s {h['over_1s']}, over 2.5 s "
                 f"{h['over_2.5s']}, slowest under {h['slowest_under_s'] or 'inf'} s"
                 for group, h in through.get(key, {}).items()]
        if parts:
            lines.append(f"{what} over every regfront round (its /metrics histograms): "
                         + "; ".join(parts) + ".")
    return " ".join(lines)


def _fleet(section: Json) -> str:
    if "summary" not in section:
        return f"Not measured in this run ({section.get('error', 'skipped')})."
    unique = section["unique_bytes"]
    out = [prose.FLEET.format(nodes=section["nodes"], images=section["images"],
                              image_mb=section["image_bytes"] / 1e6, unique_mb=unique / 1e6,
                              rounds=section["rounds"],
                              warm_up=section.get("warm_up_rounds", 0),
                              store=("a moto S3 bucket" if section["store"] == "s3"
                                     else "a file store"),
                              bucket_cpu=section.get("bucket_cpu"))]
    sync = section["sync"]
    out.append(f"The sync sent {_mb(sync['upstream']['bytes'])} from the upstream "
               f"({sync['upstream']['blob_gets']} blob GETs, "
               f"{sync['upstream']['bytes'] / unique:.3f}x the unique bytes: manifests are "
               f"the rest) in {sync['seconds']:.1f} s.")
    rows = []
    for side, label in (("regfront", f"through regfront ({section['store']})"),
                        ("direct", "straight from upstream")):
        r = section[side]
        rows.append([label, _mb(r["upstream_egress"]),
                     ", ".join(f"{x:.3f}x" for x in r["egress_x"]),
                     ", ".join(str(n) for n in r["upstream_blob_gets"]),
                     _counts(r["5xx"]) if "5xx" in r else "-",
                     _counts(r["fallbacks"]) if "fallbacks" in r else "-",
                     _mb(r["store_egress"]) if "store_egress" in r else "-",
                     f"{r['server_cpu_per_pull'] * 1e3:.0f} ms",
                     f"{r['p50_s']:.1f} / {r['p99_s']:.1f}",
                     f"{r['wall_s']:.1f} ({', '.join(f'{w:.1f}' for w in r['walls_s'])})"])
    out.append(_table(["nodes pull", "upstream egress (worst round)",
                       "x unique bytes, by round (warm-up first)",
                       "upstream blob GETs, by round", "mirror 5xx", "fallbacks by reason",
                       "bucket egress", "server CPU per pull", "pull p50 / p99 s",
                       "wall s: median (rounds)"], rows))
    through = section["regfront"]
    if "bucket" in through:
        bucket = through["bucket"]
        out.append(f"The bucket over the regfront rounds: {bucket.get('connections', 0):,} "
                   f"connections through the relay, {bucket.get('refused', 0)} refused by "
                   f"moto, {bucket.get('client_gone', 0)} transfers a node cut short, "
                   f"{bucket.get('target_failed', 0)} moto cut short; moto's answers "
                   f"(its request log, the gateway's store calls included): "
                   f"{_counts(through['bucket_answers'])}. Store calls that did not answer ok "
                   f"(/metrics): {_counts(through['store_calls_failed'])}.")
    out.append(_fleet_evidence(section))
    out.append("![fleet egress](benchmarks/fleet.png)")
    history = section.get("history", [])
    if history:
        out.append("Every recorded run of this section (`bench/results/latest.json`, "
                   "`fleet.history`; the goal: at most 1.02x, no 5xx, wall no worse than "
                   "direct):")
        rows = [[h["measured"], h["commit"] + (f" ({h['label']})" if h.get("label") else ""),
                 f"{h['loadavg_1min']['before']:.1f} -> "
                 f"{h['loadavg_1min']['after']:.1f}", f"{h['store']}, {h['nodes']} x "
                 f"{h['images']}, {h['rounds']} rounds", f"{h['egress_x']:.3f}x",
                 str(h["upstream_blob_gets"]), _counts(h["5xx"]), _counts(h["fallbacks"]),
                 f"{h['wall_s']:.1f} / {h['direct_wall_s']:.1f} ({h['wall_ratio']:.2f}x)",
                 "reference" if h.get("label") else "met" if h["met"] else "**missed**"]
                for h in history]
        out.append(_table(["measured", "commit", "load avg", "fleet", "egress (worst round)",
                           "upstream blob GETs", "mirror 5xx", "fallbacks",
                           "wall s regfront / direct", "goal"], rows))
    return "\n\n".join(out)


def _coldstart(section: Json) -> str:
    if "start_s" not in section:
        return f"Not measured in this run ({section.get('error', 'skipped')})."
    memory = section["memory"]
    out = [prose.COLDSTART]
    rows = []
    for key, label in (("start_s", "regfront serve, file store"),
                       ("registry2_start_s", "registry:2, filesystem"),
                       ("s3_start_s", "regfront serve, S3 (moto)"),
                       ("s3_registry2_start_s", "registry:2, S3 (moto)")):
        if key in section:
            runs = section[key]
            rows.append([label, f"{runs['median']:.2f}",
                         ", ".join(f"{v:.2f}" for v in runs["runs"])])
    out.append(_table(["server", "median s", "runs s"], rows))
    out.append(prose.MEMORY.format(**memory, rss_before_mib=memory["rss_before"] / 2**20,
                                   rss_after_mib=memory["rss_after"] / 2**20,
                                   rss_warm_mib=memory["rss_warm"] / 2**20))
    return "\n\n".join(out)


def _profile(section: Json) -> str:
    if "sampled" not in section:
        return f"Not measured in this run ({section.get('error', 'skipped')})."
    out = [prose.PROFILE]
    for entry in section["sampled"]:
        if "inclusive" not in entry:
            out.append(f"{entry.get('workload', '?')}: {entry.get('error', 'no samples')}")
            continue
        rows = [[f"`{frame}`", f"{share:.1f}%"] for frame, share in entry["inclusive"]]
        out.append(f"**{entry['workload']}** ({entry['samples']:,} samples, "
                   f"{entry['rps_while_profiled']:,.0f} req/s while profiled), largest "
                   "inclusive shares below the server loop:")
        out.append(_table(["frame", "share of GIL-holding samples"], rows))
    cpu = section.get("cpu_per_request", [])
    if cpu:
        out.append("Server CPU per request at 32 connections (`/proc/<pid>/stat` over the run):")
        out.append(_table(["server", "workload", "req/s", "CPU ms per request"],
                          [[r["server"], r["workload"], f"{r['rps']:,.0f}",
                            f"{r['cpu_ms_per_request']:.3f}"] for r in cpu]))
    cold = section.get("cold_first_request", {})
    if "first_ms" in cold:
        warm = (f" after the gateway's start-up warm-up ({cold['warm_up_ms']:.1f} ms)"
                if cold.get("warm_up_ms") is not None else "")
        out.append(f"Cold first request in a fresh interpreter ({cold['workload']}){warm}: "
                   f"{cold['first_ms']:.1f} ms, of which {cold['profiled_imports_ms']:.1f} ms "
                   f"importing modules (under cProfile); the second request: "
                   f"{cold['second_ms']:.2f} ms.")
        rows = [[f"`{name}`", f"{ms:.2f}"] for name, ms in cold["top_cumulative"]]
        out.append(_table(["function", "cumulative ms"], rows))
    return "\n\n".join(out)


def write_docs(result: Json) -> None:
    """Regenerate docs/benchmarks.md and the plots from ``result``."""
    PLOTS.mkdir(parents=True, exist_ok=True)
    plots.draw_all(result, PLOTS)
    sections = [
        prose.INTRO,
        "## Machine\n\n" + _machine(result),
        "## Targets\n\n" + _targets(result),
        "## Hot path\n\n" + _hotpath(result.get("hotpath", {})),
        "## Full pulls\n\n" + _pulls(result.get("pulls", {})),
        "## Sync\n\n" + _sync(result.get("sync", {})),
        "## Fleet\n\n" + _fleet(result.get("fleet", {})),
        "## Cold start and memory\n\n" + _coldstart(result.get("coldstart", {})),
        "## Profiles\n\n" + _profile(result.get("profile", {})),
        prose.LIMITS,
        "## Findings\n\n" + prose.FINDINGS.strip() + "\n\n" + findings.render(result),
    ]
    text = "\n\n".join(s.strip() for s in sections) + "\n"
    while "\n\n\n" in text:
        text = text.replace("\n\n\n", "\n\n")
    Path(DOCS).write_text(text)
