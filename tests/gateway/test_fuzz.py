"""Hostile input, property-tested against the whole app: raw ASGI requests with arbitrary
paths, queries and headers never get a 5xx, never make the gateway touch a key outside the
layout, and never make it contact a host the config does not name."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable, MutableMapping
from typing import Any
from urllib.parse import quote

import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.app import Gateway, create_app
from registry import layout, writer
from registry.config import parse_config
from registry.digest import Digest
from registry.store import ObjectStore, Reader, check_key
from registry.store.memory import MemoryStore

CONFIG = """
upstreams:
  docker.io: {urls: ["https://hub.upstream.test"], on_miss: pull-through, retries: 0}
  reg.corp:5000: {urls: ["https://corp.upstream.test"], retries: 0}
mirror:
  - {name: hub, registry: docker.io, repositories: [library/nginx], tag_ttl: 1s}
  - {name: corp, registry: reg.corp:5000, repositories: ["apps/*"]}
"""
CONFIGURED_HOSTS = {"hub.upstream.test", "corp.upstream.test"}
ALLOWED_PREFIXES = (layout.DISTRIBUTION_ROOT + "/", layout.REGFRONT_ROOT + "/")


class Recording(MemoryStore):
    """Fails the test on any key outside the layout, whatever method it reaches."""

    def __init__(self) -> None:
        super().__init__()
        self.keys: list[str] = []

    def _seen(self, key: str) -> None:
        self.keys.append(key)
        check_key(key)
        assert key.startswith(ALLOWED_PREFIXES), key

    async def get(self, key: str) -> bytes:
        self._seen(key)
        return await super().get(key)

    async def size(self, key: str) -> int:
        self._seen(key)
        return await super().size(key)

    async def read(self, key: str, start: int = 0, length: int | None = None) -> Reader:
        self._seen(key)
        return await super().read(key, start, length)

    async def put(self, key: str, data: bytes) -> None:
        self._seen(key)
        await super().put(key, data)

    async def put_stream(self, key: str, chunks: AsyncIterable[bytes]) -> None:
        self._seen(key)
        await super().put_stream(key, chunks)

    async def children(self, prefix: str) -> list[str]:
        self._seen(prefix)
        return await super().children(prefix)

    async def create(self, key: str, data: bytes) -> str:
        self._seen(key)
        return await super().create(key, data)


OUTBOUND: list[str] = []


def _upstream(request: httpx.Request) -> httpx.Response:
    OUTBOUND.append(request.url.host)
    return httpx.Response(404, json={"errors": [{"code": "MANIFEST_UNKNOWN"}]})


def _app(store: ObjectStore) -> Gateway:
    app = create_app(parse_config(CONFIG), [store])
    assert app.resolver.pull_through is not None
    assert app.resolver.freshness is not None
    app.resolver.pull_through.transport = httpx.MockTransport(_upstream)
    app.resolver.freshness.transport = httpx.MockTransport(_upstream)
    return app


async def _seed(store: ObjectStore) -> Digest:
    data = b'{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json",' \
           b'"manifests":[]}'
    digest = await writer.put_manifest(store, "docker.io/library/nginx", data)
    await writer.put_tag(store, "docker.io/library/nginx", "1", digest)
    return digest


async def _call(app: Gateway, method: str, path: str, query: bytes,
                headers: list[tuple[bytes, bytes]]) -> int:
    scope: dict[str, Any] = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method,
        "scheme": "http", "path": path, "raw_path": quote(path, safe="/%").encode(),
        "query_string": query, "root_path": "", "headers": headers,
        "server": ("127.0.0.1", 5000), "client": ("127.0.0.1", 40000),
    }
    statuses: list[int] = []

    async def receive() -> MutableMapping[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: MutableMapping[str, Any]) -> None:
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    await app(scope, receive, send)
    assert len(statuses) == 1
    return statuses[0]


SEGMENT = st.one_of(
    st.sampled_from(["..", ".", "", "library", "nginx", "manifests", "blobs", "tags", "list",
                     "referrers", "uploads", "sha256:" + "a" * 64, "sha256:zz", "latest",
                     "%2F", "%2e%2e", "\x00", "a" * 300, "docker.io", "_catalog", "v2"]),
    st.text(min_size=0, max_size=20),
)
PATHS = st.one_of(
    st.lists(SEGMENT, min_size=1, max_size=8).map(lambda parts: "/v2/" + "/".join(parts)),
    st.text(max_size=60).map(lambda text: "/" + text),
)
QUERY_KEYS = st.sampled_from(["ns", "n", "last", "artifactType", "digest", "x"])
QUERY_VALUES = st.one_of(
    st.sampled_from(["docker.io", "reg.corp:5000", "evil.example:443", "169.254.169.254",
                     "localhost", "-1", "0", "99999999999999999999", "", "a" * 1000,
                     "docker.io/../../etc", "%00"]),
    st.text(max_size=30))
QUERIES = st.lists(st.tuples(QUERY_KEYS, QUERY_VALUES), max_size=4).map(
    lambda pairs: "&".join(f"{quote(k)}={quote(v)}" for k, v in pairs).encode())
HEADER_NAMES = st.sampled_from([b"range", b"if-none-match", b"accept", b"authorization",
                                b"host", b"x-forwarded-for", b"content-length"])
HEADER_VALUES = st.one_of(
    st.sampled_from([b"bytes=0-", b"bytes=-0", b"bytes=5-1", b"bytes=0-1,2-3", b"*",
                     b"bytes=99999999999999999999999-", b"Bearer x.y.z", b"Basic ????"]),
    st.binary(max_size=40).map(lambda b: bytes(c for c in b if c not in (10, 13))))
HEADERS = st.lists(st.tuples(HEADER_NAMES, HEADER_VALUES), max_size=4)
METHODS = st.sampled_from(["GET", "HEAD", "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE",
                           "OPTIONS", "TRACE"])


@settings(max_examples=400, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(method=METHODS, path=PATHS, query=QUERIES, headers=HEADERS)
def test_no_request_gets_a_5xx_leaves_the_layout_or_calls_an_unknown_host(
        method: str, path: str, query: bytes, headers: list[tuple[bytes, bytes]]) -> None:
    async def scenario() -> int:
        store = Recording()
        await _seed(store)
        app = _app(store)
        status = await _call(app, method, path, query, headers)
        await app.resolver.close()
        return status

    status = asyncio.run(scenario())
    assert status < 500, (method, path, query, headers)
    assert set(OUTBOUND) <= CONFIGURED_HOSTS


def test_the_fuzzer_reaches_the_store_and_the_upstream() -> None:
    """Not vacuous: a valid miss is pulled through from the configured upstream."""
    OUTBOUND.clear()

    async def scenario() -> tuple[int, int, list[str]]:
        store = Recording()
        await _seed(store)
        app = _app(store)
        hit = await _call(app, "GET", "/v2/library/nginx/manifests/1", b"ns=docker.io", [])
        miss = await _call(app, "GET", "/v2/library/nginx/manifests/2", b"ns=docker.io", [])
        await app.resolver.close()
        return hit, miss, store.keys

    hit, miss, keys = asyncio.run(scenario())
    assert (hit, miss) == (200, 404)
    assert keys
    assert OUTBOUND == ["hub.upstream.test"]
