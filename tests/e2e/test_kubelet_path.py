"""Where kubelet's pulls go when hosts.toml sits where every doc says, per containerd and config.

kubelet pulls through the CRI ImageService, so these tests do too (node/cri.py), on containerd
1.6, 2.1.9 and 2.2.7 configured as the nodes in issue 13. ``regfront containerd-config`` writes
docker.io's hosts.toml into the FIRST directory of ``config_path`` (``/etc/containerd/certs.d``
when it is unset), with an upstream where nothing listens: only the gateway can serve the pull.
A pull that ignores the file goes to docker.io's default host, which the nodes resolve to
127.0.0.1:443 (tests/e2e/nodes.py), and fails there without asking the gateway.

The expectations are the measured table: from 2.1 the transfer service reads a ':' list as one
directory, so the list's first directory is silently ignored unless the CRI pulls the local way.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e.harness import Gateway
from tests.e2e.nodes import (
    LIST,
    LIST_DISCARD,
    LIST_LOCAL_PULL,
    ONE_DIR,
    UNSET,
    UPSTREAM_HOST,
    Node,
    NodeConfig,
    NodePool,
    Version,
    assert_hosts_ignored,
    assert_via_gateway,
    cri_pull,
    gateway_pull_requests,
    unreachable_url,
    write_hosts,
)

pytestmark = pytest.mark.e2e

NAME, REFERENCE = "library/demo", "single"
SINGLE = f"docker.io/{NAME}:{REFERENCE}"
DOCS_HOSTS_DIR = Path("/etc/containerd/certs.d")  # where the docs say, and 2.2's default
GATEWAY, IGNORED = "regfront", "hosts.toml ignored"

# (version, node config) -> where kubelet's pull went. Ordered config by config, LIST last, so
# the tests after the matrix find the LIST daemons running: the pool restarts one per change.
MATRIX: list[tuple[Version, NodeConfig, str]] = [
    ("1.6", ONE_DIR, GATEWAY), ("2.1.9", ONE_DIR, GATEWAY), ("2.2.7", ONE_DIR, GATEWAY),
    ("1.6", LIST_DISCARD, GATEWAY), ("2.1.9", LIST_DISCARD, GATEWAY),
    ("2.2.7", LIST_DISCARD, GATEWAY),
    ("2.1.9", LIST_LOCAL_PULL, GATEWAY), ("2.2.7", LIST_LOCAL_PULL, GATEWAY),
    # Unset: 1.6 and 2.1 read no hosts dir at all; 2.2 reads its default list as one path.
    ("1.6", UNSET, IGNORED), ("2.1.9", UNSET, IGNORED), ("2.2.7", UNSET, IGNORED),
    ("1.6", LIST, GATEWAY), ("2.1.9", LIST, IGNORED), ("2.2.7", LIST, IGNORED),
]


@pytest.fixture(scope="module")
def upstream() -> str:
    """hosts.toml's ``server`` for docker.io: refuses connections, so it can serve nothing."""
    return unreachable_url()


def first_hosts_dir(node: Node) -> Path:
    """The naive placement: config_path's first directory, else the documented default."""
    return node.hosts_dirs[0] if node.hosts_dirs else DOCS_HOSTS_DIR


def check(outcome_where: str, node: Node, gateway: Gateway) -> None:
    """Pull SINGLE over the CRI and check it went where ``outcome_where`` says."""
    with cri_pull(node, gateway, SINGLE) as outcome:
        if outcome_where == GATEWAY:
            assert_via_gateway(outcome, gateway, NAME, REFERENCE)
            assert outcome.image is not None
            assert outcome.image.repo_digests == (f"docker.io/{NAME}@{gateway.digests['single']}",)
        else:
            assert_hosts_ignored(outcome)


@pytest.mark.parametrize(("version", "config", "expected"), MATRIX,
                         ids=[f"{v}-{c}-{e.split()[0]}" for v, c, e in MATRIX])
