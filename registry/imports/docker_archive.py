"""``docker-archive:FILE[:REF]``: an image from a ``docker save`` tarball.

A docker archive carries the image config and the layer tars but no registry manifest, so one
is created here (OCI image manifest, layers as stored in the archive). Its digest therefore
differs from the one in the registry the image came from; prefer ``oci:`` (``skopeo copy
docker://... oci:DIR:REF``) when digests must match the source (docs/configuration.md).
"""

from __future__ import annotations

import hashlib
import json
import tarfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import IO, Any

from anyio import to_thread

from registry import writer
from registry.digest import Digest
from registry.errors import ConfigError
from registry.imports import ImportResult
from registry.mediatypes import OCI_MANIFEST
from registry.store import CHUNK_SIZE, ObjectStore

CONFIG_TYPE = "application/vnd.oci.image.config.v1+json"
LAYER_TAR = "application/vnd.oci.image.layer.v1.tar"
LAYER_TAR_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
_GZIP_MAGIC = b"\x1f\x8b"


class _Archive:
    def __init__(self, path: Path) -> None:
        self.path = path
        if not path.exists():
            raise ConfigError(f"{path}: no such file")
        try:
            self.tar = tarfile.open(path, "r:*")  # noqa: SIM115 - closed by close()
        except (OSError, tarfile.TarError) as exc:
            raise ConfigError(f"{path}: not a readable docker archive ({exc})") from None

    def member(self, name: str) -> IO[bytes]:
        try:
            handle = self.tar.extractfile(name.lstrip("/"))
        except KeyError:
            handle = None
        if handle is None:
            raise ConfigError(f"{self.path}: {name} is missing from the archive")
        return handle

    def read(self, name: str) -> bytes:
        with self.member(name) as handle:
            return handle.read()

    def hash_member(self, name: str) -> tuple[Digest, int, bytes]:
        """Digest, size and first bytes of a member, read once."""
        digest, size, head = hashlib.sha256(), 0, b""
        with self.member(name) as handle:
            while chunk := handle.read(CHUNK_SIZE):
                head = head or chunk[:2]
                digest.update(chunk)
                size += len(chunk)
        return Digest("sha256", digest.hexdigest()), size, head

    def close(self) -> None:
        self.tar.close()


def _select(entries: list[dict[str, Any]], ref: str | None, path: Path) -> dict[str, Any]:
    tags = [t for entry in entries for t in entry.get("RepoTags") or []]
    if ref is None:
        if len(entries) == 1:
            return entries[0]
        raise ConfigError(f"{path}: the archive holds {len(entries)} images; name one as "
                          f"docker-archive:{path}:REF (tags: {', '.join(tags) or 'none'})")
    if ref.startswith("@") and ref[1:].isdigit() and int(ref[1:]) < len(entries):
        return entries[int(ref[1:])]
    for entry in entries:
        if ref in (entry.get("RepoTags") or []):
            return entry
    raise ConfigError(f"{path}: no image tagged {ref!r} in the archive "
                      f"(tags: {', '.join(tags) or 'none'}; or @INDEX)")


async def import_docker_archive(store: ObjectStore, path: Path, ref: str | None, name: str,
                                tag: str) -> ImportResult:
    archive = await to_thread.run_sync(_Archive, path)
    try:
        return await _import(store, archive, ref, name, tag)
    finally:
        archive.close()


async def _import(store: ObjectStore, archive: _Archive, ref: str | None, name: str,
                  tag: str) -> ImportResult:
    try:
        entries = json.loads(await to_thread.run_sync(archive.read, "manifest.json"))
    except ValueError:
        raise ConfigError(f"{archive.path}: manifest.json is not JSON") from None
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise ConfigError(f"{archive.path}: manifest.json is not a list of images")
    entry = _select(entries, ref, archive.path)
    blobs = bytes_written = 0

    config = await to_thread.run_sync(archive.read, entry["Config"])
    config_digest = Digest.from_bytes(config)
    layers = []
    for layer_name in entry.get("Layers") or []:
        digest, size, head = await to_thread.run_sync(archive.hash_member, layer_name)
        media_type = LAYER_TAR_GZIP if head == _GZIP_MAGIC else LAYER_TAR
        bytes_written += await writer.put_blob(store, digest, _stream(archive, layer_name))
        await writer.link_blob(store, name, digest)
        layers.append({"mediaType": media_type, "digest": str(digest), "size": size})
        blobs += 1
    bytes_written += await writer.put_blob(store, config_digest, _one(config))
    await writer.link_blob(store, name, config_digest)

    manifest = json.dumps({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": CONFIG_TYPE, "digest": str(config_digest), "size": len(config)},
        "layers": layers,
    }, indent=2).encode()
    digest = await writer.put_manifest(store, name, manifest)
    await writer.put_tag(store, name, tag, digest)
    return ImportResult(digest, manifests=1, blobs=blobs + 1, bytes_written=bytes_written)


async def _stream(archive: _Archive, member: str) -> AsyncIterator[bytes]:
    handle = await to_thread.run_sync(archive.member, member)
    try:
        while chunk := await to_thread.run_sync(handle.read, CHUNK_SIZE):
            yield chunk
    finally:
        handle.close()


async def _one(data: bytes) -> AsyncIterator[bytes]:
    yield data
