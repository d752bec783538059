"""The worker's own cloud identity as an upstream's login: a private ECR, Artifact Registry (or
gcr.io) or ACR needs no static password (``credentials: {provider: ecr|gcp|acr}``).

- ``ecr``: the AWS credential chain (IRSA, EKS Pod Identity, an instance or task role, the
  environment) -> ECR ``GetAuthorizationToken`` -> HTTP Basic ``AWS:<token>``; 12 hours.
- ``gcp``: Application Default Credentials (GKE Workload Identity or GCE through the metadata
  server, a key file, workload identity federation) -> an OAuth access token ->
  ``oauth2accesstoken:<token>`` at the registry's token service; about an hour.
- ``acr``: azure-identity's DefaultAzureCredential (AKS workload identity, managed identity, a
  service principal) -> an Entra ID token for ACR's audience -> the registry's
  ``/oauth2/exchange`` -> an ACR refresh token, which the token flow (auth.py) POSTs to
  ``/oauth2/token`` for each scope's access token; about 3 hours.

Each login is cached and fetched anew ``REFRESH_MARGIN`` before it expires, by the upstream
client's clock (tests inject one), and concurrent callers share one fetch. A cloud token acts as
the worker towards its cloud (a Google access token on every API the identity may use), so it
only ever goes to the upstream's own origin (``own_origin_only``).

Libraries: aioboto3 and azure-identity, which the s3:// and az:// stores use; gcloud-aio-auth,
which the gs:// store uses - asyncio on aiohttp, following google-auth's ADC order - where
google-auth itself is synchronous (requests) and would block the loop on every refresh.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import httpx
import jwt

from registry.errors import ConfigError
from registry.mirrorconfig import Credentials, ecr_region
from registry.upstream.auth import (
    AuthError,
    Challenge,
    ConfiguredLogin,
    Login,
    LoginSource,
    TokenServiceUnavailable,
)

REFRESH_MARGIN = 300.0  # fetched anew this long before expiry: a request in flight keeps it
MIN_LIFETIME = 60.0  # an expiry already past by our clock (skew) is asked again this soon
REQUEST_TIMEOUT = 30
GCP_USER = "oauth2accesstoken"
GCP_SCOPES = ("https://www.googleapis.com/auth/cloud-platform",)
ACR_USER = "00000000-0000-0000-0000-000000000000"
# ACR's own audience, which every registry accepts; ARM's (management.azure.com) is broader
# and refused by registries that disable authentication-as-ARM.
ACR_AAD_SCOPE = "https://containerregistry.azure.net/.default"

Clock = Callable[[], float]


@dataclass(frozen=True)
class Identities:
    """Where the worker's cloud identities come from: each cloud's default chain, unless a
    test puts its own token issuer here."""

    aws_session: Any = None  # an aioboto3.Session (untyped library)
    google_service_file: str | None = None  # None: Application Default Credentials
    azure_credential: Any = None  # an azure.core AsyncTokenCredential
    wall: Clock = time.time  # absolute expiry times are read against it


DEFAULT_IDENTITIES = Identities()


def login_source(credentials: Credentials | None, registry: str, urls: Sequence[str],
                 client: httpx.AsyncClient, clock: Clock,
                 identities: Identities = DEFAULT_IDENTITIES) -> LoginSource | None:
    """The login an upstream's ``credentials`` describe; None for anonymous access."""
    if credentials is None:
        return None
    if credentials.provider is None:
        return ConfiguredLogin(credentials, registry)
    if credentials.provider == "ecr":
        region = ecr_region(credentials, [registry, *urls])
        if region is None:
            raise ConfigError(f"upstream {registry}: credentials.provider ecr needs region "
                              "(no ECR host among its urls)")
        return EcrLogin(region, clock, identities)
    if credentials.provider == "gcp":
        return GcpLogin(clock, identities)
    return AcrLogin(client, clock, identities)


@dataclass(frozen=True)
class Issued:
    login: Login
    lifetime: float  # seconds from when it was asked for


