"""Blobs on S3 (moto's server): GET is a 307 to a pre-signed URL, HEAD is answered directly."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from gateway.app import create_app
from registry.config import Config, GatewayConfig
from registry.digest import Digest
from registry.imports import import_image
from registry.store import open_store
from tests.conftest import CountingPresigner, MotoS3
from tests.images import sample_layout

DEMO = "docker.io/library/demo"


@pytest.fixture
async def s3_store(moto_s3: MotoS3, tmp_path: Path) -> AsyncIterator[tuple[CountingPresigner,
                                                                           dict[str, Any]]]:
    layout = sample_layout(tmp_path / "oci")
    store = open_store(moto_s3.url(moto_s3.new_bucket(), "mirror"))
    await import_image(store, f"oci:{layout.root}:single", DEMO, "1")
    import json

    manifest = json.loads((layout.root / "blobs" / "sha256" /
                           layout.refs[0]["digest"][7:]).read_bytes())
    yield CountingPresigner(store), manifest["layers"][1]
    await store.close()


def _client(store: CountingPresigner, **gateway: Any) -> httpx.AsyncClient:
    app = create_app(Config(gateway=GatewayConfig(**gateway)), [store])
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gateway")


async def test_get_redirects_to_a_presigned_get_url(
        s3_store: tuple[CountingPresigner, dict[str, Any]], moto_s3: MotoS3) -> None:
    store, layer = s3_store
    async with _client(store, presign_expiry="10m") as client:
        response = await client.get(f"/v2/library/demo/blobs/{layer['digest']}?ns=docker.io")
    assert response.status_code == 307
    assert response.headers["docker-content-digest"] == layer["digest"]
    assert response.headers["content-length"] == "0"
    assert response.headers["oci-namespace"] == "docker.io"
    location = urlsplit(response.headers["location"])
    assert f"{location.scheme}://{location.netloc}" == moto_s3.endpoint
    assert location.path.endswith(f"/mirror/docker/registry/v2/blobs/sha256/"
                                  f"{layer['digest'][7:9]}/{layer['digest'][7:]}/data")
    assert parse_qs(location.query)["X-Amz-Expires"] == ["600"]
    async with httpx.AsyncClient() as bucket:
        fetched = await bucket.get(response.headers["location"])
    assert Digest.from_bytes(fetched.content) == Digest.parse(layer["digest"])


async def test_head_is_never_redirected(s3_store: tuple[CountingPresigner, dict[str, Any]]) -> None:
    store, layer = s3_store
    async with _client(store) as client:
        response = await client.head(f"/v2/{DEMO}/blobs/{layer['digest']}")
    assert response.status_code == 200
    assert "location" not in response.headers
    assert response.headers["content-length"] == str(layer["size"])
    assert store.calls["presign_get"] == 0


async def test_warm_redirects_reuse_the_url_and_touch_no_store(
        s3_store: tuple[CountingPresigner, dict[str, Any]]) -> None:
    store, layer = s3_store
    url = f"/v2/{DEMO}/blobs/{layer['digest']}"
    async with _client(store) as client:
        first = await client.get(url)
        assert store.reads == 2  # the layer link, then the size
        store.reset()
        again = [await client.get(url) for _ in range(5)]
    assert {r.headers["location"] for r in again} == {first.headers["location"]}
    assert store.reads == 0
    assert store.calls["presign_get"] == 0


async def test_range_requests_redirect_too(
        s3_store: tuple[CountingPresigner, dict[str, Any]]) -> None:
    """Clients keep Range across the redirect; S3 answers it."""
    store, layer = s3_store
    async with _client(store) as client:
        response = await client.get(f"/v2/{DEMO}/blobs/{layer['digest']}",
                                    headers={"Range": "bytes=0-9"})
        assert response.status_code == 307
        async with httpx.AsyncClient() as bucket:
            part = await bucket.get(response.headers["location"], headers={"Range": "bytes=0-9"})
    assert part.status_code == 206
    assert len(part.content) == 10


async def test_with_redirects_off_the_bytes_are_streamed(
        s3_store: tuple[CountingPresigner, dict[str, Any]]) -> None:
    store, layer = s3_store
    async with _client(store, blob_redirect=False) as client:
        whole = await client.get(f"/v2/{DEMO}/blobs/{layer['digest']}")
        part = await client.get(f"/v2/{DEMO}/blobs/{layer['digest']}",
                                headers={"Range": "bytes=2-"})
    assert whole.status_code == 200
    assert Digest.from_bytes(whole.content) == Digest.parse(layer["digest"])
    assert part.status_code == 206
    assert part.content == whole.content[2:]
    assert store.calls["presign_get"] == 0


async def test_manifests_come_from_the_bucket_through_the_caches(
        s3_store: tuple[CountingPresigner, dict[str, Any]]) -> None:
    store, _ = s3_store
    async with _client(store) as client:
        cold = await client.get("/v2/library/demo/manifests/1?ns=docker.io")
        assert cold.status_code == 200
        assert store.reads == 2
        store.reset()
        warm = await client.head("/v2/library/demo/manifests/1?ns=docker.io")
    assert warm.headers["docker-content-digest"] == cold.headers["docker-content-digest"]
    assert store.reads == 0
