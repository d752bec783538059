"""The miss queue: only covered repositories, once per process, off the request path."""

from __future__ import annotations

import httpx

from gateway.app import Gateway, create_app
from registry import layout
from registry.config import parse_config
from registry.digest import Digest
from registry.store.memory import MemoryStore
from tests.conftest import CountingStore

CONFIG = """
upstreams:
  docker.io: {urls: ["https://registry-1.docker.io"]}
  reg.corp:5000: {urls: ["https://reg.corp:5000"]}
mirror:
  - {name: hub, registry: docker.io, repositories: [library/nginx]}
  - {name: corp, registry: reg.corp:5000, repositories: [apps/*]}
"""


def _client(primary: CountingStore) -> tuple[httpx.AsyncClient, Gateway]:
    app = create_app(parse_config(CONFIG), [MemoryStore(), primary])
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw"), app


async def test_covered_misses_are_queued_once_in_the_primary() -> None:
    primary = CountingStore(MemoryStore())
    client, app = _client(primary)
    async with client:
        for _ in range(3):
            response = await client.head("/v2/library/nginx/manifests/1.27?ns=docker.io")
            assert response.status_code == 404
        await client.get("/v2/apps/api/manifests/v2?ns=reg.corp:5000")  # a glob covers it
        digest = "sha256:" + "a" * 64
        await client.get(f"/v2/apps/web/manifests/{digest}?ns=reg.corp:5000")
        assert app.resolver.misses is not None
        await app.resolver.misses.drain()
    assert primary.calls["create"] == 3
    assert isinstance(primary.inner, MemoryStore)
    assert set(primary.inner.objects) == {
        layout.miss("docker.io/library/nginx", "1.27"),
        layout.miss("reg.corp_5000/apps/api", "v2"),
        layout.miss("reg.corp_5000/apps/web", Digest.parse(digest)),
    }


async def test_uncovered_misses_are_not_queued() -> None:
    primary = CountingStore(MemoryStore())
    client, app = _client(primary)
    async with client:
        for path in ("/v2/library/redis/manifests/7?ns=docker.io",       # no rule covers it
                     "/v2/library/nginx/manifests/1?ns=quay.io",          # no such upstream
                     "/v2/docker.io/library/nginx/blobs/sha256:" + "b" * 64,  # blobs: no
                     "/v2/library/nginx/tags/list?ns=docker.io"):
            assert (await client.get(path)).status_code == 404
        assert app.resolver.misses is not None
        await app.resolver.misses.drain()
    assert primary.calls["create"] == 0


async def test_a_failed_queue_write_is_retried_by_a_later_miss() -> None:
    class Down(CountingStore):
        async def create(self, key: str, data: bytes) -> str:
            self.calls["create"] += 1
            raise OSError("primary unreachable")

    primary = Down(MemoryStore())
    client, app = _client(primary)
    async with client:
        for _ in range(2):
            assert (await client.get("/v2/library/nginx/manifests/1?ns=docker.io")
                    ).status_code == 404
            assert app.resolver.misses is not None
            await app.resolver.misses.drain()
    assert primary.calls["create"] == 2
