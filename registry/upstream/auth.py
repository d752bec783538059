"""Who the sync worker is to an upstream, and how it answers an upstream's 401.

Kept apart from session.py so the code that touches secrets is small enough to audit in
one read. Nothing here formats a password or a token into a message: errors name the variable,
file or host that was wrong, never what it held. Errors here do not name the registry; the
session (session.py) prefixes that and turns them into the types of errors.py.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import urlsplit

import httpx

from registry.errors import ConfigError, RegistryError
from registry.mirrorconfig import Credentials
from registry.names import DOCKER_HUB, canonical_registry
from registry.secrets import read_secret_file

# docker login writes Docker Hub's entry under the v1 index URL, for historical reasons.
_DOCKER_HUB_KEYS = ("https://index.docker.io/v1/", "index.docker.io", "docker.io",
                    "registry-1.docker.io")
TOKEN_LIFETIME = 60.0  # the token spec's default when ``expires_in`` is absent
TOKEN_MARGIN = 10.0  # renew this long before expiry: a request in flight must not carry a dead one


class AuthError(Exception):
    """Credentials unreadable, missing or refused; ``status`` if an HTTP answer said so."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class CredentialsError(AuthError):
    """A configured credential could not be read; the message names where it was looked for."""


class TokenServiceUnavailable(Exception):
    """The token service did not answer (or answered 429/5xx): worth retrying like any request."""


@dataclass(frozen=True)
class Login:
    """A username and password, resolved just before use so rotated secrets are picked up.

    With ``refresh_token`` the password is an OAuth2 refresh token (an identity token, as ACR's
    exchange gives): Bearer tokens are then asked for with the OAuth2 refresh-token grant.
    """

    username: str
    password: str = field(repr=False)
    refresh_token: bool = False

    def basic(self) -> str:
        """The ``Authorization`` header value for HTTP Basic."""
        raw = f"{self.username}:{self.password}".encode()
        return "Basic " + base64.b64encode(raw).decode("ascii")


class LoginSource(Protocol):
    """Where an upstream's login comes from: configured secrets, or the worker's cloud identity
    (registry/upstream/cloud.py), each asked again before every token request."""

    own_origin_only: bool
    """Send the login to no token service but one on the upstream's own origin (cloud tokens,
    which are worth far more than one registry's password)."""

    async def login(self, base: str, challenge: Challenge | None) -> Login | None:
        """The login for ``base``, whose last 401 said ``challenge`` (None before any)."""
        ...

    def who(self, base: str) -> str:
        """Whose login it is, for messages: never a secret."""
        ...

    def invalidate(self) -> None:
        """Forget a cached login the upstream refused: the next one is fetched anew."""
        ...

    async def aclose(self) -> None:
        ...


class ConfiguredLogin:
    """A username and password from the config's sources, read on every call."""

    own_origin_only = False

    def __init__(self, credentials: Credentials, registry: str) -> None:
        self.credentials = credentials
        self.registry = registry

    def _hosts(self, base: str) -> list[str]:
        return [httpx.URL(base).netloc.decode("ascii"), self.registry]

    async def login(self, base: str, challenge: Challenge | None) -> Login:
        return resolve_login(self.credentials, self._hosts(base))

    def who(self, base: str) -> str:
        try:
            login = resolve_login(self.credentials, self._hosts(base))
            return f"credentials for user {login.username!r}"
        except CredentialsError:
            return "the configured credentials"

    def invalidate(self) -> None:
        pass  # read anew on every call already

    async def aclose(self) -> None:
        pass


def resolve_login(credentials: Credentials, hosts: Sequence[str]) -> Login:
    """Read ``credentials``; ``hosts`` are the names a docker config entry may be keyed by.

    Files and variables are read on every call (token fetches are rare), so a rotated secret
    mounted from Kubernetes or Vault takes effect without restarting the worker.
    """
    if credentials.docker_config is not None:
        return _docker_config_login(credentials.docker_config, hosts)
    if credentials.username is not None:
        username = credentials.username
    else:
        assert credentials.username_env is not None  # Credentials' validator: exactly one
        username = _env(credentials.username_env, "username")
    if credentials.password_env is not None:
        password = _env(credentials.password_env, "password")
    else:
        assert credentials.password_file is not None
        password = _read(credentials.password_file, "password_file")
        # `echo secret > file` and Kubernetes secrets made from such files end in one newline.
        password = password.removesuffix("\n").removesuffix("\r")
    return Login(username, password)


def _env(name: str, what: str) -> str:
    value = os.environ.get(name)
    if not value:
        raise CredentialsError(f"the {what} variable {name} is not set")
    return value


def _read(path: str, what: str) -> str:
    try:
        return read_secret_file(path, what)
    except ConfigError as exc:
        raise CredentialsError(str(exc)) from None


def _entry_host(key: str) -> str:
    """``https://Reg.Corp:5000/v1/`` -> ``reg.corp:5000``: docker config keys come both ways."""
    if "://" in key:
        key = urlsplit(key).netloc
    return key.split("/", 1)[0].lower()


