"""HTTPS: containerd pulls from a gateway serving TLS with a test CA that hosts.toml names, and
refuses a gateway whose certificate it cannot verify - with ``ctr`` on 1.6, and as kubelet pulls
(the CRI) on 1.6, 2.1.9 and 2.2.7."""

from __future__ import annotations

import contextlib
import datetime
import ipaddress
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from node.cri import CRIError
from tests.e2e.harness import (
    Containerd,
    Gateway,
    clean_env,
    free_port,
    regfront_binary,
    run,
    started,
)
from tests.e2e.nodes import ONE_DIR, NodePool, Version, unreachable_url, write_hosts

pytestmark = pytest.mark.e2e

SINGLE = "docker.io/library/demo:single"


def _certificates(directory: Path) -> tuple[Path, Path, Path]:
    """A CA, and a certificate it signed for 127.0.0.1: (ca.pem, cert.pem, key.pem)."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "regfront test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - datetime.timedelta(minutes=5))
          .not_valid_after(now + datetime.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
            .issuer_name(ca_name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    paths = directory / "ca.pem", directory / "cert.pem", directory / "key.pem"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return paths


def _https_ready(port: int, ca: Path) -> bool:
    import ssl
    import urllib.request

    context = ssl.create_default_context(cafile=str(ca))
    try:
        with urllib.request.urlopen(f"https://127.0.0.1:{port}/v2/", context=context,
                                    timeout=1) as response:
            return bool(response.status == 200)
    except OSError:
        return False


@contextlib.contextmanager
def _serving_https(gateway: Gateway, tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """The gateway's store served over TLS: (its URL, the CA that signed its certificate)."""
    ca, cert, key = _certificates(tmp_path)
    port = free_port()
    argv = [regfront_binary(), "serve", "--storage", str(gateway.store), "--listen",
            f"127.0.0.1:{port}", "--tls-cert", str(cert), "--tls-key", str(key)]
    with started(f"regfront https :{port}", argv, tmp_path / f"tls-{port}.log",
                 lambda: _https_ready(port, ca), "GET /v2/ over TLS",
                 env=clean_env("REGFRONT_")):
        yield f"https://127.0.0.1:{port}", ca


def test_containerd_pulls_over_https_with_the_ca_in_hosts_toml(
        containerd: Containerd, gateway: Gateway, tmp_path: Path) -> None:
    with _serving_https(gateway, tmp_path) as (url, ca):
        trusted, untrusted = tmp_path / "trusted", tmp_path / "untrusted"
        run([regfront_binary(), "containerd-config", "--gateway", url, "--registry",
             "docker.io=http://127.0.0.1:9", "--ca-file", str(ca), "--out", str(trusted)])
        run([regfront_binary(), "containerd-config", "--gateway", url, "--registry",
             "docker.io=http://127.0.0.1:9", "--out", str(untrusted)])
        containerd.remove_all_images()
        refused = containerd.ctr("images", "pull", "--hosts-dir", str(untrusted),
                                 "--platform", "linux/amd64", SINGLE, check=False)
        assert refused.returncode != 0
        assert "certificate signed by unknown authority" in refused.stderr
        assert SINGLE not in containerd.images()
        containerd.ctr("images", "pull", "--hosts-dir", str(trusted), "--platform",
                       "linux/amd64", SINGLE)
    assert containerd.images()[SINGLE] == gateway.digests["single"]


@pytest.mark.parametrize("version", ["1.6", "2.1.9", "2.2.7"])
def test_kubelet_pulls_over_https_with_the_ca_in_hosts_toml(
        nodes: NodePool, gateway: Gateway, tmp_path: Path, version: Version) -> None:
    """The CRI's pull path (from 2.1 the transfer service's) trusts hosts.toml's ``ca`` too;
    the fallback is a closed port, so a pull that succeeds came from the gateway."""
    node = nodes.node(version, ONE_DIR)
    with _serving_https(gateway, tmp_path) as (url, ca):
        write_hosts(node, node.hosts_dirs[0], url, unreachable_url())
        with pytest.raises(CRIError) as refused:
            node.cri.pull_image(SINGLE)
        assert "certificate signed by unknown authority" in refused.value.details
        write_hosts(node, node.hosts_dirs[0], url, unreachable_url(), "docker.io",
                    "--ca-file", str(ca))
        try:
            node.cri.pull_image(SINGLE)
            image = node.cri.image_status(SINGLE)
        finally:
            node.cri.remove_image(SINGLE)
    assert image is not None
    assert f"docker.io/library/demo@{gateway.digests['single']}" in image.repo_digests