class CloudLogin:
    """A cloud login cached until ``REFRESH_MARGIN`` before it expires."""

    own_origin_only = True
    what = "the worker's cloud credentials"

    def __init__(self, clock: Clock, identities: Identities) -> None:
        self._clock = clock
        self._identities = identities
        self._cached: dict[str, tuple[Login, float]] = {}  # key -> (login, renew at)
        self._lock = asyncio.Lock()

    async def _login(self, key: str, fetch: Callable[[], Awaitable[Issued]]) -> Login:
        found = self._cached.get(key)
        if found is not None and self._clock() < found[1]:
            return found[0]
        async with self._lock:  # concurrent requests share one fetch
            found = self._cached.get(key)
            if found is not None and self._clock() < found[1]:
                return found[0]
            asked = self._clock()
            issued = await fetch()
            lifetime = max(issued.lifetime, MIN_LIFETIME)
            self._cached[key] = (issued.login, asked + lifetime - min(REFRESH_MARGIN,
                                                                      lifetime / 2))
            return issued.login

    def _lifetime(self, expires_at: float) -> float:
        return expires_at - self._identities.wall()

    def who(self, base: str) -> str:
        return self.what

    def invalidate(self) -> None:
        self._cached.clear()

    async def aclose(self) -> None:
        pass


class EcrLogin(CloudLogin):
    """``GetAuthorizationToken`` in the registry's region, as ``AWS:<password>``."""

    what = "the worker's AWS credentials (an ECR token)"

    def __init__(self, region: str, clock: Clock, identities: Identities) -> None:
        super().__init__(clock, identities)
        self.region = region

    async def login(self, base: str, challenge: Challenge | None) -> Login:
        return await self._login("", self._fetch)

    async def _fetch(self) -> Issued:
        import aioboto3
        from botocore.exceptions import (
            BotoCoreError,
            ClientError,
            NoCredentialsError,
            PartialCredentialsError,
        )

        session = self._identities.aws_session or aioboto3.Session()
        where = f"ECR GetAuthorizationToken in {self.region}"
        try:
            async with session.client("ecr", region_name=self.region) as ecr:
                answer = await ecr.get_authorization_token()
        except ClientError as exc:
            error = exc.response.get("Error", {})
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
            if status >= 500 or status == 429 or "Throttl" in str(error.get("Code")):
                raise TokenServiceUnavailable(f"{where}: {error.get('Code')}") from exc
            raise AuthError(f"{where} refused the worker's AWS identity: "
                            f"{error.get('Code')}: {error.get('Message')}") from None
        except (NoCredentialsError, PartialCredentialsError) as exc:
            raise AuthError(f"{where}: no AWS credentials (IRSA, Pod Identity, an instance "
                            f"role or AWS_* variables): {exc}") from None
        except BotoCoreError as exc:  # connection failures, the credential services' hiccups
            raise TokenServiceUnavailable(f"{where}: {exc}") from exc
        try:
            data = answer["authorizationData"][0]
            decoded = base64.b64decode(data["authorizationToken"], validate=True).decode()
            expires = data["expiresAt"].timestamp()
        except (KeyError, IndexError, AttributeError, binascii.Error, UnicodeDecodeError):
            raise AuthError(f"{where} answered without a usable token") from None
        username, _, password = decoded.partition(":")
        return Issued(Login(username, password), self._lifetime(expires))


