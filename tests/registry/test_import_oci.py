"""``regfront import``: verified, ordered, and all-or-nothing for bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from registry import layout as keys
from registry.digest import Digest
from registry.errors import ConfigError, RegistryError
from registry.imports import import_image as import_layout
from registry.imports import parse_source
from registry.store.memory import MemoryStore
from tests.images import Layout, sample_layout


def test_parse_source() -> None:
    assert parse_source("oci:/x/y:ref") == ("oci", Path("/x/y"), "ref")
    assert parse_source("oci:rel") == ("oci", Path("rel"), None)
    assert parse_source("docker-archive:a.tar:nginx") == ("docker-archive", Path("a.tar"), "nginx")
    with pytest.raises(ConfigError, match="expected oci:DIR"):
        parse_source("docker://x")


async def test_import_an_index_writes_everything_it_references(tmp_path: Path) -> None:
    oci = sample_layout(tmp_path / "oci")
    store = MemoryStore()
    result = await import_layout(store, f"oci:{oci.root}:multi", "team/app", "v1")
    assert result.manifests == 3
    assert await store.get(keys.tag_current_link("team/app", "v1")) == str(result.digest).encode()
    index = json.loads(await store.get(keys.blob_data(result.digest)))
    for child in index["manifests"]:
        digest = Digest.parse(child["digest"])
        assert await store.get(keys.revision_link("team/app", digest)) == child["digest"].encode()
        manifest = json.loads(await store.get(keys.blob_data(digest)))
        for blob in [manifest["config"], *manifest["layers"]]:
            blob_digest = Digest.parse(blob["digest"])
            assert await store.size(keys.blob_data(blob_digest)) == blob["size"]
            assert await store.get(keys.layer_link("team/app", blob_digest))


async def test_a_single_ref_needs_no_name(tmp_path: Path) -> None:
    oci = Layout(tmp_path / "oci")
    oci.tag(oci.image([{"a": b"1"}]), "only")
    result = await import_layout(MemoryStore(), f"oci:{oci.root}", "x", "y")
    assert result.manifests == 1


async def test_several_refs_need_a_name(tmp_path: Path) -> None:
    oci = sample_layout(tmp_path / "oci")
    with pytest.raises(ConfigError, match=r"lists 2 images; name one.*refs: single, multi"):
        await import_layout(MemoryStore(), f"oci:{oci.root}", "x", "y")
    with pytest.raises(ConfigError, match="no image named 'nope'"):
        await import_layout(MemoryStore(), f"oci:{oci.root}:nope", "x", "y")


async def test_not_a_layout(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not an OCI image layout"):
        await import_layout(MemoryStore(), f"oci:{tmp_path}", "x", "y")


async def test_a_corrupt_layer_commits_no_blob_and_no_tag(tmp_path: Path) -> None:
    oci = sample_layout(tmp_path / "oci")
    manifest = json.loads((oci.root / "blobs" / "sha256" / oci.refs[0]["digest"][7:]).read_bytes())
    victim = manifest["layers"][1]
    path = oci.root / "blobs" / "sha256" / victim["digest"][7:]
    data = path.read_bytes()
    path.write_bytes(bytes([data[0] ^ 1]) + data[1:])  # same size, wrong bytes
    store = MemoryStore()
    with pytest.raises(RegistryError, match="DIGEST_INVALID"):
        await import_layout(store, f"oci:{oci.root}:single", "x", "y")
    assert keys.blob_data(Digest.parse(victim["digest"])) not in store.objects
    assert not [k for k in store.objects if "/_manifests/" in k]


async def test_a_missing_blob_is_named(tmp_path: Path) -> None:
    oci = sample_layout(tmp_path / "oci")
    manifest = json.loads((oci.root / "blobs" / "sha256" / oci.refs[0]["digest"][7:]).read_bytes())
    missing = manifest["config"]["digest"]
    (oci.root / "blobs" / "sha256" / missing[7:]).unlink()
    store = MemoryStore()
    with pytest.raises(ConfigError, match=f"blob {missing} is missing"):
        await import_layout(store, f"oci:{oci.root}:single", "x", "y")
    assert not [k for k in store.objects if "/_manifests/" in k]


async def test_a_size_mismatch_is_refused(tmp_path: Path) -> None:
    oci = sample_layout(tmp_path / "oci")
    top = oci.root / "blobs" / "sha256" / oci.refs[0]["digest"][7:]
    manifest = json.loads(top.read_bytes())
    layer = oci.root / "blobs" / "sha256" / manifest["layers"][0]["digest"][7:]
    layer.write_bytes(layer.read_bytes() + b"extra")
    with pytest.raises(ConfigError, match="its descriptor says"):
        await import_layout(MemoryStore(), f"oci:{oci.root}:single", "x", "y")


async def test_shared_layers_are_stored_once(tmp_path: Path) -> None:
    oci = sample_layout(tmp_path / "oci")
    store = MemoryStore()
    first = await import_layout(store, f"oci:{oci.root}:single", "a", "1")
    second = await import_layout(store, f"oci:{oci.root}:single", "b", "1")
    assert first.bytes_written > 0
    assert second.bytes_written == 0  # every blob was already there
    assert second.blobs == first.blobs  # ... but each is linked into repository b
