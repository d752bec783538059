"""What the auth tests share: real keys (cryptography), real bcrypt htpasswd lines, minted JWTs.

Helpers, not fixtures: each test builds the ``auth:`` section it is about.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import bcrypt
import httpx
import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from gateway.app import create_app
from gateway.auth import Auth, Policy
from gateway.keys import thumbprint
from registry.config import Config
from tests.gateway.conftest import Seeded

PASSWORDS = {"ci": "ci-password", "deployer": "deployer-password"}
STATIC_TOKEN = "static-node-token-0123456789abcdef"
SERVICE = "regfront"


def write_ec_key(path: Path, curve: ec.EllipticCurve | None = None) -> ec.EllipticCurvePrivateKey:
    key = ec.generate_private_key(curve or ec.SECP256R1())
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                       serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    return key


def write_rsa_key(path: Path) -> rsa.RSAPrivateKey:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                       serialization.PrivateFormat.TraditionalOpenSSL,
                                       serialization.NoEncryption()))
    return key


def htpasswd_line(name: str, password: str) -> str:
    # Cost 4: the lowest bcrypt allows, so tests stay fast; the format is htpasswd -B's.
    return f"{name}:{bcrypt.hashpw(password.encode(), bcrypt.gensalt(4)).decode()}"


@dataclass
class Files:
    """An htpasswd file, an EC signing key and a static token file under one directory."""

    root: Path
    key: ec.EllipticCurvePrivateKey

    @property
    def key_file(self) -> Path:
        return self.root / "token-key.pem"

    @property
    def users_file(self) -> Path:
        return self.root / "htpasswd"

    @property
    def static_file(self) -> Path:
        return self.root / "node-token"

    @property
    def kid(self) -> str:
        return thumbprint(self.key.public_key())

    def public_pem(self) -> bytes:
        return public_pem(self.key)


def public_pem(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.PEM,
                                         serialization.PublicFormat.SubjectPublicKeyInfo)


def make_files(root: Path) -> Files:
    root.mkdir(parents=True, exist_ok=True)
    key = write_ec_key(root / "token-key.pem")
    (root / "htpasswd").write_text(
        "".join(htpasswd_line(n, p) + "\n" for n, p in PASSWORDS.items()))
    (root / "node-token").write_text(STATIC_TOKEN + "\n")
    return Files(root, key)


# docker.io/library/demo: ci and the nodes; other/repo: ci and deployer.
DEFAULT_ACCESS: list[dict[str, Any]] = [
    {"repositories": ["docker.io/library/demo"], "users": ["ci", "nodes"]},
    {"repositories": ["other/*"], "users": ["ci", "deployer"]},
]


def auth_section(files: Files, access: list[dict[str, Any]] | None = None,
                 **extra: Any) -> dict[str, Any]:
    section: dict[str, Any] = {
        "users_file": str(files.users_file),
        "token": {"service": SERVICE, "issuer": "regfront",
                  "signing_key_file": str(files.key_file), "expires_in": 300},
        "static": [{"name": "nodes", "token_file": str(files.static_file)}],
        "access": DEFAULT_ACCESS if access is None else access,
    }
    section.update(extra)
    return section


def make_config(auth: dict[str, Any] | None, **sections: Any) -> Config:
    return Config.model_validate({**sections, "auth": auth})


def client_for(seeded: Seeded, config: Config) -> httpx.AsyncClient:
    app = create_app(config, [seeded.store])
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gateway")


def basic(name: str, password: str) -> dict[str, str]:
    encoded = base64.b64encode(f"{name}:{password}".encode()).decode()
    return {"Authorization": f"Basic {encoded}"}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def fetch_token(client: httpx.AsyncClient, name: str, *repositories: str) -> str:
    """A token from ``GET /token`` (Docker's way) for pulling ``repositories``."""
    params: list[tuple[str, str | int | float | bool | None]] = [("service", SERVICE)]
    params += [("scope", f"repository:{r}:pull") for r in repositories]
    response = await client.get("/token", params=params, headers=basic(name, PASSWORDS[name]))
    assert response.status_code == 200, response.text
    token: str = response.json()["token"]
    return token


def claims(sub: str = "ci", *repositories: str, **override: Any) -> dict[str, Any]:
    """Claims as regfront's token service writes them, valid now for five minutes."""
    now = int(time.time())
    base: dict[str, Any] = {
        "iss": "regfront", "sub": sub, "aud": SERVICE, "iat": now, "nbf": now, "exp": now + 300,
        "jti": "test", "access": [{"type": "repository", "name": r, "actions": ["pull"]}
                                  for r in repositories],
    }
    base.update(override)
    return base


def mint(key: Any, payload: dict[str, Any], kid: str, algorithm: str = "ES256") -> str:
    return jwt.encode(payload, key, algorithm=algorithm, headers={"kid": kid})


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def hs256_with_public_key(payload: dict[str, Any], kid: str, public_pem: bytes) -> str:
    """The algorithm-confusion forgery: HMAC-SHA256 keyed with the verifier's public key PEM
    (PyJWT refuses to make one, so it is assembled by hand)."""
    header = _b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": kid}).encode())
    body = _b64(json.dumps(payload).encode())
    signature = hmac.new(public_pem, f"{header}.{body}".encode(), hashlib.sha256).digest()
    return f"{header}.{body}.{_b64(signature)}"


def alg_none(payload: dict[str, Any], kid: str) -> str:
    header = _b64(json.dumps({"alg": "none", "typ": "JWT", "kid": kid}).encode())
    return f"{header}.{_b64(json.dumps(payload).encode())}."


def tampered(token: str, **changes: Any) -> str:
    """``token`` with its payload edited and the original signature kept."""
    header, body, signature = token.split(".")
    payload = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    payload.update(changes)
    return f"{header}.{_b64(json.dumps(payload).encode())}.{signature}"


def policy_for(config: Config) -> Policy:
    """The access policy for ``config``, with its mirror index built as the app builds it."""
    return Policy(config, config.mirror_index())


def auth_for(config: Config) -> Auth:
    """Client auth for ``config`` (reads its files: ConfigError), as the app builds it."""
    return Auth(config, config.mirror_index())
