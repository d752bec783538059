"""Fleet truth (issue 14): one slow bucket call must never send a fleet to the upstream.

A real ``regfront serve`` with one S3 store (moto) and default settings sits behind a relay that
holds one HeadObject 3 s (longer than the 2 s store_timeout), answers 503 SlowDown to several
calls and resets a connection, while 20 clients pull at once as containerd does (HEAD the tag,
GET the manifests, HEAD and GET every blob, following the 307 to the bucket). Not one answer
may be a 5xx, and the gateway's own count of answers that send a node to the upstream
(``regfront_fallbacks_total``) must stay 0. Then two stores, the first hung: the second serves.
Every fault injector shows it fired; the clients are bounded in number and time.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import socket
import struct
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from registry.digest import Digest
from tests.conftest import MotoS3
from tests.e2e.harness import (
    LOOPBACK,
    MANIFEST_ACCEPT,
    Server,
    regfront_import,
    serving_regfront,
)
from tests.images import Layout, layout_digest

pytestmark = pytest.mark.e2e

CLIENTS = 20
HOLD = 3.0  # seconds one HeadObject is held: longer than the default store_timeout (2 s)
SLOWDOWNS = 6
RESETS = 1
CLIENT_TIMEOUT = 45.0  # no client may take longer (a gateway's store_deadline is 20 s)
_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "proxy-connection", "te",
               "upgrade", "trailer"}
_SLOWDOWN = (b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>SlowDown</Code>'
             b"<Message>Please reduce your request rate.</Message></Error>")


@dataclass
class FaultRelay:
    """An HTTP relay to moto that misbehaves on cue, counting every fault it injects."""

    target: tuple[str, int]
    url: str = ""
    to_hold: int = 0
    to_slow: int = 0
    to_reset: int = 0
    held: int = 0
    slowed: int = 0
    reset: int = 0
    relayed: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def arm(self, *, hold: int, slowdowns: int, resets: int) -> None:
        with self.lock:
            self.to_hold, self.to_slow, self.to_reset = hold, slowdowns, resets

    def decide(self, method: str, path: str) -> str:
        with self.lock:
            # The hold goes to a blob's HeadObject: the size lookup every node's blob HEAD waits on.
            if self.to_hold and method == "HEAD" and urlsplit(path).path.endswith("/data"):
                self.to_hold -= 1
                self.held += 1
                return "hold"
            if self.to_reset:
                self.to_reset -= 1
                self.reset += 1
                return "reset"
            if self.to_slow:
                self.to_slow -= 1
                self.slowed += 1
                return "slowdown"
            self.relayed += 1
            return "relay"


def _handler(relay: FaultRelay) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as botocore's pool expects

        def _any(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else None
            action = relay.decide(self.command, self.path)
            if action == "reset":  # RST, no answer: SO_LINGER 0 then close
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                           struct.pack("ii", 1, 0))
                self.connection.close()
                self.close_connection = True
                return
            if action == "slowdown":
                self._answer(503, [("Content-Type", "application/xml")], _SLOWDOWN)
                return
            if action == "hold":
                time.sleep(HOLD)
            target = http.client.HTTPConnection(*relay.target, timeout=30)
            try:
                headers = {k: v for k, v in self.headers.items()
                           if k.lower() not in _HOP_BY_HOP}
                target.request(self.command, self.path, body=body, headers=headers)
                response = target.getresponse()
                data = response.read()
                kept = [(k, v) for k, v in response.getheaders()
                        if k.lower() not in _HOP_BY_HOP and k.lower() != "content-length"]
                size = (response.getheader("Content-Length") or "0") \
                    if self.command == "HEAD" else str(len(data))
                self._answer(response.status, [*kept, ("Content-Length", size)], data,
                             length_given=True)
            except OSError:
                self.close_connection = True  # the gateway gave up on a held call: fine
            finally:
                target.close()

        def _answer(self, status: int, headers: list[tuple[str, str]], body: bytes, *,
                    length_given: bool = False) -> None:
            self.send_response_only(status)
            for key, value in headers:
                self.send_header(key, value)
            if not length_given:
                self.send_header("Content-Length", "0" if self.command == "HEAD"
                                 else str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        do_GET = do_HEAD = do_PUT = do_POST = do_DELETE = _any

        def log_message(self, format: str, *args: object) -> None:
            pass  # the relay's counters are the record

    return Handler


@contextlib.contextmanager
def fault_relay(endpoint: str) -> Iterator[FaultRelay]:
    parts = urlsplit(endpoint)
    assert parts.hostname is not None
    assert parts.port is not None
    relay = FaultRelay((parts.hostname, parts.port))
    server = ThreadingHTTPServer((LOOPBACK, 0), _handler(relay))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, name="fault-relay", daemon=True)
    thread.start()
    relay.url = f"http://{LOOPBACK}:{server.server_address[1]}"
    try:
        yield relay
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@contextlib.contextmanager
def hung_endpoint() -> Iterator[tuple[str, list[socket.socket]]]:
    """An endpoint that accepts every connection and never says a word; its URL, and the
    connections it accepted."""
    listener = socket.create_server((LOOPBACK, 0), backlog=128)
    listener.settimeout(0.2)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            with contextlib.suppress(OSError):
                accepted.append(listener.accept()[0])

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"http://{LOOPBACK}:{listener.getsockname()[1]}", accepted
    finally:
        stop.set()
        thread.join(timeout=5)
        for connection in [*accepted, listener]:
            connection.close()


@pytest.fixture(scope="module")
def bucket(moto_s3: MotoS3, oci_layout: Layout) -> str:
    """A moto bucket (prefix ``mirror``) holding demo:single and demo:multi."""
    name = moto_s3.new_bucket()
    for ref in ("single", "multi"):
        regfront_import(oci_layout.root, ref, f"docker.io/library/demo:{ref}",
                        moto_s3.url(name, "mirror"))
    return name


def _store_url(moto: MotoS3, bucket: str, endpoint: str) -> str:
    # Pre-signed URLs name moto itself: the clients' bucket reads are not the gateway's.
    return moto.url(bucket, "mirror", endpoint=endpoint, signing_endpoint=moto.endpoint)


def _pull(gateway: str, ref: str, expected: str) -> list[int]:
    """One node's pull of ``ref`` as containerd makes it; every gateway status it got."""
    statuses: list[int] = []
    base, accept = f"{gateway}/v2/library/demo", {"Accept": MANIFEST_ACCEPT}
    with httpx.Client(timeout=CLIENT_TIMEOUT) as client:
        def ask(method: str, path: str) -> httpx.Response:
            response = client.request(method, f"{base}{path}?ns=docker.io", headers=accept)
            statuses.append(response.status_code)
            return response

        head = ask("HEAD", f"/manifests/{ref}")
        if head.status_code != 200:
            return statuses
        assert head.headers["docker-content-digest"] == expected
        manifest = ask("GET", f"/manifests/{head.headers['docker-content-digest']}").json()
        if "manifests" in manifest:  # an index: this node is amd64
            chosen = next(m for m in manifest["manifests"]
                          if m["platform"]["architecture"] == "amd64")
            manifest = ask("GET", f"/manifests/{chosen['digest']}").json()
        for blob in [manifest["config"], *manifest["layers"]]:
            ask("HEAD", f"/blobs/{blob['digest']}")
            redirect = ask("GET", f"/blobs/{blob['digest']}")
            if redirect.status_code == 307:
                fetched = client.get(redirect.headers["location"])
                assert Digest.from_bytes(fetched.content) == Digest.parse(blob["digest"])
    return statuses


