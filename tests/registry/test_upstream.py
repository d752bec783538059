"""The upstream registry client, against registry:2 (anonymous, htpasswd, token) and fakes.

Real registry:2 servers cover what a registry really answers; httpx.MockTransport fakes cover
what none does on cue (429s, 503s, redirects to a CDN, schema 1, lying digests). No test waits:
the client's ``sleep`` and ``clock`` are injected and recorded.
"""

from __future__ import annotations

import asyncio
import base64
import email.utils
import hashlib
import json
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from registry.digest import Digest
from registry.mediatypes import DOCKER_MANIFEST_V1_SIGNED, OCI_INDEX, OCI_MANIFEST
from registry.mirrorconfig import Credentials, UpstreamConfig
from registry.upstream.auth import Challenge, parse_challenges, pick_challenge, resolve_login
from registry.upstream.client import (
    BACKOFF_BASE,
    BACKOFF_CAP,
    CHUNK_SIZE,
    MANIFEST_ACCEPT,
    RETRY_AFTER_CAP,
    USER_AGENT,
    ManifestRef,
    Upstream,
)
from registry.upstream.errors import (
    UpstreamAuthError,
    UpstreamError,
    UpstreamNotFound,
    UpstreamUnavailable,
)
from tests.e2e.harness import free_port, layout_blob, layout_digest
from tests.registry.conftest import (
    EXTRA_TAGS,
    PASSWORD,
    SERVICE,
    USER,
    TLSUpstream,
    TokenUpstream,
    Upstream2,
)

REG = "https://reg.test"
MIRROR = "https://mirror.test"
CDN = "https://cdn.test"
NAME = "team/app"
MANIFEST = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": {},
                       "layers": []}).encode()
MANIFEST_DIGEST = Digest.from_bytes(MANIFEST)


class Sleeps:
    """The injected ``sleep``: records each wait and moves the fake clock on by it."""

    def __init__(self, clock: Clock | None = None) -> None:
        self.calls: list[float] = []
        self.clock = clock

    async def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)
        if self.clock is not None:
            self.clock.now += seconds


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


Handler = Callable[[httpx.Request], httpx.Response | Awaitable[httpx.Response]]


class Fake:
    """A scripted set of HTTP origins behind httpx.MockTransport; unknown URLs answer 404.

    ``on(url, *responses)`` answers with each response in turn, repeating the last; a callable
    response is called with the request.
    """

    def __init__(self) -> None:
        self.routes: dict[str, list[httpx.Response | Handler]] = {}
        self.requests: list[httpx.Request] = []

    def on(self, url: str, *responses: httpx.Response | Handler) -> None:
        self.routes[url] = list(responses)

    async def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        key = str(request.url.copy_with(query=None))
        script = self.routes.get(key)
        if not script:
            return httpx.Response(404, json={"errors": [{"code": "NOT_FOUND", "message": "x"}]})
        answer = script.pop(0) if len(script) > 1 else script[0]
        if callable(answer):
            result = answer(request)
            return await result if isinstance(result, Awaitable) else result
        # Built with content=, a response is already read, so one object can answer many
        # requests; the client hands out such a body as it is (the real servers cover streams).
        return answer

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)

    def to(self, origin: str) -> list[httpx.Request]:
        return [r for r in self.requests if str(r.url).startswith(origin)]


def config(*urls: str, **options: Any) -> UpstreamConfig:
    return UpstreamConfig(urls=list(urls or [REG]), **options)


def upstream(fake: Fake, *urls: str, sleep: Sleeps | None = None, clock: Clock | None = None,
             page_size: int = 1000, **options: Any) -> Upstream:
    return Upstream("reg.test", config(*urls, **options), transport=fake.transport(),
                    sleep=sleep or Sleeps(), clock=clock or Clock(), page_size=page_size)


def manifest_response(body: bytes = MANIFEST, media_type: str = OCI_MANIFEST,
                      digest: Digest | None = None) -> httpx.Response:
    headers = {"Content-Type": media_type}
    if digest is not None:
        headers["Docker-Content-Digest"] = str(digest)
    return httpx.Response(200, content=body, headers=headers)


# -- registry:2, anonymous ---------------------------------------------------------------------


