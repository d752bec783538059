"""The gateway on S3 (moto's server): containerd follows the 307s (with ``ctr``, and as kubelet
pulls on 1.6, 2.1.9 and 2.2.7), and registry:2's S3 driver shares the bucket both ways.

moto checks no pre-signed signature (tests/registry/test_s3.py checks the URLs themselves);
here the point is that real clients follow the redirects and get the right bytes, and that the
bucket layout is registry:2's on S3 as it is on disk.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from registry.digest import Digest
from tests.conftest import MotoS3
from tests.e2e.harness import (
    Containerd,
    Server,
    Skopeo,
    regfront_binary,
    regfront_import,
    run,
    serving_regfront,
    serving_registry2,
)
from tests.e2e.nodes import ONE_DIR, NodePool, Version, assert_pull_follows_redirects
from tests.images import Layout, layout_blob, layout_children, layout_digest

pytestmark = pytest.mark.e2e

SINGLE = "docker.io/library/demo:single"
MULTI = "docker.io/library/demo:multi"


@pytest.fixture(scope="module")
def s3_gateway(tmp_path_factory: pytest.TempPathFactory, moto_s3: MotoS3,
               oci_layout: Layout) -> Iterator[Server]:
    """regfront serving a moto bucket (prefix ``mirror``) that ``regfront import`` filled."""
    url = moto_s3.url(moto_s3.new_bucket(), "mirror")
    for ref in ("single", "multi"):
        regfront_import(oci_layout.root, ref, f"docker.io/library/demo:{ref}", url)
    with serving_regfront(url, tmp_path_factory.mktemp("s3-gateway")) as server:
        yield server


def _registry2_s3(moto: MotoS3, bucket: str, rootdirectory: str) -> dict[str, Any]:
    """registry:2's S3 driver parameters for ``bucket`` on the moto server."""
    return {"region": moto.region, "bucket": bucket, "regionendpoint": moto.endpoint,
            "accesskey": moto.access_key, "secretkey": moto.secret_key, "secure": False,
            "v4auth": True, "rootdirectory": rootdirectory}


def _first_layer(layout: Layout, ref: str) -> dict[str, Any]:
    import json

    manifest = json.loads(layout_blob(layout.root, layout_digest(layout.root, ref)))
    layer: dict[str, Any] = manifest["layers"][0]
    return layer


def test_blob_get_is_a_307_to_the_bucket_and_head_is_answered_here(
        s3_gateway: Server, moto_s3: MotoS3, oci_layout: Layout) -> None:
    layer = _first_layer(oci_layout, "single")
    url = f"{s3_gateway.url}/v2/library/demo/blobs/{layer['digest']}?ns=docker.io"
    with httpx.Client(timeout=10) as client:
        head = client.head(url)
        assert head.status_code == 200
        assert "location" not in head.headers
        assert head.headers["content-length"] == str(layer["size"])
        assert head.headers["docker-content-digest"] == layer["digest"]

        get = client.get(url)
        assert get.status_code == 307
        assert get.headers["docker-content-digest"] == layer["digest"]
        location = get.headers["location"]
        assert urlsplit(location).netloc == urlsplit(moto_s3.endpoint).netloc
        assert "X-Amz-Signature=" in location
        fetched = client.get(location)
        assert fetched.status_code == 200
        assert Digest.from_bytes(fetched.content) == Digest.parse(layer["digest"])


def test_containerd_pulls_single_and_multi_arch_following_redirects(
        containerd: Containerd, s3_gateway: Server, oci_layout: Layout,
        tmp_path: Path) -> None:
    hosts = tmp_path / "certs.d"
    # The fallback is a closed port: only the gateway (and the bucket it redirects to) can serve.
    run([regfront_binary(), "containerd-config", "--gateway", s3_gateway.url,
         "--registry", "docker.io=http://127.0.0.1:9", "--out", str(hosts)])
    containerd.remove_all_images()
    containerd.ctr("images", "pull", "--hosts-dir", str(hosts), "--platform", "linux/amd64",
                   SINGLE)
    containerd.ctr("images", "pull", "--hosts-dir", str(hosts), "--all-platforms", MULTI)
    images = containerd.images()
    assert images[SINGLE] == layout_digest(oci_layout.root, "single")
    assert images[MULTI] == layout_digest(oci_layout.root, "multi")
    assert set(layout_children(oci_layout.root, "multi").values()) <= containerd.content()
    with containerd.mounted(SINGLE, tmp_path / "rootfs", "linux/amd64") as rootfs:
        assert (rootfs / "app" / "hello.txt").read_text() == "hello from regfront\n"


@pytest.mark.parametrize("version", ["1.6", "2.1.9", "2.2.7"])
def test_kubelet_pulls_following_redirects_to_the_bucket(
        nodes: NodePool, s3_gateway: Server, oci_layout: Layout, version: Version) -> None:
    """As kubelet pulls (from 2.1 the transfer service fetches): every blob GET is a 307 to
    the bucket, followed; the fallback is a closed port."""
    assert_pull_follows_redirects(nodes.node(version, ONE_DIR), s3_gateway, MULTI,
                                  layout_digest(oci_layout.root, "multi"))


@pytest.mark.parametrize("ref", ["single", "multi"])
def test_regfront_serves_what_registry2_pushed_to_s3(
        tmp_path: Path, moto_s3: MotoS3, skopeo: Skopeo, oci_layout: Layout, ref: str) -> None:
    bucket = moto_s3.new_bucket()
    with serving_registry2(tmp_path / "unused", tmp_path,
                           s3=_registry2_s3(moto_s3, bucket, "/shared")) as registry2:
        skopeo("copy", "--all", "--dest-tls-verify=false", f"oci:{oci_layout.root}:{ref}",
               registry2.ref("team/app:1"))
        expected = registry2.manifest_digest("team/app", "1")
    assert expected == layout_digest(oci_layout.root, ref)
    with serving_regfront(moto_s3.url(bucket, "shared"), tmp_path) as regfront:
        assert regfront.manifest_digest("team/app", "1") == expected
        skopeo("copy", "--all", "--src-tls-verify=false", regfront.ref("team/app:1"),
               f"oci:{tmp_path / 'out'}:x")
    assert layout_digest(tmp_path / "out", "x") == expected


@pytest.mark.parametrize("ref", ["single", "multi"])
def test_registry2_serves_what_regfront_imported_to_s3(
        tmp_path: Path, moto_s3: MotoS3, skopeo: Skopeo, oci_layout: Layout, ref: str) -> None:
    bucket = moto_s3.new_bucket()
    digest = regfront_import(oci_layout.root, ref, "team/imported:1",
                             moto_s3.url(bucket, "shared"))
    with serving_registry2(tmp_path / "unused", tmp_path,
                           s3=_registry2_s3(moto_s3, bucket, "/shared")) as registry2:
        assert registry2.manifest_digest("team/imported", "1") == digest
        skopeo("copy", "--all", "--src-tls-verify=false", registry2.ref("team/imported:1"),
               f"oci:{tmp_path / 'out'}:x")
    assert layout_digest(tmp_path / "out", "x") == digest
