"""Build small, real OCI images on disk (an OCI image layout) for tests and benchmarks.

Layers are genuine gzipped tars with a diff_id in the config, so containerd can unpack them.
"""

from __future__ import annotations

import gzip
import io
import json
import random
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from registry.digest import Digest
from registry.mediatypes import OCI_INDEX, OCI_MANIFEST

LAYER_TYPE = "application/vnd.oci.image.layer.v1.tar+gzip"
CONFIG_TYPE = "application/vnd.oci.image.config.v1+json"


def layer_tar(files: dict[str, bytes]) -> bytes:
    """An uncompressed tar of ``files`` (path -> content), deterministic."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path, content in sorted(files.items()):
            info = tarfile.TarInfo(path)
            info.size = len(content)
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(content))
    return buffer.getvalue()


@dataclass
class Layout:
    """An OCI image layout being written: blobs by digest, plus index.json entries."""

    root: Path
    refs: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        (self.root / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
        (self.root / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
        self._write_index()

    def blob(self, data: bytes, media_type: str, **extra: Any) -> dict[str, Any]:
        digest = Digest.from_bytes(data)
        (self.root / "blobs" / "sha256" / digest.hex).write_bytes(data)
        return {"mediaType": media_type, "digest": str(digest), "size": len(data), **extra}

    def image(self, files: list[dict[str, bytes]], *, os: str = "linux",
              architecture: str = "amd64", subject: dict[str, Any] | None = None,
              artifact_type: str | None = None) -> dict[str, Any]:
        """An image manifest with one layer per ``files`` entry; returns its descriptor."""
        layers, diff_ids = [], []
        for layer_files in files:
            tar = layer_tar(layer_files)
            diff_ids.append(str(Digest.from_bytes(tar)))
            layers.append(self.blob(gzip.compress(tar, mtime=0), LAYER_TYPE))
        config = {"architecture": architecture, "os": os, "config": {},
                  "rootfs": {"type": "layers", "diff_ids": diff_ids}}
        manifest: dict[str, Any] = {
            "schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": self.blob(json.dumps(config).encode(), CONFIG_TYPE),
            "layers": layers,
        }
        if subject is not None:
            manifest["subject"] = {k: subject[k] for k in ("mediaType", "digest", "size")}
        if artifact_type is not None:
            manifest["artifactType"] = artifact_type
        platform = {"os": os, "architecture": architecture}
        return self.blob(json.dumps(manifest, indent=3).encode(), OCI_MANIFEST,
                         platform=platform)

    def index(self, manifests: list[dict[str, Any]]) -> dict[str, Any]:
        doc = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests}
        return self.blob(json.dumps(doc, indent=2).encode(), OCI_INDEX)

    def tag(self, descriptor: dict[str, Any], ref: str) -> None:
        entry = {k: v for k, v in descriptor.items() if k != "platform"}
        entry["annotations"] = {"org.opencontainers.image.ref.name": ref}
        self.refs.append(entry)
        self._write_index()

    def _write_index(self) -> None:
        index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": self.refs}
        (self.root / "index.json").write_text(json.dumps(index))


def sample_layout(root: Path) -> Layout:
    """Two refs: ``single`` (one amd64 image, two layers) and ``multi`` (amd64 + arm64 index)."""
    layout = Layout(root)
    shared = {"etc/regfront-shared": b"shared layer\n" * 100}
    single = layout.image([shared, {"app/hello.txt": b"hello from regfront\n"}])
    layout.tag(single, "single")
    amd64 = layout.image([shared, {"app/arch": b"amd64\n"}], architecture="amd64")
    arm64 = layout.image([shared, {"app/arch": b"arm64\n"}], architecture="arm64")
    layout.tag(layout.index([amd64, arm64]), "multi")
    return layout


def docker_archive(path: Path, images: list[tuple[list[dict[str, bytes]], list[str]]]) -> Path:
    """A ``docker save`` tarball (the classic layout): ``(layers' files, repo tags)`` per image."""
    entries, members = [], {}
    for layer_sets, repo_tags in images:
        layer_names, diff_ids = [], []
        for files in layer_sets:
            tar = layer_tar(files)
            digest = Digest.from_bytes(tar)
            members[f"{digest.hex}/layer.tar"] = tar
            layer_names.append(f"{digest.hex}/layer.tar")
            diff_ids.append(str(digest))
        config = json.dumps({"architecture": "amd64", "os": "linux", "config": {},
                             "rootfs": {"type": "layers", "diff_ids": diff_ids}}).encode()
        config_name = f"{Digest.from_bytes(config).hex}.json"
        members[config_name] = config
        entries.append({"Config": config_name, "RepoTags": repo_tags, "Layers": layer_names})
    members["manifest.json"] = json.dumps(entries).encode()
    path.write_bytes(layer_tar(members))
    return path


def random_layer(rng: random.Random, size: int, name: str) -> dict[str, bytes]:
    """One file of incompressible bytes: a layer whose size is what it says."""
    return {name: rng.randbytes(size)}


def fleet_layout(root: Path, tags: list[str], *, shared_layers: int = 4,
                 layer_size: int = 64 * 1024, unique_size: int | None = None,
                 seed: int = 7) -> Layout:
    """Images that share most of their layers, as a fleet's do: one ref per tag, each with the
    same ``shared_layers`` base layers and one layer of its own; plus ``multi``, an index of
    linux/amd64, linux/arm64/v8 and linux/arm/v7 images on the same base."""
    rng = random.Random(seed)
    layout = Layout(root)
    base = [random_layer(rng, layer_size, f"base/{i}") for i in range(shared_layers)]
    for tag in tags:
        own = random_layer(rng, layer_size // 4 if unique_size is None else unique_size,
                           f"app/{tag}")
        image = layout.image([*base, own])
        layout.tag(image, tag)
    children = []
    for arch, variant in (("amd64", None), ("arm64", "v8"), ("arm", "v7")):
        child = layout.image([*base, {"arch": arch.encode()}], architecture=arch)
        if variant:
            child["platform"]["variant"] = variant
        children.append(child)
    layout.tag(layout.index(children), "multi")
    return layout


# -- reading a layout back ---------------------------------------------------------------------


def layout_digest(layout: Path, ref: str) -> str:
    """The digest ``index.json`` of an OCI layout names for ``ref``."""
    index = json.loads((layout / "index.json").read_text())
    found = [m["digest"] for m in index["manifests"]
             if m.get("annotations", {}).get("org.opencontainers.image.ref.name") == ref]
    assert len(found) == 1, f"{layout}: {len(found)} entries for ref {ref!r} in {index}"
    return str(found[0])


def layout_blob(layout: Path, digest: str) -> bytes:
    algorithm, _, hex_digest = digest.partition(":")
    return (layout / "blobs" / algorithm / hex_digest).read_bytes()


def layout_children(layout: Path, ref: str) -> dict[str, str]:
    """A multi-arch ref's child manifests: architecture -> digest."""
    index = json.loads(layout_blob(layout, layout_digest(layout, ref)))
    return {m["platform"]["architecture"]: m["digest"] for m in index["manifests"]}
