"""The PNG plots of docs/benchmarks.md (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from bench.common import Json

COLOURS = {"regfront": "#1f77b4", "registry2": "#ff7f0e", "direct": "#ff7f0e"}


def _save(figure: Any, path: Path) -> None:
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def hotpath_c32(section: Json, path: Path) -> None:
    """Grouped bars: requests/s per workload at c=32, regfront vs registry:2, per store."""
    rows = [r for r in section["ratios"] if r["connections"] == 32]
    if not rows:
        return
    labels = [f"{r['backend']}: {r['workload']}" for r in rows]
    figure, axes = plt.subplots(figsize=(10, 5))
    positions = range(len(rows))
    axes.barh([p + 0.2 for p in positions], [r["regfront_rps"] for r in rows], height=0.4,
              label="regfront (1 worker)", color=COLOURS["regfront"])
    axes.barh([p - 0.2 for p in positions], [r["registry2_rps"] for r in rows], height=0.4,
              label="registry:2 (GOMAXPROCS=1)", color=COLOURS["registry2"])
    for tool, style in (("wrk", "--"), ("hey", ":")):
        ceiling = [r["rps"] for r in section["warm"]
                   if r["server"] == "ceiling" and r["tool"] == tool and r["connections"] == 32]
        if ceiling:
            axes.axvline(ceiling[0], color="grey", linestyle=style,
                         label=f"hello-world ASGI ceiling ({tool})")
    axes.set_yticks(list(positions), labels)
    axes.invert_yaxis()
    axes.set_xscale("log")
    axes.set_xlabel("requests/s (log scale), one core each, warm caches, 32 connections")
    axes.legend(loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=2, fontsize=8)
    _save(figure, path)


def hotpath_connections(section: Json, path: Path) -> None:
    """Requests/s against connections for the manifest HEAD by tag (what containerd sends)."""
    figure, axes = plt.subplots(figsize=(9.5, 4.5))
    drawn = False
    for backend, marker in (("file", "o"), ("s3", "s")):
        for server in ("regfront", "registry2"):
            points = sorted((r["connections"], r["rps"]) for r in section["warm"]
                            if r["backend"] == backend and r["server"] == server
                            and r["workload"] == "manifest HEAD by tag")
            if points:
                drawn = True
                axes.plot([p[0] for p in points], [p[1] for p in points], marker=marker,
                          color=COLOURS[server], linestyle="-" if backend == "file" else "--",
                          label=f"{server} on {backend}")
    ceiling = sorted((r["connections"], r["rps"]) for r in section["warm"]
                     if r["server"] == "ceiling" and r["tool"] == "hey")
    if ceiling:
        axes.plot([p[0] for p in ceiling], [p[1] for p in ceiling], color="grey", linestyle=":",
                  label="ASGI ceiling (hey HEAD)")
    if not drawn:
        plt.close(figure)
        return
    axes.set_xscale("log", base=2)
    axes.set_yscale("log")
    axes.set_xlabel("connections")
    axes.set_ylabel("requests/s (log scale)")
    axes.set_title("manifest HEAD by tag, warm")
    axes.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5))
    _save(figure, path)


def pulls(section: Json, path: Path) -> None:
    rows = section.get("rows", [])
    if not rows:
        return
    labels = [f"{r['client']} {r['image']} ({r['backend']})" for r in rows]
    figure, axes = plt.subplots(figsize=(9, 0.5 * len(rows) + 1.5))
    positions = range(len(rows))
    axes.barh([p + 0.2 for p in positions], [r["regfront_s"] for r in rows], height=0.4,
              label="through regfront", color=COLOURS["regfront"])
    axes.barh([p - 0.2 for p in positions], [r["direct_s"] for r in rows], height=0.4,
              label="direct from registry:2", color=COLOURS["direct"])
    axes.set_yticks(list(positions), labels)
    axes.invert_yaxis()
    axes.set_xscale("log")
    axes.set_xlabel("seconds per full pull (log scale, median)")
    axes.legend(fontsize=8)
    _save(figure, path)


def fleet(section: Json, path: Path) -> None:
    if "summary" not in section:
        return
    figure, axes = plt.subplots(figsize=(7, 3.5))
    sides = [(f"through regfront ({section['store']})", section["regfront"]),
             ("straight from upstream", section["direct"])]
    unique = section["unique_bytes"]
    axes.bar([s[0] for s in sides], [s[1]["upstream_egress"] / 1e6 for s in sides],
             color=[COLOURS["regfront"], COLOURS["direct"]])
    axes.axhline(unique / 1e6, color="grey", linestyle="--", label="unique bytes of the images")
    axes.set_ylabel("upstream egress, MB (worst round)")
    axes.set_title(f"{section['nodes']} nodes x {section['images']} images")
    axes.legend(fontsize=8)
    _save(figure, path)


def draw_all(result: Json, directory: Path) -> None:
    hot = result.get("hotpath", {})
    if "warm" in hot:
        hotpath_c32(hot, directory / "hotpath-c32.png")
        hotpath_connections(hot, directory / "hotpath-connections.png")
    pulls(result.get("pulls", {}), directory / "pulls.png")
    fleet(result.get("fleet", {}), directory / "fleet.png")
