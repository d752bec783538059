"""Hot path: one regfront worker against registry:2 on one core, on the file store and on S3.

The same image (``tests.images.sample_layout``'s multi-arch ``multi``) is imported once per
backend; regfront and registry:2 (access log off, in-memory blob-descriptor cache, GOMAXPROCS=1)
serve the same objects: a filesystem root, or a bucket on moto's S3 server with redirects on.
Servers run on core 0 (``taskset``), the load generator on core 1; workloads and servers
alternate within each round and the medians of the rounds are reported. A hello-world ASGI app
under the same uvicorn settings is the ceiling for one Python worker.

Cold: each server is started afresh and its first and second answers to one workload are
timed. Store calls per request are counted in-process over ``tests.conftest.CountingStore``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

from bench.common import (
    ACCEPT,
    S3_ENV,
    Json,
    Running,
    log,
    median,
    moto_url,
    regfront_cli,
    registry2_s3,
    request,
    serving_ceiling,
    serving_moto,
    serving_regfront,
    serving_registry2,
)
from bench.load import Sample, hey, wrk
from tests.images import sample_layout

NAME = "library/demo"
NS = "docker.io"
TAG = "1"
BACKENDS = ("file", "s3")
SERVERS = ("regfront", "registry2")


@dataclass(frozen=True)
class Workload:
    """One request shape: what it asks for, with which tool, and what it must answer."""

    name: str
    tool: str  # wrk (GET) or hey (HEAD)
    kind: str  # manifests or blobs
    target: str  # tag, index digest, child digest or layer digest key
    s3_status: int = 200

    @property
    def method(self) -> str:
        return "HEAD" if self.tool == "hey" else "GET"


WORKLOADS = (
    Workload("manifest HEAD by tag", "hey", "manifests", "tag"),
    Workload("manifest GET by tag", "wrk", "manifests", "tag"),
    Workload("manifest GET by digest", "wrk", "manifests", "child"),
    Workload("blob HEAD", "hey", "blobs", "layer"),
    Workload("blob GET", "wrk", "blobs", "layer", s3_status=307),
    # No store involved: each server's own per-request cost (regfront: through Starlette).
    Workload("GET /v2/ (no store)", "wrk", "base", "base"),
)


@dataclass(frozen=True)
class Image:
    layout: Path
    refs: dict[str, str]  # tag, child, layer -> reference
    layer_size: int


def build_image(root: Path) -> Image:
    layout = sample_layout(root)
    index_digest = next(r["digest"] for r in layout.refs
                        if r["annotations"]["org.opencontainers.image.ref.name"] == "multi")
    blobs = layout.root / "blobs" / "sha256"
    index = json.loads((blobs / index_digest[7:]).read_bytes())
    child = index["manifests"][0]["digest"]
    layer = json.loads((blobs / child[7:]).read_bytes())["layers"][-1]
    return Image(layout.root, {"tag": TAG, "child": child, "layer": layer["digest"], "base": ""},
                 layer["size"])


def url_of(server: str, base: str, image: Image, workload: Workload) -> str:
    """regfront is asked as containerd asks a mirror (``?ns=``); registry:2 by the full name."""
    if workload.kind == "base":
        return f"{base}/v2/"
    reference = image.refs[workload.target]
    if server == "regfront":
        return f"{base}/v2/{NAME}/{workload.kind}/{reference}?ns={NS}"
    return f"{base}/v2/{NS}/{NAME}/{workload.kind}/{reference}"


def expected_status(backend: str, server: str, workload: Workload) -> int:
    """registry:2 on S3 redirects blob HEADs too (to a HEAD-signed URL); regfront answers them."""
    if backend != "s3" or workload.kind == "base":
        return 200
    if server == "registry2" and workload.kind == "blobs":
        return 307
    return workload.s3_status


def measure(workload: Workload, url: str, connections: int, seconds: float,
            status: int) -> Sample:
    if workload.tool == "hey":
        return hey(url, connections, seconds, method="HEAD", status=status)
    return wrk(url, connections, seconds)


def check(url: str, method: str, status: int) -> None:
    got = request(method, url, {"Accept": ACCEPT})[0]
    if got != status:
        raise RuntimeError(f"{method} {url} answered {got}, expected {status}")


@dataclass(frozen=True)
class Servers:
    """(backend, server) -> running server, the ceiling as ("-", "ceiling"); moto's endpoint."""

    running: dict[tuple[str, str], Running]
    moto: str | None