def real(server: Upstream2) -> Upstream:
    return Upstream("registry2.test", UpstreamConfig(urls=[server.url]), sleep=Sleeps())


@pytest.mark.parametrize(("ref", "media_type"), [("single", OCI_MANIFEST), ("multi", OCI_INDEX)])
async def test_head_and_get_manifest_by_tag_and_digest(registry2: Upstream2, ref: str,
                                                       media_type: str) -> None:
    expected = Digest.parse(layout_digest(registry2.layout.root, ref))
    data = layout_blob(registry2.layout.root, str(expected))
    async with real(registry2) as client:
        by_tag = await client.head_manifest(NAME, ref)
        assert by_tag == ManifestRef(expected, media_type, len(data))
        assert await client.head_manifest(NAME, str(expected)) == by_tag
        assert await client.head_manifest(NAME, expected) == by_tag
        assert await client.get_manifest(NAME, ref) == (by_tag, data)
        assert await client.get_manifest(NAME, str(expected)) == (by_tag, data)


async def test_list_tags_and_catalog_page_through_registry2(registry2: Upstream2) -> None:
    recording = Recording()
    async with Upstream("registry2.test", UpstreamConfig(urls=[registry2.url]),
                        transport=recording, page_size=2) as client:
        # registry:2 2.8 ignores n= on tags/list (and lists tags unsorted): one page, all tags.
        assert sorted(await client.list_tags(NAME)) == sorted(["single", "multi", *EXTRA_TAGS])
        catalog = await client.catalog()
    assert catalog == ["other/one", "team/app", "team/big", "team/multi"]
    pages = [r.url for r in recording.requests if r.url.path == "/v2/_catalog"]
    assert len(pages) == 2, pages  # n=2: a Link to the second page, whose last= is team/app
    assert pages[1].params["last"] == "team/app"


async def test_blob_streams_in_bounded_chunks_hashing_to_its_digest(registry2: Upstream2) -> None:
    manifest = json.loads(layout_blob(registry2.layout.root,
                                      layout_digest(registry2.layout.root, "big")))
    (layer,) = manifest["layers"]
    assert layer["size"] > 3 * CHUNK_SIZE
    digest = Digest.parse(layer["digest"])
    async with real(registry2) as client, client.blob("team/big", digest) as stream:
        assert stream.size == layer["size"]
        verifier, sizes = digest.verifier(), []
        async for chunk in stream:
            verifier.update(chunk)
            sizes.append(len(chunk))
    verifier.verify()  # the caller's job; here it shows the bytes arrived intact
    assert verifier.size == layer["size"]
    assert max(sizes) == CHUNK_SIZE
    assert len(sizes) == 4


async def test_404s_are_not_found_naming_registry_and_url(registry2: Upstream2) -> None:
    missing = Digest.from_bytes(b"not there")
    async with real(registry2) as client:
        with pytest.raises(UpstreamNotFound) as tag:
            await client.head_manifest(NAME, "nope")
        with pytest.raises(UpstreamNotFound):
            await client.get_manifest(NAME, missing)
        with pytest.raises(UpstreamNotFound):
            async with client.blob(NAME, missing):
                pass
        with pytest.raises(UpstreamNotFound) as repo:
            await client.list_tags("no/such/repo")
    assert "registry2.test" in str(tag.value)
    assert registry2.url in str(tag.value)
    assert "NAME_UNKNOWN" in str(repo.value)


async def test_a_dead_mirror_falls_through_to_the_next_url(registry2: Upstream2) -> None:
    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens: connection refused
    sleeps = Sleeps()
    async with Upstream("registry2.test", UpstreamConfig(urls=[dead, registry2.url], retries=2),
                        sleep=sleeps) as client:
        ref = await client.head_manifest(NAME, "single")
    assert ref.media_type == OCI_MANIFEST
    assert len(sleeps.calls) == 2  # two retries on the dead URL, none on the live one


class Recording(httpx.AsyncBaseTransport):
    """A real HTTP transport that keeps every request it sent."""

    def __init__(self) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.requests: list[httpx.Request] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


# -- registry:2 with htpasswd ------------------------------------------------------------------


def htpasswd_client(server: Upstream2, credentials: Credentials | None) -> Upstream:
    return Upstream("htpasswd.test", UpstreamConfig(urls=[server.url], credentials=credentials),
                    sleep=Sleeps())


