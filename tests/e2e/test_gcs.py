"""The gateway on Cloud Storage (fake-gcs-server): containerd follows the 307s to V4 signed URLs.

fake-gcs-server checks no signature, so the URL the gateway hands out is verified here against
the session's service account key (tests/registry/test_gcs.py checks the signer against
Google's test vectors); the point is that real clients follow the redirects to the bucket and
get the right bytes.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from registry.digest import Digest
from tests.e2e.harness import (
    Containerd,
    Server,
    regfront_binary,
    regfront_import,
    run,
    serving_regfront,
)
from tests.emulators import SERVICE_ACCOUNT, FakeGCS, verify_v4_url
from tests.images import Layout, layout_blob, layout_children, layout_digest

pytestmark = pytest.mark.e2e

SINGLE = "docker.io/library/demo:single"
MULTI = "docker.io/library/demo:multi"


@pytest.fixture(scope="module")
def gcs_gateway(tmp_path_factory: pytest.TempPathFactory, fake_gcs: FakeGCS,
                oci_layout: Layout) -> Iterator[Server]:
    """regfront serving a fake-gcs-server bucket (prefix ``mirror``) that ``regfront import``
    filled; both processes find the session's key file through ADC."""
    url = fake_gcs.url(fake_gcs.new_bucket(), "mirror")
    for ref in ("single", "multi"):
        regfront_import(oci_layout.root, ref, f"docker.io/library/demo:{ref}", url)
    with serving_regfront(url, tmp_path_factory.mktemp("gcs-gateway")) as server:
        yield server


def _first_layer(layout: Layout, ref: str) -> dict[str, Any]:
    manifest = json.loads(layout_blob(layout.root, layout_digest(layout.root, ref)))
    layer: dict[str, Any] = manifest["layers"][0]
    return layer


def test_blob_get_is_a_307_to_a_signed_bucket_url_and_head_is_answered_here(
        gcs_gateway: Server, fake_gcs: FakeGCS, oci_layout: Layout) -> None:
    layer = _first_layer(oci_layout, "single")
    url = f"{gcs_gateway.url}/v2/library/demo/blobs/{layer['digest']}?ns=docker.io"
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
        assert urlsplit(location).netloc == urlsplit(fake_gcs.endpoint).netloc
        verify_v4_url(location, fake_gcs.private_key.public_key(), SERVICE_ACCOUNT)
        fetched = client.get(location)
        assert fetched.status_code == 200
        assert Digest.from_bytes(fetched.content) == Digest.parse(layer["digest"])


def test_containerd_pulls_single_and_multi_arch_following_redirects(
        containerd: Containerd, gcs_gateway: Server, oci_layout: Layout,
        tmp_path: Path) -> None:
    hosts = tmp_path / "certs.d"
    # The fallback is a closed port: only the gateway (and the bucket it redirects to) can serve.
    run([regfront_binary(), "containerd-config", "--gateway", gcs_gateway.url,
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
