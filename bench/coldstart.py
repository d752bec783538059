"""Cold start and memory of one gateway worker.

Cold start: ``regfront serve`` launched (pinned to core 0) on a file store, then a manifest HEAD
polled every 10 ms until it answers 200; the time from launch to that answer, median of N
launches (registry:2 timed the same way beside it). Memory: a file store filled cheaply with
many distinct small manifests (``registry.writer``: a config blob, a manifest and a tag each),
then a long wrk run cycling through every tag, digest and blob URL; the worker's RSS before,
after the first pass, and at the end.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from bench.common import (
    ACCEPT,
    SERVER_CPU,
    Json,
    log,
    median,
    moto_url,
    pinned,
    regfront_argv,
    regfront_cli,
    regfront_env,
    registry2_s3,
    request,
    rss_bytes,
    serving_moto,
    serving_regfront,
)
from bench.load import wrk
from tests.e2e.harness import LOOPBACK, clean_env, free_port
from tests.images import sample_layout

NAME = "library/demo"
MEMORY_NAME = "library/mem"
LUA = """
local paths = {}
for line in io.lines(os.getenv("BENCH_PATHS")) do paths[#paths + 1] = line end
local i = tonumber(os.getenv("BENCH_START")) or 0
request = function()
  i = i % #paths + 1
  return wrk.format("GET", paths[i])
end
"""


@contextlib.contextmanager
def _launched(argv: list[str], env: dict[str, str], log_path: Path) -> Iterator[float]:
    """Start ``argv`` in its own process group; yields the launch time; always killed after."""
    with log_path.open("wb") as out:
        started = time.perf_counter()
        process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out,
                                   stderr=subprocess.STDOUT, env=env, start_new_session=True)
    try:
        yield started
    finally:
        for sig in (signal.SIGTERM, signal.SIGKILL):
            if process.poll() is not None:
                break
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, sig)
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=10)


def _first_answer(url: str, started: float, timeout: float = 30.0) -> float:
    while time.perf_counter() - started < timeout:
        with contextlib.suppress(OSError):
            if request("HEAD", url, {"Accept": ACCEPT}, timeout=2.0)[0] == 200:
                return time.perf_counter() - started
        time.sleep(0.01)
    raise RuntimeError(f"{url}: no 200 within {timeout} s of launch")


def start_times(work: Path, store: str, registry2_storage: Json, starts: int
                ) -> tuple[list[float], list[float]]:
    """Launch-to-first-200 seconds for regfront and for registry:2 on one store, alternated."""
    import yaml

    s3 = store.startswith("s3://")
    regfront, registry2 = [], []
    for _ in range(starts):
        port = free_port()
        argv = pinned(SERVER_CPU, regfront_argv(store, port))
        with _launched(argv, regfront_env(s3), work / "regfront-start.log") as started:
            regfront.append(_first_answer(
                f"http://{LOOPBACK}:{port}/v2/{NAME}/manifests/1?ns=docker.io", started))
        port = free_port()
        config = work / "registry2-start.yml"
        config.write_text(yaml.safe_dump({
            "version": "0.1", "log": {"accesslog": {"disabled": True}, "level": "error"},
            "storage": {**registry2_storage, "cache": {"blobdescriptor": "inmemory"},
                        "maintenance": {"uploadpurging": {"enabled": False}}},
            "http": {"addr": f"{LOOPBACK}:{port}", "secret": "regfront-bench"}}))
        env = clean_env("REGISTRY_", "GOMAXPROCS", "AWS_CA_BUNDLE", GOMAXPROCS="1")
        with _launched(pinned(SERVER_CPU, ["docker-registry", "serve", str(config)]), env,
                       work / "registry2-start.log") as started:
            registry2.append(_first_answer(
                f"http://{LOOPBACK}:{port}/v2/docker.io/{NAME}/manifests/1", started))
    return regfront, registry2


async def fill(root: Path, count: int) -> list[str]:
    """``count`` distinct manifests in ``docker.io/library/mem``, each tagged, each with its own
    config blob; returns the request paths (tag, digest, config blob) for them all."""
    from registry import layout
    from registry.digest import Digest
    from registry.mediatypes import OCI_MANIFEST
    from registry.store.file import FileStore
    from registry.writer import link_blob, put_manifest, put_tag

    store = FileStore(str(root))
    name = f"docker.io/{MEMORY_NAME}"
    layer = {"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
             "digest": "sha256:" + "0" * 64, "size": 0}
    paths: list[str] = []

    async def one(i: int) -> None:
        config = json.dumps({"architecture": "amd64", "os": "linux", "n": i,
                             "rootfs": {"type": "layers", "diff_ids": []}}).encode()
        config_digest = Digest.from_bytes(config)
        await store.put(layout.blob_data(config_digest), config)
        await link_blob(store, name, config_digest)
        manifest = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                               "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                                          "digest": str(config_digest), "size": len(config)},
                               "layers": [layer]}).encode()
        digest = await put_manifest(store, name, manifest)
        await put_tag(store, name, f"t{i}", digest)
        query = "?ns=docker.io"
        paths.extend([f"/v2/{MEMORY_NAME}/manifests/t{i}{query}",
                      f"/v2/{MEMORY_NAME}/manifests/{digest}{query}",
                      f"/v2/{MEMORY_NAME}/blobs/{config_digest}{query}"])

    for start in range(0, count, 200):
        await asyncio.gather(*(one(i) for i in range(start, min(count, start + 200))))
    await store.close()
    return paths


def memory(work: Path, root: Path, manifests: int, requests: int, seconds: float) -> Json:
    """RSS of one worker before, after a first pass over every URL, and after ``requests``."""
    started = time.monotonic()
    paths = asyncio.run(fill(root, manifests))
    log(f"memory: {manifests:,} manifests written in {time.monotonic() - started:.0f} s")
    paths_file, script = work / "paths.txt", work / "cycle.lua"
    paths_file.write_text("\n".join(paths) + "\n")
    script.write_text(LUA)
    done, rss_warm, runs = 0, 0, 0
    deadline = time.monotonic() + max(60.0, 4 * seconds)
    with serving_regfront(root, work) as gateway:
        rss_before = rss_bytes(gateway.pid)
        while done < requests and time.monotonic() < deadline:
            os.environ["BENCH_PATHS"], os.environ["BENCH_START"] = str(paths_file), str(done)
            try:
                sample = wrk(gateway.url + "/", 32, seconds / 4, script=str(script))
            finally:
                os.environ.pop("BENCH_PATHS", None)
                os.environ.pop("BENCH_START", None)
            done += sample.requests
            runs += 1
            if not rss_warm and done >= len(paths):
                rss_warm = rss_bytes(gateway.pid)
        rss_after = rss_bytes(gateway.pid)
    return {"manifests": manifests, "distinct_urls": len(paths), "requests": done,
            "wrk_runs": runs, "rss_before": rss_before, "rss_warm": rss_warm or rss_after,
            "rss_after": rss_after}


def run(*, starts: int, manifests: int, requests: int, seconds: float,
        with_s3: bool = True) -> Json:
    """Cold start (median of ``starts``, file store and S3) and memory after ``requests``."""
    out: Json = {}
    with tempfile.TemporaryDirectory(prefix="rf-bench-start-") as tmp:
        work = Path(tmp)
        root = work / "root"
        layout = sample_layout(work / "oci")
        source, image = f"oci:{layout.root}:multi", f"docker.io/{NAME}:1"
        regfront_cli("import", source, image, "--storage", str(root))
        regfront, registry2 = start_times(work, str(root), {"filesystem": {
            "rootdirectory": str(root)}}, starts)
        log(f"cold start: regfront {median(regfront):.2f} s, registry:2 {median(registry2):.2f} s")
        out["start_s"] = {"median": median(regfront), "runs": regfront}
        out["registry2_start_s"] = {"median": median(registry2), "runs": registry2}
        if with_s3:
            with serving_moto(work, ("start",)) as moto:
                regfront_cli("import", source, image, "--storage", moto_url(moto.url, "start"),
                             s3=True)
                regfront, registry2 = start_times(work, moto_url(moto.url, "start"), {
                    "s3": registry2_s3(moto.url, "start")}, starts)
            out["s3_start_s"] = {"median": median(regfront), "runs": regfront}
            out["s3_registry2_start_s"] = {"median": median(registry2), "runs": registry2}
        out["memory"] = memory(work, root, manifests, requests, seconds)
    return out
