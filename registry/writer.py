"""Committing content into a store in the order that keeps every reader safe.

Blobs first, then the manifests that need them (children before the index that lists them),
then the tag last: a reader that sees a tag can always resolve everything below it. Every byte is
verified against its digest before the object is committed.

Every write, and every decision made on something already being there (a blob not uploaded
again), comes after a claim on its subject (registry/claims.py), so a garbage collection
running meanwhile never deletes what a writer is about to commit or link.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterable, AsyncIterator
from typing import Any

from registry import layout
from registry.claims import claims_for
from registry.digest import Digest
from registry.mediatypes import media_type_of, parse_manifest
from registry.store import NotFound, ObjectStore


async def has_blob(store: ObjectStore, digest: Digest, *, claim: bool = True) -> bool:
    """Whether ``store`` holds the blob, claimed first so a writer may rely on the answer
    (``claim=False``: a dry run, which writes nothing and relies on nothing)."""
    if claim:
        await claims_for(store).claim(digest)
    try:
        await store.size(layout.blob_data(digest))
    except NotFound:
        return False
    return True


async def put_blob(store: ObjectStore, digest: Digest, chunks: AsyncIterable[bytes]) -> int:
    """Store a blob's bytes once (shared by every repository); returns bytes written."""
    if await has_blob(store, digest):
        return 0
    verifier = digest.verifier()

    async def verified() -> AsyncIterator[bytes]:
        async for chunk in chunks:
            verifier.update(chunk)
            yield chunk
        verifier.verify()  # raising here aborts put_stream: nothing is committed

    await store.put_stream(layout.blob_data(digest), verified())
    return verifier.size


async def link_blob(store: ObjectStore, name: str, digest: Digest) -> None:
    await claims_for(store).claim(digest)
    await store.put(layout.layer_link(name, digest), layout.link_content(digest))


async def put_manifest(store: ObjectStore, name: str, data: bytes) -> Digest:
    """Store a manifest's bytes verbatim, link it into ``name`` and index its ``subject``."""
    digest = Digest.from_bytes(data)
    doc = parse_manifest(data)
    if not await has_blob(store, digest):
        await store.put(layout.blob_data(digest), data)
    subject = doc.get("subject")
    if isinstance(subject, dict) and isinstance(subject.get("digest"), str):
        entry = referrer_descriptor(doc, digest, len(data))
        await store.put(layout.referrer_entry(name, Digest.parse(subject["digest"]), digest),
                        json.dumps(entry, sort_keys=True).encode())
    await store.put(layout.revision_link(name, digest), layout.link_content(digest))
    return digest


async def put_tag(store: ObjectStore, name: str, tag: str, digest: Digest) -> None:
    """Point ``tag`` at ``digest``: the history entry first, the current link last."""
    await claims_for(store).claim_all([digest, (name, tag)])
    await store.put(layout.tag_index_link(name, tag, digest), layout.link_content(digest))
    await store.put(layout.tag_current_link(name, tag), layout.link_content(digest))


def referrer_descriptor(doc: dict[str, Any], digest: Digest, size: int) -> dict[str, Any]:
    """The descriptor a referrers response lists for this manifest (OCI distribution 1.1)."""
    descriptor: dict[str, Any] = {
        "mediaType": media_type_of(doc),
        "digest": str(digest),
        "size": size,
    }
    config = doc.get("config")
    artifact_type = doc.get("artifactType")
    if not artifact_type and isinstance(config, dict):
        artifact_type = config.get("mediaType")
    if isinstance(artifact_type, str) and artifact_type:
        descriptor["artifactType"] = artifact_type
    if isinstance(doc.get("annotations"), dict):
        descriptor["annotations"] = doc["annotations"]
    return descriptor
