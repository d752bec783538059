"""An HTTP relay in front of a registry that can hold one blob midway, so a test acts while a
sync worker is provably in the middle of a copy (kills it, starts a second worker) instead of
guessing when that is with a timer."""

from __future__ import annotations

import contextlib
import http.client
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

from tests.e2e.harness import LOOPBACK

HOLD_LIMIT = 120.0  # a held response gives up after this, so no thread outlives a test long
_HOP_BY_HOP = frozenset({"connection", "keep-alive", "transfer-encoding", "content-length"})


class HoldingRelay:
    """Relays every request to ``target``; a GET of the blob named by ``hold`` gets its headers
    and half its body, then waits for ``release``. ``holding`` is set once that half is out."""

    def __init__(self, target: str) -> None:
        parts = urlsplit(target)
        self.target = (parts.hostname or LOOPBACK, parts.port or 80)
        self.hold: str | None = None  # a digest
        self.holding = threading.Event()
        self.release = threading.Event()
        self.blob_gets: list[str] = []
        self._server = ThreadingHTTPServer((LOOPBACK, 0), self._handler())
        self._server.daemon_threads = True

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self._server.server_address[1]}"

    def arm(self, digest: str) -> None:
        """Hold the next GET of ``digest``'s blob (and forget any earlier hold)."""
        self.release.set()  # let a previous hold go first
        self.hold, self.holding, self.release = digest, threading.Event(), threading.Event()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        relay = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive: the client pools its connections

            def do_GET(self) -> None:
                self._relay()

            def do_HEAD(self) -> None:
                self._relay()

            def _relay(self) -> None:
                upstream = http.client.HTTPConnection(*relay.target, timeout=60)
                try:
                    headers = {k: v for k, v in self.headers.items() if k.lower() != "host"}
                    upstream.request(self.command, self.path, headers=headers)
                    response = upstream.getresponse()
                    body = response.read()
                    self.send_response(response.status)
                    for name, value in response.getheaders():
                        if name.lower() not in _HOP_BY_HOP:
                            self.send_header(name, value)
                    length = response.getheader("content-length") if self.command == "HEAD" \
                        else str(len(body))
                    self.send_header("Content-Length", length or "0")
                    self.end_headers()
                    if self.command == "GET":
                        self._body(body)
                finally:
                    upstream.close()

            def _body(self, body: bytes) -> None:
                held = relay.hold is not None and self.path.endswith(f"/blobs/{relay.hold}")
                if "/blobs/" in self.path:
                    relay.blob_gets.append(self.path.rsplit("/", 1)[1])
                if not held:
                    self.wfile.write(body)
                    return
                holding, release = relay.holding, relay.release
                self.wfile.write(body[:len(body) // 2])
                self.wfile.flush()
                holding.set()
                release.wait(HOLD_LIMIT)
                with contextlib.suppress(OSError):  # the client may be dead by now
                    self.wfile.write(body[len(body) // 2:])

            def log_message(self, format: str, *args: object) -> None:
                pass  # tests read blob_gets and holding instead

        return Handler

    @contextlib.contextmanager
    def serving(self) -> Iterator[HoldingRelay]:
        thread = threading.Thread(target=self._server.serve_forever, name="holding-relay",
                                  daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self.release.set()
            self._server.shutdown()
            self._server.server_close()
            thread.join(timeout=5)
