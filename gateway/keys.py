"""Token keys: PEM files for regfront's own tokens, JWK sets for external issuers.

Every key carries the algorithms its type allows and nothing else: a verifier passes exactly
those to ``jwt.decode``, so ``alg: none`` and HMAC-with-the-public-key ("algorithm confusion")
tokens are refused by construction. A key's ``kid`` is its RFC 7638 thumbprint: stable across
restarts and replicas, so gateways sharing a key agree on it and a rotation needs no naming.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa

from registry.authconfig import IssuerConfig
from registry.errors import ConfigError
from registry.flight import SingleFlight

logger = logging.getLogger("regfront.gateway")

PublicKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey | \
    ed448.Ed448PublicKey
PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
_EC_ALGORITHMS = {"secp256r1": "ES256", "secp384r1": "ES384", "secp521r1": "ES512"}
_RSA_ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512")
UNKNOWN_KID_INTERVAL = 60.0  # a token naming an unknown key refetches a JWKS at most this often
MAX_JWKS_BYTES = 1024 * 1024


@dataclass(frozen=True, slots=True)
class VerifyKey:
    kid: str
    key: PublicKey
    algorithms: tuple[str, ...]  # what a token signed with this key may say in ``alg``


@dataclass(frozen=True, slots=True)
class SigningKey:
    private: PrivateKey
    algorithm: str
    public: VerifyKey


def key_algorithms(key: PublicKey) -> tuple[str, ...]:
    """Every JWS algorithm a key of this type and size can verify."""
    if isinstance(key, rsa.RSAPublicKey):
        return _RSA_ALGORITHMS
    if isinstance(key, ec.EllipticCurvePublicKey):
        algorithm = _EC_ALGORITHMS.get(key.curve.name)
        return (algorithm,) if algorithm else ()
    return ("EdDSA",)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _int_bytes(value: int, length: int | None = None) -> bytes:
    return value.to_bytes(length or max(1, (value.bit_length() + 7) // 8), "big")


def thumbprint(key: PublicKey) -> str:
    """The RFC 7638 JWK thumbprint (SHA-256, base64url): the key's ``kid``."""
    members: dict[str, str]
    if isinstance(key, rsa.RSAPublicKey):
        numbers = key.public_numbers()
        members = {"e": _b64(_int_bytes(numbers.e)), "kty": "RSA",
                   "n": _b64(_int_bytes(numbers.n))}
    elif isinstance(key, ec.EllipticCurvePublicKey):
        point = key.public_numbers()
        size = (key.curve.key_size + 7) // 8
        crv = {"secp256r1": "P-256", "secp384r1": "P-384", "secp521r1": "P-521"}
        members = {"crv": crv.get(key.curve.name, key.curve.name), "kty": "EC",
                   "x": _b64(_int_bytes(point.x, size)), "y": _b64(_int_bytes(point.y, size))}
    else:
        raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        members = {"crv": "Ed25519" if isinstance(key, ed25519.Ed25519PublicKey) else "Ed448",
                   "kty": "OKP", "x": _b64(raw)}
    canonical = json.dumps(members, sort_keys=True, separators=(",", ":")).encode()
    return _b64(hashlib.sha256(canonical).digest())


def _read(path: str, key_name: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(f"{key_name}: {path}: cannot read: {exc.strerror}") from None


def load_signing_key(path: str, key_name: str) -> SigningKey:
    """A PEM private key: EC P-256/384/521 signs ES256/384/512, RSA (>= 2048 bits) RS256."""
    data = _read(path, key_name)
    try:
        private = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{key_name}: {path}: not an unencrypted PEM private key "
                          f"({exc})") from None
    if isinstance(private, ec.EllipticCurvePrivateKey) and \
            private.curve.name in _EC_ALGORITHMS:
        algorithm = _EC_ALGORITHMS[private.curve.name]
    elif isinstance(private, rsa.RSAPrivateKey) and private.key_size >= 2048:
        algorithm = "RS256"
    else:
        raise ConfigError(f"{key_name}: {path}: expected an EC (P-256, P-384, P-521) or RSA "
                          "(2048 bits or more) private key")
    public = private.public_key()
    return SigningKey(private, algorithm, VerifyKey(thumbprint(public), public, (algorithm,)))


