"""``regfront import SOURCE NAME:TAG``: seed a store from an image on disk.

Sources: ``oci:DIR[:REF]`` (an OCI image layout; digests kept exactly) and
``docker-archive:FILE[:REF]`` (a ``docker save`` tarball; its manifest is created on import, so
its digest differs from the source registry's). Every byte is verified before it is committed,
and writes follow ``registry.writer``'s order, so an interrupted import leaves no dangling tag.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from registry.digest import Digest
from registry.errors import ConfigError
from registry.store import ObjectStore


@dataclass
class ImportResult:
    digest: Digest  # the tagged manifest's
    manifests: int = 0
    blobs: int = 0
    bytes_written: int = 0
    skipped: list[str] = field(default_factory=list)

    def describe(self) -> str:
        return json.dumps({"digest": str(self.digest), "manifests": self.manifests,
                           "blobs": self.blobs, "bytes_written": self.bytes_written})


def parse_source(source: str) -> tuple[str, Path, str | None]:
    """``oci:DIR[:REF]`` or ``docker-archive:FILE[:REF]`` -> (transport, path, REF)."""
    transport, sep, rest = source.partition(":")
    if not sep or transport not in ("oci", "docker-archive") or not rest:
        raise ConfigError(f"import source {source!r}: expected oci:DIR[:REF] "
                          "or docker-archive:FILE[:REF]")
    path, _, ref = rest.partition(":")
    return transport, Path(path), ref or None


async def import_image(store: ObjectStore, source: str, name: str, tag: str) -> ImportResult:
    """Copy the image ``source`` names into ``store`` as ``name:tag``."""
    transport, path, ref = parse_source(source)
    if transport == "oci":
        from registry.imports.oci import import_oci

        return await import_oci(store, path, ref, name, tag)
    from registry.imports.docker_archive import import_docker_archive

    return await import_docker_archive(store, path, ref, name, tag)
