"""``/token``: the GET (Docker) and POST (containerd, OAuth2 form) forms, and what it issues."""

from __future__ import annotations

import base64
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from gateway.keys import load_signing_key, parse_jwks, thumbprint
from gateway.token import Users, parse_scope
from registry.errors import ConfigError
from tests.gateway import authkit
from tests.gateway.authkit import (
    PASSWORDS,
    SERVICE,
    Files,
    auth_for,
    auth_section,
    basic,
    bearer,
    client_for,
    make_config,
    make_files,
)
from tests.gateway.conftest import DEMO, OTHER, Seeded

DEMO_SCOPE = f"repository:{DEMO}:pull"
OTHER_SCOPE = f"repository:{OTHER}:pull"


@pytest.fixture
def files(tmp_path: Path) -> Files:
    return make_files(tmp_path / "auth")


@pytest.fixture
async def client(seeded: Seeded, files: Files) -> Any:
    async with client_for(seeded, make_config(auth_section(files))) as http:
        yield http


def decoded(files: Files, token: str) -> dict[str, Any]:
    claims: dict[str, Any] = jwt.decode(token, files.key.public_key(), algorithms=["ES256"],
                                        audience=SERVICE, issuer="regfront")
    return claims


def granted(claims: dict[str, Any]) -> list[str]:
    return [entry["name"] for entry in claims["access"]]


async def test_get_with_basic_auth(client: httpx.AsyncClient, files: Files) -> None:
    response = await client.get("/token", params=[("service", SERVICE), ("scope", DEMO_SCOPE),
                                                  ("scope", OTHER_SCOPE)],
                                headers=basic("ci", PASSWORDS["ci"]))
    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert body["token"] == body["access_token"]
    assert body["expires_in"] == 300
    issued = datetime.strptime(body["issued_at"], "%Y-%m-%dT%H:%M:%SZ")  # RFC 3339, UTC
    assert abs(issued.replace(tzinfo=UTC).timestamp() - time.time()) < 120
    header = jwt.get_unverified_header(body["token"])
    assert header["alg"] == "ES256"
    assert header["kid"] == thumbprint(files.key.public_key())
    claims = decoded(files, body["token"])
    assert claims["sub"] == "ci"
    assert claims["aud"] == SERVICE
    assert claims["iss"] == "regfront"
    assert claims["exp"] - claims["iat"] == 300
    assert claims["access"] == [
        {"type": "repository", "name": DEMO, "actions": ["pull"]},
        {"type": "repository", "name": OTHER, "actions": ["pull"]}]
    assert "refresh_token" not in body


async def test_post_password_grant(client: httpx.AsyncClient, files: Files) -> None:
    """containerd's first try: an OAuth2 password grant, scopes space-separated."""
    response = await client.post("/token", data={
        "grant_type": "password", "username": "deployer", "password": PASSWORDS["deployer"],
        "service": SERVICE, "client_id": "containerd-client",
        "scope": f"{DEMO_SCOPE} {OTHER_SCOPE}"})
    assert response.status_code == 200, response.text
    body = response.json()
    claims = decoded(files, body["access_token"])
    assert claims["sub"] == "deployer"
    assert granted(claims) == [OTHER]  # deployer may not pull demo: that scope is dropped
    assert body["scope"] == OTHER_SCOPE


async def test_post_refresh_token_grant(client: httpx.AsyncClient, files: Files) -> None:
    first = await client.post("/token", data={
        "grant_type": "password", "username": "ci", "password": PASSWORDS["ci"],
        "service": SERVICE, "scope": DEMO_SCOPE, "access_type": "offline"})
    refresh = first.json()["refresh_token"]
    again = await client.post("/token", data={
        "grant_type": "refresh_token", "refresh_token": refresh, "service": SERVICE,
        "scope": OTHER_SCOPE})
    assert again.status_code == 200, again.text
    claims = decoded(files, again.json()["access_token"])
    assert claims["sub"] == "ci"
    assert granted(claims) == [OTHER]
    access = first.json()["access_token"]
    wrong = await client.post("/token", data={"grant_type": "refresh_token",
                                              "refresh_token": access})
    assert wrong.status_code == 401  # an access token is not a refresh token


