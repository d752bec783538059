"""deploy/kubernetes: the manifests validate against the Kubernetes schemas offline; the node
agent's DaemonSet mounts what `regfront node-agent` reads and writes at their host paths, is Ready
by the agent's proof, and ships settings the agent accepts. What the agent does on a node is
tested in tests/node/test_agent.py and, on real containerd, tests/e2e/test_node_agent.py.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from node.agent import read_settings
from tests.deploy.conftest import ROOT, tool

MANIFESTS = sorted((ROOT / "deploy" / "kubernetes").glob("*.yaml"))
# The oldest Kubernetes minor the manifests promise to work on, and the schemas' newest.
KUBERNETES_VERSIONS = ["1.29", None]


def _documents() -> list[dict[str, Any]]:
    return [doc for path in MANIFESTS for doc in yaml.safe_load_all(path.read_text()) if doc]


def _one(kind: str, name: str) -> dict[str, Any]:
    found = [d for d in _documents() if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind}/{name}"
    return found[0]


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_manifests_validate_against_the_schemas(version: str | None) -> None:
    validate = tool("kubernetes-validate", "make install (kubernetes-validate is in the dev extra)")
    assert MANIFESTS
    args = [validate, "--strict", "--quiet", *(["-k", version] if version else []),
            *map(str, MANIFESTS)]
    result = subprocess.run(args, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_daemonset_mounts_containerd_at_its_host_paths_and_has_no_stop_hook() -> None:
    daemonset = _one("DaemonSet", "regfront-node-agent")
    pod = daemonset["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert container["args"] == ["node-agent"]  # the image's entry point is `regfront`
    # The agent writes where containerd's config points, as the host sees it: same paths.
    for path in ("/etc/containerd", "/run/containerd/containerd.sock"):
        assert volumes[mounts[path]["name"]]["hostPath"]["path"] == path
    assert not mounts["/etc/containerd"].get("readOnly")
    assert env["REGFRONT_CONTAINERD_CONFIG"].startswith("/etc/containerd/")
    assert env["REGFRONT_CONTAINERD_SOCKET"] == "/run/containerd/containerd.sock"
    assert mounts[env["REGFRONT_NODE_CONFIG_DIR"]]["readOnly"] is True
    assert "lifecycle" not in container  # stopping must never undo the node's configuration
    assert volumes["credentials"]["secret"]["optional"] is True
    # Ready means the agent's probe pull went through the gateway.
    port = env["REGFRONT_NODE_LISTEN"].rpartition(":")[2]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert {p["name"]: p["containerPort"] for p in container["ports"]}["metrics"] == int(port)
    annotations = daemonset["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/port"] == port
    # Pulled before any hosts.toml exists on a new node: never from rate-limited Docker Hub.
    assert container["image"].split("/")[0] not in ("docker.io", "index.docker.io")
    assert "." in container["image"].split("/")[0]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["capabilities"]["drop"] == ["ALL"]


def test_the_shipped_settings_are_ones_the_agent_accepts(tmp_path: Path) -> None:
    data = _one("ConfigMap", "regfront-node-config")["data"]
    for key, value in data.items():
        (tmp_path / key).write_text(value)
    settings = read_settings(tmp_path, tmp_path / "no-secret")
    assert settings.mode == "apply"
    assert settings.probe is True
    assert [r.name for r in settings.registries] == data["registries"].split()


def test_only_the_metrics_port_is_open() -> None:
    policy = _one("NetworkPolicy", "regfront-node-agent")["spec"]
    assert policy["policyTypes"] == ["Ingress", "Egress"]
    assert "egress" not in policy
    assert [p["port"] for rule in policy["ingress"] for p in rule["ports"]] == [9105]
