from __future__ import annotations

import json

import httpx

from registry import writer
from registry.digest import Digest
from registry.mediatypes import OCI_INDEX, OCI_MANIFEST
from tests.gateway.conftest import DEMO, SIGNATURE_TYPE, Seeded


async def test_lists_manifests_whose_subject_is_the_digest(client: httpx.AsyncClient,
                                                           seeded: Seeded) -> None:
    response = await client.get(f"/v2/{DEMO}/referrers/{seeded.single['digest']}")
    assert response.status_code == 200
    assert response.headers["content-type"] == OCI_INDEX
    index = response.json()
    assert index["schemaVersion"] == 2
    assert index["mediaType"] == OCI_INDEX
    assert index["manifests"] == [{
        "mediaType": OCI_MANIFEST,
        "digest": seeded.signature["digest"],
        "size": seeded.signature["size"],
        "artifactType": SIGNATURE_TYPE,
    }]


async def test_artifact_type_filter(client: httpx.AsyncClient, seeded: Seeded) -> None:
    url = f"/v2/{DEMO}/referrers/{seeded.single['digest']}"
    hit = await client.get(url, params={"artifactType": SIGNATURE_TYPE})
    assert hit.headers["oci-filters-applied"] == "artifactType"
    assert len(hit.json()["manifests"]) == 1
    miss = await client.get(url, params={"artifactType": "application/other"})
    assert miss.headers["oci-filters-applied"] == "artifactType"
    assert miss.json()["manifests"] == []


async def test_none_is_an_empty_index_not_404(client: httpx.AsyncClient,
                                              seeded: Seeded) -> None:
    response = await client.get(f"/v2/{DEMO}/referrers/{seeded.multi['digest']}")
    assert response.status_code == 200
    assert response.json()["manifests"] == []
    assert "oci-filters-applied" not in response.headers


async def test_referrers_are_scoped_to_the_repository(client: httpx.AsyncClient,
                                                      seeded: Seeded) -> None:
    response = await client.get(f"/v2/other/repo/referrers/{seeded.single['digest']}")
    assert response.json()["manifests"] == []


async def test_the_sha256_tag_scheme_is_folded_in(client: httpx.AsyncClient,
                                                  seeded: Seeded) -> None:
    """A bucket registry:2 wrote keeps referrers in a ``sha256-<hex>`` tagged index."""
    subject = Digest.parse(seeded.multi["digest"])
    listed = {"mediaType": OCI_MANIFEST, "digest": "sha256:" + "e" * 64, "size": 10,
              "artifactType": "application/vnd.example.sbom"}
    fallback = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX,
                           "manifests": [listed]}).encode()
    digest = await writer.put_manifest(seeded.store, DEMO, fallback)
    await writer.put_tag(seeded.store, DEMO, f"sha256-{subject.hex}", digest)
    response = await client.get(f"/v2/{DEMO}/referrers/{subject}")
    assert response.json()["manifests"] == [listed]


async def test_bad_digest_is_400(client: httpx.AsyncClient) -> None:
    response = await client.get(f"/v2/{DEMO}/referrers/sha256:nope")
    assert response.status_code == 400
    assert response.json()["errors"][0]["code"] == "DIGEST_INVALID"
