"""Client auth's sources of trust: repositories mirrored with upstream credentials, static
secrets, external JWT issuers (JWKS file and URL), the probe image's exemption, and the command
line's auth flags."""


import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from regfront.cli import main
from registry import probe
from registry.errors import ConfigError
from tests.gateway import authkit
from tests.gateway.auth.conftest import DEMO_SINGLE, assert_challenged
from tests.gateway.authkit import (
    STATIC_TOKEN,
    Files,
    auth_for,
    auth_section,
    bearer,
    client_for,
    fetch_token,
    hs256_with_public_key,
    make_config,
    mint,
    policy_for,
)
from tests.gateway.conftest import DEMO, Seeded

# -- repositories mirrored with upstream credentials -------------------------------------------

MIRRORED = {
    "upstreams": {
        "docker.io": {"urls": ["https://registry-1.docker.io"],
                      "credentials": {"username": "u", "password_env": "HUB_TOKEN"}},
        "ghcr.io": {"urls": ["https://ghcr.io"]},
    },
    "mirror": [
        {"name": "demo", "registry": "docker.io", "repositories": ["library/demo"]},
        {"name": "open", "registry": "ghcr.io", "repositories": ["org/*"]},
    ],
}


def test_credentials_mirrored_repositories_need_their_exact_name(files: Files) -> None:
    glob = policy_for(make_config(auth_section(files, [
        {"repositories": ["docker.io/*", "ghcr.io/*"], "anonymous": True}]), **MIRRORED))
    assert glob.credentialed(DEMO)
    assert not glob.anonymous(DEMO)  # paid-for content: a glob does not publish it
    assert glob.anonymous("docker.io/library/nginx")  # not mirrored with credentials
    assert glob.anonymous("ghcr.io/org/app")  # mirrored, but without credentials
    named = policy_for(make_config(auth_section(files, [
        {"repositories": ["docker.io/*"], "anonymous": True},
        {"repositories": [DEMO], "anonymous": True}]), **MIRRORED))
    assert named.anonymous(DEMO)


async def test_credentials_mirrored_repository_is_challenged(seeded: Seeded, files: Files) -> None:
    access = [{"repositories": ["docker.io/*"], "anonymous": True, "users": ["ci"]}]
    config = make_config(auth_section(files, access), **MIRRORED)
    async with client_for(seeded, config) as http:
        assert_challenged(await http.get(DEMO_SINGLE), DEMO)
        token = await fetch_token(http, "ci", DEMO)
        assert (await http.get(DEMO_SINGLE, headers=bearer(token))).status_code == 200
        anonymous = (await http.get("/token", params={"scope": f"repository:{DEMO}:pull"})
                     ).json()
        assert anonymous["scope"] == ""  # an anonymous token does not get it either


# -- static credentials ------------------------------------------------------------------------


async def test_static_bearer_token(client: httpx.AsyncClient) -> None:
    assert (await client.get(DEMO_SINGLE, headers=bearer(STATIC_TOKEN))).status_code == 200
    # nodes may pull demo only
    denied = await client.get("/v2/other/repo/manifests/x", headers=bearer(STATIC_TOKEN))
    assert denied.status_code == 403
    wrong = await client.get(DEMO_SINGLE, headers=bearer(STATIC_TOKEN[:-1] + "X"))
    assert_challenged(wrong, DEMO, "invalid_token")


async def test_static_token_in_a_custom_header(seeded: Seeded, files: Files) -> None:
    section = auth_section(files, static=[{"name": "nodes", "token_file": str(files.static_file),
                                           "header": "X-Regfront-Token"}])
    async with client_for(seeded, make_config(section)) as http:
        ok = await http.get(DEMO_SINGLE, headers={"X-Regfront-Token": STATIC_TOKEN})
        assert ok.status_code == 200
        assert_challenged(await http.get(DEMO_SINGLE, headers={"X-Regfront-Token": "nope"}),
                          DEMO, "invalid_token")
        # Only in its header: the same secret as a Bearer token is not a static credential.
        assert_challenged(await http.get(DEMO_SINGLE, headers=bearer(STATIC_TOKEN)), DEMO,
                          "invalid_token")