async def test_basic_credentials_from_env(registry2_htpasswd: Upstream2,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RF_TEST_PASSWORD", PASSWORD)
    credentials = Credentials(username=USER, password_env="RF_TEST_PASSWORD")
    async with htpasswd_client(registry2_htpasswd, credentials) as client:
        assert "single" in await client.list_tags(NAME)
        assert await client.catalog() == ["other/one", "team/app", "team/big", "team/multi"]
        ref, _ = await client.get_manifest(NAME, "multi")
    assert ref.media_type == OCI_INDEX


async def test_basic_credentials_from_a_password_file(registry2_htpasswd: Upstream2,
                                                      monkeypatch: pytest.MonkeyPatch,
                                                      tmp_path: Path) -> None:
    monkeypatch.setenv("RF_TEST_USER", USER)
    (tmp_path / "password").write_text(PASSWORD + "\n")  # as `echo` writes it
    credentials = Credentials(username_env="RF_TEST_USER",
                              password_file=str(tmp_path / "password"))
    async with htpasswd_client(registry2_htpasswd, credentials) as client:
        ref = await client.head_manifest(NAME, "single")
    assert str(ref.digest) == layout_digest(registry2_htpasswd.layout.root, "single")


@pytest.mark.parametrize("entry", ["auth", "fields"])
async def test_basic_credentials_from_a_docker_config(registry2_htpasswd: Upstream2,
                                                      tmp_path: Path, entry: str) -> None:
    host = registry2_htpasswd.server.host
    value = ({"auth": base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()}
             if entry == "auth" else {"username": USER, "password": PASSWORD})
    key = host if entry == "auth" else f"http://{host}/v2/"
    (tmp_path / "config.json").write_text(json.dumps({"auths": {"other.test": {}, key: value}}))
    credentials = Credentials(docker_config=str(tmp_path / "config.json"))
    async with htpasswd_client(registry2_htpasswd, credentials) as client:
        assert "multi" in await client.list_tags(NAME)


async def test_a_wrong_password_is_refused_without_printing_it(
        registry2_htpasswd: Upstream2, monkeypatch: pytest.MonkeyPatch) -> None:
    secret = "not-the-password-8d1f"
    monkeypatch.setenv("RF_TEST_PASSWORD", secret)
    credentials = Credentials(username=USER, password_env="RF_TEST_PASSWORD")
    async with htpasswd_client(registry2_htpasswd, credentials) as client:
        with pytest.raises(UpstreamAuthError) as refused:
            await client.head_manifest(NAME, "single")
        with pytest.raises(UpstreamAuthError):
            await client.list_tags(NAME)
        assert await client.catalog() is None  # a refused catalog is "no catalog"
    message = str(refused.value)
    assert "htpasswd.test" in message
    assert registry2_htpasswd.url in message
    assert f"credentials for user {USER!r} were refused" in message
    assert secret not in message
    assert base64.b64encode(secret.encode()).decode() not in message


async def test_missing_credentials_are_named(registry2_htpasswd: Upstream2,
                                             monkeypatch: pytest.MonkeyPatch,
                                             tmp_path: Path) -> None:
    monkeypatch.delenv("RF_TEST_UNSET", raising=False)
    unset = Credentials(username=USER, password_env="RF_TEST_UNSET")
    async with htpasswd_client(registry2_htpasswd, unset) as client:
        with pytest.raises(UpstreamAuthError, match="variable RF_TEST_UNSET is not set"):
            await client.head_manifest(NAME, "single")
        with pytest.raises(UpstreamAuthError, match="RF_TEST_UNSET"):
            await client.catalog()  # broken config is not "no catalog"
    no_file = Credentials(username=USER, password_file=str(tmp_path / "absent"))
    async with htpasswd_client(registry2_htpasswd, no_file) as client:
        with pytest.raises(UpstreamAuthError, match=f"password_file {tmp_path / 'absent'}"):
            await client.head_manifest(NAME, "single")
    async with htpasswd_client(registry2_htpasswd, None) as client:
        with pytest.raises(UpstreamAuthError, match="needs credentials and none are configured"):
            await client.head_manifest(NAME, "single")


# -- registry:2 with token auth ----------------------------------------------------------------


async def test_token_flow_against_registry2_reuses_tokens_until_expiry(
        registry2_token: TokenUpstream, monkeypatch: pytest.MonkeyPatch) -> None:
    issuer = registry2_token.issuer
    issuer.reset()
    monkeypatch.setenv("RF_TEST_PASSWORD", PASSWORD)
    credentials = Credentials(username=USER, password_env="RF_TEST_PASSWORD")
    clock = Clock()
    async with Upstream("token.test", UpstreamConfig(urls=[registry2_token.url],
                                                     credentials=credentials),
                        sleep=Sleeps(), clock=clock) as client:
        ref = await client.head_manifest(NAME, "single")
        assert (await client.get_manifest(NAME, ref.digest))[0] == ref
        assert "multi" in await client.list_tags(NAME)
        assert len(issuer.requests) == 1  # one token for repository:team/app:pull, reused
        await client.head_manifest("other/one", "1")  # a new scope: no 401 round trip needed
        assert len(issuer.requests) == 2
        clock.now += issuer.expires_in - 5  # inside the renewal margin
        await client.head_manifest(NAME, "single")
    requests = issuer.reset()
    assert len(requests) == 3
    assert {r.user for r in requests} == {USER}
    assert {r.service for r in requests} == {SERVICE}
    assert [r.scopes for r in requests] == [[f"repository:{NAME}:pull"],
                                            ["repository:other/one:pull"],
                                            [f"repository:{NAME}:pull"]]


async def test_anonymous_token_flow_against_registry2(registry2_token: TokenUpstream) -> None:
    issuer = registry2_token.issuer
    issuer.reset()
    async with Upstream("token.test", UpstreamConfig(urls=[registry2_token.url]),
                        sleep=Sleeps()) as client:
        index = Digest.parse(layout_digest(registry2_token.layout.root, "multi"))
        ref, _ = await client.get_manifest("team/multi", index)
        # registry:2 grants the catalog to nobody our issuer serves: no access, no catalog.
        assert await client.catalog() is None
    assert ref.digest == index
    requests = issuer.reset()
    assert requests[0].user is None
    assert requests[0].scopes == ["repository:team/multi:pull"]


async def test_a_wrong_password_for_the_token_service(registry2_token: TokenUpstream,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RF_TEST_PASSWORD", "wrong-c0ffee")
    credentials = Credentials(username=USER, password_env="RF_TEST_PASSWORD")
    async with Upstream("token.test", UpstreamConfig(urls=[registry2_token.url],
                                                     credentials=credentials),
                        sleep=Sleeps()) as client:
        with pytest.raises(UpstreamAuthError) as refused:
            await client.head_manifest(NAME, "single")
    message = str(refused.value)
    assert f"token.test ({registry2_token.url})" in message
    assert "refused by the token service" in message
    assert "wrong-c0ffee" not in message


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


# -- retries and mirrors -----------------------------------------------------------------------


async def test_429_honours_retry_after_then_succeeds() -> None:
    fake, sleeps = Fake(), Sleeps()
    fake.on(f"{REG}/v2/{NAME}/manifests/latest",
            httpx.Response(429, headers={"Retry-After": "2"}),
            manifest_response(digest=MANIFEST_DIGEST))
    async with upstream(fake, sleep=sleeps) as client:
        ref = await client.head_manifest(NAME, "latest")
    assert sleeps.calls == [2.0]
    assert ref == ManifestRef(MANIFEST_DIGEST, OCI_MANIFEST, len(MANIFEST))


async def test_retry_after_as_an_http_date_and_capped() -> None:
    fake, sleeps = Fake(), Sleeps()
    soon = email.utils.formatdate(time.time() + 30, usegmt=True)
    fake.on(f"{REG}/v2/{NAME}/tags/list",
            httpx.Response(503, headers={"Retry-After": soon}),
            httpx.Response(429, headers={"Retry-After": "86400"}),
            httpx.Response(200, json={"name": NAME, "tags": ["a"]}))
    async with upstream(fake, sleep=sleeps) as client:
        assert await client.list_tags(NAME) == ["a"]
    assert 25 < sleeps.calls[0] <= 30
    assert sleeps.calls[1] == RETRY_AFTER_CAP


async def test_other_failures_back_off_with_capped_full_jitter() -> None:
    fake, sleeps = Fake(), Sleeps()
    fake.on(f"{REG}/v2/{NAME}/tags/list", httpx.Response(502))
    async with upstream(fake, sleep=sleeps, retries=8) as client:
        with pytest.raises(UpstreamUnavailable):
            await client.list_tags(NAME)
    assert len(sleeps.calls) == 8
    for number, seconds in enumerate(sleeps.calls):
        assert 0 <= seconds <= min(BACKOFF_CAP, BACKOFF_BASE * 2 ** number)


async def test_503_past_retries_moves_to_the_next_url() -> None:
    fake, sleeps = Fake(), Sleeps()
    fake.on(f"{MIRROR}/v2/{NAME}/manifests/latest", httpx.Response(503))
    fake.on(f"{REG}/v2/{NAME}/manifests/latest", manifest_response())
    async with upstream(fake, MIRROR, REG, sleep=sleeps, retries=2) as client:
        ref, body = await client.get_manifest(NAME, "latest")
    assert body == MANIFEST
    assert ref.digest == MANIFEST_DIGEST
    assert len(fake.to(MIRROR)) == 3
    assert len(fake.to(REG)) == 1
    assert len(sleeps.calls) == 2
    # The mirror comes first for every request: a failure does not reorder config.urls.
    assert fake.requests[0].url.host == "mirror.test"


async def test_every_url_failing_is_unavailable_naming_them_all() -> None:
    fake = Fake()

    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("Connection refused", request=request)

    fake.on(f"{MIRROR}/v2/{NAME}/manifests/latest", refuse)
    fake.on(f"{REG}/v2/{NAME}/manifests/latest", httpx.Response(503))
    async with upstream(fake, MIRROR, REG, retries=1) as client:
        with pytest.raises(UpstreamUnavailable) as unavailable:
            await client.head_manifest(NAME, "latest")
    message = str(unavailable.value)
    assert message.startswith(f"reg.test ({MIRROR}, {REG}): unavailable")
    assert "ConnectError: Connection refused" in message
    assert "503" in message
    assert "2 attempts" in message


async def test_a_404_is_final_and_the_next_url_is_not_asked() -> None:
    fake = Fake()
    fake.on(f"{REG}/v2/{NAME}/manifests/latest", manifest_response())
    async with upstream(fake, MIRROR, REG) as client:
        with pytest.raises(UpstreamNotFound, match=r"reg.test \(https://mirror.test\)"):
            await client.head_manifest(NAME, "latest")
    assert fake.to(REG) == []


# -- manifests ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("media_type", "body"), [
    (DOCKER_MANIFEST_V1_SIGNED, b'{"schemaVersion": 1, "signatures": []}'),
    ("application/vnd.docker.distribution.manifest.v1+json", b'{"schemaVersion": 1}'),
    ("application/json", b'{"schemaVersion": 1, "name": "team/app", "fsLayers": []}'),
])
async def test_schema1_is_refused_clearly(media_type: str, body: bytes) -> None:
    fake = Fake()
    fake.on(f"{REG}/v2/{NAME}/manifests/old", manifest_response(body, media_type))
    async with upstream(fake) as client:
        with pytest.raises(UpstreamError, match="schema 1 manifests are not supported"):
            await client.get_manifest(NAME, "old")
        with pytest.raises(UpstreamError, match="schema 1 manifests are not supported"):
            await client.head_manifest(NAME, "old")  # HEAD without a digest falls back to GET


