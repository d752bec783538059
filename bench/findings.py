"""The findings section of docs/benchmarks.md: performance problems the numbers point at, each
with its evidence (read from the result file) and the fix proposed for the code outside bench/.

A finding whose evidence is missing from the result file is left out rather than guessed.
"""

from __future__ import annotations

from collections.abc import Callable

from bench.common import Json


def _warm(result: Json, backend: str, server: str, workload: str, conns: int = 32) -> float | None:
    for row in result.get("hotpath", {}).get("warm", []):
        if (row["backend"], row["server"], row["workload"], row["connections"]) == (
                backend, server, workload, conns):
            return float(row["rps"])
    return None


def _cold(result: Json, backend: str, server: str, workload: str) -> float | None:
    for row in result.get("hotpath", {}).get("cold", []):
        if (row["backend"], row["server"], row["workload"]) == (backend, server, workload):
            return float(row["first_ms"])
    return None


def _frame_share(result: Json, workload: str, needle: str) -> float | None:
    for entry in result.get("profile", {}).get("sampled", []):
        if entry.get("workload") == workload:
            shares = [share for frame, share in entry.get("inclusive", []) if needle in frame]
            return max(shares) if shares else None
    return None


def file_blob_get(result: Json) -> str | None:
    get = _warm(result, "file", "regfront", "blob GET")
    head = _warm(result, "file", "regfront", "blob HEAD")
    if get is None or head is None or get >= 0.5 * head:
        return None
    share = _frame_share(result, "blob GET", "run_sync (anyio/to_thread.py")
    profile = (f" py-spy puts {share:.0f}% of the worker's GIL time under anyio's "
               "`to_thread.run_sync`." if share is not None else "")
    return (f"**File-store blob GET: the worker-thread hop dominates.** At 32 connections "
            f"regfront streams a small blob at {get:,.0f} req/s against {head:,.0f} req/s for "
            f"the blob HEAD.{profile} Each file read is a `to_thread.run_sync` call (anyio's "
            "capacity limiter, a queue hand-off to a worker thread and back). Proposed fix "
            "(registry/store/file.py, gateway/resolve.py): keep blobs under a few KiB (configs) "
            "in memory beside the manifests, so their GETs make no file call at all; for the "
            "rest, one hop per request is the floor without sendfile. This path serves only "
            "the file store; on S3 the GET is a 307.")


def cold_first_request(result: Json) -> str | None:
    file_first = _cold(result, "file", "regfront", "manifest HEAD by tag")
    file_r2 = _cold(result, "file", "registry2", "manifest HEAD by tag")
    s3_first = _cold(result, "s3", "regfront", "manifest HEAD by tag")
    s3_r2 = _cold(result, "s3", "registry2", "manifest HEAD by tag")
    if file_first is None or (file_first < 5 and (s3_first is None or s3_first < 50)):
        return None
    cold = result.get("profile", {}).get("cold_first_request", {})
    imports = (f" In-process under cProfile, {cold['profiled_imports_ms']:.0f} ms of a "
               f"{cold['first_ms']:.0f} ms first request is spent importing modules (anyio "
               "imports its asyncio backend at the first `to_thread.run_sync`)."
               if "profiled_imports_ms" in cold else "")
    s3 = (f" On S3 the first answer takes {s3_first:.0f} ms (registry:2: {s3_r2:.0f} ms): "
          "`S3Store` creates its aioboto3 session and client (botocore loads its service "
          "model) on the first store call." if s3_first is not None and s3_r2 is not None
          else "")
    return (f"**A fresh worker's first request pays one-time set-up.** The first manifest HEAD "
            f"on the file store takes {file_first:.0f} ms (registry:2: {file_r2 or 0:.1f} ms), "
            f"the second well under a millisecond.{imports}{s3} Proposed fix "
            "(gateway/app.py lifespan, registry/store): warm up before serving - one "
            "`to_thread.run_sync` no-op and an `open()` on each store that creates the S3 "
            "client - so no request pays it. Cold start (launch to first answer) does not "
            "change much, since the first poll pays it either way; what goes is the latency "
            "spike of every new worker's first requests, e.g. when autoscaling.")


