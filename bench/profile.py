"""Where a gateway worker's time goes: py-spy under load, and cProfile of a cold first request.

py-spy samples the running ``regfront serve`` (only threads holding the GIL) while wrk or hey
drives one workload; the section keeps the frames with the largest inclusive and self shares.
Server CPU per request (``/proc/<pid>/stat`` over a load run) compares regfront's and
registry:2's cost on one core. The cold first request is profiled in-process (a fresh app over
the file store, its start-up warm-up run as the server's lifespan would, the request through
``httpx.ASGITransport``): the share of it spent importing modules shows what a fresh worker
still pays on its first request.
"""

from __future__ import annotations

import cProfile
import json
import pstats
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import httpx

from bench.common import (
    REPO,
    Json,
    cpu_seconds,
    log,
    regfront_cli,
    serving_ceiling,
    serving_regfront,
    serving_registry2,
)
from bench.hotpath import NAME, NS, TAG, WORKLOADS, Image, build_image, check, measure, url_of
from bench.load import hey, wrk

PROFILED = ("blob GET", "manifest HEAD by tag")
TOP = 12


def _py_spy() -> str | None:
    beside = Path(sys.executable).with_name("py-spy")
    return str(beside) if beside.exists() else shutil.which("py-spy")


def _shares(raw: Path) -> Json:
    """Inclusive and self shares of the most sampled frames in py-spy's raw (folded) output."""
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = stack.split(";")
        total += int(count)
        own[frames[-1]] += int(count)
        for frame in set(frames):
            inclusive[frame] += int(count)
    if not total:
        return {"samples": 0, "inclusive": [], "self": []}
    # Frames above the request handler (click, uvicorn's loop) are in every sample: skip them.
    relevant = [(f, n) for f, n in inclusive.most_common() if n < 0.95 * total][:TOP]
    return {"samples": total,
            "inclusive": [[f, round(100 * n / total, 1)] for f, n in relevant],
            "self": [[f, round(100 * n / total, 1)] for f, n in own.most_common(TOP)]}