@contextlib.contextmanager
def servers(work: Path, image: Image, with_s3: bool) -> Iterator[Servers]:
    """Every server, each on its store, plus the ceiling; all stopped when the block ends."""
    root = work / "root"
    moto_endpoint: str | None = None
    image_ref = f"oci:{image.layout}:multi"
    regfront_cli("import", image_ref, f"{NS}/{NAME}:{TAG}", "--storage", str(root))
    with contextlib.ExitStack() as stack:
        running = {("file", "regfront"): stack.enter_context(serving_regfront(root, work)),
                   ("file", "registry2"): stack.enter_context(serving_registry2(work, root=root))}
        if with_s3:
            moto = stack.enter_context(serving_moto(work))
            moto_endpoint = moto.url
            regfront_cli("import", image_ref, f"{NS}/{NAME}:{TAG}", "--storage",
                         moto_url(moto.url, "bench"), s3=True)
            running[("s3", "regfront")] = stack.enter_context(
                serving_regfront(moto_url(moto.url, "bench"), work))
            running[("s3", "registry2")] = stack.enter_context(
                serving_registry2(work, s3=registry2_s3(moto.url, "bench")))
        running[("-", "ceiling")] = stack.enter_context(serving_ceiling(work))
        yield Servers(running, moto_endpoint)


def warm(running: dict[tuple[str, str], Running], image: Image, backends: list[str],
         connections: list[int], rounds: int, seconds: float) -> list[Json]:
    """Throughput and latency with warm caches: medians of ``rounds`` alternated runs."""
    ceiling = running[("-", "ceiling")].url + "/"
    jobs: list[tuple[str, str, Workload | None, str, int]] = []
    for backend in backends:
        for workload in WORKLOADS:
            for server in SERVERS:
                url = url_of(server, running[(backend, server)].url, image, workload)
                status = expected_status(backend, server, workload)
                check(url, workload.method, status)  # warms the caches, and checks the answer
                jobs.append((backend, server, workload, url, status))
    jobs += [("-", "ceiling", None, "GET", 200), ("-", "ceiling", None, "HEAD", 200)]
    results: list[Json] = []
    for conns in connections:
        samples: dict[int, list[Sample]] = {i: [] for i in range(len(jobs))}
        for round_ in range(rounds):
            log(f"hot path: c={conns} round {round_ + 1}/{rounds} ({len(jobs)} runs "
                f"of {seconds:g} s)")
            order = list(range(len(jobs)))
            if round_ % 2:
                order.reverse()  # alternate: no job always runs right after the same one
            for i in order:
                backend, server, job, url, status = jobs[i]
                if job is None:  # the ceiling, with the tool its comparisons use
                    samples[i].append(wrk(ceiling, conns, seconds) if url == "GET" else
                                      hey(ceiling, conns, seconds, method="HEAD"))
                else:
                    samples[i].append(measure(job, url, conns, seconds, status))
        for i, (backend, server, job, url, status) in enumerate(jobs):
            runs = samples[i]
            results.append({
                "backend": backend, "server": server, "connections": conns,
                "workload": job.name if job else f"hello world {url}",
                "tool": job.tool if job else ("wrk" if url == "GET" else "hey"),
                "status": status,
                "rps": median([s.rps for s in runs]), "p50_ms": median([s.p50 for s in runs]) * 1e3,
                "p99_ms": median([s.p99 for s in runs]) * 1e3,
                "runs": [s.to_json() for s in runs],
            })
    return results


def ratios(results: list[Json]) -> list[Json]:
    """regfront / registry:2 and regfront / ceiling (same tool), per backend, workload, c."""
    index = {(r["backend"], r["server"], r["workload"], r["connections"]): r for r in results}
    ceiling = {(r["tool"], r["connections"]): r["rps"] for r in results
               if r["server"] == "ceiling"}
    out = []
    for r in results:
        if r["server"] != "regfront":
            continue
        other = index[(r["backend"], "registry2", r["workload"], r["connections"])]
        out.append({"backend": r["backend"], "workload": r["workload"],
                    "connections": r["connections"], "regfront_rps": r["rps"],
                    "registry2_rps": other["rps"],
                    "vs_registry2": r["rps"] / other["rps"] if other["rps"] else None,
                    "ceiling_rps": ceiling[(r["tool"], r["connections"])],
                    "vs_ceiling": r["rps"] / ceiling[(r["tool"], r["connections"])]})
    return out


