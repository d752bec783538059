"""The node agent's rounds against a node laid out in a temp dir, with containerd's CRI faked:
which files it writes where, what it keeps and gives back, and when it calls the node ready.
tests/e2e/test_node_agent.py runs it against real containerd 1.6, 2.1 and 2.2."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest

from node.agent import BACKUP, MARKER, Agent, read_settings
from node.cri import CRIError
from registry import probe
from registry.errors import ConfigError

GATEWAY = "http://regfront.internal:5000"
LIST_CONFIG = ('version = 2\n[plugins."io.containerd.grpc.v1.cri".registry]\n'
               'config_path = "{a}:{b}"\n')


@dataclass
class FakeCRI:
    """containerd's CRI as the agent sees it; ``answer`` is the digest a pull records."""

    runtime_version: str = "v2.1.9"
    answer: str | None = str(probe.INDEX_DIGEST)
    pulls: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)

    def version(self) -> str:
        return self.runtime_version

    def pull(self, image: str) -> None:
        self.pulls.append(image)
        if self.answer is None:
            raise CRIError("PullImage", "/run/containerd.sock", None, "upstream unreachable")

    def repo_digests(self, image: str) -> list[str]:
        return [f"{image.rsplit(':', 1)[0]}@{self.answer}"] if self.answer else []

    def remove(self, image: str) -> None:
        self.removed.append(image)


@dataclass
class Clock:
    now: float = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Node:
    clock: Clock
    root: Path
    settings: Path
    secret: Path
    config: Path
    cri: FakeCRI
    agent: Agent

    def set(self, **values: str) -> None:
        for key, value in values.items():
            (self.settings / key).write_text(value + "\n")


@pytest.fixture
def node(tmp_path: Path) -> Node:
    settings, secret = tmp_path / "settings", tmp_path / "secret"
    settings.mkdir()
    secret.mkdir()
    config = tmp_path / "config.toml"
    config.write_text(LIST_CONFIG.format(a=tmp_path / "certs.d", b=tmp_path / "docker"))
    cri, clock = FakeCRI(), Clock()
    made = Node(clock, tmp_path, settings, secret, config, cri,
                Agent(settings, secret, config, cri, node_name="ip-10-0-0-1.ec2.internal",
                      clock=clock))
    made.set(gateway=GATEWAY, registries="docker.io ghcr.io=https://ghcr.example")
    return made


def literal(node: Node) -> Path:
    return Path(f"{node.root / 'certs.d'}:{node.root / 'docker'}")


def test_on_2_1_with_a_list_it_writes_the_literal_directory_and_probes(node: Node) -> None:
    status = node.agent.reconcile()
    assert status.ready, status.problems
    text = (literal(node) / "docker.io" / "hosts.toml").read_text()
    assert text.startswith(MARKER)
    assert f'[host."{GATEWAY}"]' in text
    ghcr = (literal(node) / "ghcr.io" / "hosts.toml").read_text()
    assert 'server = "https://ghcr.example"' in ghcr
    assert not (node.root / "certs.d").exists()
    assert node.cri.pulls == [probe.reference("docker.io", "ip-10-0-0-1.ec2.internal"),
                              probe.reference("ghcr.io", "ip-10-0-0-1.ec2.internal")]
    assert node.cri.removed == node.cri.pulls


def test_on_1_6_the_same_list_means_its_first_directory(node: Node) -> None:
    node.cri.runtime_version = "1.6.20~ds1"
    assert node.agent.reconcile().ready
    assert (node.root / "certs.d" / "docker.io" / "hosts.toml").is_file()
    assert not literal(node).exists()


def test_a_probe_that_does_not_reach_the_gateway_keeps_the_node_unready(node: Node) -> None:
    node.cri.answer = None
    status = node.agent.reconcile()
    assert not status.ready
    assert status.probes == {"docker.io": False, "ghcr.io": False}
    assert "did not reach the gateway" in status.probe_problems[0]
    node.cri.answer = "sha256:" + "0" * 64  # somebody else's image of that name
    node.clock.now += 300  # the default probe_interval
    status = node.agent.reconcile()
    assert not status.ready
    assert "not the gateway's probe" in status.probe_problems[0]


