"""Warm hot-path throughput of one gateway worker: ``make bench-hotpath``.

Seeds a file store with a small multi-arch image, starts ``regfront serve`` (one worker), warms
the caches, then measures with wrk (GETs) and hey (HEADs; wrk stalls on HEAD), alternating
runs and reporting medians. A hello-world ASGI app under the same uvicorn settings is the
ceiling for one Python worker. Reports; asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
HELLO = (
    "async def app(scope, receive, send):\n"
    "    if scope['type'] != 'http':\n        return\n"
    "    await send({'type': 'http.response.start', 'status': 200,\n"
    "                'headers': [(b'content-length', b'5')]})\n"
    "    await send({'type': 'http.response.body', 'body': b'hello'})\n"
)


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


def wrk(url: str, connections: int, seconds: int) -> float:
    out = subprocess.run(["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", url],
                         check=True, capture_output=True, text=True, timeout=seconds + 30).stdout
    match = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if match is None or "Non-2xx" in out:
        raise SystemExit(f"wrk failed on {url}:\n{out}")
    return float(match.group(1))


def hey_head(url: str, connections: int, seconds: int) -> float:
    out = subprocess.run(["hey", "-m", "HEAD", "-c", str(connections), "-z", f"{seconds}s", url],
                         check=True, capture_output=True, text=True, timeout=seconds + 30).stdout
    match = re.search(r"Requests/sec:\s+([\d.]+)", out)
    codes = re.findall(r"^\s+\[(\d{3})\]\s+\d+ responses", out, re.MULTILINE)
    if match is None or set(codes) != {"200"}:
        raise SystemExit(f"hey failed on {url}:\n{out}")
    return float(match.group(1))


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
        store = Path(tmp) / "store"
        out = subprocess.run([BIN / "regfront", "import", f"oci:{layout.root}:multi",
                              "docker.io/library/demo:1", "--storage", str(store)],
                             check=True, capture_output=True, text=True).stdout
        digest = json.loads(out)["digest"]
        index = json.loads((layout.root / "blobs" / "sha256" / digest[7:]).read_bytes())
        child = index["manifests"][0]["digest"]
        child_doc = json.loads((layout.root / "blobs" / "sha256" / child[7:]).read_bytes())
        layer = child_doc["layers"][0]["digest"]

        gw_port, hello_port = free_port(), free_port()
        (Path(tmp) / "hello.py").write_text(HELLO)
        servers = [
            subprocess.Popen([BIN / "regfront", "serve", "--storage", str(store),
                              "--listen", f"127.0.0.1:{gw_port}"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL),
            subprocess.Popen([BIN / "uvicorn", "hello:app", "--port", str(hello_port),
                              "--no-access-log", "--log-level", "warning"],
                             cwd=tmp, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL),
        ]
        try:
            base = f"http://127.0.0.1:{gw_port}/v2/library/demo"
            workloads = {
                "manifest GET by tag": ("wrk", f"{base}/manifests/1?ns=docker.io"),
                "manifest GET by digest": ("wrk", f"{base}/manifests/{child}?ns=docker.io"),
                "manifest HEAD by tag": ("hey", f"{base}/manifests/1?ns=docker.io"),
                "blob HEAD": ("hey", f"{base}/blobs/{layer}?ns=docker.io"),
                "ceiling: hello-world ASGI": ("wrk", f"http://127.0.0.1:{hello_port}/"),
            }
            for _, url in workloads.values():
                wait_ready(url)
            print(f"{'workload':28} {'conns':>5} {'req/s (median)':>15}")
            for connections in args.connections:
                samples: dict[str, list[float]] = {name: [] for name in workloads}
                for _ in range(args.rounds):  # alternate workloads so drift hits all alike
                    for name, (tool, url) in workloads.items():
                        rate = (wrk(url, connections, args.seconds) if tool == "wrk" else
                                hey_head(url, connections, args.seconds))
                        samples[name].append(rate)
                for name, rates in samples.items():
                    print(f"{name:28} {connections:>5} {statistics.median(rates):>15,.0f}")
        finally:
            for server in servers:
                server.terminate()
                server.wait(timeout=10)


if __name__ == "__main__":
    main()
