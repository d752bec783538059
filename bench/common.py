"""What every benchmark shares: servers on loopback pinned to a core, the load generators and
their parsers, /proc counters, and the facts about the machine a result names.

Servers are started through the end-to-end harness (their own process group, killed with the
benchmark even if it dies) and run on core 0; load generators run on core 1. Every load is
bounded in time, every subprocess in time.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from registry.mediatypes import DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, OCI_INDEX, OCI_MANIFEST
from tests.e2e.harness import (
    LOOPBACK,
    Service,
    clean_env,
    free_port,
    regfront_binary,
    started,
)

REPO = Path(__file__).resolve().parent.parent
SERVER_CPU = "0"  # the server under test
LOAD_CPU = "1"  # wrk, hey, ctr, skopeo: the other core
# What containerd sends when it resolves a tag.
ACCEPT = ", ".join([DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, OCI_MANIFEST, OCI_INDEX, "*/*"])
S3_ENV = {"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench",
          "AWS_CONFIG_FILE": "/nonexistent/bench", "AWS_SHARED_CREDENTIALS_FILE":
          "/nonexistent/bench", "AWS_DEFAULT_REGION": "us-east-1"}
REGION = "us-east-1"

Json = dict[str, Any]


def log(message: str) -> None:
    """Progress on stderr, so a long run shows where it is."""
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def pinned(cpu: str, argv: Sequence[str]) -> list[str]:
    """``argv`` confined to ``cpu`` with taskset (unpinned where taskset is missing)."""
    taskset = shutil.which("taskset")
    return [taskset, "-c", cpu, *argv] if taskset else list(argv)


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values)) if values else float("nan")


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100), nearest rank."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[rank]


def require(*tools: str) -> None:
    missing = [tool for tool in tools if shutil.which(tool) is None]
    if missing:
        raise SystemExit(f"missing tools: {', '.join(missing)} (`make bench` installs them)")


# -- /proc -------------------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of ``pid`` and its reaped children (/proc/<pid>/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = sum(int(v) for v in fields[11:15])  # utime stime cutime cstime
    return ticks / os.sysconf("SC_CLK_TCK")


def thread_cpu_seconds(tid: int) -> float:
    """User + system CPU seconds of one thread of this process (/proc/self/task/<tid>/stat)."""
    fields = Path(f"/proc/self/task/{tid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def children_cpu_seconds() -> float:
    """CPU seconds of this process's reaped children (the ctr and taskset it ran)."""
    times = os.times()
    return times.children_user + times.children_system


def core_ticks() -> dict[str, tuple[int, int]]:
    """Each core's (busy, total) clock ticks since boot (/proc/stat), whoever ran on it."""
    out = {}
    for line in Path("/proc/stat").read_text().splitlines():
        name, *values = line.split()
        if name.startswith("cpu") and name != "cpu":
            ticks = [int(v) for v in values[:8]]  # user nice system idle iowait irq softirq steal
            out[name.removeprefix("cpu")] = (sum(ticks) - ticks[3] - ticks[4], sum(ticks))
    return out


def cores_busy(before: dict[str, tuple[int, int]]) -> dict[str, float]:
    """Each core's busy share since ``before`` (``core_ticks()``), 0-1."""
    after = core_ticks()
    return {core: round((after[core][0] - busy) / max(1, after[core][1] - total), 3)
            for core, (busy, total) in before.items() if core in after}


def written_bytes(pid: int) -> int:
    """Bytes ``pid`` has written through write/send calls (wchar): sockets included."""
    for line in Path(f"/proc/{pid}/io").read_text().splitlines():
        if line.startswith("wchar:"):
            return int(line.split()[1])
    raise RuntimeError(f"/proc/{pid}/io has no wchar")


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"/proc/{pid}/status has no VmRSS")


def server_pid(service: Service) -> int:
    """The server's own pid: the child taskset exec'd into is the same process."""
    return service.process.pid


# -- HTTP --------------------------------------------------------------------------------------


def request(method: str, url: str, headers: dict[str, str] | None = None,
            timeout: float = 10.0) -> tuple[int, dict[str, str], bytes]:
    """One request on a fresh connection, no redirects followed."""
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.netloc, timeout=timeout)
    try:
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        connection.request(method, path, headers=headers or {})
        response = connection.getresponse()
        body = response.read()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, body
    finally:
        connection.close()