def cold_store_calls(result: Json) -> str | None:
    rows = [r for r in result.get("hotpath", {}).get("store_calls", []) if r["cold_reads"] > 2]
    if not rows:
        return None
    listed = "; ".join(f"{r['backend']} {r['workload']}: "
                       + ", ".join(f"{k} {v}" for k, v in sorted(r["cold"].items()))
                       for r in rows)
    return (f"**Cold requests over two store calls:** {listed}. On the file store the `read` "
            "is the transfer of the blob itself (no redirect there), after a `get` of the "
            "repository link and a `size`. Proposed fix (gateway/resolve.py, "
            "registry/store/file.py): let a store's `read` report the object's size (an "
            "`fstat` of the opened file) so a cold GET needs no separate `size`: two calls.")


def pulls(result: Json) -> str | None:
    rows = [r for r in result.get("pulls", {}).get("rows", []) if r.get("ratio")]
    slow = [r for r in rows if r["ratio"] > 1.10]
    if not rows:
        return None
    if not slow:
        return ("**Full pulls:** every pull through regfront was within 10% of the direct "
                "pull (table above).")
    listed = "; ".join(f"{r['client']} {r['image']} on {r['backend']} {r['ratio']:.2f}x "
                       f"({r['regfront_s']:.2f} s vs {r['direct_s']:.2f} s)" for r in slow)
    return (f"**Full pulls slower than direct by more than 10%:** {listed}. On the file "
            "store regfront streams every byte through its single worker (1 MiB chunks, a "
            "thread hop each); on S3 both sides redirect to moto, so the difference there is "
            "the gateway's own answers (manifest, 307s) and noise. Small images finish in "
            "tenths of a second, where one extra round trip or a busy machine shows as a large "
            "ratio; the MB/s column is the better guide for the large ones.")


def registry2_cost(result: Json) -> str | None:
    base = _warm(result, "file", "registry2", "GET /v2/ (no store)")
    head = _warm(result, "file", "registry2", "manifest HEAD by tag")
    if base is None or head is None:
        return None
    cpu = {(r["server"], r["workload"]): r["cpu_ms_per_request"]
           for r in result.get("profile", {}).get("cpu_per_request", [])}
    per_request = ""
    if ("registry2", "GET /v2/ (no store)") in cpu and ("regfront", "manifest HEAD by tag") in cpu:
        per_request = (f" It spends {cpu[('registry2', 'GET /v2/ (no store)')]:.2f} ms of CPU "
                       "per `GET /v2/` and "
                       f"{cpu.get(('registry2', 'manifest HEAD by tag'), float('nan')):.2f} ms "
                       "per manifest HEAD; regfront "
                       f"{cpu[('regfront', 'manifest HEAD by tag')]:.3f} ms per manifest HEAD.")
    return (f"**registry:2 is slow per request on this build, before any storage:** "
            f"`GET /v2/` (no storage call) answers {base:,.0f} req/s on one core, its manifest "
            f"HEAD {head:,.0f} req/s.{per_request} The 10x targets over registry:2 are "
            "measured against this: Debian's 2.8.2 build with its access log off and its "
            "blob-descriptor cache on. A newer distribution (3.x) may do better; none is "
            "packaged here.")


def machine_load(result: Json) -> str | None:
    loads = {name: section["loadavg_1min"] for name, section in result.items()
             if isinstance(section, dict) and "loadavg_1min" in section}
    if not loads:
        return None
    listed = ", ".join(f"{name} {v['before']:.1f} -> {v['after']:.1f}"
                       for name, v in loads.items())
    spread = ""
    ceilings = [r for r in result.get("hotpath", {}).get("warm", []) if r["server"] == "ceiling"]
    if ceilings:
        widest = max(ceilings, key=lambda r: max(x["rps"] for x in r["runs"])
                     / max(1.0, min(x["rps"] for x in r["runs"])))
        runs = sorted(x["rps"] for x in widest["runs"])
        spread = (f" The same hello-world ceiling ({widest['tool']}, "
                  f"{widest['connections']} connections) measured "
                  + ", ".join(f"{v:,.0f}" for v in runs) + " req/s in its rounds.")
    return ("**Other work shared the machine.** The 1-minute load average at the start and end "
            f"of each section: {listed} (2 cores; the fleet's own 20 containerd nodes and 60 "
            "pulls raise it by themselves). Other sessions' test suites ran during some "
            f"sections; alternation and medians damp that, but not entirely.{spread} Read "
            "ratios near a target's threshold with their run lists in "
            "bench/results/latest.json.")


