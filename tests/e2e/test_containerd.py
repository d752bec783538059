"""containerd 1.6 pulls through regfront with the hosts.toml ``regfront containerd-config`` writes.

The fallback ``server`` in that file is the session's registry:2, which never holds the demo
images: a pull of them that succeeds was served by the gateway. The images are pulled without
``--plain-http``: an ``http://`` host in hosts.toml is enough for ctr to speak plain HTTP to it.
"""

from __future__ import annotations

import time
import tomllib
from pathlib import Path

import pytest

from tests.e2e.harness import (
    Containerd,
    Gateway,
    Server,
    Skopeo,
    free_port,
    http,
    regfront_binary,
    regfront_import,
    run,
)
from tests.images import Layout, layout_children

pytestmark = pytest.mark.e2e

SINGLE = "docker.io/library/demo:single"
MULTI = "docker.io/library/demo:multi"
UPSTREAM_ONLY = "docker.io/library/onlyupstream:1"


@pytest.fixture(scope="module")
def hosts_dir(tmp_path_factory: pytest.TempPathFactory, gateway: Gateway,
              registry2: Server) -> Path:
    """``certs.d`` as ``regfront containerd-config`` writes it: gateway first, registry:2 after."""
    return containerd_config(gateway.url, f"docker.io={registry2.url}",
                             tmp_path_factory.mktemp("certs.d"))


@pytest.fixture(autouse=True)
def empty_content_store(containerd: Containerd) -> None:
    """Each test starts with no images and no content, so every byte it pulls is fetched."""
    containerd.remove_all_images()
    assert containerd.content() == set(), "garbage collection left content behind"


@pytest.fixture(scope="module")
def upstream_only(skopeo: Skopeo, oci_layout: Layout, registry2: Server) -> str:
    """The ``single`` image pushed to registry:2 only, as library/onlyupstream:1."""
    skopeo("copy", "--dest-tls-verify=false", f"oci:{oci_layout.root}:single",
           registry2.ref("library/onlyupstream:1"))
    return UPSTREAM_ONLY


def containerd_config(gateway_url: str, registry: str, out: Path) -> Path:
    """``regfront containerd-config`` for one registry (NAME=URL); returns the hosts dir."""
    written = run([regfront_binary(), "containerd-config", "--gateway", gateway_url,
                   "--registry", registry, "--out", str(out)]).stdout
    assert written.split() == [str(out / registry.partition("=")[0] / "hosts.toml")]
    return out


def pull(containerd: Containerd, hosts_dir: Path, ref: str, *flags: str) -> None:
    """``ctr images pull --hosts-dir``, which also unpacks (into the session's snapshotter)."""
    containerd.ctr("images", "pull", "--hosts-dir", str(hosts_dir), *flags, ref)


def check_complete_and_unpacked(containerd: Containerd, ref: str) -> None:
    """``ctr images check``: every blob present, and unpacked into the session's snapshotter."""
    lines = containerd.ctr("images", "check", f"name=={ref}").stdout.splitlines()
    assert len(lines) == 2, lines
    fields = lines[1].split()
    # REF TYPE DIGEST STATUS(complete (n/n)) SIZE(a unit/b unit) UNPACKED
    assert fields[3] == "complete", lines[1]
    assert fields[-1] == "true", f"not unpacked ({containerd.snapshotter}): {lines[1]}"


def test_hosts_toml_with_dial_timeout_is_accepted_by_containerd(
        containerd: Containerd, hosts_dir: Path, gateway: Gateway) -> None:
    """containerd 1.6 has no ``dial_timeout`` (added in 2.1) and must not reject a file with it.

    It ignores the key: it parses hosts.toml into a struct without that field. The pull below
    succeeding proves the file as regfront writes it is usable by 1.6.
    """
    hosts = tomllib.loads((hosts_dir / "docker.io" / "hosts.toml").read_text())
    assert hosts["host"][gateway.url]["dial_timeout"] == "3s"
    pull(containerd, hosts_dir, SINGLE, "--platform", "linux/amd64")
    assert containerd.images()[SINGLE] == gateway.digests["single"]


def test_single_image_pulls_from_gateway_with_imported_digest(
        containerd: Containerd, hosts_dir: Path, gateway: Gateway, registry2: Server) -> None:
    """The image containerd records is the one ``regfront import`` stored, and came from it."""
    pull(containerd, hosts_dir, SINGLE, "--platform", "linux/amd64")
    assert containerd.images()[SINGLE] == gateway.digests["single"]
    # The fallback was never even asked: the gateway answered resolve and every fetch.
    assert "/v2/library/demo/" not in registry2.service.log_text()


def test_single_image_is_complete_and_unpacked(containerd: Containerd, hosts_dir: Path,
                                               tmp_path: Path) -> None:
    """Every blob arrived intact and the layers unpack into the rootfs the image describes."""
    pull(containerd, hosts_dir, SINGLE, "--platform", "linux/amd64")
    check_complete_and_unpacked(containerd, SINGLE)
    with containerd.mounted(SINGLE, tmp_path / "rootfs", "linux/amd64") as rootfs:
        assert (rootfs / "app" / "hello.txt").read_text() == "hello from regfront\n"
        assert (rootfs / "etc" / "regfront-shared").read_text() == "shared layer\n" * 100


