"""The upstream client's token flow and redirects, scripted: tokens reused until expiry and renewed
once, Authorization only where it belongs, redirect loops bounded. No test waits."""

from __future__ import annotations

import asyncio
import base64
import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from registry.digest import Digest
from registry.mirrorconfig import Credentials
from registry.upstream.auth import Challenge, parse_challenges, pick_challenge, resolve_login
from registry.upstream.errors import (
    UpstreamError,
)
from tests.registry.upstreamkit import (
    CDN,
    MANIFEST_DIGEST,
    NAME,
    REG,
    Clock,
    Fake,
    Handler,
    manifest_response,
    upstream,
)

# -- the token flow, scripted ------------------------------------------------------------------


class TokenFake:
    """A registry that wants Bearer tokens, and its token service; counts token requests."""

    def __init__(self, fake: Fake, expires_in: int | None = 120,
                 users: dict[str, str] | None = None) -> None:
        self.expires_in, self.users = expires_in, users
        self.issued: list[httpx.Request] = []
        self.valid: set[str] = set()
        fake.on("https://auth.test/token", self.token)
        fake.on(f"{REG}/v2/{NAME}/manifests/latest", self.registry)
        fake.on(f"{REG}/v2/{NAME}/tags/list", self.registry)

    def token(self, request: httpx.Request) -> httpx.Response:
        self.issued.append(request)
        assert request.url.params["service"] == "reg.test"
        assert request.url.params["scope"] == f"repository:{NAME}:pull"
        authorization = request.headers.get("authorization")
        if self.users is not None:
            expected = "Basic " + base64.b64encode(
                ":".join(next(iter(self.users.items()))).encode()).decode()
            if authorization != expected:
                return httpx.Response(401, json={"details": "incorrect username or password"})
        else:
            assert authorization is None
        token = f"token-{len(self.issued)}"
        self.valid = {token}  # a new token revokes the old: reuse shows in the count
        doc: dict[str, Any] = {"access_token": token}
        if self.expires_in is not None:
            doc["expires_in"] = self.expires_in
        return httpx.Response(200, json=doc)

    def registry(self, request: httpx.Request) -> httpx.Response:
        if request.headers.get("authorization", "").removeprefix("Bearer ") not in self.valid:
            challenge = (f'Bearer realm="https://auth.test/token",service="reg.test",'
                         f'scope="repository:{NAME}:pull"')
            return httpx.Response(401, headers={"WWW-Authenticate": challenge})
        if request.url.path.endswith("/tags/list"):
            return httpx.Response(200, json={"name": NAME, "tags": ["latest"]})
        return manifest_response()


async def test_tokens_are_reused_until_expiry_then_renewed() -> None:
    fake, clock = Fake(), Clock()
    tokens = TokenFake(fake, expires_in=120)
    async with upstream(fake, clock=clock) as client:
        for _ in range(3):
            await client.head_manifest(NAME, "latest")
        assert await client.list_tags(NAME) == ["latest"]
        assert len(tokens.issued) == 1
        clock.now += 109  # 120 s less the 10 s margin is 110: still good
        await client.get_manifest(NAME, "latest")
        assert len(tokens.issued) == 1
        clock.now += 2
        await client.get_manifest(NAME, "latest")
        assert len(tokens.issued) == 2
    # Only the very first request went without a token: the challenge is remembered.
    assert sum(1 for r in fake.to(REG) if "authorization" not in r.headers) == 1


async def test_a_token_without_expires_in_lives_the_specs_60_seconds() -> None:
    fake, clock = Fake(), Clock()
    tokens = TokenFake(fake, expires_in=None)
    async with upstream(fake, clock=clock) as client:
        await client.head_manifest(NAME, "latest")
        clock.now += 49
        await client.head_manifest(NAME, "latest")
        assert len(tokens.issued) == 1
        clock.now += 2
        await client.head_manifest(NAME, "latest")
        assert len(tokens.issued) == 2


async def test_a_revoked_token_is_renewed_once() -> None:
    fake = Fake()
    tokens = TokenFake(fake)
    async with upstream(fake) as client:
        await client.head_manifest(NAME, "latest")
        tokens.valid = set()  # revoked server-side, still live in the cache
        await client.head_manifest(NAME, "latest")
    assert len(tokens.issued) == 2