def hot_path_gap(result: Json) -> str | None:
    # The file store's blob GET streams bytes through a worker thread: file_blob_get's finding.
    rows = [r for r in result.get("hotpath", {}).get("ratios", [])
            if r["connections"] == 32 and r["vs_ceiling"] < 0.5 and r["backend"] != "-"
            and "GET /v2/" not in r["workload"]
            and (r["backend"], r["workload"]) != ("file", "blob GET")]
    if not rows:
        return None
    listed = "; ".join(f"{r['backend']} {r['workload']} {r['vs_ceiling']:.2f}x" for r in rows)
    cpu = {(r["server"], r["workload"]): r["cpu_ms_per_request"]
           for r in result.get("profile", {}).get("cpu_per_request", [])}
    per_request = ""
    if ("ceiling", "hello world HEAD") in cpu and ("regfront", "manifest HEAD by tag") in cpu:
        per_request = (f" Measured CPU per request at 32 connections: regfront "
                       f"{cpu[('regfront', 'manifest HEAD by tag')] * 1e3:.0f} us per manifest "
                       f"HEAD, the hello-world app {cpu[('ceiling', 'hello world HEAD')] * 1e3:.0f}"
                       " us per HEAD.")
    share = _frame_share(result, "manifest HEAD by tag", "get_manifest (gateway/manifests.py:19)")
    resolve = (f" In the manifest HEAD profile, resolving the reference (query, name, tag "
               f"grammar, two cache lookups) is {share:.0f}% of the worker's time; uvicorn's "
               "own send and parse, which the ceiling pays too, most of the rest."
               if share is not None else "")
    return (f"**Warm hot path below half the ASGI ceiling:** {listed} at 32 connections."
            f"{per_request}{resolve} What remains is Python per request: the dispatcher "
            "(metrics counters, histogram, the send wrapper), repository and reference "
            "parsing, TTL-cache lookups through several awaited coroutines, and header "
            "assembly. Repeated manifest requests are answered whole from warm answers "
            "(gateway/answers.py); proposed for the rest (gateway/): the same for blob HEADs "
            "and 307s (a finished answer per URL, held as long as the blob's size and "
            "pre-signed URL are), and `proxy_headers=False` in `regfront serve` unless "
            "`forwarded_allow_ips` is configured, dropping uvicorn's ProxyHeadersMiddleware "
            "from every request.")


def access_log(result: Json) -> str | None:
    share = _frame_share(result, "manifest HEAD by tag", "Logger.info (logging/__init__.py")
    if share is None or share < 5:
        return None
    return (f"**uvicorn's access log is written for every request.** In the manifest HEAD "
            f"profile {share:.0f}% of the worker's GIL time is under `Logger.info`, called from "
            "uvicorn's `RequestResponseCycle.send`: `regfront serve` passes "
            "`access_log=False`, but `registry.logs.configure` (run in the worker after "
            "uvicorn set up logging) resets the `uvicorn.access` logger to propagate to the "
            "root handler, so uvicorn's `hasHandlers()` check turns its access log back on "
            "(a JSON line per request on stderr). Proposed fix (registry/logs.py): leave "
            "`uvicorn.access` alone - or set `propagate = False` on it - unless an access log "
            "was asked for; the sampled `regfront.access` log is the one to keep.")


def _fleet_runs(result: Json) -> tuple[list[Json], list[Json]]:
    """The fleet's recorded runs at the goal's size: the gateway's own, and references."""
    section = result.get("fleet", {})
    runs = [r for r in section.get("history", []) if (r["store"], r["nodes"], r["images"]) ==
            ("s3", 20, 3)]
    return [r for r in runs if not r.get("label")], [r for r in runs if r.get("label")]


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in counts.items()) or "none"


