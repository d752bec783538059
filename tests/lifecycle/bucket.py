"""A bucket for the lifecycle tests: images committed through registry/writer.py (as import,
sync and pull-through commit them), a pull that checks every byte the way a client would, and
time that moves only when slept through."""

from __future__ import annotations

import asyncio
import json
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from registry import layout, writer
from registry.claims import Claims, Timing, use_claims
from registry.digest import Digest
from registry.errors import RegistryError
from registry.mediatypes import INDEX_TYPES, OCI_INDEX, OCI_MANIFEST, media_type_of, parse_manifest
from registry.names import Reference
from registry.store import NotFound, ObjectStore

CONFIG_TYPE = "application/vnd.oci.image.config.v1+json"
LAYER_TYPE = "application/vnd.oci.image.layer.v1.tar+gzip"
EPOCH = 1_800_000_000.0


class FakeTime:
    """Wall and monotonic time that a sleep advances at once (one task at a time: the
    collector's settle, a writer waiting out an announcement)."""

    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def wall(self) -> float:
        return EPOCH + self.now

    def monotonic(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += max(seconds, 0.0)
        await asyncio.sleep(0)

    def timing(self) -> Timing:
        return Timing(wall=self.wall, monotonic=self.monotonic, sleep=self.sleep)


@dataclass
class Image:
    name: str
    digest: Digest
    data: bytes
    blobs: list[Digest] = field(default_factory=list)  # config and layers (an image's)
    children: list[Image] = field(default_factory=list)  # an index's

    def everything(self) -> set[Digest]:
        found = {self.digest, *self.blobs}
        for child in self.children:
            found |= child.everything()
        return found

    @property
    def descriptor(self) -> dict[str, Any]:
        media_type = media_type_of(parse_manifest(self.data))
        return {"mediaType": media_type, "digest": str(self.digest), "size": len(self.data)}


class Bucket:
    """Writes images into ``store`` through the writer, claims and all."""

    def __init__(self, store: ObjectStore, time: FakeTime | None = None, seed: int = 0) -> None:
        self.store = store
        self.rng = random.Random(seed)
        if time is not None:
            use_claims(store, Claims(store, time.timing()))

    def layer(self, size: int = 64) -> bytes:
        return self.rng.randbytes(size)

    async def blob(self, name: str, data: bytes) -> Digest:
        digest = Digest.from_bytes(data)

        async def chunks() -> Any:
            yield data

        await writer.put_blob(self.store, digest, chunks())
        await writer.link_blob(self.store, name, digest)
        return digest

    async def image(self, name: str, layers: list[bytes] | None = None, *,
                    created: str | None = "2026-01-01T00:00:00Z", tag: str | None = None,
                    subject: Image | None = None, artifact_type: str | None = None) -> Image:
        layers = layers if layers is not None else [self.layer()]
        config = json.dumps({"architecture": "amd64", "os": "linux",
                             **({"created": created} if created else {}),
                             "salt": self.rng.random()}).encode()
        config_digest = await self.blob(name, config)
        layer_digests = [await self.blob(name, data) for data in layers]
        doc: dict[str, Any] = {
            "schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": {"mediaType": CONFIG_TYPE, "digest": str(config_digest),
                       "size": len(config)},
            "layers": [{"mediaType": LAYER_TYPE, "digest": str(d), "size": len(data)}
                       for d, data in zip(layer_digests, layers, strict=True)]}
        if subject is not None:
            doc["subject"] = subject.descriptor
        if artifact_type is not None:
            doc["artifactType"] = artifact_type
        data = json.dumps(doc).encode()
        digest = await writer.put_manifest(self.store, name, data)
        image = Image(name, digest, data, [config_digest, *layer_digests])
        if tag is not None:
            await writer.put_tag(self.store, name, tag, digest)
        return image

    async def index(self, name: str, children: list[Image], *, tag: str | None = None) -> Image:
        doc = {"schemaVersion": 2, "mediaType": OCI_INDEX,
               "manifests": [{**c.descriptor, "platform": {"os": "linux",
                                                           "architecture": f"arch{n}"}}
                             for n, c in enumerate(children)]}
        data = json.dumps(doc).encode()
        digest = await writer.put_manifest(self.store, name, data)
        image = Image(name, digest, data, children=list(children))
        if tag is not None:
            await writer.put_tag(self.store, name, tag, digest)
        return image

    async def tag(self, name: str, tag: str, image: Image) -> None:
        await writer.put_tag(self.store, name, tag, image.digest)


async def pull(store: ObjectStore, name: str, reference: Reference) -> str | None:
    """Pull ``name:reference`` as a client would, reading every object the gateway would;
    None when it all arrives intact, else what failed."""
    try:
        if isinstance(reference, str):
            reference = Digest.parse((await store.get(
                layout.tag_current_link(name, reference))).decode())
        return await _pull_manifest(store, name, reference)
    except NotFound as exc:
        return f"{name}@{reference}: missing {exc.key}"
    except RegistryError as exc:
        return f"{name}@{reference}: {exc}"


async def _pull_manifest(store: ObjectStore, name: str, digest: Digest) -> str | None:
    await store.get(layout.revision_link(name, digest))
    data = await store.get(layout.blob_data(digest))
    if not digest.matches(data):
        return f"{name}@{digest}: manifest bytes do not match"
    doc = parse_manifest(data)
    if media_type_of(doc) in INDEX_TYPES:
        for child in doc["manifests"]:
            if (failed := await _pull_manifest(store, name, Digest.parse(child["digest"]))):
                return failed
        return None
    for descriptor in [doc["config"], *doc["layers"]]:
        blob = Digest.parse(descriptor["digest"])
        await store.get(layout.layer_link(name, blob))
        if not blob.matches(await store.get(layout.blob_data(blob))):
            return f"{name}@{blob}: blob bytes do not match"
    return None


async def tags(store: ObjectStore, name: str) -> list[str]:
    return await store.children(layout.tags_dir(name))


async def blob_exists(store: ObjectStore, digest: Digest) -> bool:
    try:
        await store.size(layout.blob_data(digest))
    except NotFound:
        return False
    return True


def raw_image(root: Path, name: str, tag: str | None, layers: list[bytes]) -> Digest:
    """An image written straight to a file store's directory (as registry:2 would leave it,
    no claims): fast enough to build buckets of thousands of images."""

    def put(key: str, data: bytes) -> None:
        path = root / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)

    def blob(data: bytes) -> Digest:
        digest = Digest.from_bytes(data)
        put(layout.blob_data(digest), data)
        put(layout.layer_link(name, digest), layout.link_content(digest))
        return digest

    config = json.dumps({"architecture": "amd64", "os": "linux", "tag": tag}).encode()
    descriptors = [{"mediaType": LAYER_TYPE, "digest": str(blob(data)), "size": len(data)}
                   for data in layers]
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": CONFIG_TYPE, "digest": str(blob(config)), "size": len(config)},
        "layers": descriptors}).encode()
    digest = Digest.from_bytes(manifest)
    put(layout.blob_data(digest), manifest)
    put(layout.revision_link(name, digest), layout.link_content(digest))
    if tag is not None:
        put(layout.tag_index_link(name, tag, digest), layout.link_content(digest))
        put(layout.tag_current_link(name, tag), layout.link_content(digest))
    return digest