async def test_token_flow_with_credentials_sends_basic_to_the_realm_only(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RF_TEST_PASSWORD", "s3cret")
    fake = Fake()
    tokens = TokenFake(fake, users={"bob": "s3cret"})
    credentials = Credentials(username="bob", password_env="RF_TEST_PASSWORD")
    async with upstream(fake, credentials=credentials) as client:
        await client.head_manifest(NAME, "latest")
    assert len(tokens.issued) == 1
    assert all(not r.headers.get("authorization", "").startswith("Basic") for r in fake.to(REG))


async def test_concurrent_requests_share_one_token_request() -> None:
    fake = Fake()
    tokens = TokenFake(fake)
    async with upstream(fake) as client:
        await asyncio.gather(*(client.head_manifest(NAME, "latest") for _ in range(8)))
    assert len(tokens.issued) == 1


def test_challenges_parse_quoted_commas_and_pick_bearer() -> None:
    header = ('Basic realm="x", Bearer realm="https://auth.test/token",service="reg.test",'
              'scope="repository:a/b:pull,push",error="insufficient_scope"')
    challenges = parse_challenges([header])
    assert [c.scheme for c in challenges] == ["basic", "bearer"]
    assert pick_challenge(challenges) == Challenge("bearer", {
        "realm": "https://auth.test/token", "service": "reg.test",
        "scope": "repository:a/b:pull,push", "error": "insufficient_scope"})
    assert pick_challenge(parse_challenges(['Negotiate', 'Basic realm="r\\"q"'])) == \
        Challenge("basic", {"realm": 'r"q'})


def test_docker_hubs_docker_config_entry_is_found_under_the_v1_index_url(tmp_path: Path) -> None:
    auth = base64.b64encode(b"hubuser:hubpass").decode()
    (tmp_path / "config.json").write_text(json.dumps(
        {"auths": {"https://index.docker.io/v1/": {"auth": auth}}}))
    login = resolve_login(Credentials(docker_config=str(tmp_path / "config.json")),
                          ["registry-1.docker.io", "docker.io"])
    assert (login.username, login.password) == ("hubuser", "hubpass")
    assert "hubpass" not in repr(login)



# -- redirects ---------------------------------------------------------------------------------


def basic_registry(fake: Fake, path: str, answer: httpx.Response | Handler) -> None:
    def registry(request: httpx.Request) -> httpx.Response:
        if "authorization" not in request.headers:
            return httpx.Response(401, headers={"WWW-Authenticate": 'Basic realm="reg"'})
        return answer(request) if callable(answer) else answer  # type: ignore[return-value]

    fake.on(f"{REG}{path}", registry)


async def test_a_cross_origin_redirect_drops_authorization(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RF_TEST_PASSWORD", "s3cret")
    data = b"layer bytes" * 1000
    digest = Digest.from_bytes(data)
    fake = Fake()
    basic_registry(fake, f"/v2/{NAME}/blobs/{digest}", httpx.Response(
        307, headers={"Location": f"{CDN}/bucket/{digest.hex}?X-Amz-Signature=abc"}))
    fake.on(f"{CDN}/bucket/{digest.hex}", httpx.Response(200, content=data))
    credentials = Credentials(username="bob", password_env="RF_TEST_PASSWORD")
    async with upstream(fake, credentials=credentials) as client, \
            client.blob(NAME, digest) as stream:
        received = b"".join([chunk async for chunk in stream])
    assert received == data
    assert stream.size == len(data)
    (cdn,) = fake.to(CDN)
    assert "authorization" not in cdn.headers
    assert cdn.url.params["X-Amz-Signature"] == "abc"
    assert fake.to(REG)[-1].headers["authorization"].startswith("Basic ")


async def test_a_same_origin_redirect_keeps_authorization(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RF_TEST_PASSWORD", "s3cret")
    digest = Digest.from_bytes(b"x")
    fake = Fake()
    basic_registry(fake, f"/v2/{NAME}/blobs/{digest}",
                   httpx.Response(302, headers={"Location": "/storage/x"}))
    basic_registry(fake, "/storage/x", httpx.Response(200, content=b"x"))
    credentials = Credentials(username="bob", password_env="RF_TEST_PASSWORD")
    async with upstream(fake, credentials=credentials) as client, \
            client.blob(NAME, digest) as stream:
        assert [chunk async for chunk in stream] == [b"x"]
    storage = [r for r in fake.requests if r.url.path == "/storage/x"]
    assert len(storage) == 1
    assert storage[0].headers["authorization"].startswith("Basic ")


async def test_redirect_loops_stop_after_five_hops() -> None:
    fake = Fake()
    fake.on(f"{REG}/v2/{NAME}/blobs/{MANIFEST_DIGEST}",
            httpx.Response(307, headers={"Location": f"{CDN}/a"}))
    fake.on(f"{CDN}/a", httpx.Response(307, headers={"Location": f"{CDN}/a"}))
    async with upstream(fake) as client:
        with pytest.raises(UpstreamError, match="more than 5 redirects"):
            async with client.blob(NAME, MANIFEST_DIGEST):
                pass


async def test_a_refusing_cdn_is_an_error_without_the_signature() -> None:
    fake = Fake()
    fake.on(f"{REG}/v2/{NAME}/blobs/{MANIFEST_DIGEST}",
            httpx.Response(307, headers={"Location": f"{CDN}/a?X-Amz-Signature=topsecret"}))
    fake.on(f"{CDN}/a", httpx.Response(403, text="<Error>SignatureDoesNotMatch</Error>"))
    async with upstream(fake) as client:
        with pytest.raises(UpstreamError) as refused:
            async with client.blob(NAME, MANIFEST_DIGEST):
                pass
    assert type(refused.value) is UpstreamError
    assert f"{CDN}/a" in str(refused.value)
    assert "topsecret" not in str(refused.value)
