"""Client auth on the pull API: challenges, token checks, access rules, issuers, static secrets.

Every refused token is refused with a 401 whose ``WWW-Authenticate`` sends the client back to
``/token`` for the repository it asked for; errors come from the one renderer.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from gateway.auth import Auth, Policy
from regfront.cli import main
from registry.errors import ConfigError
from tests.gateway import authkit
from tests.gateway.authkit import (
    STATIC_TOKEN,
    Files,
    alg_none,
    auth_section,
    bearer,
    claims,
    client_for,
    fetch_token,
    hs256_with_public_key,
    make_config,
    make_files,
    mint,
    tampered,
)
from tests.gateway.conftest import DEMO, OTHER, Seeded

DEMO_SINGLE = "/v2/library/demo/manifests/single?ns=docker.io"
CHALLENGE_DEMO = ('Bearer realm="http://gateway/token",service="regfront",'
                  'scope="repository:docker.io/library/demo:pull"')


@pytest.fixture
def files(tmp_path: Path) -> Files:
    return make_files(tmp_path / "auth")


@pytest.fixture
async def client(seeded: Seeded, files: Files) -> Any:
    async with client_for(seeded, make_config(auth_section(files))) as http:
        yield http


def assert_challenged(response: httpx.Response, name: str | None, error: str | None = None
                      ) -> None:
    assert response.status_code == 401, response.text
    header = response.headers["www-authenticate"]
    expected = 'Bearer realm="http://gateway/token",service="regfront"'
    if name is not None:
        expected += f',scope="repository:{name}:pull"'
    if error is not None:
        expected += f',error="{error}"'
    assert header == expected
    assert response.json()["errors"][0]["code"] == "UNAUTHORIZED"
    assert response.headers["docker-distribution-api-version"] == "registry/2.0"


# -- the challenge and the token flow ----------------------------------------------------------


async def test_challenge_names_the_stored_repository(client: httpx.AsyncClient) -> None:
    """``ns`` is applied first: the scope is the stored name, which the token must grant."""
    response = await client.get(DEMO_SINGLE)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == CHALLENGE_DEMO
    assert response.json() == {"errors": [{
        "code": "UNAUTHORIZED", "message": "authentication required",
        "detail": [{"Type": "repository", "Name": DEMO, "Action": "pull"}]}]}
    head = await client.head(DEMO_SINGLE)
    assert head.status_code == 401
    assert head.headers["www-authenticate"] == CHALLENGE_DEMO
    assert head.content == b""


async def test_token_flow_pulls_manifest_and_blob(client: httpx.AsyncClient,
                                                  seeded: Seeded) -> None:
    token = await fetch_token(client, "ci", DEMO)
    manifest = await client.get(DEMO_SINGLE, headers=bearer(token))
    assert manifest.status_code == 200
    assert manifest.content == seeded.blob(seeded.single)
    layer = seeded.manifest(seeded.single)["layers"][0]
    blob = await client.get(f"/v2/library/demo/blobs/{layer['digest']}?ns=docker.io",
                            headers=bearer(token))
    assert blob.status_code == 200
    assert blob.content == seeded.blob(layer)


async def test_realm_follows_the_host_or_the_configured_realm(seeded: Seeded,
                                                              files: Files) -> None:
    async with client_for(seeded, make_config(auth_section(files))) as http:
        response = await http.get(DEMO_SINGLE, headers={"Host": "regfront.internal:5000"})
        assert 'realm="http://regfront.internal:5000/token"' in \
            response.headers["www-authenticate"]
        forged = await http.get(DEMO_SINGLE, headers={"Host": 'evil",error="x'})
        assert "evil" not in forged.headers["www-authenticate"]
    section = auth_section(files)
    section["token"]["realm"] = "https://auth.example/token"
    async with client_for(seeded, make_config(section)) as http:
        response = await http.get(DEMO_SINGLE)
        assert response.headers["www-authenticate"].startswith(
            'Bearer realm="https://auth.example/token",service="regfront"')


# -- tokens that must be refused ---------------------------------------------------------------


def _now() -> int:
    return int(time.time())


def forged_tokens(files: Files, tmp_path: Path) -> dict[str, str]:
    other_key = authkit.write_ec_key(tmp_path / "other.pem")
    kid = files.kid
    return {
        "expired": mint(files.key, claims("ci", DEMO, exp=_now() - 3600, iat=_now() - 4000,
                                          nbf=_now() - 4000), kid),
        "not yet valid": mint(files.key, claims("ci", DEMO, nbf=_now() + 3600,
                                                exp=_now() + 7200), kid),
        "wrong key": mint(other_key, claims("ci", DEMO), kid),
        "unknown kid": mint(other_key, claims("ci", DEMO), "not-a-kid"),
        "wrong audience": mint(files.key, claims("ci", DEMO, aud="someone-else"), kid),
        "wrong issuer": mint(files.key, claims("ci", DEMO, iss="someone-else"), kid),
        "alg none": alg_none(claims("ci", DEMO), kid),
        "HS256 with the public key": hs256_with_public_key(claims("ci", DEMO), kid,
                                                           files.public_pem()),
        "tampered payload": tampered(mint(files.key, claims("ci", OTHER), kid), access=[
            {"type": "repository", "name": DEMO, "actions": ["pull"]}]),
        "garbage": "not.a.jwt",
    }


@pytest.mark.parametrize("case", [
    "expired", "not yet valid", "wrong key", "unknown kid", "wrong audience", "wrong issuer",
    "alg none", "HS256 with the public key", "tampered payload", "garbage"])
async def test_bad_tokens_are_refused_with_a_challenge(client: httpx.AsyncClient, files: Files,
                                                       tmp_path: Path, case: str) -> None:
    token = forged_tokens(files, tmp_path)[case]
    response = await client.get(DEMO_SINGLE, headers=bearer(token))
    assert_challenged(response, DEMO, "invalid_token")
    layer = f"/v2/library/demo/blobs/{'sha256:' + '0' * 64}?ns=docker.io"
    assert_challenged(await client.get(layer, headers=bearer(token)), DEMO, "invalid_token")


async def test_a_minted_token_like_the_service_makes_is_accepted(client: httpx.AsyncClient,
                                                                 files: Files) -> None:
    """The refusals above are about what was wrong with each token, not the minting."""
    token = mint(files.key, claims("ci", DEMO), files.kid)
    assert (await client.get(DEMO_SINGLE, headers=bearer(token))).status_code == 200


async def test_token_for_another_repository_asks_for_a_new_one(client: httpx.AsyncClient) -> None:
    """ci may pull both, but this token names other/repo only: 401, insufficient_scope."""
    token = await fetch_token(client, "ci", OTHER)
    assert (await client.get("/v2/other/repo/manifests/x", headers=bearer(token))
            ).status_code == 200
    response = await client.get(DEMO_SINGLE, headers=bearer(token))
    assert_challenged(response, DEMO, "insufficient_scope")


async def test_refresh_token_is_not_an_access_token(client: httpx.AsyncClient) -> None:
    response = await client.post("/token", data={
        "grant_type": "password", "username": "ci", "password": authkit.PASSWORDS["ci"],
        "service": "regfront", "scope": f"repository:{DEMO}:pull", "access_type": "offline"})
    refresh = response.json()["refresh_token"]
    assert_challenged(await client.get(DEMO_SINGLE, headers=bearer(refresh)), DEMO,
                      "invalid_token")


# -- access rules ------------------------------------------------------------------------------


async def test_anonymous_repositories_are_served_without_a_challenge(seeded: Seeded,
                                                                     files: Files) -> None:
    access: list[dict[str, Any]] = [{"repositories": ["docker.io/*"], "anonymous": True},
                                    {"repositories": ["other/*"], "users": ["ci"]}]
    async with client_for(seeded, make_config(auth_section(files, access))) as http:
        response = await http.get(DEMO_SINGLE)
        assert response.status_code == 200
        assert "www-authenticate" not in response.headers
        tags = await http.get("/v2/library/demo/tags/list?ns=docker.io")
        assert tags.status_code == 200
        # Whatever the request carries is not even looked at: no verification cost.
        assert (await http.get(DEMO_SINGLE, headers=bearer("junk"))).status_code == 200
        assert_challenged(await http.get("/v2/other/repo/manifests/x"), OTHER)


async def test_unmatched_repositories_are_denied(seeded: Seeded, files: Files) -> None:
    access = [{"repositories": ["private/*"], "users": ["ci"]}]
    async with client_for(seeded, make_config(auth_section(files, access))) as http:
        assert_challenged(await http.get("/v2/other/repo/manifests/x"), OTHER)
        token = await fetch_token(http, "ci", OTHER)  # granted nothing: no rule matches
        response = await http.get("/v2/other/repo/manifests/x", headers=bearer(token))
        assert response.status_code == 403
        assert response.json()["errors"][0]["code"] == "DENIED"


async def test_authenticated_user_without_access_is_denied(client: httpx.AsyncClient) -> None:
    token = await fetch_token(client, "deployer", DEMO, OTHER)
    response = await client.get(DEMO_SINGLE, headers=bearer(token))
    assert response.status_code == 403
    assert response.json()["errors"][0] == {
        "code": "DENIED", "message": "requested access to the resource is denied",
        "detail": {"name": DEMO}}
    assert "www-authenticate" not in response.headers


async def test_blob_reads_are_scoped_to_the_url_repository(client: httpx.AsyncClient,
                                                           seeded: Seeded) -> None:
    """The check uses the URL's repository, and a blob is served only where it is linked."""
    demo_layer = seeded.manifest(seeded.single)["layers"][0]["digest"]
    other_layer = seeded.manifest(seeded.other)["layers"][0]["digest"]
    deployer = await fetch_token(client, "deployer", OTHER)
    # deployer may read other/repo, but a blob of demo's is not linked there.
    missing = await client.get(f"/v2/other/repo/blobs/{demo_layer}", headers=bearer(deployer))
    assert missing.status_code == 404
    assert missing.json()["errors"][0]["code"] == "BLOB_UNKNOWN"
    # ... and deployer may not read demo at all, even a blob other/repo shares.
    denied = await client.get(f"/v2/library/demo/blobs/{other_layer}?ns=docker.io",
                              headers=bearer(deployer))
    assert denied.status_code == 403
    # A token scoped to other/repo is no key to demo's blobs, even for a user allowed both.
    ci_other = await fetch_token(client, "ci", OTHER)
    response = await client.get(f"/v2/library/demo/blobs/{demo_layer}?ns=docker.io",
                                headers=bearer(ci_other))
    assert_challenged(response, DEMO, "insufficient_scope")


