from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest

from gateway.http import parse_range
from registry.errors import RegistryError
from tests.gateway.conftest import DEMO, OTHER, Seeded


def _layer(seeded: Seeded) -> dict[str, Any]:
    layer: dict[str, Any] = seeded.manifest(seeded.single)["layers"][0]
    return layer


async def test_get_streams_the_bytes(client: httpx.AsyncClient, seeded: Seeded) -> None:
    layer = _layer(seeded)
    response = await client.get(f"/v2/{DEMO}/blobs/{layer['digest']}")
    assert response.status_code == 200
    assert response.content == seeded.blob(layer)
    assert response.headers["content-length"] == str(layer["size"])
    assert response.headers["docker-content-digest"] == layer["digest"]
    assert response.headers["content-type"] == "application/octet-stream"
    assert "content-encoding" not in response.headers


async def test_head_has_size_and_no_body(client: httpx.AsyncClient, seeded: Seeded) -> None:
    config = seeded.manifest(seeded.single)["config"]
    response = await client.head(f"/v2/{DEMO}/blobs/{config['digest']}")
    assert response.status_code == 200
    assert response.content == b""
    assert response.headers["content-length"] == str(config["size"])


@pytest.mark.parametrize(("header", "span"), [
    ("bytes=0-9", lambda size: (0, 9)),
    ("bytes=5-", lambda size: (5, size - 1)),
    ("bytes=-7", lambda size: (size - 7, size - 1)),
    ("bytes=3-100000", lambda size: (3, size - 1)),
])
async def test_range_is_206(client: httpx.AsyncClient, seeded: Seeded, header: str,
                            span: Callable[[int], tuple[int, int]]) -> None:
    layer = _layer(seeded)
    data = seeded.blob(layer)
    first, last = span(len(data))
    response = await client.get(f"/v2/{DEMO}/blobs/{layer['digest']}", headers={"Range": header})
    assert response.status_code == 206
    assert response.content == data[first:last + 1]
    assert response.headers["content-range"] == f"bytes {first}-{last}/{len(data)}"
    assert response.headers["content-length"] == str(last - first + 1)


async def test_range_past_the_end_is_416(client: httpx.AsyncClient, seeded: Seeded) -> None:
    layer = _layer(seeded)
    response = await client.get(f"/v2/{DEMO}/blobs/{layer['digest']}",
                                headers={"Range": f"bytes={layer['size']}-"})
    assert response.status_code == 416
    assert response.headers["content-range"] == f"bytes */{layer['size']}"
    assert response.json()["errors"][0]["code"] == "RANGE_INVALID"


async def test_malformed_range_serves_everything(client: httpx.AsyncClient,
                                                 seeded: Seeded) -> None:
    layer = _layer(seeded)
    response = await client.get(f"/v2/{DEMO}/blobs/{layer['digest']}",
                                headers={"Range": "bytes=0-1,5-6"})
    assert response.status_code == 200
    assert response.content == seeded.blob(layer)


async def test_a_blob_linked_only_in_another_repository_is_404(client: httpx.AsyncClient,
                                                               seeded: Seeded) -> None:
    private = seeded.manifest(seeded.other)["layers"][0]
    assert (await client.get(f"/v2/{OTHER}/blobs/{private['digest']}")).status_code == 200
    for method in ("GET", "HEAD"):
        response = await client.request(method, f"/v2/{DEMO}/blobs/{private['digest']}")
        assert response.status_code == 404
    response = await client.get(f"/v2/{DEMO}/blobs/{private['digest']}")
    assert response.json()["errors"][0]["code"] == "BLOB_UNKNOWN"


async def test_a_manifest_can_be_fetched_as_a_blob(client: httpx.AsyncClient,
                                                   seeded: Seeded) -> None:
    response = await client.get(f"/v2/{DEMO}/blobs/{seeded.multi['digest']}")
    assert response.status_code == 200
    assert response.content == seeded.blob(seeded.multi)


async def test_unknown_blob(client: httpx.AsyncClient) -> None:
    response = await client.get(f"/v2/{DEMO}/blobs/sha256:{'0' * 64}")
    assert response.status_code == 404
    assert response.json()["errors"][0]["code"] == "BLOB_UNKNOWN"


def test_parse_range_edges() -> None:
    assert parse_range(None, 10) is None
    assert parse_range("bytes=-20", 10) == (0, 9)
    assert parse_range("items=0-1", 10) is None
    assert parse_range("bytes=-", 10) is None
    with pytest.raises(RegistryError):
        parse_range("bytes=5-4", 10)
    with pytest.raises(RegistryError):
        parse_range("bytes=-0", 10)
    with pytest.raises(RegistryError):
        parse_range("bytes=0-", 0)