def sample(work: Path, image: Image, seconds: float) -> list[Json]:
    """A py-spy profile of one worker under each workload in ``PROFILED``."""
    spy = _py_spy()
    if spy is None:
        return [{"error": "py-spy is not installed (the bench extra installs it)"}]
    out = []
    with serving_regfront(work / "root", work) as gateway:
        for workload in (w for w in WORKLOADS if w.name in PROFILED):
            url = url_of("regfront", gateway.url, image, workload)
            check(url, workload.method, 200)
            raw = work / "profile.txt"
            spy_run = subprocess.Popen(
                [spy, "record", "--pid", str(gateway.pid), "--duration", str(round(seconds)),
                 "--rate", "200", "--gil", "--format", "raw", "--output", str(raw)],
                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            try:
                time.sleep(0.5)  # let py-spy attach before the load starts
                loaded = measure(workload, url, 32, seconds - 1, 200)
                _, stderr = spy_run.communicate(timeout=seconds + 30)
            finally:
                if spy_run.poll() is None:
                    spy_run.kill()
                    spy_run.wait()
            entry: Json = {"workload": workload.name, "rps_while_profiled": loaded.rps}
            entry.update(_shares(raw) if raw.exists() else
                         {"error": stderr.decode(errors="replace")[-500:]})
            out.append(entry)
    return out


async def _first_request(root: Path, image: Image) -> Json:
    import gateway.app as gateway_app
    from registry.config import Config

    app = gateway_app.create_app(Config.model_validate({"storage": [{"url": str(root)}]}))
    # What the server's lifespan does before its first request (ASGITransport runs none).
    warm_up = getattr(gateway_app, "warm_up", None)
    started = time.perf_counter()
    if warm_up is not None:
        await warm_up(app.resolver)
    warm_up_ms = (time.perf_counter() - started) * 1e3
    workload = WORKLOADS[0]
    url = url_of("regfront", "", image, workload)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://gateway") as client:
        profiler = cProfile.Profile()
        started = time.perf_counter()
        profiler.enable()
        await client.request(workload.method, url)
        profiler.disable()
        first = time.perf_counter() - started
        started = time.perf_counter()
        await client.request(workload.method, url)
        second = time.perf_counter() - started
    stats = pstats.Stats(profiler)
    entries: dict[tuple[str, int, str], tuple[int, int, float, float, object]]
    entries = stats.stats  # type: ignore[attr-defined]
    imports = max((cumulative for (file, _, function), (_, _, _, cumulative, _) in entries.items()
                   if function == "_find_and_load"), default=0.0)
    top = sorted(((cumulative, f"{function} ({Path(file).name}:{line})")
                  for (file, line, function), (_, _, _, cumulative, _) in entries.items()),
                 reverse=True)
    return {"workload": workload.name, "first_ms": first * 1e3, "second_ms": second * 1e3,
            "warm_up_ms": warm_up_ms if warm_up is not None else None,
            "profiled_imports_ms": imports * 1e3,
            "top_cumulative": [[name, round(t * 1e3, 2)] for t, name in top[:TOP]]}


def cpu_per_request(work: Path, image: Image, seconds: float) -> list[Json]:
    """Server CPU time per request (/proc/<pid>/stat) for each server under the same load."""
    picked = [w for w in WORKLOADS if w.name in ("GET /v2/ (no store)", "manifest HEAD by tag",
                                                 "manifest GET by tag")]
    out = []
    with serving_regfront(work / "root", work) as regfront, \
            serving_registry2(work, root=work / "root") as registry2, \
            serving_ceiling(work) as ceiling:
        for method, tool in (("HEAD", "hey"), ("GET", "wrk")):
            before = cpu_seconds(ceiling.pid)
            loaded = (hey(ceiling.url + "/", 32, seconds, method="HEAD") if tool == "hey" else
                      wrk(ceiling.url + "/", 32, seconds))
            used = cpu_seconds(ceiling.pid) - before
            out.append({"server": "ceiling", "workload": f"hello world {method}",
                        "rps": loaded.rps, "requests": loaded.requests,
                        "cpu_ms_per_request": 1e3 * used / max(1, loaded.requests)})
        for workload in picked:
            for server, running in (("regfront", regfront), ("registry2", registry2)):
                url = url_of(server, running.url, image, workload)
                check(url, workload.method, 200)
                before = cpu_seconds(running.pid)
                loaded = measure(workload, url, 32, seconds, 200)
                used = cpu_seconds(running.pid) - before
                out.append({"server": server, "workload": workload.name, "rps": loaded.rps,
                            "requests": loaded.requests,
                            "cpu_ms_per_request": 1e3 * used / max(1, loaded.requests)})
    return out


def run(*, seconds: float) -> Json:
    """The profile section."""
    with tempfile.TemporaryDirectory(prefix="rf-bench-profile-") as tmp:
        work = Path(tmp)
        image = build_image(work / "oci")
        regfront_cli("import", f"oci:{image.layout}:multi", f"{NS}/{NAME}:{TAG}", "--storage",
                     str(work / "root"))
        log("profile: py-spy under load")
        sampled = sample(work, image, seconds)
        log("profile: CPU per request")
        cpu = cpu_per_request(work, image, seconds / 2)
        # A fresh interpreter: this one has imported everything already.
        code = ("import asyncio, json, sys; from pathlib import Path; "
                "from bench.profile import _first_request; from bench.hotpath import Image; "
                "image = Image(Path(sys.argv[2]), json.loads(sys.argv[3]), 0); "
                "print(json.dumps(asyncio.run(_first_request(Path(sys.argv[1]), image))))")
        result = subprocess.run([sys.executable, "-c", code, str(work / "root"),
                                 str(image.layout), json.dumps(image.refs)],
                                capture_output=True, text=True, timeout=120, check=False, cwd=REPO)
        if result.returncode != 0:
            cold: Json = {"error": result.stderr[-2000:]}
        else:
            cold = json.loads(result.stdout.strip().splitlines()[-1])
    return {"sampled": sampled, "cold_first_request": cold, "cpu_per_request": cpu}