def test_kubelet_pull_with_hosts_in_first_dir(nodes: NodePool, gateway: Gateway, upstream: str,
                                              version: Version, config: NodeConfig,
                                              expected: str) -> None:
    node = nodes.node(version, config)
    write_hosts(node, first_hosts_dir(node), gateway.url, upstream)
    check(expected, node, gateway)


def test_ctr_hosts_dir_is_no_proof_of_kubelets_path(nodes: NodePool, gateway: Gateway,
                                                   upstream: str) -> None:
    """On 2.2.7 with the list, ``ctr --hosts-dir <first dir>`` pulls through the gateway while
    kubelet's CRI pull of the same image, on the same daemon, ignores the very same file."""
    node = nodes.node("2.2.7", LIST)
    first = node.hosts_dirs[0]
    write_hosts(node, first, gateway.url, upstream)
    check(IGNORED, node, gateway)
    ctr = node.containerd()
    before = gateway_pull_requests(gateway)
    try:
        ctr.ctr("images", "pull", "--hosts-dir", str(first), "--platform", "linux/amd64", SINGLE)
        assert ctr.images()[SINGLE] == gateway.digests["single"]
        assert gateway_pull_requests(gateway) > before
    finally:
        ctr.remove_all_images()


def test_use_local_image_pull_and_a_restart_make_the_first_dir_count(
        nodes: NodePool, gateway: Gateway, upstream: str) -> None:
    """The other fix: the same file, ignored until the setting is on and containerd restarted."""
    node = nodes.node("2.2.7", LIST)
    write_hosts(node, node.hosts_dirs[0], gateway.url, upstream)
    check(IGNORED, node, gateway)
    text = node.config_file.read_text()
    assert text.count("use_local_image_pull = false") == 1, text
    node.config_file.write_text(text.replace("use_local_image_pull = false",
                                             "use_local_image_pull = true"))
    check(IGNORED, node, gateway)  # containerd reads its config at start only
    check(GATEWAY, nodes.restart(node), gateway)


# The directory literally named by the list string (a directory whose name contains ':'), which
# the 2.1+ transfer service reads; 1.6 splits the list and never looks there.
LITERAL: list[tuple[Version, NodeConfig, str]] = [
    ("1.6", LIST, IGNORED), ("2.1.9", LIST, GATEWAY), ("2.2.7", LIST, GATEWAY),
    ("2.2.7", UNSET, GATEWAY),  # /etc/containerd/certs.d:/etc/docker/certs.d/docker.io/...
]


@pytest.mark.parametrize(("version", "config", "expected"), LITERAL,
                         ids=[f"{v}-{c}-{e.split()[0]}" for v, c, e in LITERAL])
def test_kubelet_pull_with_hosts_in_literal_dir(nodes: NodePool, gateway: Gateway,
                                                upstream: str, version: Version,
                                                config: NodeConfig, expected: str) -> None:
    """Found with no config change and no restart: the daemon was started before the write."""
    node = nodes.node(version, config)
    assert ":" in str(node.literal_hosts_dir)
    write_hosts(node, node.literal_hosts_dir, gateway.url, upstream)
    check(expected, node, gateway)


def test_hosts_written_into_nodes_etc_stay_off_the_hosts_etc(nodes: NodePool, gateway: Gateway,
                                                             upstream: str) -> None:
    """The private mounts work: the daemon sees the file in /etc/containerd, the host does not."""
    host_file = DOCS_HOSTS_DIR / "docker.io" / "hosts.toml"
    before = host_file.read_bytes() if host_file.exists() else None
    node = nodes.node("2.2.7", UNSET)
    written = write_hosts(node, DOCS_HOSTS_DIR, gateway.url, upstream)
    assert gateway.url in written.read_text()
    as_the_daemon_sees_it = Path(f"/proc/{node.service.process.pid}/root") / "etc"
    assert (as_the_daemon_sees_it / host_file.relative_to("/etc")).read_text() == (
        written.read_text())
    assert (host_file.read_bytes() if host_file.exists() else None) == before
    # ...and its /etc/hosts sends docker.io's default host where nothing listens.
    assert f"127.0.0.1 {UPSTREAM_HOST}" in (as_the_daemon_sees_it / "hosts").read_text()
