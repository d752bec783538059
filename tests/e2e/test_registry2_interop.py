"""regfront and registry:2 share one filesystem layout: each serves what the other wrote.

A store root here is registry:2's ``rootdirectory``: the directory holding ``docker/registry/v2``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.harness import (
    Server,
    Skopeo,
    regfront_import,
    serving_regfront,
    serving_registry2,
)
from tests.images import Layout, layout_blob, layout_children, layout_digest

pytestmark = pytest.mark.e2e

# Which tag each sample layout ref gets in both directions.
TAGS = {"single": "1", "multi": "multi"}


@pytest.fixture(scope="module")
def regfront_over_registry2(tmp_path_factory: pytest.TempPathFactory, skopeo: Skopeo,
                            oci_layout: Layout, registry2: Server) -> Iterator[Server]:
    """registry:2 stores both sample images as team/app; a second regfront serves its root."""
    for ref, tag in TAGS.items():
        skopeo("copy", "--all", "--dest-tls-verify=false", f"oci:{oci_layout.root}:{ref}",
               registry2.ref(f"team/app:{tag}"))
    with serving_regfront(registry2.root, tmp_path_factory.mktemp("regfront-over-registry2")) \
            as server:
        yield server


@pytest.fixture(scope="module")
def registry2_over_import(tmp_path_factory: pytest.TempPathFactory,
                          oci_layout: Layout) -> Iterator[Server]:
    """``regfront import`` fills a fresh directory as team/imported; registry:2 serves it."""
    work = tmp_path_factory.mktemp("registry2-over-import")
    for ref, tag in TAGS.items():
        regfront_import(oci_layout.root, ref, f"team/imported:{tag}", work / "store")
    with serving_registry2(work / "store", work) as server:
        yield server


def copy_out(skopeo: Skopeo, server: Server, image: str, out: Path) -> str:
    """``skopeo copy --all`` from ``server`` into an OCI layout; the copied top digest."""
    skopeo("copy", "--all", "--src-tls-verify=false", server.ref(image), f"oci:{out}:x")
    return layout_digest(out, "x")


@pytest.mark.parametrize("ref", ["single", "multi"])
def test_regfront_serves_what_registry2_wrote(skopeo: Skopeo, registry2: Server,
                                              regfront_over_registry2: Server,
                                              oci_layout: Layout, ref: str,
                                              tmp_path: Path) -> None:
    """Pulled from regfront, a registry:2-pushed image has the digest registry:2 reports."""
    image = f"team/app:{TAGS[ref]}"
    expected = layout_digest(oci_layout.root, ref)
    assert registry2.manifest_digest("team/app", TAGS[ref]) == expected
    assert regfront_over_registry2.manifest_digest("team/app", TAGS[ref]) == expected
    assert copy_out(skopeo, regfront_over_registry2, image, tmp_path / "out") == expected


def test_regfront_serves_registry2_written_index_children(skopeo: Skopeo,
                                                          regfront_over_registry2: Server,
                                                          oci_layout: Layout,
                                                          tmp_path: Path) -> None:
    """Both platform manifests of the index (with their layers) come out of registry:2's tree."""
    out = tmp_path / "out"
    copy_out(skopeo, regfront_over_registry2, "team/app:multi", out)
    for child in layout_children(oci_layout.root, "multi").values():
        assert layout_blob(out, child) == layout_blob(oci_layout.root, child)


def test_regfront_lists_registry2_written_tags(regfront_over_registry2: Server) -> None:
    """``tags/list`` reads registry:2's tag directories."""
    assert regfront_over_registry2.tags("team/app") == sorted(TAGS.values())


@pytest.mark.parametrize("ref", ["single", "multi"])
def test_registry2_serves_what_regfront_imported(skopeo: Skopeo, registry2_over_import: Server,
                                                 oci_layout: Layout, ref: str,
                                                 tmp_path: Path) -> None:
    """registry:2 over a store ``regfront import`` wrote serves the images, digests intact."""
    expected = layout_digest(oci_layout.root, ref)
    assert registry2_over_import.manifest_digest("team/imported", TAGS[ref]) == expected
    image = f"team/imported:{TAGS[ref]}"
    assert copy_out(skopeo, registry2_over_import, image, tmp_path / "out") == expected


def test_registry2_lists_regfront_imported_tags(registry2_over_import: Server) -> None:
    """registry:2 finds the tags regfront wrote (its order is its own, hence sorted here)."""
    assert sorted(registry2_over_import.tags("team/imported")) == sorted(TAGS.values())