def answers(url: str, method: str = "GET", status: int = 200) -> bool:
    try:
        return request(method, url, {"Accept": ACCEPT}, timeout=2.0)[0] == status
    except OSError:
        return False


# -- servers -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Running:
    """A server on loopback: its base URL and process."""

    url: str
    service: Service

    @property
    def pid(self) -> int:
        return server_pid(self.service)

    @property
    def host(self) -> str:
        return self.url.removeprefix("http://")


def moto_url(endpoint: str, bucket: str, prefix: str = "mirror") -> str:
    """regfront's store URL for ``bucket/prefix`` on the moto server at ``endpoint``."""
    return f"s3://{bucket}/{prefix}?endpoint={endpoint}&region={REGION}"


def registry2_s3(endpoint: str, bucket: str, prefix: str = "mirror") -> Json:
    """registry:2's S3 driver parameters for the same objects as ``moto_url``."""
    return {"region": REGION, "bucket": bucket, "regionendpoint": endpoint,
            "accesskey": S3_ENV["AWS_ACCESS_KEY_ID"], "secretkey": S3_ENV["AWS_SECRET_ACCESS_KEY"],
            "secure": False, "v4auth": True, "rootdirectory": f"/{prefix}"}


@contextlib.contextmanager
def serving_moto(workdir: Path, buckets: Sequence[str] = ("bench",), *,
                 cpu: str = LOAD_CPU) -> Iterator[Running]:
    """moto's S3 server with ``buckets``; on the load core unless ``cpu`` says otherwise
    (registry:2 on S3 waits on it: not on the core of the server under test)."""
    port = free_port()
    argv = pinned(cpu, [str(Path(sys.executable).with_name("moto_server")), "-H", LOOPBACK,
                             "-p", str(port)])
    url = f"http://{LOOPBACK}:{port}"
    with started(f"moto :{port}", argv, workdir / f"moto-{port}.log",
                 lambda: answers(f"{url}/moto-api/"), "moto-api") as service:
        for bucket in buckets:
            status = request("PUT", f"{url}/{bucket}")[0]
            if status != 200:
                raise RuntimeError(f"moto: creating bucket {bucket} answered {status}")
        yield Running(url, service)


@contextlib.contextmanager
def serving_registry2(workdir: Path, *, root: Path | None = None, s3: Json | None = None,
                      accesslog: bool = False, cpu: str | None = SERVER_CPU,
                      gomaxprocs: int | None = 1) -> Iterator[Running]:
    """registry:2 in its best case: access log off, in-memory blob-descriptor cache, one core.

    On S3, blob GETs are redirected to the bucket (redirects on, registry:2's default).
    """
    binary = shutil.which("docker-registry")
    if binary is None:
        raise SystemExit("docker-registry is not installed (`make bench` installs it)")
    port = free_port()
    storage: Json = {"s3": s3} if s3 is not None else {"filesystem": {"rootdirectory": str(root)}}
    config = {
        "version": "0.1",
        "log": {"accesslog": {"disabled": not accesslog}, "level": "error"},
        "storage": {**storage, "cache": {"blobdescriptor": "inmemory"},
                    "maintenance": {"uploadpurging": {"enabled": False}}},
        "http": {"addr": f"{LOOPBACK}:{port}", "secret": "regfront-bench"},
    }
    path = workdir / f"registry2-{port}.yml"
    path.write_text(yaml.safe_dump(config))
    env = clean_env("REGISTRY_", "AWS_CA_BUNDLE", "GOMAXPROCS")
    if gomaxprocs is not None:
        env["GOMAXPROCS"] = str(gomaxprocs)
    argv = [binary, "serve", str(path)]
    url = f"http://{LOOPBACK}:{port}"
    with started(f"registry:2 :{port}", pinned(cpu, argv) if cpu else argv,
                 workdir / f"registry2-{port}.log", lambda: answers(f"{url}/v2/"), "GET /v2/",
                 env=env) as service:
        yield Running(url, service)


