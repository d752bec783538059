"""Client authentication and access rules: who is asking, and may they pull this repository.

Off (no ``auth:``), nothing here runs: the dispatcher tests one attribute. On, every request
that names a repository is decided on its stored name (``ns`` applied first, so
``/v2/library/nginx/...?ns=docker.io`` is ``docker.io/library/nginx``):

- a repository an ``anonymous`` rule covers is served at once, whatever the request carries:
  no credential parsing, no challenge, no extra round trip for a fleet's public images;
- otherwise the request needs a credential - a token from ``/token``, an external issuer's JWT,
  or a static secret; without one (or with an invalid one) it gets 401 and a Bearer challenge
  naming the repository, so the client fetches a token for exactly it;
- a valid credential whose user no rule allows gets 403 DENIED: a new token would not help.

Verified tokens are cached by their string until they expire (bounded LRU), so a warm request
costs a dictionary lookup and no signature check. See docs/security.md.
"""

from __future__ import annotations

import fnmatch
import hashlib
import hmac
import re
import time
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import jwt
from cachetools import TLRUCache
from starlette.types import Scope

from gateway.http import repository, request_header
from gateway.keys import IssuerKeys
from gateway.routes import framework_route
from gateway.token import CLOCK_SKEW, TokenService, Users
from registry import probe
from registry.authconfig import is_glob
from registry.config import Config
from registry.errors import ConfigError, ErrorCode, RegistryError
from registry.mirrorconfig import MirrorIndex
from registry.secrets import read_secret_file

MIN_STATIC_TOKEN = 16  # characters: anything shorter is guessable, not a secret
_HOST = re.compile(r"^(?:[A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\])(?::\d{1,5})?$")


@dataclass(frozen=True, slots=True)
class Verified:
    """A credential that checked out: who it names (``None``: an anonymous token) and, for
    regfront's own tokens, the repositories it may pull (``None``: the rules alone decide)."""

    who: str | None
    access: frozenset[str] | None
    expires: float


class InvalidCredential(Exception):
    """A credential was presented and is wrong: bad signature, expired, unknown secret..."""


@dataclass(frozen=True, slots=True)
class _Rule:
    users: frozenset[str]
    anonymous: bool
    exact: frozenset[str]


class Policy:
    """The ``access`` rules. For a repository, the rule that decides is the first naming it
    exactly (no glob), else the first whose glob matches (fnmatch: ``*`` crosses ``/``); rules
    are not combined, so an earlier rule can carve an exception out of a broader one. No rule:
    denied. A repository that a ``mirror:`` rule syncs with upstream credentials is anonymous
    only if its deciding rule names it exactly: a glob never publishes paid-for content."""

    def __init__(self, config: Config, mirrors: MirrorIndex) -> None:
        assert config.auth is not None
        self._exact: dict[str, _Rule] = {}
        self._globs: list[tuple[re.Pattern[str], _Rule]] = []
        for access in config.auth.access:
            rule = _Rule(frozenset(access.users), access.anonymous, access.exact)
            for pattern in access.repositories:
                if is_glob(pattern):
                    self._globs.append((re.compile(fnmatch.translate(pattern)), rule))
                else:
                    self._exact.setdefault(pattern, rule)
        self.credentialed = mirrors.credentialed
        # Decisions depend on the name alone: cached, so a warm request matches no glob.
        self.rule = lru_cache(maxsize=65536)(self._rule)
        self.anonymous = lru_cache(maxsize=65536)(self._anonymous)

    def _rule(self, name: str) -> _Rule | None:
        rule = self._exact.get(name)
        if rule is not None:
            return rule
        return next((r for pattern, r in self._globs if pattern.match(name)), None)

    def _anonymous(self, name: str) -> bool:
        rule = self.rule(name)
        if rule is None or not rule.anonymous:
            return False
        return name in rule.exact or not self.credentialed(name)

    def allows(self, who: str | None, name: str) -> bool:
        """Whether ``who`` (``None``: anonymous) may pull ``name``."""
        if self.anonymous(name):
            return True
        if who is None:
            return False
        rule = self.rule(name)
        return rule is not None and (who in rule.users or "*" in rule.users)


