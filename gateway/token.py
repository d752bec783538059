"""``/token``: registry token auth as Docker and OCI clients speak it; issuing and reading JWTs.

A 401 from the gateway names this endpoint as its Bearer ``realm``. containerd POSTs an OAuth2
form first (``grant_type=password`` with username and password, or ``refresh_token``) and
falls back to a GET with Basic auth and ``service``/``scope`` query parameters, which is what
Docker sends. A GET without credentials gets an anonymous token, good for the anonymous
repositories it asks for: Docker fetches one before every pull, whatever the repository.

Passwords are bcrypt hashes in an htpasswd file. Checking one costs tens of milliseconds of
CPU, so it happens once per token, in a worker thread, and never on an image request; the
tokens that come out are short-lived and name exactly the repositories they may pull.
"""

from __future__ import annotations

import base64
import binascii
import secrets
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl

import anyio
import bcrypt
import jwt
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from gateway.keys import VerifyKey, load_signing_key, load_verify_key
from registry.authconfig import TokenConfig
from registry.errors import ConfigError, ErrorCode, RegistryError
from registry.names import NAME_PATTERN
from registry.secrets import read_secret_file

CLOCK_SKEW = 30.0  # seconds of clock difference tolerated between gateways and issuers
MAX_SCOPES = 32  # scopes granted in one token: bounds its size
MAX_FORM_BYTES = 64 * 1024
_BCRYPT_PREFIXES = (b"$2a$", b"$2b$", b"$2y$")
_NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}

Allows = Callable[[str | None, str], bool]