def fleet_outcome(result: Json) -> str | None:
    section = result.get("fleet", {})
    own, _ = _fleet_runs(result)
    if "summary" not in section or not own:
        return None
    fallen = [r for r in own if r["egress_x"] > 1.02 or r["5xx"] or r["fallbacks"]]
    walls = ", ".join(f"{r['wall_ratio']:.2f}x" for r in own)
    if not fallen:
        head = (f"**Fleet on S3: no pull fell back to the upstream in {len(own)} recorded "
                f"run(s).** The upstream's own access log shows "
                f"{sum(r['upstream_blob_gets'] for r in own)} blob GETs during the pulls "
                "through regfront (every round, the warm-up's included); its egress was the "
                "sync's alone, at worst "
                f"{max(r['egress_x'] for r in own):.4f}x the unique bytes; the gateway's "
                "/metrics counted no 5xx and no fallback. ")
    else:
        this = section["regfront"]
        blobs: dict[str, int] = {}
        for run in section["runs"]:
            if run["side"] == "regfront":
                for digest, seen in run["upstream"]["blobs"].items():
                    blobs[digest] = blobs.get(digest, 0) + seen["gets"]
        head = (f"**Fleet on S3: pulls fell back to the upstream in {len(fallen)} of "
                f"{len(own)} run(s).** " + "; ".join(
                    f"{r['measured']}: {r['egress_x']:.2f}x, {r['upstream_blob_gets']} blob "
                    f"GETs at the upstream, 5xx {_counts(r['5xx'])}, fallbacks "
                    f"{_counts(r['fallbacks'])}" for r in fallen) +
                ". In the last run: blobs the upstream sent "
                + (", ".join(f"{d[:19]} x{n}" for d, n in sorted(blobs.items())) or "none")
                + f"; store calls that failed {_counts(this.get('store_calls_failed', {}))}; "
                f"the bucket's answers {_counts(this.get('bucket_answers', {}))}. ")
    head += (f"Wall time through regfront against direct pulls, run by run: {walls} "
             "(medians of the measured rounds of each run).")
    through, direct = section["regfront"], section["direct"]
    if "cores_busy" not in through:
        return head
    # The runs measured as this one was (the same rounds): earlier settings are on record only.
    alike = [r for r in own if r["rounds"] == section["rounds"]]
    missed = [r for r in alike if r["wall_ratio"] > 1.0]
    loads = [r["loadavg_1min"][k] for r in alike for k in ("before", "after")]
    walls_each = sorted(through["walls_s"] + direct["walls_s"])
    return head + (
        f" The wall time is set by core 1, where every containerd and ctr runs: in the last "
        f"run it was {through['cores_busy'].get('1', 0):.0%} busy through regfront and "
        f"{direct['cores_busy'].get('1', 0):.0%} direct (median round, whoever ran on it), "
        f"while core 0 - the gateway, moto and the relay, or registry:2 alone - was "
        f"{through['cores_busy'].get('0', 0):.0%} and {direct['cores_busy'].get('0', 0):.0%} "
        f"busy; the nodes spent about the same CPU either way (containerd "
        f"{through['cpu_s']['containerd']:.1f} s and ctr {through['cpu_s']['ctr']:.1f} s a "
        f"round through regfront, {direct['cpu_s']['containerd']:.1f} s and "
        f"{direct['cpu_s']['ctr']:.1f} s direct). Its rounds took {walls_each[0]:.1f}-"
        f"{walls_each[-1]:.1f} s, either side, and other sessions' work moved the load average "
        f"between {min(loads):.0f} and {max(loads):.0f} during the {len(alike)} runs of "
        f"{section['rounds']} rounds: a verdict on wall time within a few percent is inside "
        "this machine's noise"
        + (", so the runs that missed it (" + ", ".join(
            f"{r['wall_ratio']:.2f}x at load {r['loadavg_1min']['before']:.0f} -> "
            f"{r['loadavg_1min']['after']:.0f}" for r in missed)
           + ") say no more than the ones that met it." if missed else ".")
        + (" The first runs listed had two rounds a side and no warm-up pair, so their "
           "first round - each fresh containerd's first pull - always fell to regfront."
           if len(alike) < len(own) else ""))


