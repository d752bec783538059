"""Upstream logins made from the worker's cloud identity (registry/upstream/cloud.py): ECR
against moto's GetAuthorizationToken, Google through gcloud-aio-auth against an in-test OAuth
token endpoint, ACR through an in-test Entra ID and a registry that exchanges its token. Each
registry fake refuses a token that is unknown or expired by the test's clock, and each test
moves that clock up to the refresh point and past it: the login is renewed before it expires,
and not earlier."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import aioboto3
import httpx
import jwt
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from azure.core.credentials import AccessToken
from cryptography.hazmat.primitives.asymmetric import rsa

from registry.config import parse_config
from registry.errors import ConfigError
from registry.mirrorconfig import Credentials, UpstreamConfig
from registry.upstream.client import Upstream
from registry.upstream.cloud import REFRESH_MARGIN, EcrLogin, GcpLogin, Identities
from registry.upstream.errors import UpstreamAuthError
from tests.conftest import MotoS3
from tests.emulators import write_service_account
from tests.registry.upstreamkit import MANIFEST, Clock, manifest_response

EPOCH = 1_700_000_000.0
ECR_HOST = "123456789012.dkr.ecr.us-east-1.amazonaws.com"
SIGNING_KEY = "the fake ACR's key for its refresh tokens"


def wall_of(clock: Clock, epoch: float = EPOCH) -> Callable[[], float]:
    """The issuers' wall clock, moving with the client's monotonic one."""
    start = clock.now
    return lambda: epoch + clock.now - start


def basic(header: str) -> tuple[str, str]:
    user, _, password = base64.b64decode(header.removeprefix("Basic ")).decode().partition(":")
    return user, password


class Registry:
    """A private registry of one cloud: manifests for whoever shows a live credential."""

    def __init__(self, origin: str, clock: Clock) -> None:
        self.origin = origin
        self.clock = clock
        self.access: dict[str, float] = {}  # registry tokens it issued -> expiry (clock)
        self.seen: list[tuple[str, float]] = []  # (credential used, seconds it had left)

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)

    def use(self, credential: str, expires: float | None) -> bool:
        """Whether ``credential`` is live now; each use is recorded with the time left."""
        if expires is None or expires <= self.clock.now:
            return False
        self.seen.append((credential, expires - self.clock.now))
        return True

    def bearer(self, request: httpx.Request) -> bool:
        token = request.headers.get("authorization", "").removeprefix("Bearer ")
        return token in self.access and self.access[token] > self.clock.now

    def issue(self) -> httpx.Response:
        token = f"registry-{len(self.access)}"
        self.access[token] = self.clock.now + 60  # short: every renewal of the login shows
        return httpx.Response(200, json={"token": token, "access_token": token,
                                         "expires_in": 60})

    async def handle(self, request: httpx.Request) -> httpx.Response:
        raise NotImplementedError


# -- ECR (moto) ---------------------------------------------------------------------------------


class Ecr(Registry):
    """ECR's registry API: HTTP Basic with the password GetAuthorizationToken gave."""

    def __init__(self, clock: Clock, password: str, expires: Callable[[], float]) -> None:
        super().__init__(f"https://{ECR_HOST}", clock)
        self.password = password
        self.expires = expires  # of the one password moto issues, on the client's clock

    async def handle(self, request: httpx.Request) -> httpx.Response:
        header = request.headers.get("authorization", "")
        if header.startswith("Basic ") and basic(header) == ("AWS", self.password) and \
                self.use(self.password, self.expires()):
            return manifest_response()
        return httpx.Response(401, headers={
            "WWW-Authenticate": f'Basic realm="https://{ECR_HOST}/",service="ecr.amazonaws.com"'})