def test_the_probe_runs_when_something_changed_else_every_probe_interval(node: Node) -> None:
    node.agent.reconcile()
    node.clock.now += 299
    node.agent.reconcile()
    assert len(node.cri.pulls) == 2  # one round's worth: docker.io and ghcr.io
    node.set(dial_timeout="5s")
    node.agent.reconcile()
    assert len(node.cri.pulls) == 4
    node.clock.now += 300
    node.agent.reconcile()
    assert len(node.cri.pulls) == 6


def test_no_config_path_before_2_2_names_the_setting_and_writes_nothing(node: Node) -> None:
    node.config.write_text("version = 2\n")
    status = node.agent.reconcile()
    assert not status.ready
    assert 'config_path = "/etc/containerd/certs.d"' in status.problems[0]
    assert node.cri.pulls == []
    assert not (node.root / "certs.d").exists()


def test_a_foreign_file_is_kept_and_given_back_by_cleanup(node: Node) -> None:
    node.cri.runtime_version = "1.6.20"
    mine = node.root / "certs.d" / "docker.io"
    mine.mkdir(parents=True)
    (mine / "hosts.toml").write_text('server = "https://corp-mirror"\n')
    node.agent.reconcile()
    assert (mine / BACKUP).read_text() == 'server = "https://corp-mirror"\n'
    assert (mine / "hosts.toml").read_text().startswith(MARKER)
    node.agent.reconcile()  # a second round keeps the first original
    assert (mine / BACKUP).read_text() == 'server = "https://corp-mirror"\n'
    node.set(mode="cleanup")
    status = node.agent.reconcile()
    assert not status.ready
    assert (mine / "hosts.toml").read_text() == 'server = "https://corp-mirror"\n'
    assert not (mine / BACKUP).exists()
    assert not (node.root / "certs.d" / "ghcr.io").exists()


def test_a_registry_that_leaves_the_list_is_given_back(node: Node) -> None:
    node.agent.reconcile()
    node.set(registries="docker.io")
    node.agent.reconcile()
    assert (literal(node) / "docker.io" / "hosts.toml").is_file()
    assert not (literal(node) / "ghcr.io").exists()


def test_files_move_when_containerd_changes_its_pull_path(node: Node) -> None:
    node.agent.reconcile()
    node.config.write_text(LIST_CONFIG.format(a=node.root / "certs.d", b=node.root / "docker")
                           + '[plugins."io.containerd.grpc.v1.cri".containerd]\n'
                             "discard_unpacked_layers = true\n")
    assert node.agent.reconcile().ready
    assert (node.root / "certs.d" / "docker.io" / "hosts.toml").is_file()
    assert not (literal(node) / "docker.io").exists()


def test_a_credential_is_written_for_root_only(node: Node) -> None:
    (node.secret / "authorization").write_text("s3cr3t-token-for-nodes\n")
    node.agent.reconcile()
    file = literal(node) / "docker.io" / "hosts.toml"
    assert file.stat().st_mode & 0o777 == 0o600
    assert 'Authorization" = ["Bearer s3cr3t-token-for-nodes"]' in file.read_text()


@pytest.mark.parametrize(("key", "value", "message"), [
    ("mode", "apply-now", "mode: 'apply-now': expected apply or cleanup"),
    ("gateway", "regfront.internal", "gateway: 'regfront.internal': expected an http(s) URL"),
    ("dial_timeout", "3 seconds", "dial_timeout: '3 seconds': expected e.g. 3s"),
    ("probe", "yes", "probe: 'yes': expected true or false"),
    ("registries", "docker.io not/a/host", "--registry 'not/a/host'"),
])
def test_a_bad_setting_is_one_line_naming_it(node: Node, key: str, value: str,
                                              message: str) -> None:
    node.set(**{key: value})
    with pytest.raises(ConfigError, match="^.*" + message.replace("(", r"\(").replace(")", r"\)")):
        read_settings(node.settings, node.secret)
    status = node.agent.reconcile()
    assert not status.ready
    assert message in status.problems[0]
