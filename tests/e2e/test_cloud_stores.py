"""The gateway on the native cloud stores' emulators: containerd follows the 307s to signed
bucket URLs and gets the right bytes (with ``ctr``, and as kubelet pulls on 1.6, 2.1.9 and
2.2.7) - Cloud Storage (fake-gcs-server, V4 signed URLs) and Azure Blob (Azurite, SAS URLs).
One flow for both, each backend saying how its signature is checked:

- fake-gcs-server checks no signature, so the URL is verified here against the session's
  service account key (tests/registry/test_gcs.py checks the signer against Google's vectors);
- Azurite checks each SAS signature against the account key: a tampered one is refused.

S3 (moto) has its own module, tests/e2e/test_s3.py, with registry:2 interop on the bucket.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
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
from tests.e2e.nodes import ONE_DIR, NodePool, Version, assert_pull_follows_redirects
from tests.emulators import SERVICE_ACCOUNT, Azurite, FakeGCS, verify_v4_url
from tests.images import Layout, layout_blob, layout_children, layout_digest

pytestmark = pytest.mark.e2e

SINGLE = "docker.io/library/demo:single"
MULTI = "docker.io/library/demo:multi"


@dataclass(frozen=True)
class Bucket:
    """A store URL in an emulator, and how a signed URL into it is checked."""

    url: str
    endpoint: str
    check_signature: Callable[[httpx.Client, str], None]


def _gcs(fake_gcs: FakeGCS) -> Bucket:
    def check(client: httpx.Client, location: str) -> None:
        verify_v4_url(location, fake_gcs.private_key.public_key(), SERVICE_ACCOUNT)

    return Bucket(fake_gcs.url(fake_gcs.new_bucket(), "mirror"), fake_gcs.endpoint, check)


def _azure(azurite: Azurite) -> Bucket:
    def check(client: httpx.Client, location: str) -> None:
        assert "sig=" in urlsplit(location).query
        assert client.get(location.replace("sig=", "sig=A")).status_code == 403  # checked

    return Bucket(azurite.url(azurite.new_container(), "mirror"), azurite.endpoint, check)


@pytest.fixture(scope="module", params=["gcs", "azure"])
def cloud(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
          oci_layout: Layout) -> Iterator[tuple[Server, Bucket]]:
    """regfront serving an emulator's bucket (prefix ``mirror``) that ``regfront import``
    filled; both processes find the session's credentials (ADC key file, or the Azurite
    connection string) in the environment the emulators' fixtures set."""
    backend = request.param
    bucket = (_gcs(request.getfixturevalue("fake_gcs")) if backend == "gcs"
              else _azure(request.getfixturevalue("azurite")))
    for ref in ("single", "multi"):
        regfront_import(oci_layout.root, ref, f"docker.io/library/demo:{ref}", bucket.url)
    with serving_regfront(bucket.url, tmp_path_factory.mktemp(f"{backend}-gateway")) as server:
        yield server, bucket


def _first_layer(layout: Layout, ref: str) -> dict[str, Any]:
    manifest = json.loads(layout_blob(layout.root, layout_digest(layout.root, ref)))
    layer: dict[str, Any] = manifest["layers"][0]
    return layer


def test_blob_get_is_a_307_to_a_signed_bucket_url_and_head_is_answered_here(
        cloud: tuple[Server, Bucket], oci_layout: Layout) -> None:
    gateway, bucket = cloud
    layer = _first_layer(oci_layout, "single")
    url = f"{gateway.url}/v2/library/demo/blobs/{layer['digest']}?ns=docker.io"
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
        assert location.startswith(f"{bucket.endpoint.rstrip('/')}/")
        bucket.check_signature(client, location)
        fetched = client.get(location)
        assert fetched.status_code == 200
        assert Digest.from_bytes(fetched.content) == Digest.parse(layer["digest"])


def test_containerd_pulls_single_and_multi_arch_following_redirects(
        containerd: Containerd, cloud: tuple[Server, Bucket], oci_layout: Layout,
        tmp_path: Path) -> None:
    gateway, _ = cloud
    hosts = tmp_path / "certs.d"
    # The fallback is a closed port: only the gateway (and the bucket it redirects to) can serve.
    run([regfront_binary(), "containerd-config", "--gateway", gateway.url,
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
        nodes: NodePool, cloud: tuple[Server, Bucket], oci_layout: Layout,
        version: Version) -> None:
    """As kubelet pulls (from 2.1 the transfer service fetches): every blob GET is a 307 to a
    signed URL, followed; the fallback is a closed port."""
    gateway, _ = cloud
    assert_pull_follows_redirects(nodes.node(version, ONE_DIR), gateway, MULTI,
                                  layout_digest(oci_layout.root, "multi"))