class GcpLogin(CloudLogin):
    """An OAuth access token from Application Default Credentials, as ``oauth2accesstoken``."""

    what = "the worker's Google credentials (an access token)"

    def __init__(self, clock: Clock, identities: Identities) -> None:
        super().__init__(clock, identities)
        self._token: Any = None  # gcloud.aio.auth.Token: it binds an aiohttp session

    async def login(self, base: str, challenge: Challenge | None) -> Login:
        return await self._login("", self._fetch)

    async def _fetch(self) -> Issued:
        import aiohttp
        from gcloud.aio.auth import Token

        if self._token is None:
            try:
                self._token = Token(service_file=self._identities.google_service_file,
                                    scopes=list(GCP_SCOPES))
            except (OSError, ValueError, KeyError) as exc:
                raise AuthError(f"Google Application Default Credentials: {exc!r}") from None
        try:
            answer = await self._token.refresh(timeout=REQUEST_TIMEOUT)
        except aiohttp.ClientResponseError as exc:
            if exc.status >= 500 or exc.status == 429:
                raise TokenServiceUnavailable(f"Google token service: {exc.status}") from exc
            raise AuthError(f"the Google token service refused the worker's identity "
                            f"({exc.status})") from None
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise TokenServiceUnavailable(f"Google token service: {exc!r}") from exc
        except (KeyError, ValueError) as exc:
            raise AuthError(f"the Google token service answered without a token: "
                            f"{exc!r}") from None
        return Issued(Login(GCP_USER, answer.value), float(answer.expires_in))

    async def aclose(self) -> None:
        if self._token is not None:
            await self._token.close()


class AcrLogin(CloudLogin):
    """An Entra ID token exchanged at the registry for an ACR refresh token."""

    what = "the worker's Azure credentials (an ACR refresh token)"

    def __init__(self, client: httpx.AsyncClient, clock: Clock, identities: Identities) -> None:
        super().__init__(clock, identities)
        self._client = client
        self._credential: Any = identities.azure_credential
        self._own_credential = False

    async def login(self, base: str, challenge: Challenge | None) -> Login | None:
        """None before the registry's Bearer challenge names its token service."""
        if challenge is None or challenge.scheme != "bearer" or not challenge.realm:
            return None
        realm = httpx.URL(challenge.realm)
        if realm.netloc != httpx.URL(base).netloc:
            raise AuthError(f"token realm {challenge.realm} is not on {base}; refusing to send "
                            "the worker's Entra ID token there")
        service = challenge.service or realm.host
        exchange = str(realm.copy_with(path="/oauth2/exchange", query=None))
        return await self._login(service, lambda: self._exchange(exchange, service))

    async def _exchange(self, url: str, service: str) -> Issued:
        from azure.core.exceptions import (
            ClientAuthenticationError,
            HttpResponseError,
            ServiceRequestError,
        )

        if self._credential is None:
            from azure.identity.aio import DefaultAzureCredential

            self._credential, self._own_credential = DefaultAzureCredential(), True
        try:
            aad = await self._credential.get_token(ACR_AAD_SCOPE)
        except ClientAuthenticationError as exc:
            reason = str(exc.message or exc).splitlines()[0]
            raise AuthError(f"Entra ID: no token for the worker's identity: {reason}") from None
        except (ServiceRequestError, HttpResponseError) as exc:
            raise TokenServiceUnavailable(f"Entra ID: {exc!r}") from exc
        try:
            response = await self._client.post(url, data={
                "grant_type": "access_token", "service": service, "access_token": aad.token})
        except httpx.TransportError as exc:
            raise TokenServiceUnavailable(f"{url}: {type(exc).__name__}: {exc}") from exc
        status = response.status_code
        if status == 429 or status >= 500:
            raise TokenServiceUnavailable(f"{url}: {status}")
        try:
            doc = response.json() if status == 200 else None
        except ValueError:
            doc = None
        refresh = doc.get("refresh_token") if isinstance(doc, dict) else None
        if not isinstance(refresh, str) or not refresh:
            raise AuthError(f"{url} did not exchange the worker's Entra ID token ({status}): "
                            "does the identity have AcrPull on the registry?", status or None)
        return Issued(Login(ACR_USER, refresh, refresh_token=True),
                      self._lifetime(_expiry(refresh, default=float(aad.expires_on))))

    async def aclose(self) -> None:
        if self._own_credential and self._credential is not None:
            await self._credential.close()


def _expiry(token: str, default: float) -> float:
    """A JWT's ``exp``, read for timing only (the registry checks the signature)."""
    try:
        claims = jwt.decode(token, options={"verify_signature": False})
        return float(claims["exp"])
    except (jwt.PyJWTError, KeyError, TypeError, ValueError):
        return default