async def test_get_offline_token_gives_a_refresh_token(client: httpx.AsyncClient) -> None:
    response = await client.get("/token", params={"offline_token": "true", "scope": DEMO_SCOPE},
                                headers=basic("ci", PASSWORDS["ci"]))
    assert response.json()["refresh_token"]


@pytest.mark.parametrize(("name", "password"), [
    ("ci", "wrong"), ("nobody", "ci-password"), ("", "x"), ("ci", "x" * 100)])
async def test_wrong_credentials_get_401(client: httpx.AsyncClient, name: str,
                                         password: str) -> None:
    for response in (
        await client.get("/token", params={"scope": DEMO_SCOPE}, headers=basic(name, password)),
        await client.post("/token", data={"grant_type": "password", "username": name,
                                          "password": password, "scope": DEMO_SCOPE}),
    ):
        assert response.status_code == 401
        assert response.headers["www-authenticate"] == f'Basic realm="{SERVICE}"'
        error = response.json()["errors"][0]
        assert error["code"] == "UNAUTHORIZED"
        assert "token" not in response.text.replace("errors", "")


async def test_unreadable_basic_header_is_wrong_not_anonymous(client: httpx.AsyncClient) -> None:
    for value in ("Basic !!!", "Basic " + base64.b64encode(b"no-colon").decode()):
        response = await client.get("/token", headers={"Authorization": value})
        assert response.status_code == 401


async def test_anonymous_get_grants_only_anonymous_repositories(seeded: Seeded,
                                                                files: Files) -> None:
    access: list[dict[str, Any]] = [{"repositories": ["docker.io/*"], "anonymous": True},
                                    {"repositories": ["other/*"], "users": ["ci"]}]
    async with client_for(seeded, make_config(auth_section(files, access))) as http:
        response = await http.get("/token", params=[("scope", DEMO_SCOPE),
                                                     ("scope", OTHER_SCOPE)])
        assert response.status_code == 200
        claims = decoded(files, response.json()["token"])
        assert claims["sub"] == ""
        assert granted(claims) == [DEMO]
        # Docker sends its anonymous token along: the repository is served.
        manifest = await http.get("/v2/library/demo/manifests/single?ns=docker.io",
                                  headers=bearer(response.json()["token"]))
        assert manifest.status_code == 200


async def test_unsupported_grant(client: httpx.AsyncClient) -> None:
    response = await client.post("/token", data={"grant_type": "client_credentials"})
    assert response.status_code == 405
    assert response.json()["errors"][0]["code"] == "UNSUPPORTED"


async def test_oversized_form_is_refused(client: httpx.AsyncClient) -> None:
    response = await client.post("/token", content=b"a" * (70 * 1024))
    assert response.status_code == 400


@pytest.mark.parametrize(("scope", "name"), [
    (f"repository:{DEMO}:pull", DEMO),
    (f"repository:{DEMO}:pull,push", DEMO),
    (f"repository:{DEMO}:*", DEMO),
    ("repository:reg.corp_5000/team/app:pull", "reg.corp_5000/team/app"),
    (f"repository:{DEMO}:push", None),
    ("registry:catalog:*", None),
    ("repository:Bad Name:pull", None),
    ("garbage", None),
])
def test_parse_scope(scope: str, name: str | None) -> None:
    assert parse_scope(scope) == name


def test_rsa_key_signs_rs256(tmp_path: Path) -> None:
    authkit.write_rsa_key(tmp_path / "rsa.pem")
    key = load_signing_key(str(tmp_path / "rsa.pem"), "k")
    assert key.algorithm == "RS256"
    assert key.public.algorithms == ("RS256",)
    authkit.write_ec_key(tmp_path / "p384.pem", ec.SECP384R1())
    assert load_signing_key(str(tmp_path / "p384.pem"), "k").algorithm == "ES384"