async def valid(store: ObjectStore, *, empty_directories: bool = False) -> list[str]:
    """What is wrong with the bucket: every tag and every revision link left must pull whole
    (a collection leaves what it has not yet deleted of an image whole below every manifest).
    ``empty_directories``: a tag directory with nothing in it is no tag (a file store killed
    between deleting a tag's last link and removing its directory leaves one)."""
    problems = []
    for name in await repositories(store):
        for tag in await store.children(layout.tags_dir(name)):
            if empty_directories and not await _holds_objects(store, f"{layout.tags_dir(name)}"
                                                                     f"{tag}/"):
                continue
            if (failed := await pull(store, name, tag)) is not None:
                problems.append(failed)
        for algorithm in await store.children(layout.revisions_dir(name)):
            for hex_part in await store.children(layout.revisions_dir(name, algorithm)):
                digest = Digest.parse(f"{algorithm}:{hex_part}")
                if (failed := await pull(store, name, digest)) is not None:
                    problems.append(failed)
    return problems


async def repositories(store: ObjectStore) -> list[str]:
    found: list[str] = []

    async def walk(path: str) -> None:
        children = await store.children(f"{layout.REPOSITORIES_ROOT}{path}/")
        if "_manifests" in children:
            found.append(path)
        for child in children:
            if not child.startswith("_"):
                await walk(f"{path}/{child}")

    for top in await store.children(layout.REPOSITORIES_ROOT):
        await walk(top)
    return found


async def _holds_objects(store: ObjectStore, prefix: str) -> bool:
    for child in await store.children(prefix):
        try:
            await store.size(prefix + child)
            return True
        except NotFound:
            if await _holds_objects(store, f"{prefix}{child}/"):
                return True
    return False