def test_multi_arch_index_pulls_one_platform(containerd: Containerd, hosts_dir: Path,
                                             gateway: Gateway, oci_layout: Layout,
                                             tmp_path: Path) -> None:
    """With ``--platform``, the index resolves to its digest and only that child is fetched."""
    children = layout_children(oci_layout.root, "multi")
    pull(containerd, hosts_dir, MULTI, "--platform", "linux/amd64")
    assert containerd.images()[MULTI] == gateway.digests["multi"]
    content = containerd.content()
    assert {gateway.digests["multi"], children["amd64"]} <= content
    assert children["arm64"] not in content
    check_complete_and_unpacked(containerd, MULTI)
    with containerd.mounted(MULTI, tmp_path / "rootfs", "linux/amd64") as rootfs:
        assert (rootfs / "app" / "arch").read_text() == "amd64\n"


def test_multi_arch_index_pulls_all_platforms(containerd: Containerd, hosts_dir: Path,
                                              gateway: Gateway, oci_layout: Layout,
                                              tmp_path: Path) -> None:
    """``--all-platforms`` fetches (and unpacks) both children of the index from the gateway."""
    children = layout_children(oci_layout.root, "multi")
    pull(containerd, hosts_dir, MULTI, "--all-platforms")
    assert containerd.images()[MULTI] == gateway.digests["multi"]
    assert {gateway.digests["multi"], *children.values()} <= containerd.content()
    check_complete_and_unpacked(containerd, MULTI)
    with containerd.mounted(MULTI, tmp_path / "rootfs", "linux/arm64") as rootfs:
        assert (rootfs / "app" / "arch").read_text() == "arm64\n"


def test_image_missing_from_gateway_falls_through_to_server(
        containerd: Containerd, hosts_dir: Path, gateway: Gateway, registry2: Server,
        upstream_only: str) -> None:
    """The gateway's 404 sends containerd on to hosts.toml's ``server``, which serves it all."""
    # What containerd asks the gateway first: it does not have it.
    missing = http("HEAD", f"{gateway.url}/v2/library/onlyupstream/manifests/1?ns=docker.io")
    assert missing.status == 404
    pull(containerd, hosts_dir, upstream_only, "--platform", "linux/amd64")
    assert containerd.images()[upstream_only] == gateway.digests["single"]
    check_complete_and_unpacked(containerd, upstream_only)
    # registry:2's access log: containerd resolved there and fetched the blobs from there.
    requests = [line for line in registry2.service.log_text().splitlines()
                if "containerd/" in line and "/v2/library/onlyupstream/" in line]
    assert any("/manifests/1?ns=docker.io" in line for line in requests), requests
    assert any("/blobs/sha256:" in line for line in requests), requests


def test_pull_by_digest_resolves_through_gateway(containerd: Containerd, hosts_dir: Path,
                                                 gateway: Gateway) -> None:
    """A digest-pinned reference (as Kubernetes manifests often use) is served by the gateway."""
    ref = f"docker.io/library/demo@{gateway.digests['multi']}"
    pull(containerd, hosts_dir, ref, "--platform", "linux/amd64")
    assert containerd.images()[ref] == gateway.digests["multi"]
    check_complete_and_unpacked(containerd, ref)


def test_registry_with_port_is_stored_under_its_canonical_name(
        containerd: Containerd, gateway: Gateway, registry2: Server, oci_layout: Layout,
        tmp_path: Path) -> None:
    """``reg.corp:5000`` images live under ``reg.corp_5000/``, where ``?ns=`` requests look.

    containerd finds ``certs.d/reg.corp:5000/hosts.toml`` (the directory keeps the colon) and
    sends ``?ns=reg.corp:5000``; registry:2 as ``server`` has no such image.
    """
    digest = regfront_import(oci_layout.root, "single", "reg.corp:5000/team/x:1", gateway.store)
    assert (gateway.store / "docker/registry/v2/repositories/reg.corp_5000/team/x").is_dir()
    hosts = containerd_config(gateway.url, f"reg.corp:5000={registry2.url}", tmp_path / "certs.d")
    pull(containerd, hosts, "reg.corp:5000/team/x:1", "--platform", "linux/amd64")
    assert containerd.images()["reg.corp:5000/team/x:1"] == digest
    assert "/v2/team/x/" not in registry2.service.log_text()


def test_unreachable_gateway_falls_through_to_server(containerd: Containerd, registry2: Server,
                                                     upstream_only: str,
                                                     tmp_path: Path) -> None:
    """With the gateway down (connection refused), containerd 1.6 pulls from ``server`` at once.

    Both resolve and every blob fetch move on to the next host. A gateway that accepts no
    connection but does not refuse either would instead cost 30 s per request on 1.6, which
    ignores ``dial_timeout``.
    """
    hosts = containerd_config(f"http://127.0.0.1:{free_port()}", f"docker.io={registry2.url}",
                              tmp_path / "certs.d")
    started = time.monotonic()
    pull(containerd, hosts, upstream_only, "--platform", "linux/amd64")
    assert time.monotonic() - started < 15, "fall-through on a refused connection was slow"
    check_complete_and_unpacked(containerd, upstream_only)