def load_verify_key(path: str, key_name: str) -> VerifyKey:
    """A PEM public key (or a private key, whose public half is used) of an earlier signer."""
    data = _read(path, key_name)
    try:
        if b"PRIVATE KEY" in data:
            return load_signing_key(path, key_name).public
        public = serialization.load_pem_public_key(data)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{key_name}: {path}: not a PEM key ({exc})") from None
    if isinstance(public, ec.EllipticCurvePublicKey) and public.curve.name in _EC_ALGORITHMS:
        return VerifyKey(thumbprint(public), public, (_EC_ALGORITHMS[public.curve.name],))
    if isinstance(public, rsa.RSAPublicKey) and public.key_size >= 2048:
        return VerifyKey(thumbprint(public), public, ("RS256",))
    raise ConfigError(f"{key_name}: {path}: expected an EC or RSA public key")


def parse_jwks(document: Any, allowed: Sequence[str]) -> dict[str, VerifyKey]:
    """The signature keys of a JWK set, by ``kid``, each limited to ``allowed`` algorithms.

    Symmetric (``oct``) keys and keys for encryption are skipped: a key anyone can read must
    never verify an HMAC. A key without a ``kid`` is filed under its thumbprint.
    """
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise ValueError('not a JWK set (expected {"keys": [...]})')
    keys: dict[str, VerifyKey] = {}
    for entry in document["keys"]:
        if not isinstance(entry, dict) or entry.get("kty") not in ("RSA", "EC", "OKP") or \
                entry.get("use", "sig") != "sig":
            continue
        try:
            key = jwt.PyJWK(entry).key
        except (jwt.PyJWTError, ValueError, TypeError, KeyError) as exc:
            logger.warning("JWKS: skipping key %r: %s", entry.get("kid"), exc)
            continue
        if not isinstance(key, PublicKey):
            continue  # a private JWK published by mistake: not ours to use
        algorithms = tuple(a for a in key_algorithms(key) if a in allowed and
                           a == entry.get("alg", a))
        if algorithms:
            kid = entry.get("kid")
            kid = kid if isinstance(kid, str) and kid else thumbprint(key)
            keys[kid] = VerifyKey(kid, key, algorithms)
    return keys


class IssuerKeys:
    """An external issuer's keys: read once from ``jwks_file``, or fetched from ``jwks_url``.

    A fetched set is kept for ``jwks_max_age``; a token naming a kid the set lacks (the issuer
    rotated) fetches it again at once, but at most once a minute, so garbage tokens cannot
    make the gateway hammer the issuer. A failed fetch keeps the keys it had.
    """

    def __init__(self, config: IssuerConfig, key_name: str) -> None:
        self.config = config
        self.keys: dict[str, VerifyKey] = {}
        self.fetched_at = -float("inf")  # last successful fetch
        self.tried_at = -float("inf")  # last attempt, successful or not
        self._flight = SingleFlight()
        if config.jwks_file is not None:
            data = _read(config.jwks_file, f"{key_name}.jwks_file")
            try:
                self.keys = parse_jwks(json.loads(data), config.algorithms)
            except ValueError as exc:
                raise ConfigError(f"{key_name}.jwks_file: {config.jwks_file}: {exc}") from None
            if not self.keys:
                raise ConfigError(f"{key_name}.jwks_file: {config.jwks_file}: no signature "
                                  f"key for {', '.join(config.algorithms)}")

    async def key(self, kid: str | None) -> VerifyKey | None:
        """The key for ``kid`` (a token without one: the set's only key), fetching if due."""
        if self.config.jwks_url is not None:
            now = time.monotonic()
            stale = now - self.fetched_at >= self.config.jwks_max_age
            unknown = (kid is None and not self.keys) or (kid is not None and kid not in self.keys)
            if (stale or unknown) and now - self.tried_at >= UNKNOWN_KID_INTERVAL:
                await self._flight.do("jwks", self._fetch)
        if kid is None:
            return next(iter(self.keys.values())) if len(self.keys) == 1 else None
        return self.keys.get(kid)

    async def _fetch(self) -> None:
        url = self.config.jwks_url
        assert url is not None
        self.tried_at = time.monotonic()
        try:
            async with httpx.AsyncClient(timeout=self.config.jwks_timeout) as client:
                response = await client.get(url, headers={"Accept": "application/json"})
                response.raise_for_status()
                if len(response.content) > MAX_JWKS_BYTES:
                    raise ValueError("JWKS larger than 1 MiB")
                keys = parse_jwks(response.json(), self.config.algorithms)
        except (TimeoutError, httpx.HTTPError, ValueError) as exc:
            logger.warning("JWKS of issuer %s: fetching %s failed: %s", self.config.issuer,
                           url, exc)
            return
        self.keys = keys
        self.fetched_at = time.monotonic()