async def test_digest_mismatch_by_digest_and_by_tag() -> None:
    fake = Fake()
    other = Digest.from_bytes(b"something else")
    fake.on(f"{REG}/v2/{NAME}/manifests/{other}", manifest_response())
    fake.on(f"{REG}/v2/{NAME}/manifests/lying",
            manifest_response(digest=other))
    async with upstream(fake) as client:
        with pytest.raises(UpstreamError, match="digest mismatch") as by_digest:
            await client.get_manifest(NAME, other)
        with pytest.raises(UpstreamError, match="digest mismatch"):
            await client.get_manifest(NAME, "lying")
    assert type(by_digest.value) is UpstreamError
    assert str(MANIFEST_DIGEST) in str(by_digest.value)


async def test_manifest_requests_accept_every_supported_type_and_get_bytes_verbatim() -> None:
    fake = Fake()
    body = b'{\n  "schemaVersion": 2,  "manifests": []\n}\n'  # odd spacing: must survive
    fake.on(f"{REG}/v2/{NAME}/manifests/idx", manifest_response(body, "application/json"))
    async with upstream(fake) as client:
        ref, data = await client.get_manifest(NAME, "idx")
    assert data == body
    assert ref == ManifestRef(Digest.from_bytes(body), OCI_INDEX, len(body))
    request = fake.requests[0]
    assert request.headers["accept"] == MANIFEST_ACCEPT
    assert request.headers["user-agent"] == USER_AGENT
    assert USER_AGENT.startswith("regfront-sync/")


