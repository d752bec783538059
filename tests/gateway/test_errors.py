"""What a read-only mirror answers to everything it does not serve."""

from __future__ import annotations

import httpx
import pytest

from tests.gateway.conftest import DEMO


async def test_version_check(client: httpx.AsyncClient) -> None:
    for method in ("GET", "HEAD"):
        response = await client.request(method, "/v2/")
        assert response.status_code == 200
        assert response.headers["docker-distribution-api-version"] == "registry/2.0"
    assert (await client.get("/v2/")).json() == {}


@pytest.mark.parametrize(("method", "path"), [
    ("POST", f"/v2/{DEMO}/blobs/uploads/"),
    ("PATCH", f"/v2/{DEMO}/blobs/uploads/1234"),
    ("PUT", f"/v2/{DEMO}/blobs/uploads/1234?digest=sha256:{'0' * 64}"),
    ("DELETE", f"/v2/{DEMO}/blobs/uploads/1234"),
    ("PUT", f"/v2/{DEMO}/manifests/latest"),
    ("DELETE", f"/v2/{DEMO}/manifests/sha256:{'0' * 64}"),
    ("DELETE", f"/v2/{DEMO}/blobs/sha256:{'0' * 64}"),
    ("POST", f"/v2/{DEMO}/blobs/uploads/?mount=sha256:{'0' * 64}&from=x"),
    ("PUT", "/v2/"),
])
async def test_every_push_and_delete_is_405_unsupported(client: httpx.AsyncClient, method: str,
                                                        path: str) -> None:
    response = await client.request(method, path, content=b"{}")
    assert response.status_code == 405
    assert response.json()["errors"][0]["code"] == "UNSUPPORTED"
    assert response.headers["docker-distribution-api-version"] == "registry/2.0"


async def test_unknown_endpoints_are_404_with_an_oci_body(client: httpx.AsyncClient) -> None:
    for path in ("/v2/_catalog", f"/v2/{DEMO}/blobs/uploads/1234", "/v1/", "/"):
        response = await client.get(path)
        assert response.status_code == 404, path
        assert response.json()["errors"][0]["code"] == "NOT_FOUND"


@pytest.mark.parametrize("path", [
    "/v2/../etc/passwd/manifests/x", "/v2/a/../../b/manifests/x", "/v2/%2e%2e/manifests/x",
    "/v2/" + "a/" * 200 + "b/manifests/x", "/v2/a/manifests/" + "t" * 200,
    "/v2/a/blobs/sha256:" + "0" * 65, "/v2/a/manifests/x?ns=" + "h" * 300,
    "/v2/a%00b/manifests/x",
])
async def test_hostile_paths_are_4xx_never_5xx(client: httpx.AsyncClient, path: str) -> None:
    response = await client.get(path)
    assert 400 <= response.status_code < 500
    assert response.json()["errors"][0]["code"]