async def test_ecr_logs_in_with_get_authorization_token_and_renews_it_before_expiry(
        moto_s3: MotoS3, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL_ECR", moto_s3.endpoint)
    # moto's tokens all expire at 2015-01-01: the issuer's wall clock starts 12 hours before.
    expiry = datetime(2015, 1, 1, tzinfo=UTC).timestamp()
    clock = Clock()
    start = clock.now
    session = aioboto3.Session()
    calls: list[str] = []
    session.events.register("before-call.ecr.GetAuthorizationToken",
                            lambda **_: calls.append("GetAuthorizationToken"))
    ecr = Ecr(clock, "123456789012-auth-token", lambda: start + 12 * 3600)
    config = UpstreamConfig(urls=[ecr.origin], credentials=Credentials(provider="ecr"),
                            retries=0)
    identities = Identities(aws_session=session, wall=wall_of(clock, expiry - 12 * 3600))
    async with Upstream(ECR_HOST, config, transport=ecr.transport(), clock=clock,
                        identities=identities) as upstream:
        assert isinstance(upstream._session.logins, EcrLogin)
        assert upstream._session.logins.region == "us-east-1"  # read from the host
        for moved, fetched in ((0, 1), (12 * 3600 - REFRESH_MARGIN - 1, 1), (1, 2)):
            clock.now += moved
            _, body = await upstream.get_manifest("team/app", "1")
            assert body == MANIFEST
            assert len(calls) == fetched, moved
    assert len(ecr.seen) == 3
    assert min(left for _, left in ecr.seen) >= REFRESH_MARGIN  # never near expiry


# -- Google (gcloud-aio-auth) -------------------------------------------------------------------


class GoogleIssuer:
    """Google's OAuth token endpoint, in the test: checks the service account's signed JWT
    assertion and issues numbered access tokens that expire an hour later by the test's clock."""

    def __init__(self, clock: Clock, key: rsa.RSAPrivateKey) -> None:
        self.clock = clock
        self.public_key = key.public_key()
        self.issued: dict[str, float] = {}
        self.url = ""

    async def token(self, request: web.Request) -> web.Response:
        form = await request.post()
        assert form["grant_type"] == "urn:ietf:params:oauth:grant-type:jwt-bearer"
        claims = jwt.decode(str(form["assertion"]), self.public_key, algorithms=["RS256"],
                            audience=self.url)
        assert claims["scope"] == "https://www.googleapis.com/auth/cloud-platform"
        token = f"ya29.test-{len(self.issued)}"
        self.issued[token] = self.clock.now + 3600
        return web.json_response({"access_token": token, "expires_in": 3600,
                                  "token_type": "Bearer"})


class ArtifactRegistry(Registry):
    """Artifact Registry: Bearer tokens from its token service for oauth2accesstoken:TOKEN."""

    def __init__(self, clock: Clock, issuer: GoogleIssuer) -> None:
        super().__init__("https://europe-docker.pkg.dev", clock)
        self.issuer = issuer

    async def handle(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v2/token":
            user, token = basic(request.headers.get("authorization", "Basic Og=="))
            if user == "oauth2accesstoken" and self.use(token, self.issuer.issued.get(token)):
                return self.issue()
            return httpx.Response(401)
        if self.bearer(request):
            return manifest_response()
        return httpx.Response(401, headers={"WWW-Authenticate": (
            'Bearer realm="https://europe-docker.pkg.dev/v2/token",'
            'service="europe-docker.pkg.dev"')})


@pytest.fixture
async def google(tmp_path: Path) -> AsyncIterator[tuple[GoogleIssuer, str, Clock]]:
    """The issuer, served on localhost, and a key file whose token_uri names it."""
    clock = Clock()
    key_file = tmp_path / "key.json"
    issuer = GoogleIssuer(clock, write_service_account(key_file))
    app = web.Application()
    app.router.add_post("/token", issuer.token)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    issuer.url = str(server.make_url("/token"))
    key = json.loads(key_file.read_text())
    key_file.write_text(json.dumps({**key, "token_uri": issuer.url}))
    try:
        yield issuer, str(key_file), clock
    finally:
        await server.close()


async def test_gcp_uses_an_adc_access_token_and_renews_it_before_expiry(
        google: tuple[GoogleIssuer, str, Clock]) -> None:
    issuer, key_file, clock = google
    registry = ArtifactRegistry(clock, issuer)
    config = UpstreamConfig(urls=[registry.origin], credentials=Credentials(provider="gcp"),
                            retries=0)
    async with Upstream("europe-docker.pkg.dev", config, transport=registry.transport(),
                        clock=clock, identities=Identities(google_service_file=key_file)
                        ) as upstream:
        assert isinstance(upstream._session.logins, GcpLogin)
        for moved in (0, 3600 - REFRESH_MARGIN - 1, 60):  # 60: past the registry token
            clock.now += moved
            _, body = await upstream.get_manifest("project/repo/app", "1")
            assert body == MANIFEST
    assert list(issuer.issued) == ["ya29.test-0", "ya29.test-1"]
    assert [token for token, _ in registry.seen] == ["ya29.test-0", "ya29.test-0",
                                                     "ya29.test-1"]
    assert min(left for _, left in registry.seen) > REFRESH_MARGIN  # renewed in time


async def test_gcp_refusal_names_the_identity_never_the_token(
        google: tuple[GoogleIssuer, str, Clock]) -> None:
    issuer, key_file, clock = google
    registry = ArtifactRegistry(clock, issuer)
    issuer.issued.clear()
    registry.issuer = GoogleIssuer(clock, rsa.generate_private_key(65537, 2048))  # knows none
    config = UpstreamConfig(urls=[registry.origin], credentials=Credentials(provider="gcp"),
                            retries=0)
    async with Upstream("europe-docker.pkg.dev", config, transport=registry.transport(),
                        clock=clock, identities=Identities(google_service_file=key_file)
                        ) as upstream:
        with pytest.raises(UpstreamAuthError) as refused:
            await upstream.get_manifest("project/repo/app", "1")
    assert "the worker's Google credentials (an access token) were refused" in str(refused.value)
    assert list(issuer.issued)  # a token was issued (the fault fired) ...
    assert not any(token in str(refused.value) for token in issuer.issued)  # ... never shown


# -- ACR (Entra ID, then the registry's exchange) -----------------------------------------------


class EntraIssuer:
    """The worker's Entra ID credential (azure.core's AsyncTokenCredential), in the test:
    numbered tokens for the scopes asked, an hour each by the test's clock."""

    def __init__(self, wall: Callable[[], float]) -> None:
        self.wall = wall
        self.issued: dict[str, float] = {}  # token -> expiry (wall)
        self.scopes: list[tuple[str, ...]] = []

    async def get_token(self, *scopes: str, **_: Any) -> AccessToken:
        self.scopes.append(scopes)
        token = f"entra-{len(self.issued)}"
        self.issued[token] = self.wall() + 3600
        return AccessToken(token, int(self.issued[token]))

    async def close(self) -> None:
        pass


class Acr(Registry):
    """ACR: /oauth2/exchange turns a live Entra ID token into a refresh token (a JWT, 3 hours),
    /oauth2/token a live refresh token into a registry access token."""

    def __init__(self, clock: Clock, entra: EntraIssuer) -> None:
        super().__init__("https://team.azurecr.io", clock)
        self.entra = entra
        self.refresh: dict[str, float] = {}  # refresh token -> expiry (clock)
        self.exchanged: list[str] = []  # the Entra ID tokens it was given

    async def handle(self, request: httpx.Request) -> httpx.Response:
        form = {k: v[0] for k, v in parse_qs(request.content.decode()).items()}
        offset = self.clock.now - self.entra.wall()  # wall time -> the clock's
        if request.url.path == "/oauth2/exchange":
            token = form.get("access_token", "")
            self.exchanged.append(token)
            expires = self.entra.issued.get(token)
            if form.get("grant_type") != "access_token" or form.get("service") != \
                    "team.azurecr.io" or expires is None or expires <= self.entra.wall():
                return httpx.Response(401)
            exp = self.entra.wall() + 3 * 3600
            refresh = jwt.encode({"exp": exp, "n": len(self.refresh)}, SIGNING_KEY)
            self.refresh[refresh] = exp + offset
            return httpx.Response(200, json={"refresh_token": refresh})
        if request.url.path == "/oauth2/token" and request.method == "POST":
            token = form.get("refresh_token", "")
            if form.get("grant_type") == "refresh_token" and form.get("scope") and \
                    self.use(token, self.refresh.get(token)):
                return self.issue()
            return httpx.Response(401)
        if self.bearer(request):
            return manifest_response()
        return httpx.Response(401, headers={"WWW-Authenticate": (
            'Bearer realm="https://team.azurecr.io/oauth2/token",service="team.azurecr.io"')})


def acr_upstream(acr: Acr, clock: Clock, urls: list[str] | None = None) -> Upstream:
    config = UpstreamConfig(urls=urls or [acr.origin], credentials=Credentials(provider="acr"),
                            retries=0)
    return Upstream("team.azurecr.io", config, transport=acr.transport(), clock=clock,
                    identities=Identities(azure_credential=acr.entra, wall=wall_of(clock)))


async def test_acr_exchanges_an_entra_token_and_renews_the_refresh_token_before_expiry() -> None:
    clock = Clock()
    acr = Acr(clock, EntraIssuer(wall_of(clock)))
    async with acr_upstream(acr, clock) as upstream:
        for moved in (0, 3 * 3600 - REFRESH_MARGIN - 1, 60):  # 60: past the registry token
            clock.now += moved
            _, body = await upstream.get_manifest("team/app", "1")
            assert body == MANIFEST
    assert acr.entra.scopes == [("https://containerregistry.azure.net/.default",)] * 2
    assert acr.exchanged == ["entra-0", "entra-1"]  # one exchange per refresh token
    assert len(acr.refresh) == 2
    refresh_used = [token for token, _ in acr.seen]
    assert refresh_used == [refresh_used[0], refresh_used[0], refresh_used[2]]
    assert refresh_used[0] != refresh_used[2]
    assert min(left for _, left in acr.seen) > REFRESH_MARGIN


async def test_acr_sends_the_entra_token_to_no_realm_but_the_registrys_own() -> None:
    clock = Clock()
    acr = Acr(clock, EntraIssuer(wall_of(clock)))
    original = acr.handle

    async def elsewhere(request: httpx.Request) -> httpx.Response:
        answer = await original(request)
        if answer.status_code == 401 and "www-authenticate" in answer.headers:
            return httpx.Response(401, headers={"WWW-Authenticate":
                                                'Bearer realm="https://evil.test/oauth2/token"'})
        return answer

    acr.handle = elsewhere  # type: ignore[method-assign]
    async with acr_upstream(acr, clock) as upstream:
        with pytest.raises(UpstreamAuthError, match="refusing to send"):
            await upstream.get_manifest("team/app", "1")
    assert acr.entra.issued == {}
    assert acr.exchanged == []


# -- configuration ------------------------------------------------------------------------------


def test_a_provider_is_the_only_credential_source() -> None:
    assert Credentials(provider="gcp").provider == "gcp"
    with pytest.raises(ValueError, match="excludes username"):
        Credentials(provider="acr", username="x", password_env="Y")
    with pytest.raises(ValueError, match="region is for provider: ecr"):
        Credentials(provider="gcp", region="us-east-1")


@pytest.mark.parametrize(("url", "region"), [
    (f"https://{ECR_HOST}", "us-east-1"),
    ("https://123456789012.dkr.ecr-fips.us-gov-west-1.amazonaws.com", "us-gov-west-1"),
    ("https://123456789012.dkr.ecr.cn-north-1.amazonaws.com.cn:443", "cn-north-1"),
])
def test_the_ecr_region_is_read_from_the_host(url: str, region: str) -> None:
    from registry.mirrorconfig import ecr_region

    assert ecr_region(Credentials(provider="ecr"), [url]) == region
    assert ecr_region(Credentials(provider="ecr", region="eu-west-1"), [url]) == "eu-west-1"


def test_an_ecr_upstream_without_a_region_is_a_config_error() -> None:
    text = """
upstreams:
  mirror.corp:
    urls: ["https://mirror.corp"]
    credentials: {provider: ecr}
"""
    with pytest.raises(ConfigError, match=r"c.yaml:\d+: upstreams.mirror.corp.*set credentials"
                       r".region"):
        parse_config(text, "c.yaml")
    config = parse_config(text.replace("{provider: ecr}", "{provider: ecr, region: eu-west-1}"))
    credentials = config.upstreams["mirror.corp"].credentials
    assert credentials is not None
    assert credentials.region == "eu-west-1"