def regfront_argv(store: str | Path, port: int, config: Path | None = None) -> list[str]:
    argv = [regfront_binary(), "serve", "--storage", str(store), "--listen", f"{LOOPBACK}:{port}"]
    return [*argv, "--config", str(config)] if config else argv


def regfront_env(s3: bool) -> dict[str, str]:
    env = clean_env("REGFRONT_", "AWS_")
    return {**env, **S3_ENV} if s3 else env


@contextlib.contextmanager
def serving_regfront(store: str | Path, workdir: Path, *, cpu: str | None = SERVER_CPU,
                     config: Path | None = None) -> Iterator[Running]:
    """``regfront serve`` (one worker) on ``store``, pinned to ``cpu``."""
    port = free_port()
    argv = regfront_argv(store, port, config)
    url = f"http://{LOOPBACK}:{port}"
    with started(f"regfront :{port}", pinned(cpu, argv) if cpu else argv,
                 workdir / f"regfront-{port}.log", lambda: answers(f"{url}/v2/"), "GET /v2/",
                 env=regfront_env(str(store).startswith("s3://"))) as service:
        yield Running(url, service)


@contextlib.contextmanager
def serving_ceiling(workdir: Path) -> Iterator[Running]:
    """A hello-world ASGI app under the uvicorn settings ``regfront serve`` uses, on core 0."""
    port = free_port()
    argv = [str(Path(sys.executable).with_name("uvicorn")), "bench.hello:app", "--host", LOOPBACK,
            "--port", str(port), "--no-access-log", "--no-server-header", "--log-level",
            "warning"]
    url = f"http://{LOOPBACK}:{port}"
    env = clean_env("UVICORN_", PYTHONPATH=str(REPO))
    with started(f"ceiling :{port}", pinned(SERVER_CPU, argv), workdir / f"ceiling-{port}.log",
                 lambda: answers(f"{url}/"), "GET /", env=env) as service:
        yield Running(url, service)


def regfront_cli(*args: str, s3: bool = False, timeout: float = 1800) -> str:
    """``regfront ARGS`` to completion; its stdout."""
    result = subprocess.run([regfront_binary(), *args], capture_output=True, text=True,
                            timeout=timeout, env=regfront_env(s3), check=False)
    if result.returncode != 0:
        raise RuntimeError(f"regfront {' '.join(args)} exited {result.returncode}:\n"
                           f"{result.stderr[-3000:]}")
    return result.stdout


# -- the machine -------------------------------------------------------------------------------


def _version(argv: list[str], pattern: str = r"(\d+\.\d+[\w.~+-]*)") -> str:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return "missing"
    found = re.search(pattern, out.stdout + out.stderr)
    return found.group(1) if found else "unknown"


def _package_version(name: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return "missing"


def machine() -> Json:
    """The CPU model, cores, kernel and tool versions a result was measured with."""
    cpu = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "kernel": platform.release(),
        "versions": {
            "python": platform.python_version(),
            "regfront": _package_version("regfront"),
            "uvicorn": _package_version("uvicorn"),
            "starlette": _package_version("starlette"),
            "uvloop": _package_version("uvloop"),
            "httptools": _package_version("httptools"),
            "moto": _package_version("moto"),
            "registry:2 (docker-registry)": _version(["docker-registry", "--version"],
                                                     r"distribution v?(\S+)"),
            "containerd": _version(["containerd", "--version"], r"containerd\s+\S+\s+v?(\S+)"),
            "skopeo": _version(["skopeo", "--version"]),
            "wrk": _version(["wrk", "-v"], r"wrk (?:debian/)?(\S+)"),
            "hey": _version(["dpkg-query", "-W", "-f=${Version}", "hey"], r"(\S+)"),
        },
    }


def disk_free(path: Path) -> int:
    return shutil.disk_usage(path).free


def check_disk(path: Path, needed: int, what: str) -> None:
    """Refuse to start ``what`` when ``path`` has less than ``needed`` bytes (plus 2 GB) free."""
    free = disk_free(path)
    if free < needed + 2 * 10**9:
        raise SystemExit(f"{what}: needs about {needed / 1e9:.1f} GB under {path}, "
                         f"{free / 1e9:.1f} GB free (lower the size flags)")