async def test_without_a_token_service_there_is_no_login_to_send_clients_to(
        seeded: Seeded, files: Files) -> None:
    """Static secrets only: GET /v2/ answers 200, and the challenge's realm is a plain name."""
    section = {"static": [{"name": "nodes", "token_file": str(files.static_file)}],
               "access": authkit.DEFAULT_ACCESS}
    async with client_for(seeded, make_config(section)) as http:
        assert (await http.get("/v2/")).status_code == 200
        response = await http.get(DEMO_SINGLE)
        assert response.status_code == 401
        assert response.headers["www-authenticate"] == (
            f'Bearer realm="regfront",scope="repository:{DEMO}:pull"')
        assert (await http.get(DEMO_SINGLE, headers=bearer(STATIC_TOKEN))).status_code == 200
        assert (await http.get("/token")).status_code == 404


def test_short_static_token_is_a_config_error(files: Files) -> None:
    files.static_file.write_text("short\n")
    with pytest.raises(ConfigError, match=r"auth.static.0.token_file: .*node-token"):
        auth_for(make_config(auth_section(files)))


# -- external issuers --------------------------------------------------------------------------


def _rsa_jwk(key: rsa.RSAPrivateKey, kid: str) -> dict[str, Any]:
    jwk: dict[str, Any] = RSAAlgorithm.to_jwk(key.public_key(), as_dict=True)
    return {**jwk, "kid": kid, "use": "sig", "alg": "RS256"}


def _issuer_claims(**override: Any) -> dict[str, Any]:
    now = int(time.time())
    return {"iss": "https://issuer.example", "aud": ["regfront-nodes"],
            "sub": "system:serviceaccount:ci:puller", "iat": now, "exp": now + 600, **override}


ISSUER_ACCESS = [{"repositories": ["docker.io/library/*"],
                  "users": ["system:serviceaccount:ci:puller"]}]


async def test_external_issuer_from_a_jwks_file(seeded: Seeded, files: Files,
                                                tmp_path: Path) -> None:
    key = authkit.write_rsa_key(tmp_path / "issuer.pem")
    jwks = tmp_path / "jwks.json"
    jwks.write_text(json.dumps({"keys": [_rsa_jwk(key, "k1")]}))
    section = auth_section(files, ISSUER_ACCESS, issuers=[{
        "issuer": "https://issuer.example", "audience": "regfront-nodes",
        "jwks_file": str(jwks)}])
    async with client_for(seeded, make_config(section)) as http:
        token = mint(key, _issuer_claims(), "k1", "RS256")
        assert (await http.get(DEMO_SINGLE, headers=bearer(token))).status_code == 200
        for bad in (_issuer_claims(aud="other"), _issuer_claims(iss="https://evil.example"),
                    _issuer_claims(exp=int(time.time()) - 3600)):
            response = await http.get(DEMO_SINGLE, headers=bearer(mint(key, bad, "k1", "RS256")))
            assert_challenged(response, DEMO, "invalid_token")
        confused = hs256_with_public_key(_issuer_claims(), "k1", authkit.public_pem(key))
        assert_challenged(await http.get(DEMO_SINGLE, headers=bearer(confused)), DEMO,
                          "invalid_token")
        other_sub = mint(key, _issuer_claims(sub="system:serviceaccount:x:y"), "k1", "RS256")
        assert (await http.get(DEMO_SINGLE, headers=bearer(other_sub))).status_code == 403


class _JWKSServer:
    """A tiny HTTP server on loopback serving a JWKS document, counting fetches."""

    def __init__(self, document: dict[str, Any]) -> None:
        self.document = document
        self.fetches = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer.fetches += 1
                body = json.dumps(outer.document).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/keys"


@pytest.fixture
def jwks_server() -> Iterator[_JWKSServer]:
    server = _JWKSServer({"keys": []})
    server.thread.start()
    try:
        yield server
    finally:
        server.server.shutdown()
        server.server.server_close()


