"""What a manifest is and what it needs: the shape rules registry:2 applies when ``mediaType``
is absent, and the digests an image or an index needs to be pulled."""

from __future__ import annotations

import json

import pytest

from registry.digest import Digest
from registry.errors import RegistryError
from registry.mediatypes import (
    DOCKER_MANIFEST_V1_SIGNED,
    OCI_INDEX,
    OCI_MANIFEST,
    media_type_of,
    needs,
    parse_manifest,
)

A, B, C = (Digest.from_bytes(bytes([n])) for n in range(3))


def _descriptor(digest: Digest) -> dict[str, object]:
    return {"mediaType": "application/octet-stream", "digest": str(digest), "size": 1}


@pytest.mark.parametrize(("doc", "expected"), [
    ({"mediaType": "application/x-own"}, "application/x-own"),
    ({"schemaVersion": 1}, DOCKER_MANIFEST_V1_SIGNED),
    ({"schemaVersion": 2, "manifests": []}, OCI_INDEX),
    ({"schemaVersion": 2, "config": {}}, OCI_MANIFEST),
])
def test_the_media_type_is_declared_or_read_from_the_shape(doc: dict[str, object],
                                                           expected: str) -> None:
    assert media_type_of(doc) == expected


def test_an_image_needs_its_config_then_its_layers() -> None:
    doc = {"config": _descriptor(A), "layers": [_descriptor(B), _descriptor(C)]}
    assert needs(doc) == ([], [A, B, C])


def test_an_index_needs_its_children() -> None:
    doc = {"manifests": [_descriptor(B), {"no": "digest"}, _descriptor(A)]}
    assert needs(doc) == ([B, A], [])


def test_malformed_references_are_not_followed_but_bad_digests_are_refused() -> None:
    assert needs({"config": "nope", "layers": {"digest": str(A)}}) == ([], [])
    with pytest.raises(RegistryError, match="DIGEST_INVALID"):
        needs({"layers": [{"digest": "sha256:short"}]})


def test_only_a_json_object_is_a_manifest() -> None:
    for data in (b"[]", b"{", b" " * (4 * 1024 * 1024 + 1)):
        with pytest.raises(RegistryError, match="MANIFEST"):
            parse_manifest(data)
    assert parse_manifest(json.dumps({"a": 1}).encode()) == {"a": 1}