def test_small_rsa_and_garbage_keys_are_config_errors(tmp_path: Path) -> None:
    from cryptography.hazmat.primitives import serialization

    small = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    (tmp_path / "small.pem").write_bytes(small.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    with pytest.raises(ConfigError, match="2048 bits"):
        load_signing_key(str(tmp_path / "small.pem"), "auth.token.signing_key_file")
    (tmp_path / "junk.pem").write_text("hello\n")
    with pytest.raises(ConfigError, match=r"^k: .*junk.pem: not an unencrypted PEM"):
        load_signing_key(str(tmp_path / "junk.pem"), "k")


def test_kid_is_the_rfc7638_thumbprint() -> None:
    """RFC 7638 section 3.1's example key and its published thumbprint."""
    n = ("0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSo"
         "c_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YG"
         "jQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt"
         "-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDK"
         "gw")
    numbers = rsa.RSAPublicNumbers(65537, int.from_bytes(base64.urlsafe_b64decode(n + "=="),
                                                         "big"))
    assert thumbprint(numbers.public_key()) == "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"


def test_kid_is_stable_across_loads(files: Files) -> None:
    one = load_signing_key(str(files.key_file), "k").public.kid
    assert one == load_signing_key(str(files.key_file), "k").public.kid == files.kid


async def test_rotation_accepts_tokens_of_the_previous_key(seeded: Seeded, files: Files,
                                                           tmp_path: Path) -> None:
    old = await _token_from(seeded, make_config(auth_section(files)))
    new_key = tmp_path / "new.pem"
    authkit.write_ec_key(new_key)
    section = auth_section(files)
    section["token"] = {**section["token"], "signing_key_file": str(new_key),
                        "verify_key_files": [str(files.key_file)]}
    async with client_for(seeded, make_config(section)) as http:
        response = await http.get("/v2/library/demo/manifests/single?ns=docker.io",
                                  headers=bearer(old))
        assert response.status_code == 200
        fresh = (await http.get("/token", params={"scope": DEMO_SCOPE},
                                headers=basic("ci", PASSWORDS["ci"]))).json()["token"]
        assert jwt.get_unverified_header(fresh)["kid"] != files.kid


async def _token_from(seeded: Seeded, config: Any) -> str:
    async with client_for(seeded, config) as http:
        response = await http.get("/token", params={"scope": DEMO_SCOPE},
                                  headers=basic("ci", PASSWORDS["ci"]))
        token: str = response.json()["token"]
        return token


def test_jwks_skips_symmetric_and_encryption_keys() -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    rsa_jwk = jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key(), as_dict=True)
    keys = parse_jwks({"keys": [
        {"kty": "oct", "k": "c2VjcmV0", "kid": "hmac"},
        {**rsa_jwk, "kid": "enc", "use": "enc"},
        {**rsa_jwk, "kid": "sig"},
        {**rsa_jwk},  # no kid: filed under its thumbprint
    ]}, ["RS256", "ES256"])
    assert set(keys) == {"sig", thumbprint(key.public_key())}
    assert keys["sig"].algorithms == ("RS256",)
    with pytest.raises(ValueError, match="JWK set"):
        parse_jwks({"nokeys": []}, ["RS256"])


def test_htpasswd_refuses_other_hash_types(tmp_path: Path) -> None:
    path = tmp_path / "htpasswd"
    path.write_text(authkit.htpasswd_line("ci", "x") + "\nold:$apr1$abc$def\n")
    with pytest.raises(ConfigError, match=r"auth.users_file: .*htpasswd:2: .*BCRYPT"):
        Users(str(path))


def test_missing_files_are_config_errors_naming_key_and_path(files: Files,
                                                             tmp_path: Path) -> None:
    cases = {
        "users_file": "auth.users_file",
        "signing_key_file": "auth.token.signing_key_file",
    }
    for field, key in cases.items():
        section = auth_section(files)
        missing = str(tmp_path / f"missing-{field}")
        if field == "users_file":
            section["users_file"] = missing
        else:
            section["token"] = {**section["token"], field: missing}
        with pytest.raises(ConfigError) as caught:
            auth_for(make_config(section))
        assert str(caught.value) == f"{key}: {missing}: cannot read: No such file or directory"
    section = auth_section(files, issuers=[{"issuer": "https://i", "audience": "a",
                                            "jwks_file": str(tmp_path / "nope.json")}])
    with pytest.raises(ConfigError, match=r"^auth.issuers.0.jwks_file: .*nope.json: cannot"):
        auth_for(make_config(section))
