"""Warm hot-path throughput of one gateway worker, on the file store and on S3 (moto).

Seeds each store with a small multi-arch image, starts ``regfront serve`` (one worker) on it,
warms the caches, then measures with wrk (GETs; it does not follow redirects) and hey (HEADs;
wrk stalls on HEAD), alternating workloads between rounds and reporting medians. A hello-world
ASGI app under the same uvicorn settings is the ceiling for one Python worker. Reports; asserts
nothing. ``make bench`` runs it.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
HELLO = (
    "async def app(scope, receive, send):\n"
    "    if scope['type'] != 'http':\n        return\n"
    "    await send({'type': 'http.response.start', 'status': 200,\n"
    "                'headers': [(b'content-length', b'5')]})\n"
    "    await send({'type': 'http.response.body', 'body': b'hello'})\n"
)
S3_ENV = {"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench",
          "AWS_CONFIG_FILE": "/nonexistent", "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_ready(url: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"server at {url} did not become ready in {timeout} s")


@contextmanager
def serving(argv: list[str], ready_url: str, cwd: str | None = None,
            env: dict[str, str] | None = None) -> Iterator[None]:
    process = subprocess.Popen(argv, cwd=cwd, env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    try:
        wait_ready(ready_url)
        yield
    finally:
        process.terminate()
        process.wait(timeout=10)


def wrk(url: str, connections: int, seconds: int) -> float:
    """GETs/s; any 4xx or 5xx answer ("Non-2xx or 3xx" to wrk, which means >= 400) fails."""
    out = subprocess.run(["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", url],
                         check=True, capture_output=True, text=True, timeout=seconds + 30).stdout
    rate = re.search(r"Requests/sec:\s+([\d.]+)", out)
    total = re.search(r"(\d+) requests in", out)
    odd = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    odd_count = int(odd.group(1)) if odd else 0
    if rate is None or total is None or odd_count:
        raise SystemExit(f"wrk: unexpected answers from {url}:\n{out}")
    return float(rate.group(1))


def hey_head(url: str, connections: int, seconds: int) -> float:
    out = subprocess.run(["hey", "-m", "HEAD", "-c", str(connections), "-z", f"{seconds}s", url],
                         check=True, capture_output=True, text=True, timeout=seconds + 30).stdout
    rate = re.search(r"Requests/sec:\s+([\d.]+)", out)
    codes = re.findall(r"^\s+\[(\d{3})\]\s+\d+ responses", out, re.MULTILINE)
    if rate is None or set(codes) != {"200"}:
        raise SystemExit(f"hey: unexpected answers from {url}:\n{out}")
    return float(rate.group(1))


def regfront(*args: str, env: dict[str, str] | None = None) -> str:
    return subprocess.run([str(BIN / "regfront"), *args], check=True, capture_output=True,
                          text=True, env=env, timeout=120).stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, nargs="+", default=[1, 32])
    args = parser.parse_args()
    for tool in ("wrk", "hey"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} is not installed (make bench installs it)")
    sys.path.insert(0, str(REPO))
    from tests.images import sample_layout

    with tempfile.TemporaryDirectory() as tmp:
        layout = sample_layout(Path(tmp) / "oci")
        index = json.loads((layout.root / "blobs/sha256" / layout.refs[1]["digest"][7:])
                           .read_bytes())
        child = index["manifests"][0]["digest"]
        layer = json.loads((layout.root / "blobs/sha256" / child[7:]).read_bytes())["layers"][0]
        file_store = str(Path(tmp) / "store")
        regfront("import", f"oci:{layout.root}:multi", "docker.io/library/demo:1",
                 "--storage", file_store)

        moto_port, file_port, s3_port, hello_port = (free_port() for _ in range(4))
        s3_env = {**os.environ, **S3_ENV}
        endpoint = f"http://127.0.0.1:{moto_port}"
        s3_store = f"s3://bench/mirror?endpoint={endpoint}&region=us-east-1"
        (Path(tmp) / "hello.py").write_text(HELLO)
        with serving([str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(moto_port)],
                     f"{endpoint}/moto-api/"):
            urllib.request.urlopen(urllib.request.Request(f"{endpoint}/bench", method="PUT"))
            regfront("import", f"oci:{layout.root}:multi", "docker.io/library/demo:1",
                     "--storage", s3_store, env=s3_env)
            gateway = [str(BIN / "regfront"), "serve", "--listen"]
            with serving([*gateway, f"127.0.0.1:{file_port}", "--storage", file_store],
                         f"http://127.0.0.1:{file_port}/v2/"), \
                 serving([*gateway, f"127.0.0.1:{s3_port}", "--storage", s3_store],
                         f"http://127.0.0.1:{s3_port}/v2/", env=s3_env), \
                 serving([str(BIN / "uvicorn"), "hello:app", "--port", str(hello_port),
                          "--no-access-log", "--log-level", "warning"],
                         f"http://127.0.0.1:{hello_port}/", cwd=tmp):
                run(args, file_port, s3_port, hello_port, child, layer["digest"])


def run(args: argparse.Namespace, file_port: int, s3_port: int, hello_port: int, child: str,
        layer: str) -> None:
    def repo(port: int) -> str:
        return f"http://127.0.0.1:{port}/v2/library/demo"

    q = "?ns=docker.io"
    workloads = {
        "file: manifest GET by tag": ("wrk", f"{repo(file_port)}/manifests/1{q}"),
        "file: manifest GET by digest": ("wrk", f"{repo(file_port)}/manifests/{child}{q}"),
        "file: manifest HEAD by tag": ("hey", f"{repo(file_port)}/manifests/1{q}"),
        "file: blob HEAD": ("hey", f"{repo(file_port)}/blobs/{layer}{q}"),
        "s3: manifest GET by tag": ("wrk", f"{repo(s3_port)}/manifests/1{q}"),
        "s3: blob HEAD": ("hey", f"{repo(s3_port)}/blobs/{layer}{q}"),
        "s3: blob GET (307)": ("wrk-307", f"{repo(s3_port)}/blobs/{layer}{q}"),
        "ceiling: hello-world ASGI": ("wrk", f"http://127.0.0.1:{hello_port}/"),
    }
    for tool, url in workloads.values():  # warm every cache, and check the status, first
        parts = urlsplit(url)
        connection = http.client.HTTPConnection(parts.netloc, timeout=5)
        connection.request("HEAD" if tool == "hey" else "GET", f"{parts.path}?{parts.query}")
        status = connection.getresponse().status
        connection.close()
        if status != (307 if tool == "wrk-307" else 200):
            raise SystemExit(f"{url} answered {status}")
    print(f"{'workload':30} {'conns':>5} {'req/s (median)':>15}")
    for connections in args.connections:
        samples: dict[str, list[float]] = {name: [] for name in workloads}
        for _ in range(args.rounds):
            for name, (tool, url) in workloads.items():
                if tool == "hey":
                    samples[name].append(hey_head(url, connections, args.seconds))
                else:
                    samples[name].append(wrk(url, connections, args.seconds))
        for name, rates in samples.items():
            print(f"{name:30} {connections:>5} {statistics.median(rates):>15,.0f}", flush=True)


if __name__ == "__main__":
    main()
