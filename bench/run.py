"""``python -m bench.run [--quick] [--only NAME ...]``: run the benchmarks, save the JSON, and
(full runs) regenerate docs/benchmarks.md and its plots.

Each benchmark writes one section of the result file; ``--only`` re-runs some sections and keeps
the others from the file, so a slow section need not be re-measured to fix another. A section
that fails is recorded with its error and the run goes on. Nothing here asserts a target: the
report compares each measured value with its target and says so.
"""

from __future__ import annotations

import argparse
import json
import time
import traceback
from collections.abc import Callable
from pathlib import Path

from bench.common import REPO, Json, log, machine, require

RESULTS = REPO / "bench" / "results"
SECTIONS = ("hotpath", "coldstart", "pulls", "sync", "fleet", "profile")
HISTORY = 12  # runs of a section's summary kept in the result file


def _hotpath(args: argparse.Namespace) -> Json:
    from bench import hotpath

    if args.quick:
        return hotpath.run(quick=True, seconds=1, rounds=1, connections=[32], cold_reps=1)
    return hotpath.run(quick=False, seconds=args.seconds, rounds=args.rounds,
                       connections=[1, 32, 128], cold_reps=3)


def _coldstart(args: argparse.Namespace) -> Json:
    from bench import coldstart

    if args.quick:
        return coldstart.run(starts=3, manifests=500, requests=20_000, seconds=5)
    return coldstart.run(starts=5, manifests=args.memory_manifests, requests=100_000, seconds=60)


def _pulls(args: argparse.Namespace) -> Json:
    from bench import pulls

    if args.quick:
        return pulls.run(sizes_mb=[10], multi_mb=0, rounds=1, with_s3=False)
    return pulls.run(sizes_mb=[10, 100, 1000], multi_mb=500, rounds=3, with_s3=args.pull_s3)


def _sync(args: argparse.Namespace) -> Json:
    from bench import sync

    if args.quick:
        return sync.run(images=3, layer_mb=2)
    return sync.run(images=10, layer_mb=args.sync_layer_mb)


def _fleet(args: argparse.Namespace) -> Json:
    from bench import fleet

    if args.quick:
        return fleet.run(nodes=3, images=2, layer_mb=2, store=args.fleet_store, rounds=1,
                         warm_up=0, bucket_cpu=args.fleet_bucket_cpu,
                         keep_logs=args.fleet_keep_logs)
    return fleet.run(nodes=args.nodes, images=args.fleet_images, layer_mb=args.fleet_layer_mb,
                     store=args.fleet_store, rounds=args.fleet_rounds,
                     warm_up=args.fleet_warm_up, bucket_cpu=args.fleet_bucket_cpu,
                     keep_logs=args.fleet_keep_logs)


def _profile(args: argparse.Namespace) -> Json:
    from bench import profile

    return profile.run(seconds=4 if args.quick else 8)


RUNNERS: dict[str, Callable[[argparse.Namespace], Json]] = {
    "hotpath": _hotpath, "coldstart": _coldstart, "pulls": _pulls, "sync": _sync,
    "fleet": _fleet, "profile": _profile,
}


def _loadavg() -> float:
    return float(Path("/proc/loadavg").read_text().split()[0])


