"""The node agent on real containerd 1.6, 2.1.9 and 2.2.7: after one round, kubelet's pull (the
CRI's PullImage) goes through the gateway on every node config where that is possible without a
config change - including the ones where hosts files in the documented directory are silently
ignored (tests/e2e/test_kubelet_path.py) - and where it is not, the agent says so and is not
ready. Its cleanup gives every node back.

The agent runs as the DaemonSet runs it: ``regfront node-agent`` in the node's mount namespace
(it sees the node's /etc/containerd), with the node's config.toml and CRI socket. The registry's
fallback refuses connections, so a pull that succeeds was served by the gateway.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from registry import probe
from tests.e2e.harness import Gateway, clean_env, regfront_binary, require_tool, run
from tests.e2e.nodes import (
    LIST,
    LIST_DISCARD,
    ONE_DIR,
    UNSET,
    Node,
    NodeConfig,
    NodePool,
    Version,
    assert_hosts_ignored,
    assert_via_gateway,
    cri_pull,
    gateway_pull_requests,
    unreachable_url,
)

pytestmark = pytest.mark.e2e

NAME, REFERENCE = "library/demo", "single"
SINGLE = f"docker.io/{NAME}:{REFERENCE}"

# (version, node config) -> does a round make kubelet's pulls go through the gateway?
CASES: list[tuple[Version, NodeConfig, bool]] = [
    ("1.6", ONE_DIR, True), ("2.1.9", ONE_DIR, True), ("2.2.7", ONE_DIR, True),
    ("1.6", LIST_DISCARD, True), ("2.1.9", LIST_DISCARD, True), ("2.2.7", LIST_DISCARD, True),
    # config_path unset: no hosts dir before 2.2 - a config change and a restart are needed
    ("1.6", UNSET, False), ("2.1.9", UNSET, False), ("2.2.7", UNSET, True),
    # EKS AL2023's list: the agent writes where the transfer service reads on 2.1+
    ("1.6", LIST, True), ("2.1.9", LIST, True), ("2.2.7", LIST, True),
]


def agent_round(node: Node, gateway: Gateway, work: Path,
                **settings: str) -> tuple[int, dict[str, Any]]:
    """One ``regfront node-agent --once`` in the node's mount namespace: (exit, status)."""
    config, secret = work / "settings", work / "secret"
    for directory in (config, secret):
        directory.mkdir(exist_ok=True)
    values = {"gateway": gateway.url, "registries": f"docker.io={unreachable_url()}", **settings}
    for key, value in values.items():
        (config / key).write_text(value + "\n")
    argv = [require_tool("nsenter"), f"--target={node.service.process.pid}", "--mount", "--",
            regfront_binary(), "node-agent", "--once", "--config-dir", str(config),
            "--secret-dir", str(secret), "--containerd-config", str(node.config_file),
            "--containerd-socket", str(node.address), "--node-name", "e2e-node"]
    result = run(argv, env=clean_env("REGFRONT_", "NODE_NAME"), check=False, timeout=120)
    try:
        status: dict[str, Any] = json.loads(result.stdout)
    except json.JSONDecodeError:
        pytest.fail(f"node-agent printed no status (exit {result.returncode}):\n"
                    f"{result.stdout}\n{result.stderr}\n{node.log_tail()}", pytrace=False)
    return result.returncode, status


@pytest.mark.parametrize(("version", "config", "works"), CASES,
                         ids=[f"{v}-{c}-{'mirror' if w else 'needs-setting'}"
                              for v, c, w in CASES])
def test_one_round_puts_kubelets_pulls_through_the_gateway(
        nodes: NodePool, gateway: Gateway, tmp_path: Path, version: Version,
        config: NodeConfig, works: bool) -> None:
    node = nodes.node(version, config)
    before = gateway_pull_requests(gateway)
    code, status = agent_round(node, gateway, tmp_path)
    if works:
        assert (code, status["ready"], status["problems"]) == (0, True, []), status
        assert status["probes"] == {"docker.io": True}
        # The probe pull reached the gateway: index, manifest, config and layer at least.
        assert gateway_pull_requests(gateway) - before >= 4
        assert node.cri.image_status(probe.reference("docker.io", "e2e-node")) is None
        with cri_pull(node, gateway, SINGLE) as outcome:
            assert_via_gateway(outcome, gateway, NAME, REFERENCE)
    else:
        assert (code, status["ready"], status["written"]) == (1, False, []), status
        (problem,) = status["problems"]
        assert "config_path" in problem
        assert "restart containerd" in problem
        with cri_pull(node, gateway, SINGLE) as outcome:
            assert_hosts_ignored(outcome)
    # Cleanup gives the node back: the same pull no longer reaches the gateway.
    code, status = agent_round(node, gateway, tmp_path, mode="cleanup")
    assert (code, status["ready"]) == (1, False)
    with cri_pull(node, gateway, SINGLE) as outcome:
        assert_hosts_ignored(outcome)


def test_with_the_gateway_down_the_node_is_not_ready(nodes: NodePool, gateway: Gateway,
                                                    tmp_path: Path) -> None:
    """The probe fails exactly when kubelet's pulls would not reach a gateway: here the files
    are right, but the gateway they name refuses connections."""
    node = nodes.node("2.2.7", LIST)
    down = Gateway(int(unreachable_url().rpartition(":")[2]), gateway.root, gateway.service,
                   gateway.digests)
    code, status = agent_round(node, down, tmp_path)
    assert (code, status["ready"], status["probes"]) == (1, False, {"docker.io": False}), status
    assert status["written"] == [node.literal_hosts_dir.as_posix()]
    assert "did not reach the gateway" in status["problems"][0]
    agent_round(node, gateway, tmp_path, mode="cleanup")