def _docker_config_login(path: str, hosts: Sequence[str]) -> Login:
    try:
        doc = json.loads(_read(path, "docker_config"))
    except ValueError as exc:
        raise CredentialsError(f"docker_config {path} is not JSON: {exc}") from None
    auths = doc.get("auths") if isinstance(doc, dict) else None
    if not isinstance(auths, dict):
        auths = {}
    wanted = [host.lower() for host in hosts]
    if any(_is_docker_hub(host) for host in hosts):
        wanted += [_entry_host(key) for key in _DOCKER_HUB_KEYS]
    by_host = {_entry_host(key): entry for key, entry in auths.items() if isinstance(entry, dict)}
    for host in wanted:
        if host in by_host:
            return _entry_login(by_host[host], path, host)
    helpers = " (credsStore/credHelpers are not supported)" if (
        isinstance(doc, dict) and ("credsStore" in doc or "credHelpers" in doc)) else ""
    raise CredentialsError(f"docker_config {path} has no auths entry for "
                           f"{', '.join(dict.fromkeys(wanted))}{helpers}")


def _entry_login(entry: dict[str, object], path: str, host: str) -> Login:
    username, password = entry.get("username"), entry.get("password")
    if isinstance(username, str) and isinstance(password, str) and username:
        return Login(username, password)
    auth = entry.get("auth")
    if isinstance(auth, str) and auth:
        try:
            decoded = base64.b64decode(auth, validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            raise CredentialsError(f"docker_config {path}: the auth of {host} is not "
                                   "base64 of user:password") from None
        username, sep, password = decoded.partition(":")
        if sep and username:
            return Login(username, password)
        raise CredentialsError(f"docker_config {path}: the auth of {host} is not user:password")
    raise CredentialsError(f"docker_config {path}: the entry for {host} has neither auth nor "
                           "username and password (identity tokens are not supported)")


def _is_docker_hub(host: str) -> bool:
    try:
        return canonical_registry(host) == DOCKER_HUB
    except RegistryError:  # not a host name at all: certainly not Docker Hub
        return False


# -- WWW-Authenticate --------------------------------------------------------------------------

_TOKEN = r"[!#$%&'*+.^_`|~0-9A-Za-z-]+"
_PARAM = re.compile(rf'\s*({_TOKEN})\s*=\s*("(?:[^"\\]|\\.)*"|[^,\s]*)\s*(?:,|$)')
_SCHEME = re.compile(rf"[\s,]*({_TOKEN})(?:\s+|$)")
_ESCAPE = re.compile(r"\\(.)")


@dataclass(frozen=True)
class Challenge:
    """One ``WWW-Authenticate`` challenge: ``scheme`` lowercased, parameter names lowercased."""

    scheme: str
    params: dict[str, str]

    @property
    def realm(self) -> str | None:
        return self.params.get("realm")

    @property
    def service(self) -> str | None:
        return self.params.get("service")


def parse_challenges(values: Sequence[str]) -> list[Challenge]:
    """Every challenge in the header values, in order; unparseable trailing text is ignored.

    A scope holds commas (``repository:a:pull,push``), so parameters are read as quoted strings,
    not split on commas.
    """
    challenges: list[Challenge] = []
    for text in values:
        pos = 0
        while pos < len(text):
            scheme = _SCHEME.match(text, pos)
            if scheme is None:
                break
            pos = scheme.end()
            params: dict[str, str] = {}
            while (param := _PARAM.match(text, pos)) is not None and param.end() > pos:
                value = param.group(2)
                if value.startswith('"'):
                    value = _ESCAPE.sub(r"\1", value[1:-1])
                params[param.group(1).lower()] = value
                pos = param.end()
            challenges.append(Challenge(scheme.group(1).lower(), params))
    return challenges


def pick_challenge(challenges: Sequence[Challenge]) -> Challenge | None:
    """Bearer before Basic: a token keeps the password off every registry request."""
    for scheme in ("bearer", "basic"):
        for challenge in challenges:
            if challenge.scheme == scheme:
                return challenge
    return None


# -- answering challenges ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Token:
    header: str
    expires: float  # on the client's clock


class Authenticator:
    """One upstream's auth state: the challenge each URL gave, and tokens per (URL, scope)."""

    def __init__(self, client: httpx.AsyncClient, logins: LoginSource | None,
                 clock: Callable[[], float]) -> None:
        self._client = client
        self._logins = logins
        self._clock = clock
        self._challenges: dict[str, Challenge] = {}
        self._tokens: dict[tuple[str, str], _Token] = {}
        self._locks: dict[tuple[str, str], asyncio.Lock] = {}

    async def login(self, base: str) -> Login | None:
        """The login for ``base`` now; None when the upstream has no credentials."""
        if self._logins is None:
            return None
        return await self._logins.login(base, self._challenges.get(base))

    async def authorization(self, base: str, scope: str) -> str | None:
        """What to send before any 401: a live token, or what this URL asked for last time.

        Remembering the challenge saves a 401 round trip for every new repository.
        """
        token = self._tokens.get((base, scope))
        if token is not None and token.expires > self._clock():
            return token.header
        challenge = self._challenges.get(base)
        if challenge is None:
            return None
        if challenge.scheme == "basic":
            login = await self.login(base)
            return None if login is None else login.basic()
        return await self._token(base, scope, challenge, stale=None)

    async def answer(self, base: str, scope: str, challenge: Challenge | None,
                     sent: str | None, request: str) -> str:
        """The header that answers a 401's ``challenge``; raise if ``sent`` already was it."""
        if challenge is None:
            raise AuthError(f"{request}: 401 without a Bearer or Basic challenge", 401)
        self._challenges[base] = challenge
        if challenge.scheme == "basic":
            login = await self.login(base)
            if login is None:
                raise AuthError(f"{request} needs credentials and none are configured", 401)
            if login.basic() == sent:
                raise self.refusal(base, scope, 401, request)
            return login.basic()
        return await self._token(base, scope, challenge, stale=sent)

    def refusal(self, base: str, scope: str, status: int, request: str) -> AuthError:
        """The error for a 401/403 that came back although we authenticated."""
        if self._logins is None:
            who = "anonymous access was"
        else:
            who = f"{self._logins.who(base)} were"
            self._logins.invalidate()  # a cloud token revoked early: the next request renews it
        hint = ""
        challenge = self._challenges.get(base)
        if challenge is not None and challenge.scheme == "bearer":
            # Token services issue scope-less tokens for repositories that do not exist
            # (Docker Hub does), so this refusal may just mean "no such repository".
            hint = f"; the token for {scope} does not grant it: does the repository exist?"
        return AuthError(f"{who} refused ({status} on {request}{hint})", status)

    async def _token(self, base: str, scope: str, challenge: Challenge, stale: str | None) -> str:
        """A Bearer header for ``scope``; concurrent callers share one token request."""
        key = (base, scope)
        async with self._locks.setdefault(key, asyncio.Lock()):
            cached = self._tokens.get(key)
            if cached is not None and cached.expires > self._clock() and cached.header != stale:
                return cached.header  # another request renewed it while this one waited
            token = await self._fetch_token(base, scope, challenge)
            self._tokens[key] = token
            return token.header

    async def _fetch_token(self, base: str, scope: str, challenge: Challenge) -> _Token:
        realm = challenge.realm
        if not realm or not realm.startswith(("https://", "http://")):
            raise AuthError("Bearer challenge without an http(s) realm", 401)
        login = await self.login(base)
        if login is not None:
            if realm.startswith("http://") and base.startswith("https://"):
                raise AuthError(f"token realm {realm} is plain http; refusing to send "
                                "credentials there", 401)
            if self._logins is not None and self._logins.own_origin_only and \
                    httpx.URL(realm).netloc != httpx.URL(base).netloc:
                raise AuthError(f"token realm {realm} is not on {base}; refusing to send the "
                                "worker's cloud credentials there")
        params = {"scope": scope}  # always ours: it is what the token is cached under
        if challenge.service:
            params["service"] = challenge.service
        try:
            if login is not None and login.refresh_token:
                # OAuth2 (distribution's token spec, and ACR's documented flow): the identity
                # token goes in a form body, never in a URL that proxies may log.
                response = await self._client.post(realm, data={
                    **params, "grant_type": "refresh_token", "client_id": "regfront",
                    "refresh_token": login.password})
            else:
                headers = {"Authorization": login.basic()} if login is not None else {}
                response = await self._client.get(realm, params=params, headers=headers)
        except httpx.TransportError as exc:
            raise TokenServiceUnavailable(f"token service {realm}: "
                                          f"{type(exc).__name__}: {exc}") from exc
        status = response.status_code
        if status == 429 or status >= 500:
            raise TokenServiceUnavailable(f"token service {realm}: {status}")
        if status in (401, 403):
            who = "anonymous access was" if self._logins is None else \
                f"{self._logins.who(base)} were"
            if self._logins is not None:
                self._logins.invalidate()
            raise AuthError(f"{who} refused by the token service {realm} ({status})", status)
        try:
            doc: Any = response.json() if status == 200 else None
        except ValueError:
            doc = None
        token = (doc.get("token") or doc.get("access_token")) if isinstance(doc, dict) else None
        if not isinstance(token, str) or not token:
            raise AuthError(f"the token service {realm} answered {status} without a token",
                            status)
        lifetime = doc.get("expires_in")
        if isinstance(lifetime, bool) or not isinstance(lifetime, int | float) or lifetime <= 0:
            lifetime = TOKEN_LIFETIME
        margin = min(TOKEN_MARGIN, lifetime / 2)
        return _Token(f"Bearer {token}", self._clock() + lifetime - margin)
