"""deploy/kubernetes: the manifests validate against the Kubernetes schemas offline, and the node
agent's script (run here by dash and by busybox, as the DaemonSet runs it) writes the hosts.toml
that `regfront containerd-config` writes, keeps what it replaces, and gives it back only in
cleanup mode - never when it is stopped.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from node.hosts import hosts_toml, parse_registry
from tests.deploy.conftest import ROOT, tool

MANIFESTS = sorted((ROOT / "deploy" / "kubernetes").glob("*.yaml"))
# The oldest Kubernetes minor the manifests promise to work on, and the schemas' newest.
KUBERNETES_VERSIONS = ["1.29", None]
GATEWAY = "http://regfront.internal:5000"


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


def test_the_daemonset_mounts_certs_d_at_its_host_path_and_has_no_stop_hook() -> None:
    daemonset = _one("DaemonSet", "regfront-node-agent")
    pod = daemonset["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    host = volumes["certs-d"]["hostPath"]["path"]
    assert host == mounts["certs-d"]["mountPath"] == "/etc/containerd/certs.d"
    assert {e["name"]: e["value"] for e in container["env"]}["CERTS_DIR"] == host
    assert "lifecycle" not in container  # stopping must never undo the node's configuration
    assert volumes["credentials"]["secret"]["optional"] is True
    assert _one("ConfigMap", volumes["script"]["configMap"]["name"])["data"]["agent.sh"]
    config = _one("ConfigMap", volumes["config"]["configMap"]["name"])["data"]
    assert {"mode", "gateway", "registries"} <= set(config)
    # Pulled before any hosts.toml exists on a new node: never from rate-limited Docker Hub.
    assert container["image"].split("/")[0] not in ("docker.io", "index.docker.io")
    assert "." in container["image"].split("/")[0]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["capabilities"]["drop"] == ["ALL"]


@dataclass
class Agent:
    """The ConfigMap's script, run by ``shell`` over ``certs`` (a node's certs.d)."""

    shell: list[str]
    script: Path
    config: Path
    secret: Path
    certs: Path

    def start(self, settings: dict[str, str], authorization: str | None = None,
              once: bool = True) -> subprocess.Popen[str]:
        for old in self.config.iterdir():
            old.unlink()
        for key, value in settings.items():
            (self.config / key).write_text(value + "\n")
        if authorization is None:
            (self.secret / "authorization").unlink(missing_ok=True)
        else:
            (self.secret / "authorization").write_text(authorization)
        env = {**os.environ, "CONFIG_DIR": str(self.config), "SECRET_DIR": str(self.secret),
               "CERTS_DIR": str(self.certs), "ONCE": "1" if once else ""}
        return subprocess.Popen([*self.shell, str(self.script)], env=env, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT)

    def __call__(self, settings: dict[str, str],
                 authorization: str | None = None) -> subprocess.CompletedProcess[str]:
        """One reconciliation (ONCE=1): its exit status and what it logged."""
        process = self.start(settings, authorization)
        output = process.communicate(timeout=30)[0]
        return subprocess.CompletedProcess(process.args, process.returncode, output)


@pytest.fixture(params=["sh", "busybox"])
def agent(request: pytest.FixtureRequest, tmp_path: Path) -> Agent:
    shell = ([tool("busybox", "make deploy-deps (Debian's busybox)"), "sh"]
             if request.param == "busybox" else ["/bin/sh"])
    script = tmp_path / "agent.sh"
    script.write_text(_one("ConfigMap", "regfront-node-agent")["data"]["agent.sh"])
    agent = Agent(shell, script, tmp_path / "config", tmp_path / "secret", tmp_path / "certs.d")
    for directory in (agent.config, agent.secret, agent.certs):
        directory.mkdir()
    return agent


def _hosts(certs: Path, name: str) -> dict[str, Any]:
    return tomllib.loads((certs / name / "hosts.toml").read_text())


def test_writes_what_containerd_config_writes(agent: Agent) -> None:
    certs = agent.certs
    result = agent({"gateway": GATEWAY + "/", "registries":
                    "docker.io\nghcr.io  reg.corp:5000=http://127.0.0.1:5001\n_default"})
    assert result.returncode == 0, result.stdout
    for name in ("docker.io", "ghcr.io", "reg.corp:5000=http://127.0.0.1:5001", "_default"):
        registry = parse_registry(name)
        expected = tomllib.loads(hosts_toml(GATEWAY, registry, dial_timeout="3s"))
        assert _hosts(certs, registry.name) == expected, registry.name
    hub = _hosts(certs, "docker.io")
    assert hub["server"] == "https://registry-1.docker.io"
    assert list(hub["host"]) == [GATEWAY]  # the gateway first; `server` is the fallback
    assert "server" not in _hosts(certs, "_default")
    again = agent({"gateway": GATEWAY, "registries":
                   "docker.io ghcr.io reg.corp:5000=http://127.0.0.1:5001 _default"})
    assert again.returncode == 0
    assert again.stdout == ""  # nothing changed, nothing rewritten


def test_credentials_and_ca(agent: Agent) -> None:
    certs = agent.certs
    result = agent({"gateway": "https://gw.internal", "registries": "ghcr.io",
                    "ca.crt": "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----",
                    "dial_timeout": "1s"}, authorization="s3cret-token\n")
    assert result.returncode == 0, result.stdout
    host = _hosts(certs, "ghcr.io")["host"]["https://gw.internal"]
    assert host["header"] == {"Authorization": ["Bearer s3cret-token"]}
    assert host["dial_timeout"] == "1s"
    assert host["ca"] == str(certs / "ghcr.io" / "regfront-ca.crt")
    assert (certs / "ghcr.io" / "regfront-ca.crt").read_text().startswith("-----BEGIN")
    assert (certs / "ghcr.io" / "hosts.toml").stat().st_mode & 0o077 == 0  # a credential
    basic = agent({"gateway": "https://gw.internal", "registries": "ghcr.io"},
                  authorization="Basic dXNlcjpwYXNz")
    assert basic.returncode == 0
    assert _hosts(certs, "ghcr.io")["host"]["https://gw.internal"]["header"] == {
        "Authorization": ["Basic dXNlcjpwYXNz"]}
    assert not (certs / "ghcr.io" / "regfront-ca.crt").exists()


def test_keeps_what_it_replaces_and_gives_it_back_only_in_cleanup(
        agent: Agent) -> None:
    certs = agent.certs
    (certs / "docker.io").mkdir()
    original = 'server = "https://registry-1.docker.io"\n[host."https://corp-mirror"]\n'
    (certs / "docker.io" / "hosts.toml").write_text(original)
    settings = {"gateway": GATEWAY, "registries": "docker.io quay.io"}
    assert agent(settings).returncode == 0
    assert (certs / "docker.io" / "hosts.toml.regfront-backup").read_text() == original
    assert list(_hosts(certs, "docker.io")["host"]) == [GATEWAY]

    # A registry dropped from the list is given back; the others stay.
    assert agent({**settings, "registries": "docker.io"}).returncode == 0
    assert not (certs / "quay.io").exists()
    assert list(_hosts(certs, "docker.io")["host"]) == [GATEWAY]

    cleanup = agent({**settings, "mode": "cleanup"})
    assert cleanup.returncode == 0, cleanup.stdout
    assert (certs / "docker.io" / "hosts.toml").read_text() == original
    assert sorted(p.name for p in (certs / "docker.io").iterdir()) == ["hosts.toml"]


def test_stopping_the_agent_leaves_the_files(agent: Agent) -> None:
    certs = agent.certs
    (certs / "docker.io").mkdir()
    (certs / "docker.io" / "hosts.toml").write_text('server = "https://corp"\n')
    process = agent.start({"gateway": GATEWAY, "registries": "docker.io", "interval": "60"},
                          once=False)
    try:
        deadline = time.monotonic() + 10
        while "server = \"https://corp\"" in (certs / "docker.io" / "hosts.toml").read_text():
            assert time.monotonic() < deadline
            time.sleep(0.05)
        time.sleep(0.2)  # into its sleep
        process.send_signal(signal.SIGTERM)
        output = process.communicate(timeout=5)[0]
        assert process.returncode == 0
    finally:
        if process.poll() is None:
            process.kill()
    assert "hosts.toml files stay as they are" in output
    assert list(_hosts(certs, "docker.io")["host"]) == [GATEWAY]
    assert (certs / "docker.io" / "hosts.toml.regfront-backup").exists()


@pytest.mark.parametrize(("settings", "message"), [
    ({"gateway": "regfront.internal:5000"}, "expected an http:// or https:// URL"),
    ({"gateway": 'http://gw"]\n[evil'}, "expected an http:// or https:// URL"),
    ({"gateway": GATEWAY, "registries": "not/a/host"}, "not a registry host name"),
    ({"gateway": GATEWAY, "dial_timeout": "soon"}, "expected e.g. 3s"),
    ({"gateway": GATEWAY, "mode": "remove"}, "expected apply or cleanup"),
])
def test_bad_settings_change_nothing(agent: Agent, settings: dict[str, str],
                                     message: str) -> None:
    certs = agent.certs
    result = agent({"registries": "docker.io", **settings})
    assert result.returncode == 1
    assert message in result.stdout
    assert list(certs.iterdir()) == []


def test_a_header_value_that_would_break_the_toml_is_refused(
        agent: Agent) -> None:
    certs = agent.certs
    result = agent({"gateway": GATEWAY}, authorization='Bearer x"]\n')
    assert result.returncode == 1
    assert list(certs.iterdir()) == []
