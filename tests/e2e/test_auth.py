"""containerd pulls through a regfront serving with ``auth:``. With ``ctr`` on 1.6: the token
flow with ``ctr --user``, a static token written into hosts.toml's ``[host.header]``, and an
anonymous repository with no credentials at all. As kubelet pulls (the CRI) on 1.6, 2.1.9 and
2.2.7: the static token, and a pod's pull secret answering the gateway's challenge.

The private image is ``reg.corp/team/app`` (``reg.corp/*``: ci and the nodes' static token);
``docker.io/library/demo`` is anonymous. Each hosts.toml falls back to a port nothing listens
on, so a pull that succeeds was served by the gateway.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import bcrypt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from node.cri import AuthConfig
from tests.e2e.harness import (
    LOOPBACK,
    Containerd,
    Server,
    clean_env,
    free_port,
    http,
    regfront_binary,
    regfront_import,
    run,
    started,
)
from tests.e2e.nodes import ONE_DIR, NodePool, Version, cri_pull, unreachable_url, write_hosts
from tests.images import Layout

pytestmark = pytest.mark.e2e

PRIVATE = "reg.corp/team/app:1"
PUBLIC = "docker.io/library/demo:single"
PASSWORD = "e2e-ci-password"
STATIC_TOKEN = "e2e-static-node-token-0123456789"


@dataclass(frozen=True)
class AuthGateway:
    server: Server
    digest: str  # what `regfront import` stored for both images


@contextlib.contextmanager
def serving_with_auth(config: Path, store: Path, workdir: Path) -> Iterator[Server]:
    """``regfront serve --config CONFIG``, ready once ``/healthz`` answers.

    harness.serving_regfront waits for ``GET /v2/`` to answer 200; with auth on, an anonymous
    ``GET /v2/`` is a 401 (the challenge ``docker login`` needs), so this waits on /healthz.
    """
    port = free_port()
    argv = [regfront_binary(), "serve", "--config", str(config), "--listen",
            f"{LOOPBACK}:{port}"]

    def ready() -> bool:
        try:
            return http("GET", f"http://{LOOPBACK}:{port}/healthz", timeout=2.0).status == 200
        except OSError:
            return False

    with started(f"regfront (auth) :{port}", argv, workdir / f"regfront-auth-{port}.log", ready,
                 "GET /healthz", env=clean_env("REGFRONT_")) as service:
        yield Server(port, store, service)


@pytest.fixture(scope="module")
def auth_gateway(tmp_path_factory: pytest.TempPathFactory,
                 oci_layout: Layout) -> Iterator[AuthGateway]:
    work = tmp_path_factory.mktemp("auth-gateway")
    store = work / "store"
    digest = regfront_import(oci_layout.root, "single", PRIVATE, store)
    assert regfront_import(oci_layout.root, "single", PUBLIC, store) == digest
    key = ec.generate_private_key(ec.SECP256R1())
    (work / "token-key.pem").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    hashed = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(5)).decode()
    (work / "htpasswd").write_text(f"ci:{hashed}\n")
    (work / "node-token").write_text(STATIC_TOKEN + "\n")
    config = work / "regfront.yaml"
    config.write_text(json.dumps({  # JSON is YAML
        "storage": [{"url": str(store)}],
        "auth": {
            "users_file": str(work / "htpasswd"),
            "token": {"service": "regfront", "issuer": "regfront", "expires_in": 300,
                      "signing_key_file": str(work / "token-key.pem")},
            "static": [{"name": "nodes", "token_file": str(work / "node-token")}],
            "access": [
                {"repositories": ["docker.io/*"], "anonymous": True},
                {"repositories": ["reg.corp/*"], "users": ["ci", "nodes"]},
            ],
        },
    }))
    with serving_with_auth(config, store, work) as server:
        yield AuthGateway(server, digest)


@pytest.fixture(autouse=True)
def empty_content_store(containerd: Containerd) -> None:
    containerd.remove_all_images()


def hosts_dir(gateway: Server, registry: str, out: Path, *flags: str) -> Path:
    """``regfront containerd-config``: the gateway first, then a server that is not there."""
    run([regfront_binary(), "containerd-config", "--gateway", gateway.url, "--registry",
         f"{registry}=http://{LOOPBACK}:{free_port()}", "--out", str(out), *flags],
        env=clean_env("REGFRONT_"))
    return out


def pull(containerd: Containerd, hosts: Path, ref: str, *flags: str, check: bool = True) -> int:
    result = containerd.ctr("images", "pull", "--hosts-dir", str(hosts), "--platform",
                            "linux/amd64", *flags, ref, check=check)
    return result.returncode


def test_private_image_pulls_with_user_through_the_token_flow(
        containerd: Containerd, auth_gateway: AuthGateway, tmp_path: Path) -> None:
    gateway = auth_gateway.server
    # What containerd meets first: a Bearer challenge pointing at the gateway's /token.
    challenge = http("HEAD", f"{gateway.url}/v2/team/app/manifests/1?ns=reg.corp")
    assert challenge.status == 401
    assert challenge.headers["WWW-Authenticate"] == (
        f'Bearer realm="{gateway.url}/token",service="regfront",'
        'scope="repository:reg.corp/team/app:pull"')
    hosts = hosts_dir(gateway, "reg.corp", tmp_path / "certs.d")
    pull(containerd, hosts, PRIVATE, "--user", f"ci:{PASSWORD}")
    assert containerd.images()[PRIVATE] == auth_gateway.digest


def test_private_image_is_refused_without_credentials(
        containerd: Containerd, auth_gateway: AuthGateway, tmp_path: Path) -> None:
    hosts = hosts_dir(auth_gateway.server, "reg.corp", tmp_path / "certs.d")
    assert pull(containerd, hosts, PRIVATE, check=False) != 0
    assert PRIVATE not in containerd.images()
    assert pull(containerd, hosts, PRIVATE, "--user", "ci:wrong-password", check=False) != 0
    assert PRIVATE not in containerd.images()


def test_private_image_pulls_with_the_static_token_in_hosts_toml(
        containerd: Containerd, auth_gateway: AuthGateway, tmp_path: Path) -> None:
    hosts = hosts_dir(auth_gateway.server, "reg.corp", tmp_path / "certs.d",
                      "--header", f"Authorization=Bearer {STATIC_TOKEN}")
    assert f"Bearer {STATIC_TOKEN}" in (hosts / "reg.corp" / "hosts.toml").read_text()
    pull(containerd, hosts, PRIVATE)
    assert containerd.images()[PRIVATE] == auth_gateway.digest


def test_anonymous_repository_pulls_with_no_credentials(
        containerd: Containerd, auth_gateway: AuthGateway, tmp_path: Path) -> None:
    gateway = auth_gateway.server
    head = http("HEAD", f"{gateway.url}/v2/library/demo/manifests/single?ns=docker.io")
    assert head.status == 200
    assert head.headers.get("WWW-Authenticate") is None
    hosts = hosts_dir(gateway, "docker.io", tmp_path / "certs.d")
    pull(containerd, hosts, PUBLIC)
    assert containerd.images()[PUBLIC] == auth_gateway.digest


# -- as kubelet pulls: the CRI, on every containerd a node runs ------------------------------

VERSIONS: list[Version] = ["1.6", "2.1.9", "2.2.7"]


@pytest.mark.parametrize("version", VERSIONS)
def test_kubelet_pulls_a_private_image_with_the_static_token(
        nodes: NodePool, auth_gateway: AuthGateway, version: Version) -> None:
    """The nodes' credential in hosts.toml reaches the gateway on the CRI's pull path too
    (from 2.1 the transfer service's, which reads hosts files itself)."""
    node, gateway = nodes.node(version, ONE_DIR), auth_gateway.server
    write_hosts(node, node.hosts_dirs[0], gateway.url, unreachable_url(), "reg.corp",
                "--header", f"Authorization=Bearer {STATIC_TOKEN}")
    with cri_pull(node, gateway, PRIVATE) as outcome:
        assert outcome.error is None, outcome.describe()
        assert outcome.image is not None, outcome.describe()
        assert f"reg.corp/team/app@{auth_gateway.digest}" in outcome.image.repo_digests
    write_hosts(node, node.hosts_dirs[0], gateway.url, unreachable_url(), "reg.corp")
    with cri_pull(node, gateway, PRIVATE) as outcome:  # control: without it, refused
        assert outcome.error is not None, outcome.describe()


@pytest.mark.parametrize("version", VERSIONS)
def test_kubelet_pull_secret_credentials_reach_the_gateway(
        nodes: NodePool, auth_gateway: AuthGateway, version: Version) -> None:
    """A pod's imagePullSecret, as kubelet hands it to PullImage (kubelet's keyring leaves
    ``server_address`` empty): containerd answers the gateway's challenge with it."""
    node, gateway = nodes.node(version, ONE_DIR), auth_gateway.server
    write_hosts(node, node.hosts_dirs[0], gateway.url, unreachable_url(), "reg.corp")
    secret = AuthConfig(username="ci", password=PASSWORD)
    with cri_pull(node, gateway, PRIVATE, secret) as outcome:
        assert outcome.error is None, outcome.describe()
        assert outcome.image is not None, outcome.describe()
        assert f"reg.corp/team/app@{auth_gateway.digest}" in outcome.image.repo_digests


@pytest.mark.parametrize("version", VERSIONS)
def test_credentials_naming_their_registry_never_reach_a_mirror(
        nodes: NodePool, auth_gateway: AuthGateway, version: Version) -> None:
    """With ``server_address`` set (what a CRI client other than kubelet may send), containerd
    keeps the credentials for that host: the gateway's challenge goes unanswered."""
    node, gateway = nodes.node(version, ONE_DIR), auth_gateway.server
    write_hosts(node, node.hosts_dirs[0], gateway.url, unreachable_url(), "reg.corp")
    secret = AuthConfig(username="ci", password=PASSWORD, server_address="reg.corp")
    with cri_pull(node, gateway, PRIVATE, secret) as outcome:
        assert outcome.error is not None, outcome.describe()
        assert "401 Unauthorized" in outcome.error.details, outcome.describe()
        assert outcome.gateway_requests > 0, outcome.describe()