async def test_tags_and_referrers_are_scoped_like_manifests(client: httpx.AsyncClient,
                                                            seeded: Seeded) -> None:
    digest = seeded.single["digest"]
    tags = "/v2/library/demo/tags/list?ns=docker.io"
    referrers = f"/v2/library/demo/referrers/{digest}?ns=docker.io"
    assert_challenged(await client.get(tags), DEMO)
    assert_challenged(await client.get(referrers), DEMO)
    token = await fetch_token(client, "ci", DEMO)
    assert (await client.get(tags, headers=bearer(token))).json()["tags"] == \
        ["multi", "sig", "single"]
    assert (await client.get(referrers, headers=bearer(token))).status_code == 200
    deployer = await fetch_token(client, "deployer", OTHER)
    assert (await client.get(tags, headers=bearer(deployer))).status_code == 403


async def test_base_endpoint_challenges_anonymous_clients(client: httpx.AsyncClient) -> None:
    """docker login and Docker's pulls learn the realm from GET /v2/: 401 without a scope."""
    assert_challenged(await client.get("/v2/"), None)
    token = await fetch_token(client, "ci")
    response = await client.get("/v2/", headers=bearer(token))
    assert response.status_code == 200
    assert response.json() == {}
    assert_challenged(await client.get("/v2/", headers=bearer("x.y.z")), None, "invalid_token")
    anonymous = (await client.get("/token", params={"service": "regfront"})).json()["token"]
    assert (await client.get("/v2/", headers=bearer(anonymous))).status_code == 200