def _keep_history(section: Json, previous: Json, label: str | None = None) -> None:
    """A section with a ``summary`` (the fleet's verdict on its goal) keeps the summaries of
    the runs before it: each with when, on which commit and how busy the machine was."""
    if "summary" not in section:
        return
    entry = {**section["summary"], "measured": section["measured"],
             "loadavg_1min": section["loadavg_1min"]}
    if label:
        entry["label"] = label
    section["history"] = [*previous.get("history", []), entry][-HISTORY:]


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help="a subset in under 2 minutes: hot path at c=32, short runs, small "
                             "pulls, a small fleet (writes bench/results/quick.json)")
    parser.add_argument("--only", nargs="+", choices=SECTIONS,
                        help="these sections (default: all; --quick leaves out profile)")
    parser.add_argument("--out", type=Path, help="result file (default: latest.json, or "
                                                 "quick.json with --quick)")
    parser.add_argument("--docs", action=argparse.BooleanOptionalAction, default=None,
                        help="regenerate docs/benchmarks.md (default: on full runs only)")
    parser.add_argument("--seconds", type=float, default=3.0, help="hot path: seconds per run")
    parser.add_argument("--rounds", type=int, default=3, help="hot path: rounds (medians)")
    parser.add_argument("--pull-s3", action=argparse.BooleanOptionalAction, default=True,
                        help="pulls: also through moto's S3 (10 and 100 MB images)")
    parser.add_argument("--sync-layer-mb", type=float, default=100.0,
                        help="sync: each of the 5 layers of the 10 images (100: ~500 MB images, "
                             "~1.4 GB unique, ~6 GB of disk in all)")
    parser.add_argument("--nodes", type=int, default=20, help="fleet: containerd instances")
    parser.add_argument("--fleet-images", type=int, default=3, help="fleet: images per node")
    parser.add_argument("--fleet-layer-mb", type=float, default=10.0,
                        help="fleet: each of the 5 layers of an image (4 of them shared)")
    parser.add_argument("--fleet-store", choices=("s3", "file"), default="s3",
                        help="fleet: the gateway's store: moto's S3 behind the counting relay "
                             "(307s to the bucket), or a file store the gateway streams from")
    parser.add_argument("--fleet-rounds", type=int, default=3,
                        help="fleet: rounds of each side, alternated (ABBA)")
    parser.add_argument("--fleet-warm-up", type=int, default=1,
                        help="fleet: rounds of each side before the measured ones, timed but "
                             "not counted in the times (their fallbacks and 5xx are)")
    parser.add_argument("--fleet-bucket-cpu", default="0",
                        help="fleet: the core moto and the relay run on (0: the server core, "
                             "as registry:2 for direct pulls; 1: with the nodes)")
    parser.add_argument("--fleet-label",
                        help="fleet: a reference run (e.g. another gateway's): kept in the "
                             "history under this label, never counted towards the goal")
    parser.add_argument("--fleet-keep-logs", type=Path,
                        help="fleet: copy every server's and node's log here at the end")
    parser.add_argument("--memory-manifests", type=int, default=20_000,
                        help="memory: distinct manifests (and tags, and config blobs) requested")
    parser.add_argument("--report-only", action="store_true",
                        help="measure nothing: regenerate docs/benchmarks.md from the result file")
    args = parser.parse_args()
    if args.report_only:
        from bench import report

        report.write_docs(json.loads((args.out or RESULTS / "latest.json").read_text()))
        return
    require("wrk", "hey", "taskset", "docker-registry", "containerd", "ctr", "skopeo")

    out: Path = args.out or RESULTS / ("quick.json" if args.quick else "latest.json")
    result: Json = json.loads(out.read_text()) if out.exists() else {}
    result["machine"] = machine()
    result["quick"] = args.quick
    started = time.monotonic()
    for name in args.only or [s for s in SECTIONS if not (args.quick and s == "profile")]:
        log(f"{name}: starting")
        section_started = time.monotonic()
        load_before = _loadavg()
        try:
            section = RUNNERS[name](args)
        except Exception as exc:  # a failed section is recorded, the others still run
            traceback.print_exc()
            section = {"error": f"{type(exc).__name__}: {exc}"[:4000]}
        except BaseException as exc:  # pytest.fail (harness) raises an OutcomeException
            if isinstance(exc, KeyboardInterrupt | SystemExit):
                raise
            traceback.print_exc()
            section = {"error": f"{type(exc).__name__}: {exc}"[:4000]}
        section["seconds"] = round(time.monotonic() - section_started, 1)
        # Other work on the machine skews every number: say how busy it was.
        section["loadavg_1min"] = {"before": load_before, "after": _loadavg()}
        section["measured"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
        _keep_history(section, result.get(name, {}), args.fleet_label)
        result[name] = section
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=1, sort_keys=True) + "\n")
        log(f"{name}: done in {section['seconds']:.0f} s")
    shown = out.relative_to(REPO) if out.is_relative_to(REPO) else out
    log(f"all done in {time.monotonic() - started:.0f} s; results in {shown}")
    from bench import report

    print(report.summary(result))
    if args.docs if args.docs is not None else not args.quick:
        report.write_docs(result)
        log("docs/benchmarks.md and docs/benchmarks/*.png regenerated")


if __name__ == "__main__":
    main()