async def test_an_oversized_manifest_is_refused() -> None:
    fake = Fake()
    fake.on(f"{REG}/v2/{NAME}/manifests/big",
            manifest_response(b"{" + b" " * (4 * 1024 * 1024) + b"}"))
    async with upstream(fake) as client:
        with pytest.raises(UpstreamError, match="byte limit"):
            await client.get_manifest(NAME, "big")


# -- pagination --------------------------------------------------------------------------------


def pages(fake: Fake, path: str, key: str, items: list[str], absolute: bool) -> None:
    """Serve ``items`` ``n`` at a time after ``last``, linking each page to the next."""
    def answer(request: httpx.Request) -> httpx.Response:
        n, last = int(request.url.params["n"]), request.url.params.get("last")
        rest = [i for i in items if last is None or i > last]
        page, headers = rest[:n], {}
        if len(rest) > n:
            link = f"{path}?n={n}&last={page[-1]}"
            headers["Link"] = f'<{REG + link if absolute else link}>; rel="next"'
        return httpx.Response(200, json={key: page}, headers=headers)

    fake.on(f"{REG}{path}", answer)


@pytest.mark.parametrize("absolute", [False, True])
async def test_list_tags_follows_relative_and_absolute_links(absolute: bool) -> None:
    fake = Fake()
    tags = [f"v{i:02}" for i in range(7)]
    pages(fake, f"/v2/{NAME}/tags/list", "tags", tags, absolute)
    async with upstream(fake, page_size=3) as client:
        assert await client.list_tags(NAME) == tags
    assert [r.url.params.get("last") for r in fake.requests] == [None, "v02", "v05"]


