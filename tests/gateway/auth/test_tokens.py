"""Client auth on the pull API: challenges, token checks, access rules, the warm path.

Every refused token is refused with a 401 whose ``WWW-Authenticate`` sends the client back to
``/token`` for the repository it asked for; errors come from the one renderer. Where
credentials come from (static secrets, external issuers, mirrored credentials) and the command
line: test_sources.py.
"""


import time
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest

from tests.gateway import authkit
from tests.gateway.auth.conftest import CHALLENGE_DEMO, DEMO_SINGLE, assert_challenged
from tests.gateway.authkit import (
    Files,
    alg_none,
    auth_section,
    bearer,
    claims,
    client_for,
    fetch_token,
    hs256_with_public_key,
    make_config,
    mint,
    policy_for,
    tampered,
)
from tests.gateway.conftest import DEMO, OTHER, Seeded

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
    policy = policy_for(make_config(auth_section(files, [
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
    policy = policy_for(make_config(auth_section(files, [
        {"repositories": ["team/*"], "users": ["*"]}])))
    assert policy.allows("anyone", "team/app")
    assert not policy.allows(None, "team/app")


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