def _digest(secret: str) -> bytes:
    # Compared as fixed-length digests: compare_digest then leaks not even the length.
    return hashlib.sha256(secret.encode("latin-1", "replace")).digest()


def _access(claim: Any) -> frozenset[str]:
    """The repositories a Docker-format ``access`` claim grants ``pull`` on."""
    if not isinstance(claim, list):
        return frozenset()
    return frozenset(
        entry["name"] for entry in claim
        if isinstance(entry, dict) and entry.get("type") == "repository"
        and isinstance(entry.get("name"), str) and isinstance(entry.get("actions"), list)
        and ("pull" in entry["actions"] or "*" in entry["actions"]))


class Auth:
    """Everything ``auth:`` configures, its files read (a ConfigError names key and path)."""

    def __init__(self, config: Config, mirrors: MirrorIndex) -> None:
        auth = config.auth
        assert auth is not None
        self.policy = Policy(config, mirrors)
        self.tokens = (TokenService(auth.token, Users(auth.users_file), self.policy.allows)
                       if auth.token is not None else None)
        self.issuers = {issuer.issuer: IssuerKeys(issuer, f"auth.issuers.{index}")
                        for index, issuer in enumerate(auth.issuers)}
        self._bearer_static: list[tuple[bytes, str]] = []
        self._custom_static: dict[bytes, list[tuple[bytes, str]]] = {}
        for index, static in enumerate(auth.static):
            entry = (_digest(self._read_static(static.token_file, index)), static.name)
            if static.header.lower() == "authorization":
                self._bearer_static.append(entry)
            else:
                self._custom_static.setdefault(static.header.lower().encode(), []).append(entry)
        self.cache: TLRUCache[str, Verified] = TLRUCache(
            maxsize=auth.token_cache_entries, ttu=lambda _key, value, _now: value.expires,
            timer=time.time)
        token = auth.token
        self._realm = token.realm if token is not None else None
        self._service = token.service if token is not None else None

    @staticmethod
    def _read_static(path: str, index: int) -> str:
        key = f"auth.static.{index}.token_file"
        secret = read_secret_file(path, key).strip()
        if len(secret) < MIN_STATIC_TOKEN or any(ch.isspace() for ch in secret):
            raise ConfigError(f"{key}: {path}: expected one token of at least "
                              f"{MIN_STATIC_TOKEN} characters, no spaces")
        return secret

    # -- decisions -----------------------------------------------------------------------------

    async def check(self, scope: Scope, name: str) -> None:
        """Allow the request to pull ``name``, or raise the 401 or 403 to answer instead."""
        if self.policy.anonymous(name) or probe.is_probe(name):
            return
        try:
            verified = await self._identify(scope)
        except InvalidCredential:
            raise self.challenge(scope, name, "invalid_token") from None
        if verified is None:
            raise self.challenge(scope, name)
        if self.policy.allows(verified.who, name):
            if verified.access is None or name in verified.access:
                return
            # Our token, for other repositories: the client fetches one for this one.
            raise self.challenge(scope, name, "insufficient_scope")
        if verified.who is None:
            raise self.challenge(scope, name)  # an anonymous token: logging in may help
        raise RegistryError(ErrorCode.DENIED, {"name": name})

    async def check_base(self, scope: Scope) -> None:
        """``GET /v2/``: 401 for an anonymous client when there is a ``/token`` to log in at
        (``docker login`` and Docker's pulls learn the realm here); any valid credential passes.
        """
        try:
            verified = await self._identify(scope)
        except InvalidCredential:
            raise self.challenge(scope, None, "invalid_token") from None
        if verified is None and self.tokens is not None:
            raise self.challenge(scope, None)

    async def guard(self, scope: Scope) -> None:
        """The framework-routed requests that need a decision: ``/v2/``, tags, referrers."""
        if scope["method"] not in ("GET", "HEAD"):
            return  # writes are 405 for everyone
        if scope["path"] == "/v2/":
            await self.check_base(scope)
            return
        name = framework_route(scope["path"])[1]
        if name is not None:
            await self.check(scope, repository(scope, name)[0])

    def challenge(self, scope: Scope, name: str | None, error: str | None = None
                  ) -> RegistryError:
        """401 with ``WWW-Authenticate: Bearer realm=..,service=..[,scope=..][,error=..]``."""
        params = [f'realm="{self.realm(scope)}"']
        if self._service is not None:
            params.append(f'service="{self._service}"')
        if name is not None:
            params.append(f'scope="repository:{name}:pull"')
        if error is not None:
            params.append(f'error="{error}"')
        detail = [{"Type": "repository", "Name": name, "Action": "pull"}] if name else None
        return RegistryError(ErrorCode.UNAUTHORIZED, detail,
                             headers={"WWW-Authenticate": "Bearer " + ",".join(params)})

    def realm(self, scope: Scope) -> str:
        """The configured realm, else this gateway's ``/token`` as the client addressed it."""
        if self._realm is not None:
            return self._realm
        if self.tokens is None:
            return "regfront"  # nothing to fetch a token from: a name, not a URL
        host = request_header(scope, b"host")
        if host is None or not _HOST.match(host):  # nothing a client could inject a quote with
            server = scope.get("server")
            host = f"{server[0]}:{server[1]}" if server else "localhost"
        return f"{scope.get('scheme', 'http')}://{host}/token"

    # -- credentials ---------------------------------------------------------------------------

    async def _identify(self, scope: Scope) -> Verified | None:
        """The request's credential, verified; ``None`` if it carries none."""
        for header, entries in self._custom_static.items():
            value = request_header(scope, header)
            if value is not None:
                return self._static(value.strip(), entries)
        value = request_header(scope, b"authorization")
        if value is None:
            return None
        scheme, _, token = value.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            return None  # e.g. Basic: this API takes tokens; the challenge says where
        verified = self.cache.get(token)
        if verified is not None:
            return verified
        if self._bearer_static:
            try:
                return self._static(token, self._bearer_static)
            except InvalidCredential:
                pass  # not a static secret: perhaps a JWT
        verified = await self._verify(token)
        self.cache[token] = verified
        return verified

    @staticmethod
    def _static(value: str, entries: list[tuple[bytes, str]]) -> Verified:
        presented = _digest(value)
        found: str | None = None
        for expected, name in entries:  # every entry, matched or not: constant time
            if hmac.compare_digest(presented, expected):
                found = name
        if found is None:
            raise InvalidCredential
        return Verified(found, None, float("inf"))

    async def _verify(self, token: str) -> Verified:
        """A JWT, by regfront's own keys (by ``kid``) or its issuer's; signature, times,
        issuer and audience all checked, with exactly the algorithms each key allows."""
        try:
            kid = jwt.get_unverified_header(token).get("kid")
            if self.tokens is not None and kid in self.tokens.keys:
                claims = self.tokens.decode(token)
                sub = claims["sub"]
                if "token_use" in claims or not isinstance(sub, str):
                    raise InvalidCredential  # a refresh token is not an access token
                return Verified(sub or None, _access(claims.get("access")),
                                float(claims["exp"]))
            unverified = jwt.decode(token, options={"verify_signature": False})
            iss = unverified.get("iss")
            issuer = self.issuers.get(iss) if isinstance(iss, str) else None
            if issuer is None:
                raise InvalidCredential
            key = await issuer.key(kid if isinstance(kid, str) else None)
            if key is None:
                raise InvalidCredential
            config = issuer.config
            claims = jwt.decode(token, key.key, algorithms=list(key.algorithms),
                                audience=config.audience, issuer=config.issuer,
                                leeway=CLOCK_SKEW,
                                options={"require": ["exp", "iss", "aud", "sub"]})
        except (jwt.PyJWTError, ValueError, TypeError, KeyError):
            raise InvalidCredential from None
        sub = claims["sub"]
        if not isinstance(sub, str) or not sub:
            raise InvalidCredential
        return Verified(sub, None, float(claims["exp"]))