async def test_catalog_pages_and_its_absence() -> None:
    fake = Fake()
    pages(fake, "/v2/_catalog", "repositories", ["a/b", "c/d", "e/f"], absolute=False)
    async with upstream(fake, page_size=2) as client:
        assert await client.catalog() == ["a/b", "c/d", "e/f"]
    for answer in (httpx.Response(404), httpx.Response(405), httpx.Response(
            401, headers={"WWW-Authenticate": 'Basic realm="x"'})):
        absent = Fake()
        absent.on(f"{REG}/v2/_catalog", answer)
        async with upstream(absent) as client:
            assert await client.catalog() is None


async def test_a_looping_link_is_an_error() -> None:
    fake = Fake()
    fake.on(f"{REG}/v2/{NAME}/tags/list", httpx.Response(
        200, json={"tags": ["a"]}, headers={"Link": f'</v2/{NAME}/tags/list?n=1000>; rel="next"'}))
    async with upstream(fake) as client:
        with pytest.raises(UpstreamError, match="pagination loops"):
            await client.list_tags(NAME)


# -- limits ------------------------------------------------------------------------------------


async def test_concurrency_bounds_open_blob_streams() -> None:
    fake = Fake()
    digests = [Digest.from_bytes(bytes([i])) for i in range(6)]
    for digest in digests:
        fake.on(f"{REG}/v2/{NAME}/blobs/{digest}", httpx.Response(200, content=b"z"))
    active, peak = 0, 0

    async def pull(client: Upstream, digest: Digest) -> None:
        nonlocal active, peak
        async with client.blob(NAME, digest) as stream:
            active += 1
            peak = max(peak, active)
            await asyncio.sleep(0.01)
            assert [chunk async for chunk in stream] == [b"z"]
            active -= 1

    async with upstream(fake, concurrency=2) as client:
        await asyncio.gather(*(pull(client, d) for d in digests))
    assert peak == 2
    assert len(fake.requests) == 6


