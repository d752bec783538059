"""skopeo 1.9 reads images from regfront, directly and as a registries.conf mirror of docker.io."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from tests.e2e.harness import (
    Gateway,
    Skopeo,
)
from tests.images import Layout, layout_blob, layout_children, layout_digest

pytestmark = pytest.mark.e2e

DEMO = "docker.io/library/demo"


def test_copy_from_gateway_keeps_manifest_digest(skopeo: Skopeo, gateway: Gateway,
                                                 tmp_path: Path) -> None:
    """Copied out of the gateway, the image keeps the digest it was imported with."""
    out = tmp_path / "out"
    skopeo("copy", "--src-tls-verify=false", gateway.ref(f"{DEMO}:single"), f"oci:{out}:x")
    assert layout_digest(out, "x") == gateway.digests["single"]


def test_copy_index_through_registries_conf_mirror(skopeo: Skopeo, gateway: Gateway,
                                                   oci_layout: Layout, tmp_path: Path) -> None:
    """A docker.io pull with the gateway as its mirror gets the whole index, digests intact.

    docker.io itself is out of reach here (and has no library/demo): the mirror served it.
    """
    conf = tmp_path / "registries.conf"
    conf.write_text(
        '[[registry]]\nprefix = "docker.io"\nlocation = "docker.io"\n\n'
        f'[[registry.mirror]]\nlocation = "{gateway.host}/docker.io"\ninsecure = true\n')
    out = tmp_path / "out"
    skopeo("copy", "--all", f"docker://{DEMO}:multi", f"oci:{out}:m", registries_conf=conf)
    assert layout_digest(out, "m") == gateway.digests["multi"]
    for child in layout_children(oci_layout.root, "multi").values():
        assert layout_blob(out, child) == layout_blob(oci_layout.root, child)


@pytest.mark.parametrize("ref", ["single", "multi"])
def test_inspect_raw_returns_the_imported_manifest_bytes(skopeo: Skopeo, gateway: Gateway,
                                                         oci_layout: Layout, ref: str) -> None:
    """The gateway serves a manifest (or index) byte for byte as it was imported."""
    data = skopeo("inspect", "--raw", "--tls-verify=false", gateway.ref(f"{DEMO}:{ref}")).output
    assert f"sha256:{hashlib.sha256(data).hexdigest()}" == gateway.digests[ref]
    assert data == layout_blob(oci_layout.root, layout_digest(oci_layout.root, ref))


def test_list_tags_lists_both_imported_tags(skopeo: Skopeo, gateway: Gateway) -> None:
    """``tags/list`` through skopeo: the two tags ``regfront import`` wrote."""
    listing = json.loads(skopeo("list-tags", "--tls-verify=false", gateway.ref(DEMO)).stdout)
    assert listing["Repository"] == f"{gateway.host}/{DEMO}"
    assert listing["Tags"] == ["multi", "single"]
