"""deploy/kubernetes: the manifests validate against the Kubernetes schemas offline; the node
agent's DaemonSet mounts what `regfront node-agent` reads and writes at their host paths, is Ready
by the agent's proof, and ships settings the agent accepts. What the agent does on a node is
tested in tests/node/test_agent.py and, on real containerd, tests/e2e/test_node_agent.py.

The in-cluster gateway and sync CronJob: the config they mount is one regfront's own parser
accepts and the one both read; the gateway listens where its probes and Service point, is Ready
by /readyz, runs as the Dockerfile's user with a read-only root; the Service is an internal load
balancer on every cloud (nodes reach it from the host network); sync never runs twice at once.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from node.agent import read_settings
from registry.config import Config, parse_config, split_listen
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


# -- the gateway and sync in the cluster -------------------------------------------------------

GATEWAY_NAMESPACE = "regfront-gateway"


def _pod(kind: str, name: str) -> dict[str, Any]:
    spec = _one(kind, name)["spec"]
    if kind == "CronJob":
        spec = spec["jobTemplate"]["spec"]
    pod: dict[str, Any] = spec["template"]["spec"]
    return pod


def _mounted_config(kind: str, name: str) -> tuple[str, Config]:
    """The path a workload reads regfront.yaml from, and that file as regfront parses it."""
    pod = _pod(kind, name)
    (container,) = pod["containers"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = [m for m in container["volumeMounts"]
              if "configMap" in volumes[m["name"]]]
    assert len(mounts) == 1, f"{kind}/{name}: one ConfigMap mount"
    config_map = _one("ConfigMap", volumes[mounts[0]["name"]]["configMap"]["name"])
    assert config_map["metadata"]["namespace"] == GATEWAY_NAMESPACE
    ((key, text),) = config_map["data"].items()
    return f"{mounts[0]['mountPath']}/{key}", parse_config(text, key)


def test_the_gateway_and_sync_read_one_config_regfront_accepts() -> None:
    gateway_path, config = _mounted_config("Deployment", "regfront-gateway")
    sync_path, same = _mounted_config("CronJob", "regfront-sync")
    assert config == same
    (container,) = _pod("Deployment", "regfront-gateway")["containers"]
    assert container["args"] == ["serve"]  # the image's entry point is `regfront`
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["REGFRONT_CONFIG"] == gateway_path
    (sync,) = _pod("CronJob", "regfront-sync")["containers"]
    assert sync["args"] == ["sync", "--once", "--config", sync_path]
    # An existing bucket, and something for sync to do.
    assert all(s.url.startswith(("s3://", "gs://", "az://")) for s in config.storage)
    assert config.mirror
    assert all(rule.registry in config.upstreams for rule in config.mirror)


def test_the_gateway_listens_where_its_probes_and_service_point() -> None:
    _, config = _mounted_config("Deployment", "regfront-gateway")
    host, port = split_listen(config.gateway.listen)
    assert host == "0.0.0.0"  # reachable from outside the pod
    (container,) = _pod("Deployment", "regfront-gateway")["containers"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"http": port}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert container["startupProbe"]["httpGet"]["port"] == "http"
    service = _one("Service", "regfront-gateway")["spec"]
    assert [p["targetPort"] for p in service["ports"]] == ["http"]
    template = _one("Deployment", "regfront-gateway")["spec"]["template"]["metadata"]
    assert template["annotations"]["prometheus.io/port"] == str(port)
    policy = _one("NetworkPolicy", "regfront-gateway")["spec"]
    assert [p["port"] for rule in policy["ingress"] for p in rule["ports"]] == [port]
    # uvicorn drains for up to 30 s after the preStop pause: the grace period covers both.
    pause = int(container["lifecycle"]["preStop"]["exec"]["command"][-1])
    grace = _pod("Deployment", "regfront-gateway")["terminationGracePeriodSeconds"]
    assert grace >= pause + 30


def _dockerfile_user() -> int:
    match = re.search(r"^USER (\d+):(\d+)$", (ROOT / "Dockerfile").read_text(), re.MULTILINE)
    assert match, "the Dockerfile names a numeric USER"
    return int(match.group(1))


@pytest.mark.parametrize(("kind", "name"), [("Deployment", "regfront-gateway"),
                                            ("CronJob", "regfront-sync")])
def test_gateway_and_sync_run_unprivileged_with_a_read_only_root(kind: str, name: str) -> None:
    pod = _pod(kind, name)
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == _dockerfile_user()
    assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
    assert pod["automountServiceAccountToken"] is False
    assert "hostNetwork" not in pod
    assert all("hostPath" not in volume for volume in pod["volumes"])
    (container,) = pod["containers"]
    context = container["securityContext"]
    assert context["readOnlyRootFilesystem"] is True
    assert context["allowPrivilegeEscalation"] is False
    assert context["capabilities"]["drop"] == ["ALL"]
    assert {"cpu", "memory"} <= container["resources"]["requests"].keys()
    assert "memory" in container["resources"]["limits"]
    # Never pulled through the gateway nor from rate-limited Docker Hub: the operator's registry.
    assert "." in container["image"].split("/")[0]
    # Store (and upstream) credentials: optional Secrets, so a cloud identity alone works.
    assert all(source["secretRef"]["optional"] is True for source in container["envFrom"])
    assert "regfront-store-credentials" in {s["secretRef"]["name"] for s in container["envFrom"]}
    # Its namespace admits nothing that needs more.
    assert _one(kind, name)["metadata"]["namespace"] == GATEWAY_NAMESPACE
    labels = _one("Namespace", GATEWAY_NAMESPACE)["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"


def test_nodes_reach_the_gateway_through_an_internal_load_balancer() -> None:
    service = _one("Service", "regfront-gateway")
    # containerd pulls from the host network with the node's DNS: no cluster DNS name, no
    # ClusterIP; and never a public load balancer, whichever cloud.
    assert service["spec"]["type"] == "LoadBalancer"
    annotations = service["metadata"]["annotations"]
    assert annotations["service.beta.kubernetes.io/aws-load-balancer-internal"] == "true"
    assert annotations["service.beta.kubernetes.io/aws-load-balancer-scheme"] == "internal"
    assert annotations["networking.gke.io/load-balancer-type"] == "Internal"
    assert annotations["service.beta.kubernetes.io/azure-load-balancer-internal"] == "true"
    labels = _one("Deployment", "regfront-gateway")["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()


def test_disruptions_and_autoscaling_keep_a_gateway() -> None:
    deployment = _one("Deployment", "regfront-gateway")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    budget = _one("PodDisruptionBudget", "regfront-gateway")["spec"]
    assert budget["selector"]["matchLabels"].items() <= labels.items()
    scaler = _one("HorizontalPodAutoscaler", "regfront-gateway")["spec"]
    assert scaler["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment",
                                        "name": "regfront-gateway"}
    # One gateway may be drained while another still serves.
    assert scaler["minReplicas"] > budget["maxUnavailable"]
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0


def test_sync_never_runs_twice_at_once_and_retries_on_schedule() -> None:
    cronjob = _one("CronJob", "regfront-sync")["spec"]
    assert cronjob["concurrencyPolicy"] == "Forbid"
    job = cronjob["jobTemplate"]["spec"]
    assert job["backoffLimit"] == 0
    assert job["template"]["spec"]["restartPolicy"] == "Never"
    assert "ingress" not in _one("NetworkPolicy", "regfront-sync")["spec"]
