from __future__ import annotations

import httpx
import pytest

from registry.mediatypes import OCI_INDEX, OCI_MANIFEST
from tests.gateway.conftest import DEMO, OTHER, Seeded


async def test_get_by_tag_serves_the_stored_bytes(client: httpx.AsyncClient,
                                                  seeded: Seeded) -> None:
    response = await client.get(f"/v2/{DEMO}/manifests/single")
    assert response.status_code == 200
    assert response.content == seeded.blob(seeded.single)
    assert response.headers["content-type"] == OCI_MANIFEST
    assert response.headers["docker-content-digest"] == seeded.single["digest"]
    assert response.headers["content-length"] == str(seeded.single["size"])
    assert response.headers["etag"] == f'"{seeded.single["digest"]}"'
    assert response.headers["docker-distribution-api-version"] == "registry/2.0"


async def test_head_has_the_headers_and_no_body(client: httpx.AsyncClient,
                                                seeded: Seeded) -> None:
    response = await client.head(f"/v2/{DEMO}/manifests/multi")
    assert response.status_code == 200
    assert response.content == b""
    assert response.headers["content-type"] == OCI_INDEX
    assert response.headers["docker-content-digest"] == seeded.multi["digest"]
    assert response.headers["content-length"] == str(seeded.multi["size"])


async def test_get_by_digest(client: httpx.AsyncClient, seeded: Seeded) -> None:
    child = seeded.manifest(seeded.multi)["manifests"][1]
    response = await client.get(f"/v2/{DEMO}/manifests/{child['digest']}")
    assert response.status_code == 200
    assert response.content == seeded.blob(child)


async def test_if_none_match_is_304(client: httpx.AsyncClient, seeded: Seeded) -> None:
    etag = f'"{seeded.single["digest"]}"'
    response = await client.get(f"/v2/{DEMO}/manifests/single", headers={"If-None-Match": etag})
    assert response.status_code == 304
    assert response.content == b""
    assert response.headers["docker-content-digest"] == seeded.single["digest"]
    other = await client.get(f"/v2/{DEMO}/manifests/single", headers={"If-None-Match": '"x"'})
    assert other.status_code == 200


async def test_accept_never_changes_the_bytes(client: httpx.AsyncClient, seeded: Seeded) -> None:
    response = await client.get(f"/v2/{DEMO}/manifests/single", headers={
        "Accept": "application/vnd.docker.distribution.manifest.v2+json"})
    assert response.status_code == 200
    assert response.content == seeded.blob(seeded.single)
    assert response.headers["content-type"] == OCI_MANIFEST


async def test_ns_names_the_registry_and_is_echoed(client: httpx.AsyncClient,
                                                   seeded: Seeded) -> None:
    for ns in ("docker.io", "registry-1.docker.io"):
        response = await client.head(f"/v2/library/demo/manifests/single?ns={ns}")
        assert response.status_code == 200
        assert response.headers["docker-content-digest"] == seeded.single["digest"]
        assert response.headers["oci-namespace"] == ns


async def test_unknown_tag_is_a_fast_404(client: httpx.AsyncClient) -> None:
    response = await client.get(f"/v2/{DEMO}/manifests/nope")
    assert response.status_code == 404
    assert response.json()["errors"][0]["code"] == "MANIFEST_UNKNOWN"
    head = await client.head(f"/v2/{DEMO}/manifests/nope")
    assert head.status_code == 404


async def test_a_digest_from_another_repository_is_unknown(client: httpx.AsyncClient,
                                                           seeded: Seeded) -> None:
    response = await client.get(f"/v2/{DEMO}/manifests/{seeded.other['digest']}")
    assert response.status_code == 404
    assert response.json()["errors"][0]["code"] == "MANIFEST_UNKNOWN"
    ok = await client.get(f"/v2/{OTHER}/manifests/{seeded.other['digest']}")
    assert ok.status_code == 200


@pytest.mark.parametrize("path", ["/v2/demo/manifests/.INVALID", "/v2/demo/manifests/sha256:123",
                                  f"/v2/{DEMO}/manifests/-x"])
@pytest.mark.parametrize("method", ["GET", "HEAD"])
async def test_a_reference_that_is_neither_tag_nor_digest_names_no_manifest(
        client: httpx.AsyncClient, path: str, method: str) -> None:
    response = await client.request(method, path)
    assert response.status_code == 404
    if method == "GET":
        assert response.json()["errors"][0]["code"] == "MANIFEST_UNKNOWN"


@pytest.mark.parametrize(("path", "code"), [
    ("/v2/Demo/manifests/single", "NAME_INVALID"),
    ("/v2/demo/blobs/sha256:123", "DIGEST_INVALID"),
    ("/v2/demo/manifests/single?ns=bad host", "NAME_INVALID"),
])
async def test_malformed_requests_are_400(client: httpx.AsyncClient, path: str,
                                          code: str) -> None:
    response = await client.get(path)
    assert response.status_code == 400
    assert response.json()["errors"][0]["code"] == code


async def test_stored_bytes_that_do_not_match_their_digest_are_never_served(
        client: httpx.AsyncClient, seeded: Seeded) -> None:
    from registry import layout
    from registry.digest import Digest

    digest = Digest.parse(seeded.single["digest"])
    await seeded.store.put(layout.blob_data(digest), b'{"tampered": true}')
    response = await client.get(f"/v2/{DEMO}/manifests/single")
    assert response.status_code == 404