def _fleet(server: Server, layout: Layout) -> list[int]:
    """``CLIENTS`` nodes pulling both images at once; every status the gateway gave."""
    digests = {ref: layout_digest(layout.root, ref) for ref in ("single", "multi")}

    def node() -> list[int]:
        return [status for ref, digest in digests.items()
                for status in _pull(server.url, ref, digest)]

    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=CLIENTS) as pool:
        runs = [pool.submit(node) for _ in range(CLIENTS)]
        statuses = [s for run in runs for s in run.result(timeout=CLIENT_TIMEOUT)]
    print(f"\n{CLIENTS} nodes pulled both images in {time.monotonic() - started:.1f} s")
    return statuses


def _metrics(server: Server, prefix: str) -> dict[str, float]:
    text = httpx.get(f"{server.url}/metrics", timeout=10).text
    return {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
            for line in text.splitlines() if line.startswith(prefix)}


def test_one_store_slow_throttling_and_resetting_costs_no_fallback(
        tmp_path: Path, moto_s3: MotoS3, bucket: str, oci_layout: Layout) -> None:
    with fault_relay(moto_s3.endpoint) as relay, \
            serving_regfront(_store_url(moto_s3, bucket, relay.url), tmp_path) as server:
        relay.arm(hold=1, slowdowns=SLOWDOWNS, resets=RESETS)  # after the gateway's warm-up
        statuses = _fleet(server, oci_layout)
        fallbacks = _metrics(server, "regfront_fallbacks_total")
        calls = _metrics(server, "regfront_store_calls_total")
    assert [s for s in statuses if s >= 500] == []
    assert set(statuses) <= {200, 307}
    # single: HEAD tag, GET manifest; multi: HEAD tag, GET index, GET amd64; 3 blobs each x 2
    assert len(statuses) == CLIENTS * ((2 + 3 * 2) + (3 + 3 * 2))
    assert sum(fallbacks.values()) == 0, fallbacks
    # Every injector fired, and the hold reached the gateway's own timeout (not only botocore's).
    assert (relay.held, relay.slowed, relay.reset) == (1, SLOWDOWNS, RESETS)
    assert sum(v for k, v in calls.items() if 'outcome="timeout"' in k) >= 1, calls


def test_two_stores_one_hung_the_other_serves(
        tmp_path: Path, moto_s3: MotoS3, bucket: str, oci_layout: Layout) -> None:
    with hung_endpoint() as (endpoint, accepted):
        hung = _store_url(moto_s3, bucket, endpoint)
        config = tmp_path / "regfront.yaml"  # JSON is YAML; no gateway section: the defaults
        config.write_text(json.dumps({"storage": [{"url": hung},
                                                  {"url": moto_s3.url(bucket, "mirror")}]}))
        with serving_regfront(hung, tmp_path, config=config) as server:
            statuses = _fleet(server, oci_layout)
            fallbacks = _metrics(server, "regfront_fallbacks_total")
            ready = httpx.get(f"{server.url}/readyz", timeout=10)
        assert accepted  # the hung store was asked
    assert [s for s in statuses if s >= 500] == []
    assert sum(fallbacks.values()) == 0, fallbacks
    assert ready.status_code == 200
    assert [s["healthy"] for s in ready.json()["stores"]] == [False, True]