def first_requests(work: Path, image: Image, backends: list[str], reps: int,
                   moto: str | None) -> list[Json]:
    """Cold: a fresh server per rep and workload; its first and second answers, timed."""
    root = work / "root"
    stores = {"file": root, "s3": moto_url(moto, "bench") if moto else None}
    out = []
    for backend in backends:
        for workload in WORKLOADS:
            for server in SERVERS:
                firsts: list[float] = []
                seconds: list[float] = []
                for _ in range(reps):
                    if server == "regfront":
                        store = stores[backend]
                        assert store is not None
                        serving = serving_regfront(store, work)
                    elif backend == "file":
                        serving = serving_registry2(work, root=root)
                    else:
                        assert moto is not None
                        serving = serving_registry2(work, s3=registry2_s3(moto, "bench"))
                    with serving as running:
                        url = url_of(server, running.url, image, workload)
                        for times in (firsts, seconds):
                            started = time.perf_counter()
                            check(url, workload.method, expected_status(backend, server, workload))
                            times.append(time.perf_counter() - started)
                out.append({"backend": backend, "workload": workload.name, "server": server,
                            "first_ms": median(firsts) * 1e3, "second_ms": median(seconds) * 1e3,
                            "reps": reps})
        log(f"hot path: cold first requests on {backend} done")
    return out


async def store_calls(image: Image, store_url: str, s3: bool) -> list[Json]:
    """Store calls of the first (cold) and second (warm) request of each workload, in-process."""
    from gateway.app import create_app
    from registry.config import Config
    from registry.store import open_store
    from tests.conftest import CountingPresigner, CountingStore

    out = []
    for workload in WORKLOADS:
        inner = open_store(store_url)
        counting = CountingPresigner(inner) if s3 else CountingStore(inner)
        config = Config.model_validate({"storage": [{"url": store_url}]})
        app = create_app(config, stores=[counting])
        transport = httpx.ASGITransport(app=app)
        counts = []
        try:
            async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:
                for _ in range(2):
                    counting.reset()
                    response = await client.request(
                        workload.method, url_of("regfront", "", image, workload),
                        headers={"Accept": ACCEPT})
                    expected = expected_status("s3" if s3 else "file", "regfront", workload)
                    assert response.status_code == expected, response.text
                    counts.append(dict(counting.calls))
        finally:
            await counting.close()
        out.append({"backend": "s3" if s3 else "file", "workload": workload.name,
                    "cold_reads": sum(v for k, v in counts[0].items() if k != "presign_get"),
                    "warm_reads": sum(v for k, v in counts[1].items() if k != "presign_get"),
                    "cold": counts[0], "warm": counts[1]})
    return out


def run(*, quick: bool, seconds: float, rounds: int, connections: list[int], cold_reps: int,
        with_s3: bool = True) -> Json:
    """The whole hot-path benchmark; its JSON section."""
    backends = list(BACKENDS) if with_s3 else ["file"]
    with tempfile.TemporaryDirectory(prefix="rf-bench-hot-") as tmp:
        work = Path(tmp)
        image = build_image(work / "oci")
        with servers(work, image, with_s3) as up:
            log("hot path: servers up")
            results = warm(up.running, image, backends, connections, rounds, seconds)
            cold: list[Json] = []
            calls = asyncio.run(store_calls(image, str(work / "root"), s3=False))
            if up.moto is not None:
                os.environ.update(S3_ENV)  # the in-process S3 store reads credentials from here
                os.environ.pop("AWS_CA_BUNDLE", None)
                calls += asyncio.run(store_calls(image, moto_url(up.moto, "bench"), s3=True))
            if cold_reps:
                cold = first_requests(work, image, ["file"] if quick else backends, cold_reps,
                                      up.moto)
    return {"settings": {"seconds": seconds, "rounds": rounds, "connections": connections,
                         "cold_reps": cold_reps, "layer_bytes": image.layer_size,
                         "image": "sample_layout multi (index of 2 images, 2 small layers each)"},
            "warm": results, "ratios": ratios(results), "cold": cold, "store_calls": calls}

