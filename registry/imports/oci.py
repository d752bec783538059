"""``oci:DIR[:REF]``: an image or a multi-arch index from an OCI image layout, digests kept."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from anyio import to_thread

from registry import writer
from registry.digest import Digest
from registry.errors import ConfigError
from registry.imports import ImportResult
from registry.mediatypes import INDEX_TYPES, media_type_of, parse_manifest
from registry.store import ObjectStore, file_chunks

REF_NAME_ANNOTATION = "org.opencontainers.image.ref.name"


class _Layout:
    def __init__(self, root: Path) -> None:
        self.root = root
        if not root.exists():
            raise ConfigError(f"{root}: no such directory")
        if not root.is_dir():
            raise ConfigError(f"{root}: not a directory (oci: takes an OCI image layout's "
                              "directory; a docker save tarball is docker-archive:FILE)")
        if not (root / "oci-layout").is_file() or not (root / "index.json").is_file():
            raise ConfigError(f"{root}: not an OCI image layout (no oci-layout or index.json)")

    def blob_path(self, digest: Digest) -> Path:
        return self.root / "blobs" / digest.algorithm / digest.hex

    def index(self) -> dict[str, Any]:
        return parse_manifest((self.root / "index.json").read_bytes())

    async def read_verified(self, descriptor: dict[str, Any]) -> bytes:
        digest = Digest.parse(descriptor["digest"])
        path = self.blob_path(digest)
        try:
            data = await to_thread.run_sync(path.read_bytes)
        except FileNotFoundError:
            raise ConfigError(f"{self.root}: blob {digest} is missing") from None
        self._check(digest, descriptor, len(data))
        verifier = digest.verifier()
        verifier.update(data)
        verifier.verify()
        return data

    def _check(self, digest: Digest, descriptor: dict[str, Any], size: int) -> None:
        if descriptor.get("size") != size:
            raise ConfigError(f"{self.root}: blob {digest} is {size} bytes, "
                              f"its descriptor says {descriptor.get('size')}")

    def stream(self, digest: Digest) -> AsyncIterator[bytes]:
        return file_chunks(self.blob_path(digest))


def _select(index: dict[str, Any], ref: str | None, root: Path) -> dict[str, Any]:
    manifests = [m for m in index.get("manifests", []) if isinstance(m, dict)]
    if ref is None:
        if len(manifests) == 1:
            return manifests[0]
        raise ConfigError(f"{root}: index.json lists {len(manifests)} images; name one as "
                          f"oci:{root}:REF ({_refs(manifests)})")
    for descriptor in manifests:
        annotations = descriptor.get("annotations") or {}
        if annotations.get(REF_NAME_ANNOTATION) == ref or descriptor.get("digest") == ref:
            return descriptor
    raise ConfigError(f"{root}: no image named {ref!r} in index.json ({_refs(manifests)})")


def _refs(manifests: list[dict[str, Any]]) -> str:
    names = [(m.get("annotations") or {}).get(REF_NAME_ANNOTATION) for m in manifests]
    known = [n for n in names if n]
    return "refs: " + ", ".join(known) if known else "no ref names"


async def import_oci(store: ObjectStore, root: Path, ref: str | None, name: str,
                     tag: str) -> ImportResult:
    layout = _Layout(root)
    top = _select(layout.index(), ref, root)
    result = ImportResult(digest=Digest.parse(top["digest"]))
    await _copy_manifest(store, layout, name, top, result)
    await writer.put_tag(store, name, tag, Digest.parse(top["digest"]))
    return result


async def _copy_manifest(store: ObjectStore, layout: _Layout, name: str,
                         descriptor: dict[str, Any], result: ImportResult) -> None:
    data = await layout.read_verified(descriptor)
    doc = parse_manifest(data)
    if media_type_of(doc) in INDEX_TYPES:
        for child in doc.get("manifests", []):
            await _copy_manifest(store, layout, name, child, result)
    else:
        for blob in [doc.get("config"), *doc.get("layers", [])]:
            if isinstance(blob, dict):
                await _copy_blob(store, layout, name, blob, result)
    await writer.put_manifest(store, name, data)
    result.manifests += 1


async def _copy_blob(store: ObjectStore, layout: _Layout, name: str,
                     descriptor: dict[str, Any], result: ImportResult) -> None:
    digest = Digest.parse(descriptor["digest"])
    path = layout.blob_path(digest)
    if not path.is_file():
        if descriptor.get("urls"):  # a non-distributable layer: clients fetch it elsewhere
            result.skipped.append(str(digest))
            return
        raise ConfigError(f"{layout.root}: blob {digest} is missing")
    layout._check(digest, descriptor, path.stat().st_size)
    result.bytes_written += await writer.put_blob(store, digest,
                                                  layout.stream(digest))
    await writer.link_blob(store, name, digest)
    result.blobs += 1
