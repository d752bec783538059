"""``docker-archive:`` import, cross-checked against skopeo's own reading of the archive."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from registry import layout
from registry.digest import Digest
from registry.errors import ConfigError
from registry.imports import import_image
from registry.store.memory import MemoryStore
from tests.images import docker_archive

LAYERS = [{"etc/base": b"base\n" * 50}, {"app/run": b"#!/bin/sh\necho hi\n"}]


@pytest.fixture
def archive(tmp_path: Path) -> Path:
    return docker_archive(tmp_path / "save.tar", [
        (LAYERS, ["example/app:1", "example/app:latest"]),
        ([{"other": b"x"}], ["example/other:2"]),
    ])


def _skopeo_json(*args: str) -> Any:
    path = shutil.which("skopeo")
    if path is None:
        pytest.fail("skopeo is not installed (make system-deps installs it)")
    done = subprocess.run([path, *args], check=True, capture_output=True, timeout=60)
    return json.loads(done.stdout)


async def test_import_matches_what_skopeo_reads(archive: Path) -> None:
    store = MemoryStore()
    result = await import_image(store, f"docker-archive:{archive}:example/app:1",
                                "docker.io/example/app", "1")
    manifest = json.loads(await store.get(layout.blob_data(result.digest)))
    inspected = _skopeo_json("inspect", f"docker-archive:{archive}:example/app:1")
    assert [layer["digest"] for layer in manifest["layers"]] == inspected["Layers"]
    config = _skopeo_json("inspect", "--raw", f"docker-archive:{archive}:example/app:1")["config"]
    assert manifest["config"]["digest"] == config["digest"]
    for blob in [manifest["config"], *manifest["layers"]]:
        digest = Digest.parse(blob["digest"])
        assert Digest.from_bytes(await store.get(layout.blob_data(digest))) == digest
        assert await store.get(layout.layer_link("docker.io/example/app", digest))
    current = layout.tag_current_link("docker.io/example/app", "1")
    assert await store.get(current) == str(result.digest).encode()


async def test_select_by_index(archive: Path) -> None:
    store = MemoryStore()
    result = await import_image(store, f"docker-archive:{archive}:@1", "x/other", "2")
    manifest = json.loads(await store.get(layout.blob_data(result.digest)))
    assert len(manifest["layers"]) == 1


async def test_several_images_need_a_ref(archive: Path) -> None:
    with pytest.raises(ConfigError, match=r"holds 2 images.*example/app:1, example/app:latest"):
        await import_image(MemoryStore(), f"docker-archive:{archive}", "x", "y")
    with pytest.raises(ConfigError, match="no image tagged 'nope:1'"):
        await import_image(MemoryStore(), f"docker-archive:{archive}:nope:1", "x", "y")


async def test_not_an_archive(tmp_path: Path) -> None:
    bogus = tmp_path / "bogus.tar"
    bogus.write_bytes(b"not a tar at all" * 100)
    with pytest.raises(ConfigError, match="not a readable docker archive"):
        await import_image(MemoryStore(), f"docker-archive:{bogus}", "x", "y")


async def test_a_missing_layer_commits_no_tag(tmp_path: Path) -> None:
    from tests.images import layer_tar

    members = {"manifest.json": json.dumps([{"Config": "c.json", "RepoTags": ["a:1"],
                                             "Layers": ["gone/layer.tar"]}]).encode(),
               "c.json": b"{}"}
    path = tmp_path / "broken.tar"
    path.write_bytes(layer_tar(members))
    store = MemoryStore()
    with pytest.raises(ConfigError, match=r"gone/layer\.tar is missing"):
        await import_image(store, f"docker-archive:{path}", "x", "y")
    assert not [k for k in store.objects if "/_manifests/" in k]
