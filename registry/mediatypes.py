"""OCI and Docker manifest media types, and how to tell a stored manifest's type."""

from __future__ import annotations

import json
from typing import Any

from registry.digest import Digest
from registry.errors import ErrorCode, RegistryError

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_MANIFEST_V1_SIGNED = "application/vnd.docker.distribution.manifest.v1+prettyjws"
OCTET_STREAM = "application/octet-stream"

INDEX_TYPES = frozenset({OCI_INDEX, DOCKER_MANIFEST_LIST})
MANIFEST_TYPES = frozenset({OCI_MANIFEST, DOCKER_MANIFEST, DOCKER_MANIFEST_V1_SIGNED}) | INDEX_TYPES

# The distribution-spec lets registries refuse larger manifests; 4 MiB is what registry:2 and
# containerd use, and it bounds what a manifest cache entry can cost.
MAX_MANIFEST_SIZE = 4 * 1024 * 1024


def parse_manifest(data: bytes) -> dict[str, Any]:
    """Decode a manifest's JSON object; anything else is MANIFEST_INVALID."""
    if len(data) > MAX_MANIFEST_SIZE:
        raise RegistryError(ErrorCode.MANIFEST_INVALID, {"size": len(data)}, "manifest too large")
    try:
        doc = json.loads(data)
    except ValueError as exc:
        raise RegistryError(ErrorCode.MANIFEST_INVALID, {"reason": str(exc)[:200]}) from None
    if not isinstance(doc, dict):
        raise RegistryError(ErrorCode.MANIFEST_INVALID, {"reason": "not a JSON object"})
    return doc


def media_type_of(doc: dict[str, Any]) -> str:
    """The manifest's own ``mediaType``, or what its shape says when the field is absent.

    OCI made ``mediaType`` optional in early image-spec versions, so an index is recognised by
    ``manifests`` and an image manifest by ``config``, as registry:2 does.
    """
    declared = doc.get("mediaType")
    if isinstance(declared, str) and declared:
        return declared
    if doc.get("schemaVersion") == 1:
        return DOCKER_MANIFEST_V1_SIGNED
    if "manifests" in doc:
        return OCI_INDEX
    return OCI_MANIFEST


def needs(doc: dict[str, Any]) -> tuple[list[Digest], list[Digest]]:
    """What a manifest needs to be pulled, by digest: an index's child manifests, and an image
    manifest's config and layers (a schema 1 manifest: none that regfront follows)."""
    def digests(items: object) -> list[Digest]:
        return [Digest.parse(item["digest"]) for item in items if isinstance(item, dict)
                and isinstance(item.get("digest"), str)] if isinstance(items, list) else []

    return digests(doc.get("manifests")), digests([doc.get("config"), *(doc.get("layers") or [])])
