"""The gateway on Azure Blob (Azurite): containerd follows the 307s to SAS URLs.

Azurite checks each SAS signature against the account key (the session's connection string,
which regfront import and serve inherit): real clients follow the redirects to the container
and get the right bytes.
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
from tests.emulators import Azurite
from tests.images import Layout, layout_blob, layout_children, layout_digest

pytestmark = pytest.mark.e2e

SINGLE = "docker.io/library/demo:single"
MULTI = "docker.io/library/demo:multi"


@pytest.fixture(scope="module")
def azure_gateway(tmp_path_factory: pytest.TempPathFactory, azurite: Azurite,
                  oci_layout: Layout) -> Iterator[Server]:
    """regfront serving an Azurite container (prefix ``mirror``) that ``regfront import``
    filled; both processes find the account key in AZURE_STORAGE_CONNECTION_STRING."""
    url = azurite.url(azurite.new_container(), "mirror")
    for ref in ("single", "multi"):
        regfront_import(oci_layout.root, ref, f"docker.io/library/demo:{ref}", url)
    with serving_regfront(url, tmp_path_factory.mktemp("azure-gateway")) as server:
        yield server


def _first_layer(layout: Layout, ref: str) -> dict[str, Any]:
    manifest = json.loads(layout_blob(layout.root, layout_digest(layout.root, ref)))
    layer: dict[str, Any] = manifest["layers"][0]
    return layer


def test_blob_get_is_a_307_to_a_sas_url_and_head_is_answered_here(
        azure_gateway: Server, azurite: Azurite, oci_layout: Layout) -> None:
    layer = _first_layer(oci_layout, "single")
    url = f"{azure_gateway.url}/v2/library/demo/blobs/{layer['digest']}?ns=docker.io"
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
        assert location.startswith(f"{azurite.endpoint}/")
        assert "sig=" in urlsplit(location).query
        assert client.get(location.replace("sig=", "sig=A")).status_code == 403  # checked
        fetched = client.get(location)
        assert fetched.status_code == 200
        assert Digest.from_bytes(fetched.content) == Digest.parse(layer["digest"])


def test_containerd_pulls_single_and_multi_arch_following_redirects(
        containerd: Containerd, azure_gateway: Server, oci_layout: Layout,
        tmp_path: Path) -> None:
    hosts = tmp_path / "certs.d"
    # The fallback is a closed port: only the gateway (and the bucket it redirects to) can serve.
    run([regfront_binary(), "containerd-config", "--gateway", azure_gateway.url,
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
