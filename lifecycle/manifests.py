"""Manifests as garbage collection sees them: what each needs (child manifests, config and
layers, with their sizes) and when its image was created, read once per run."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from lifecycle.inventory import Lister
from registry import layout
from registry.digest import Digest
from registry.errors import RegistryError
from registry.mediatypes import INDEX_TYPES, media_type_of, parse_manifest
from registry.mirrorconfig import MirrorRule
from registry.store import NotFound
from sync.filters import select_children


@dataclass(frozen=True)
class Manifest:
    digest: Digest
    size: int
    index: bool
    children: tuple[Digest, ...] = ()  # an index's manifests
    blobs: tuple[Digest, ...] = ()  # an image's config and layers
    config: Digest | None = None
    sizes: dict[Digest, int] = field(default_factory=dict, compare=False)  # descriptor sizes
    descriptors: tuple[dict[str, Any], ...] = field(default=(), compare=False)  # an index's


def mirrored_children(manifest: Manifest, rules: tuple[MirrorRule, ...]) -> list[Digest]:
    """The children of an index a complete copy holds: what the rules covering its repository
    copy (their platforms, attestations with referrers); every child when no rule does."""
    if not rules:
        return list(manifest.children)
    wanted: set[str] = set()
    for rule in rules:
        wanted |= {str(d.get("digest")) for d in select_children(
            manifest.descriptors, rule.platforms, rule.referrers)}
    return [child for child in manifest.children if str(child) in wanted]


def parse(digest: Digest, data: bytes) -> Manifest | None:
    """None for bytes that are no manifest (a blob read by mistake, damage)."""
    try:
        doc = parse_manifest(data)
        index = media_type_of(doc) in INDEX_TYPES
        sizes: dict[Digest, int] = {}

        def descriptors(items: object) -> tuple[Digest, ...]:
            found = []
            for item in items if isinstance(items, list) else []:
                if isinstance(item, dict) and isinstance(item.get("digest"), str):
                    child = Digest.parse(item["digest"])
                    found.append(child)
                    if isinstance(item.get("size"), int):
                        sizes[child] = item["size"]
            return tuple(found)

        if index:
            listed = tuple(d for d in doc.get("manifests") or [] if isinstance(d, dict))
            return Manifest(digest, len(data), True, children=descriptors(list(listed)),
                            sizes=sizes, descriptors=listed)
        config = descriptors([doc.get("config")])
        return Manifest(digest, len(data), False, blobs=config + descriptors(doc.get("layers")),
                        config=config[0] if config else None, sizes=sizes)
    except RegistryError:
        return None


class Manifests:
    """Reads manifests from the blob store, each once; a missing one is None (damage, or
    deleted meanwhile)."""

    def __init__(self, lister: Lister) -> None:
        self.lister = lister
        self._read: dict[Digest, Manifest | None] = {}
        self._sizes: dict[Digest, int] = {}  # every size a manifest read so far declares
        self._created: dict[Digest, datetime | None] = {}

    async def get(self, digest: Digest) -> Manifest | None:
        if digest not in self._read:
            try:
                data = await self.lister.get(layout.blob_data(digest))
            except NotFound:
                self._read[digest] = None
            else:
                manifest = self._read[digest] = parse(digest, data)
                if manifest is not None:
                    self._sizes.update(manifest.sizes)
                    self._sizes[digest] = manifest.size
        return self._read[digest]

    def known(self, digest: Digest) -> Manifest | None:
        return self._read.get(digest)

    def size_of(self, digest: Digest) -> int | None:
        """A blob's size as some manifest read so far declares it (no store call)."""
        return self._sizes.get(digest)

    async def created(self, digest: Digest) -> datetime | None:
        """The image's config ``created`` (an index: its first child's), or None."""
        if digest not in self._created:
            self._created[digest] = await self._read_created(digest)
        return self._created[digest]

    async def _read_created(self, digest: Digest) -> datetime | None:
        manifest = await self.get(digest)
        if manifest is not None and manifest.index and manifest.children:
            manifest = await self.get(manifest.children[0])
        if manifest is None or manifest.config is None:
            return None
        config = manifest.config
        try:
            data = await self.lister.get(layout.blob_data(config))
            created = json.loads(data).get("created")
            moment = datetime.fromisoformat(created.replace("Z", "+00:00"))
        except (NotFound, ValueError, AttributeError, TypeError):
            return None
        return moment if moment.tzinfo is not None else None
