"""The probe image: served from memory for every ``ns``, whole and self-consistent, with no store
call, so a node's probe depends only on reaching the gateway."""

from __future__ import annotations

import json

import httpx

from registry import probe
from registry.digest import Digest
from registry.mediatypes import OCI_INDEX, OCI_MANIFEST
from tests.gateway.conftest import Seeded

BASE = f"/v2/{probe.NAME}"


async def _get(client: httpx.AsyncClient, path: str, method: str = "GET") -> httpx.Response:
    response = await client.request(method, path)
    assert response.status_code == 200, (path, response.text)
    return response


async def test_every_registry_gets_the_whole_image_and_no_store_is_asked(
        client: httpx.AsyncClient, seeded: Seeded) -> None:
    before = sum(seeded.store.calls.values())
    for ns in ("docker.io", "ghcr.io", "reg.corp:5000"):
        head = await _get(client, f"{BASE}/manifests/some-node?ns={ns}", "HEAD")
        assert head.headers["docker-content-digest"] == str(probe.INDEX_DIGEST)
        assert head.headers["content-type"] == OCI_INDEX
        index = await _get(client, f"{BASE}/manifests/{probe.INDEX_DIGEST}?ns={ns}")
        assert Digest.from_bytes(index.content) == probe.INDEX_DIGEST
        children = json.loads(index.content)["manifests"]
        assert {c["platform"]["architecture"] for c in children} >= {"amd64", "arm64"}
        for child in children:
            manifest = await _get(client, f"{BASE}/manifests/{child['digest']}?ns={ns}")
            assert manifest.headers["content-type"] == OCI_MANIFEST
            assert Digest.from_bytes(manifest.content) == Digest.parse(child["digest"])
            body = json.loads(manifest.content)
            for descriptor in (body["config"], *body["layers"]):
                blob = await _get(client, f"{BASE}/blobs/{descriptor['digest']}?ns={ns}")
                assert len(blob.content) == descriptor["size"]
                assert Digest.from_bytes(blob.content) == Digest.parse(descriptor["digest"])
            config = json.loads(await _blob(client, body["config"]["digest"]))
            assert config["architecture"] == child["platform"]["architecture"]
    assert sum(seeded.store.calls.values()) == before


async def _blob(client: httpx.AsyncClient, digest: str) -> bytes:
    return (await _get(client, f"{BASE}/blobs/{digest}")).content


async def test_anything_else_in_the_probe_repository_is_unknown(
        client: httpx.AsyncClient) -> None:
    other = Digest.from_bytes(b"not the probe")
    manifest = await client.get(f"{BASE}/manifests/{other}")
    blob = await client.get(f"{BASE}/blobs/{other}")
    assert (manifest.status_code, manifest.json()["errors"][0]["code"]) == (404,
                                                                            "MANIFEST_UNKNOWN")
    assert (blob.status_code, blob.json()["errors"][0]["code"]) == (404, "BLOB_UNKNOWN")