async def test_rate_limit_spaces_requests() -> None:
    fake, clock = Fake(), Clock()
    sleeps = Sleeps(clock)
    fake.on(f"{REG}/v2/{NAME}/manifests/latest",
            manifest_response(digest=MANIFEST_DIGEST))
    async with upstream(fake, sleep=sleeps, clock=clock, rate_limit=4) as client:
        for _ in range(4):
            await client.head_manifest(NAME, "latest")
    assert sleeps.calls == [0.25, 0.25, 0.25]


async def test_blob_bytes_are_passed_through_raw() -> None:
    """A Content-Encoding from a bucket must not be undone: the digest is over stored bytes."""
    data = b"\x1f\x8b pretend gzip"
    digest = Digest.from_bytes(data)
    fake = Fake()
    fake.on(f"{REG}/v2/{NAME}/blobs/{digest}", lambda _: httpx.Response(
        200, stream=httpx.ByteStream(data),
        headers={"Content-Encoding": "gzip", "Content-Length": str(len(data))}))
    async with upstream(fake) as client, client.blob(NAME, digest) as stream:
        got = b"".join([chunk async for chunk in stream])
    assert hashlib.sha256(got).hexdigest() == digest.hex
    assert fake.requests[0].headers["accept-encoding"] == "identity"


# -- TLS ---------------------------------------------------------------------------------------


async def test_tls_with_a_private_ca_file(registry2_tls: TLSUpstream, tmp_path: Path) -> None:
    url = f"https://{registry2_tls.server.host}"
    expected = layout_digest(registry2_tls.layout.root, "single")
    for options in ({"ca_file": str(registry2_tls.ca_file)}, {"tls_verify": False}):
        async with Upstream("tls.test", UpstreamConfig(urls=[url], **options),
                            sleep=Sleeps()) as client:
            assert str((await client.head_manifest(NAME, "single")).digest) == expected
    async with Upstream("tls.test", UpstreamConfig(urls=[url], retries=0),
                        sleep=Sleeps()) as client:
        with pytest.raises(UpstreamUnavailable, match="CERTIFICATE_VERIFY_FAILED"):
            await client.head_manifest(NAME, "single")
    with pytest.raises(UpstreamError, match=f"cannot load ca_file {tmp_path / 'absent.pem'}"):
        Upstream("tls.test", UpstreamConfig(urls=[url], ca_file=str(tmp_path / "absent.pem")))


# -- referrers ---------------------------------------------------------------------------------


async def test_referrers_fall_back_to_the_tag_scheme_on_registry2(registry2: Upstream2) -> None:
    root = registry2.layout.root
    subject = Digest.parse(layout_digest(root, "multi"))
    signature = {"mediaType": OCI_MANIFEST, "digest": layout_digest(root, "single"),
                 "size": len(layout_blob(root, layout_digest(root, "single"))),
                 "artifactType": "application/vnd.example.signature"}
    async with real(registry2) as client:
        assert await client.referrers("other/one", subject) == []  # 2.8: no referrers API
        index = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX,
                            "manifests": [signature]}).encode()
        async with httpx.AsyncClient() as plain:  # a push, as cosign and oras do without the API
            put = await plain.put(f"{registry2.url}/v2/other/one/manifests/sha256-{subject.hex}",
                                  content=index, headers={"Content-Type": OCI_INDEX})
        assert put.status_code == 201, put.text
        assert await client.referrers("other/one", subject) == [signature]


async def test_referrers_from_the_api() -> None:
    fake = Fake()
    descriptor = {"mediaType": OCI_MANIFEST, "digest": str(MANIFEST_DIGEST), "size": 1}
    fake.on(f"{REG}/v2/{NAME}/referrers/{MANIFEST_DIGEST}", httpx.Response(
        200, json={"schemaVersion": 2, "mediaType": OCI_INDEX,
                   "manifests": [descriptor, {"no": "digest"}]}))
    async with upstream(fake) as client:
        assert await client.referrers(NAME, MANIFEST_DIGEST) == [descriptor]
    assert len(fake.requests) == 1