class Users:
    """The htpasswd file: ``name:bcrypt-hash`` lines (``htpasswd -B``), read once at start."""

    def __init__(self, path: str | None, key_name: str = "auth.users_file") -> None:
        self.hashes: dict[str, bytes] = {}
        self._decoy = b""
        if path is None:
            return
        text = read_secret_file(path, key_name)
        for number, line in enumerate(text.splitlines(), 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            name, sep, hashed = line.partition(":")
            if not sep or not name or not hashed.encode().startswith(_BCRYPT_PREFIXES):
                raise ConfigError(f"{key_name}: {path}:{number}: expected NAME:BCRYPT-HASH "
                                  "(htpasswd -B); other hash types are refused")
            self.hashes[name] = hashed.encode()
        # Unknown names are checked against this, so a wrong name costs what a wrong password
        # costs: response times do not tell which names exist.
        cost = max((int(h[4:6]) for h in self.hashes.values() if h[4:6].isdigit()),
                   default=10)
        self._decoy = bcrypt.hashpw(secrets.token_bytes(16), bcrypt.gensalt(cost))

    def __contains__(self, name: str) -> bool:
        return name in self.hashes

    async def check(self, name: str, password: str) -> bool:
        """Whether ``password`` is ``name``'s; the bcrypt work runs in a worker thread."""
        if not self.hashes:
            return False
        hashed = self.hashes.get(name)
        candidate = password.encode()

        def verify() -> bool:
            try:
                return bcrypt.checkpw(candidate, hashed or self._decoy)
            except ValueError:  # longer than bcrypt's 72 bytes, or a malformed hash
                return False

        matched = await anyio.to_thread.run_sync(verify)
        return matched and hashed is not None


def parse_scope(text: str) -> str | None:
    """The repository a ``repository:NAME:ACTIONS`` scope asks to pull, else ``None``."""
    kind, _, rest = text.partition(":")
    name, _, actions = rest.rpartition(":")
    if kind != "repository" or not NAME_PATTERN.match(name) or len(name) > 255:
        return None
    wanted = actions.split(",")
    return name if "pull" in wanted or "*" in wanted else None


def _timestamp(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class TokenService:
    """Signs access (and refresh) tokens with the configured key; reads its own tokens back."""

    def __init__(self, config: TokenConfig, users: Users, allows: Allows) -> None:
        self.config = config
        self.users = users
        self.allows = allows
        self.signing = load_signing_key(config.signing_key_file, "auth.token.signing_key_file")
        self.keys: dict[str, VerifyKey] = {self.signing.public.kid: self.signing.public}
        for index, path in enumerate(config.verify_key_files):
            key = load_verify_key(path, f"auth.token.verify_key_files.{index}")
            self.keys.setdefault(key.kid, key)

    def _sign(self, claims: dict[str, Any]) -> str:
        return jwt.encode(claims, self.signing.private, algorithm=self.signing.algorithm,
                          headers={"kid": self.signing.public.kid, "typ": "JWT"})

    def _claims(self, who: str | None, now: int, lifetime: float) -> dict[str, Any]:
        return {"iss": self.config.issuer, "sub": who or "", "aud": self.config.service,
                "exp": now + int(lifetime), "nbf": now, "iat": now,
                "jti": secrets.token_urlsafe(16)}

    def issue(self, who: str | None, scopes: Iterable[str], offline: bool = False
              ) -> dict[str, Any]:
        """The token response: a token for the requested repositories ``who`` may pull."""
        granted: list[str] = []
        for scope in scopes:
            name = parse_scope(scope)
            if name is not None and name not in granted and self.allows(who, name):
                granted.append(name)
                if len(granted) == MAX_SCOPES:
                    break
        now = int(time.time())
        claims = self._claims(who, now, self.config.expires_in)
        claims["access"] = [{"type": "repository", "name": n, "actions": ["pull"]}
                            for n in granted]
        token = self._sign(claims)
        body: dict[str, Any] = {
            "token": token, "access_token": token, "expires_in": int(self.config.expires_in),
            "issued_at": _timestamp(now),
            "scope": " ".join(f"repository:{n}:pull" for n in granted),
        }
        if offline and who is not None:
            refresh = self._claims(who, now, self.config.refresh_expires_in)
            body["refresh_token"] = self._sign({**refresh, "token_use": "refresh"})
        return body

    def decode(self, token: str) -> dict[str, Any]:
        """The claims of a token this service signed (signature, time, issuer, audience).

        Raises ``jwt.PyJWTError`` for anything else, including keys it does not hold.
        """
        kid = jwt.get_unverified_header(token).get("kid")
        key = self.keys.get(kid) if isinstance(kid, str) else None
        if key is None:
            raise jwt.InvalidKeyError("unknown kid")
        claims: dict[str, Any] = jwt.decode(
            token, key.key, algorithms=list(key.algorithms), audience=self.config.service,
            issuer=self.config.issuer, leeway=CLOCK_SKEW,
            options={"require": ["exp", "nbf", "iat", "iss", "aud", "sub"]})
        return claims

    def refreshed(self, refresh_token: str) -> str:
        """The user a refresh token was issued to, if it is valid and they still exist."""
        try:
            claims = self.decode(refresh_token)
        except (jwt.PyJWTError, ValueError, TypeError):
            raise _unauthorized(self.config.service, "invalid refresh token") from None
        who = claims.get("sub")
        if claims.get("token_use") != "refresh" or not isinstance(who, str) or \
                who not in self.users:
            raise _unauthorized(self.config.service, "invalid refresh token")
        return who


def _unauthorized(service: str, reason: str) -> RegistryError:
    return RegistryError(ErrorCode.UNAUTHORIZED, {"reason": reason},
                         headers={"WWW-Authenticate": f'Basic realm="{service}"'})


def _basic(header: str | None) -> tuple[str, str] | None:
    if not header:
        return None
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode()
        name, sep, password = decoded.partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return ("", "")  # present but unreadable: wrong credentials, not anonymous
    return (name, password) if sep else ("", "")


async def _form(request: Request) -> dict[str, list[str]]:
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            raise RegistryError(ErrorCode.SIZE_INVALID, {"max": MAX_FORM_BYTES})
    form: dict[str, list[str]] = {}
    for key, value in parse_qsl(body.decode("latin-1"), keep_blank_values=True):
        form.setdefault(key, []).append(value)
    return form


async def token_endpoint(request: Request) -> Response:
    """``GET``/``POST /token``: credentials in, ``{token, access_token, expires_in, ...}`` out."""
    tokens: TokenService | None = request.app.state.tokens
    if tokens is None:
        raise RegistryError(ErrorCode.NOT_FOUND, {"path": request.url.path[:200]})
    service = tokens.config.service
    who: str | None
    if request.method == "POST":
        form = await _form(request)
        grant = form.get("grant_type", [""])[0]
        scopes = [s for value in form.get("scope", []) for s in value.split()]
        offline = form.get("access_type", [""])[0] == "offline"
        if grant == "password":
            who = form.get("username", [""])[0]
            if not who or not await tokens.users.check(who, form.get("password", [""])[0]):
                raise _unauthorized(service, "incorrect username or password")
        elif grant == "refresh_token":
            who = tokens.refreshed(form.get("refresh_token", [""])[0])
        else:
            raise RegistryError(ErrorCode.UNSUPPORTED, {"grant_type": grant[:50]},
                                "grant_type must be password or refresh_token")
    else:
        scopes = [s for value in request.query_params.getlist("scope") for s in value.split()]
        offline = request.query_params.get("offline_token") == "true"
        credentials = _basic(request.headers.get("authorization"))
        who = None
        if credentials is not None:
            who = credentials[0]
            if not who or not await tokens.users.check(*credentials):
                raise _unauthorized(service, "incorrect username or password")
    return JSONResponse(tokens.issue(who, scopes, offline), headers=_NO_STORE)