async def test_health_and_token_need_no_auth(client: httpx.AsyncClient) -> None:
    assert (await client.get("/healthz")).status_code == 200
    assert (await client.get("/readyz")).status_code == 200
    assert (await client.get("/token")).status_code == 200


async def test_writes_stay_405(client: httpx.AsyncClient) -> None:
    response = await client.put("/v2/library/demo/manifests/x?ns=docker.io", content=b"{}")
    assert response.status_code == 405


def test_globs_cross_slashes_and_exact_names_win(files: Files) -> None:
    """fnmatch: ``docker.io/*`` is all of Docker Hub; an exact name decides before any glob;
    among globs the first match decides, so an earlier rule carves out an exception."""
    policy = Policy(make_config(auth_section(files, [
        {"repositories": ["docker.io/corp/*"], "users": ["ci"]},
        {"repositories": ["docker.io/*"], "anonymous": True},
        {"repositories": ["docker.io/corp/open"], "anonymous": True},
    ])))
    assert policy.anonymous("docker.io/library/nginx")
    assert policy.anonymous("docker.io/x")
    assert not policy.anonymous("docker.io/corp/app")
    assert policy.allows("ci", "docker.io/corp/app")
    assert not policy.allows("deployer", "docker.io/corp/app")
    assert policy.anonymous("docker.io/corp/open")
    assert not policy.allows("ci", "ghcr.io/x/y")