def fleet_stalls(result: Json) -> str | None:
    section = result.get("fleet", {})
    through = section.get("regfront", {})
    blobs = through.get("answer_seconds", {}).get("blobs")
    if not blobs or not blobs["over_1s"]:
        return None
    rounds = [r for r in section["runs"] if r["side"] == "regfront"]

    def slow(run: Json) -> int:
        return int(run["gateway"]["answer_seconds"].get("blobs", {}).get("over_1s", 0))

    per_round = "; ".join(
        f"{r['wall_s']:.0f} s wall, {slow(r)} blob answers over 1 s, store calls timed out "
        f"{r['gateway']['store_calls_failed'].get('read timeout', 0)}, core 1 "
        f"{r['cores_busy'].get('1', 0):.0%} busy, containerd {r['cpu_s']['containerd']:.0f} "
        "CPU s" for r in rounds)
    calls = through.get("store_call_seconds", {})
    slow_calls = sum(h["over_1s"] for h in calls.values())
    moto = through.get("cpu_s", {}).get("moto")
    return (
        f"**A cold gateway's 307s wait on a busy bucket.** Over the last run's regfront rounds "
        f"{blobs['over_1s']} of {blobs['count']} blob answers took over 1 s "
        f"({blobs['over_2.5s']} over 2.5 s), and {slow_calls} store calls over 1 s; every "
        f"round is a fresh gateway, so each blob's first request reads its link and its size "
        f"from the bucket in turn, and every node asking for that blob waits on the same "
        f"lookup. Round by round: {per_round}. The slow answers come from moto: one Python "
        f"process (werkzeug, a thread per connection) that is at the same time streaming "
        f"~1.4 GB to 60 pulls, on a machine that others' work loaded too, answers a small "
        f"read in seconds (its CPU is small - {moto or 0:.1f} s a round - the wait is its "
        "GIL and the shared cores); the gateway retries each timed-out read within "
        "`gateway.store_deadline`, so none became a 5xx. A real bucket answers a HEAD in "
        "tens of milliseconds whatever else it serves. Proposed (gateway/resolve.py, "
        "manifests.py): when a manifest is served cold, look up the links and sizes of the "
        "blobs it names in the background, so the blob GETs that follow within milliseconds "
        "find them warm - the lookups then run before the byte storm starts, and a new "
        "gateway's first pulls wait two bucket round trips less per blob.")


def fleet_correction(result: Json) -> str | None:
    if "fleet" not in result:
        return None
    _, references = _fleet_runs(result)
    text = (
        "**Correction: an earlier version of this page concluded that the redirects worked, "
        "from a count that could not see a failure.** Its fleet on S3 (measured 2026-11-28, "
        "moto on the nodes' core) had the upstream send 3.86x the unique bytes - 20 layer "
        "blobs of 10 MB came from the upstream during the pulls - and the page said \"the "
        "gateway logged no store failure during the pulls: the redirects worked\". That count "
        "read `regfront_fallbacks_total{reason=\"store_*\"}`, which the gateway of the day "
        "did not have: it was zero whatever happened. The fleet section now counts every "
        "outcome from the party that saw it (`bench/signals.py`).")
    if not references:
        return text
    text += " Reference runs with these signals (one round of each side): " + "; ".join(
        f"{r['label']}: {r['egress_x']:.2f}x the unique bytes, {r['upstream_blob_gets']} "
        f"blob GETs at the upstream, the gateway's 5xx {_counts(r['5xx'])}, fallbacks "
        f"{_counts(r['fallbacks'])}" for r in references) + "."
    starved = [r for r in references if r.get("bucket_cpu") == "1"]
    if any(r["5xx"] for r in starved):
        text += (
            " So the fallbacks were the gateway's own 503s, and they come from starving the "
            "bucket: with moto on the core that runs the 20 containerd and 60 ctr (and, on "
            "this shared machine, other work), its small reads took longer than the gateway "
            "waits. The gateway before issue 14 marked its only store down after a few "
            "2-second timeouts and answered 503 to everything; this gateway retries until "
            "`gateway.store_deadline` (20 s) and still answered 503 (reason `store_timeout`) "
            "for the blobs whose link or size lookup found no answer by then. With moto on "
            "its own core, as registry:2 has for the direct pulls (the default here), no run "
            "fell back. Proposed (gateway/stores.py), for buckets that slow: when no other "
            "store can stand in, let a timed-out attempt run on while a second one is tried, "
            "instead of cancelling it and queueing a fresh request behind the same backlog - "
            "under an overloaded bucket each retry re-sends work it was about to finish.")
    return text


FINDINGS: list[Callable[[Json], str | None]] = [
    hot_path_gap, access_log, fleet_outcome, fleet_stalls, fleet_correction, file_blob_get,
    cold_first_request, cold_store_calls, pulls, registry2_cost, machine_load,
]


def render(result: Json) -> str:
    found = [text for check in FINDINGS if (text := check(result))]
    return "\n\n".join(f"{i}. {text}" for i, text in enumerate(found, 1)) or "None recorded."