async def test_external_issuer_from_a_jwks_url(seeded: Seeded, files: Files, tmp_path: Path,
                                               jwks_server: _JWKSServer,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    first = authkit.write_rsa_key(tmp_path / "k1.pem")
    second = authkit.write_rsa_key(tmp_path / "k2.pem")
    jwks_server.document = {"keys": [_rsa_jwk(first, "k1")]}
    section = auth_section(files, ISSUER_ACCESS, issuers=[{
        "issuer": "https://issuer.example", "audience": "regfront-nodes",
        "jwks_url": jwks_server.url}])
    async with client_for(seeded, make_config(section)) as http:
        token = mint(first, _issuer_claims(), "k1", "RS256")
        assert (await http.get(DEMO_SINGLE, headers=bearer(token))).status_code == 200
        assert jwks_server.fetches == 1
        # The issuer rotates to k2: a token naming it fetches the set again at once ...
        jwks_server.document = {"keys": [_rsa_jwk(first, "k1"), _rsa_jwk(second, "k2")]}
        monkeypatch.setattr("gateway.keys.UNKNOWN_KID_INTERVAL", 0.0)  # a minute has passed
        rotated = mint(second, _issuer_claims(jti="2"), "k2", "RS256")
        assert (await http.get(DEMO_SINGLE, headers=bearer(rotated))).status_code == 200
        assert jwks_server.fetches == 2
        monkeypatch.setattr("gateway.keys.UNKNOWN_KID_INTERVAL", 60.0)
        # ... but unknown kids fetch at most once a minute: garbage cannot hammer the issuer.
        for n in range(3):
            bogus = mint(second, _issuer_claims(jti=f"b{n}"), f"unknown-{n}", "RS256")
            assert_challenged(await http.get(DEMO_SINGLE, headers=bearer(bogus)), DEMO,
                              "invalid_token")
        assert jwks_server.fetches == 2


async def test_unreachable_jwks_url_refuses_the_token(seeded: Seeded, files: Files,
                                                      tmp_path: Path) -> None:
    key = authkit.write_rsa_key(tmp_path / "k.pem")
    section = auth_section(files, ISSUER_ACCESS, issuers=[{
        "issuer": "https://issuer.example", "audience": "regfront-nodes",
        "jwks_url": "http://127.0.0.1:9/keys", "jwks_timeout": 1}])
    async with client_for(seeded, make_config(section)) as http:
        token = mint(key, _issuer_claims(), "k1", "RS256")
        assert_challenged(await http.get(DEMO_SINGLE, headers=bearer(token)), DEMO,
                          "invalid_token")


# -- the command line --------------------------------------------------------------------------


def test_serve_reports_an_unreadable_key_file_in_one_line(files: Files, tmp_path: Path) -> None:
    config = tmp_path / "regfront.yaml"
    config.write_text(f"auth:\n  token:\n    signing_key_file: {tmp_path}/missing.pem\n"
                      "  access:\n    - repositories: ['x/*']\n      anonymous: true\n")
    result = CliRunner().invoke(main, ["serve", "--config", str(config)])
    assert result.exit_code == 1
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert lines == [f"regfront: auth.token.signing_key_file: {tmp_path}/missing.pem: "
                     "cannot read: No such file or directory"]


def test_containerd_config_writes_the_header_table(tmp_path: Path, files: Files) -> None:
    import tomllib

    runner = CliRunner()
    result = runner.invoke(main, [
        "containerd-config", "--gateway", "http://regfront:5000", "--registry", "docker.io",
        "--out", str(tmp_path / "a"), "--header", f"Authorization=Bearer {STATIC_TOKEN}"])
    assert result.exit_code == 0, result.output
    path = tmp_path / "a" / "docker.io" / "hosts.toml"
    hosts = tomllib.loads(path.read_text())
    assert hosts["host"]["http://regfront:5000"]["header"] == {
        "Authorization": [f"Bearer {STATIC_TOKEN}"]}
    assert path.stat().st_mode & 0o077 == 0  # a secret: root only
    from_file = runner.invoke(main, [
        "containerd-config", "--gateway", "http://regfront:5000", "--registry", "docker.io",
        "--out", str(tmp_path / "b"), "--header-file", f"Authorization={files.static_file}",
        "--header-file", f"X-Regfront-Token={files.static_file}"])
    assert from_file.exit_code == 0, from_file.output
    header = tomllib.loads((tmp_path / "b" / "docker.io" / "hosts.toml").read_text())[
        "host"]["http://regfront:5000"]["header"]
    assert header == {"Authorization": [f"Bearer {STATIC_TOKEN}"],
                      "X-Regfront-Token": [STATIC_TOKEN]}
    bad = runner.invoke(main, [
        "containerd-config", "--gateway", "http://regfront:5000", "--registry", "docker.io",
        "--out", str(tmp_path / "c"), "--header", "no value"])
    assert bad.exit_code == 1
    assert "expected NAME=VALUE" in bad.output


async def test_the_probe_image_needs_no_credential(client: httpx.AsyncClient) -> None:
    """A node's probe must prove the path, not the credential: anonymous, for every ns."""
    for ns in ("docker.io", "ghcr.io"):
        path = f"/v2/{probe.NAME}/manifests/node-1?ns={ns}"
        head = await client.head(path)
        assert head.status_code == 200
        assert head.headers["docker-content-digest"] == str(probe.INDEX_DIGEST)
    assert_challenged(await client.get(DEMO_SINGLE), "docker.io/library/demo")
