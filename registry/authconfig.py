"""The ``auth:`` section: who may pull which repositories, and how clients prove who they are.

Absent, the gateway serves everyone (in-cluster use). Present, every repository is denied
unless an ``access`` rule grants it. Only file *paths* live here: the gateway reads them when
it starts (``gateway/auth.py``), so secrets never pass through the config file itself.
Validated as strictly as the rest of the file: see registry/config.py.
"""

from __future__ import annotations

import fnmatch
import re
from typing import Literal

from pydantic import Field, field_validator, model_validator

from registry.configtypes import Duration, StrictModel
from registry.errors import RegistryError
from registry.names import validate_name

GLOB_CHARS = "*?["
# The signature algorithms an external issuer may use: asymmetric only, so a key published in
# a JWKS can never double as an HMAC secret (the "algorithm confusion" attack).
Algorithm = Literal["RS256", "RS384", "RS512", "PS256", "PS384", "PS512",
                    "ES256", "ES384", "ES512", "EdDSA"]
DEFAULT_ALGORITHMS: tuple[Algorithm, ...] = ("RS256", "ES256")
_HEADER_NAME = re.compile(r"^[A-Za-z0-9-]{1,64}$")
_CREDENTIAL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@:-]{0,127}$")


def is_glob(pattern: str) -> bool:
    return any(ch in pattern for ch in GLOB_CHARS)


class TokenConfig(StrictModel):
    """regfront's own token service: Docker/OCI registry token auth with a ``/token`` endpoint."""

    service: str = Field(default="regfront", min_length=1)  # the tokens' audience
    issuer: str = Field(default="regfront", min_length=1)
    # Where clients fetch tokens; default: this gateway's own /token, from the request's Host.
    # Set it when clients reach the gateway through a proxy that changes scheme or host.
    realm: str | None = None
    signing_key_file: str  # PEM private key, EC (ES256/384/512) or RSA (RS256)
    # Earlier signing keys (public or private PEM) whose tokens are still accepted: a rotation
    # keeps the old key here for one expires_in after the new key starts signing.
    verify_key_files: list[str] = Field(default_factory=list)
    expires_in: Duration = Field(default=300.0, ge=10, le=86400)
    # Refresh tokens, issued only when asked for (offline_token / access_type=offline).
    refresh_expires_in: Duration = Field(default=86400.0, ge=60, le=30 * 86400)

    @field_validator("realm")
    @classmethod
    def _realm(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"^https?://[^\s\"]+$", value):
            raise ValueError(f"{value!r} is not an http(s) URL")
        return value


class IssuerConfig(StrictModel):
    """An external token issuer (cloud IAM, Kubernetes service accounts) trusted directly."""

    issuer: str = Field(min_length=1)  # the tokens' ``iss``, exactly
    audience: str = Field(min_length=1)  # their ``aud`` must include it
    jwks_file: str | None = None
    jwks_url: str | None = None
    algorithms: list[Algorithm] = Field(default_factory=lambda: list(DEFAULT_ALGORITHMS),
                                        min_length=1)
    # A JWKS fetched from jwks_url is used for this long, then fetched again on next use; a
    # token naming an unknown key fetches it at once (at most once a minute).
    jwks_max_age: Duration = Field(default=3600.0, ge=60)
    jwks_timeout: Duration = Field(default=5.0, gt=0, le=60)

    @model_validator(mode="after")
    def _one_source(self) -> IssuerConfig:
        if (self.jwks_file is None) == (self.jwks_url is None):
            raise ValueError("set exactly one of jwks_file, jwks_url")
        if self.jwks_url is not None and not self.jwks_url.startswith(("https://", "http://")):
            raise ValueError(f"jwks_url {self.jwks_url!r} is not an http(s) URL")
        return self


class StaticCredential(StrictModel):
    """A shared secret nodes send on every request (containerd's hosts.toml ``header``)."""

    name: str  # the user it authenticates as, for access rules
    token_file: str
    # ``Authorization`` carries ``Bearer <token>``; any other header carries the token itself.
    header: str = "Authorization"

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not _CREDENTIAL_NAME.match(value):
            raise ValueError(f"invalid name {value!r}")
        return value

    @field_validator("header")
    @classmethod
    def _header(cls, value: str) -> str:
        if not _HEADER_NAME.match(value):
            raise ValueError(f"invalid header name {value!r}")
        return value


class AccessRule(StrictModel):
    """Repositories (stored names, fnmatch globs: ``*`` crosses ``/``) and who may pull them."""

    repositories: list[str] = Field(min_length=1)
    users: list[str] = Field(default_factory=list)  # "*": any authenticated user
    anonymous: bool = False

    @field_validator("repositories")
    @classmethod
    def _repositories(cls, values: list[str]) -> list[str]:
        for value in values:
            if is_glob(value):
                try:
                    re.compile(fnmatch.translate(value))
                except re.error as exc:
                    raise ValueError(f"invalid glob {value!r}: {exc}") from None
            else:
                try:
                    validate_name(value)
                except RegistryError:
                    raise ValueError(f"{value!r} is not a repository name (stored names, "
                                     "e.g. docker.io/library/nginx)") from None
        return values

    @property
    def exact(self) -> frozenset[str]:
        """The repositories this rule names without a glob."""
        return frozenset(r for r in self.repositories if not is_glob(r))


class AuthConfig(StrictModel):
    users_file: str | None = None  # htpasswd, bcrypt hashes only (htpasswd -B)
    token: TokenConfig | None = None
    issuers: list[IssuerConfig] = Field(default_factory=list)
    static: list[StaticCredential] = Field(default_factory=list)
    access: list[AccessRule] = Field(min_length=1)
    # Verified tokens kept per worker (by token string, until they expire).
    token_cache_entries: int = Field(default=10_000, ge=0)

    @model_validator(mode="after")
    def _consistent(self) -> AuthConfig:
        if self.users_file is not None and self.token is None:
            # Checking a bcrypt hash costs ~0.1 s: passwords are exchanged for tokens at
            # /token, never sent with each request.
            raise ValueError("users_file needs token: (passwords are exchanged for tokens)")
        names = [s.name for s in self.static]
        if len(set(names)) != len(names):
            raise ValueError("static: duplicate name")
        issuers = [i.issuer for i in self.issuers]
        if len(set(issuers)) != len(issuers):
            raise ValueError("issuers: duplicate issuer")
        if self.token is not None and self.token.issuer in issuers:
            raise ValueError(f"token.issuer {self.token.issuer!r} is also an external issuer")
        return self