def test_star_user_means_any_authenticated_user(files: Files) -> None:
    policy = Policy(make_config(auth_section(files, [
        {"repositories": ["team/*"], "users": ["*"]}])))
    assert policy.allows("anyone", "team/app")
    assert not policy.allows(None, "team/app")


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
    glob = Policy(make_config(auth_section(files, [
        {"repositories": ["docker.io/*", "ghcr.io/*"], "anonymous": True}]), **MIRRORED))
    assert glob.credentialed(DEMO)
    assert not glob.anonymous(DEMO)  # paid-for content: a glob does not publish it
    assert glob.anonymous("docker.io/library/nginx")  # not mirrored with credentials
    assert glob.anonymous("ghcr.io/org/app")  # mirrored, but without credentials
    named = Policy(make_config(auth_section(files, [
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
        Auth(make_config(auth_section(files)))


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


# -- the warm path -----------------------------------------------------------------------------


async def test_warm_requests_verify_no_signature(client: httpx.AsyncClient,
                                                 monkeypatch: pytest.MonkeyPatch,
                                                 seeded: Seeded) -> None:
    token = await fetch_token(client, "ci", DEMO)
    calls: list[str] = []
    real_decode = jwt.decode

    def counting(*args: Any, **kwargs: Any) -> Any:
        calls.append("decode")
        return real_decode(*args, **kwargs)

    monkeypatch.setattr(jwt, "decode", counting)
    layer = seeded.manifest(seeded.single)["layers"][0]["digest"]
    assert (await client.get(DEMO_SINGLE, headers=bearer(token))).status_code == 200
    assert calls == ["decode"]  # cold: one signature check
    for _ in range(5):
        assert (await client.get(DEMO_SINGLE, headers=bearer(token))).status_code == 200
        assert (await client.head(f"/v2/library/demo/blobs/{layer}?ns=docker.io",
                                  headers=bearer(token))).status_code == 200
    assert calls == ["decode"]  # warm: none


async def test_auth_off_serves_everyone(seeded: Seeded) -> None:
    async with client_for(seeded, make_config(None)) as http:
        assert (await http.get(DEMO_SINGLE)).status_code == 200
        assert (await http.get("/v2/")).status_code == 200
        token = await http.get("/token")
        assert token.status_code == 404
        assert token.json()["errors"][0]["code"] == "NOT_FOUND"


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
