"""V4 signed URLs for Cloud Storage (GOOG4-RSA-SHA256): the gs:// store's blob redirects.

The signature is made locally when the credentials hold a service account's private key (a key
file in GOOGLE_APPLICATION_CREDENTIALS), and otherwise by the IAM Credentials API's signBlob as
the store's service account (Workload Identity, Cloud Run, GCE: no key on the machine). That
account needs ``roles/iam.serviceAccountTokenCreator`` on itself, and every URL costs one
signBlob call: the gateway reuses each URL for half its lifetime (gateway/resolve.py).

Why not gcloud-aio-storage's ``Blob.get_signed_url``: it fixes the host when the module is
imported (from STORAGE_EMULATOR_HOST, always as https), so it cannot sign for a store's own
``endpoint``, and it parses the PEM key again for every URL. The canonical request below is
Google's documented V4 algorithm; tests/registry/test_gcs.py pins it to Google's published
V4 signing test vectors.
"""

from __future__ import annotations

import datetime
import hashlib
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import quote

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from gcloud.aio.auth import IamClient, decode

ALGORITHM = "GOOG4-RSA-SHA256"
MAX_EXPIRY = 7 * 24 * 3600  # V4's ceiling
GOOGLE_HOST = "storage.googleapis.com"


class Signer(Protocol):
    """Who signs: the service account named in each URL's credential, and its RSA signature."""

    email: str

    async def sign(self, payload: bytes) -> bytes: ...


class KeySigner:
    """Signs with a service account key held in memory (a key file's ``private_key``)."""

    def __init__(self, email: str, private_key_pem: str) -> None:
        key = serialization.load_pem_private_key(private_key_pem.encode(), password=None)
        if not isinstance(key, rsa.RSAPrivateKey):
            raise ValueError("a service account key is RSA")
        self.email = email
        self._key = key  # parsed once: loading a PEM key costs more than signing with it

    async def sign(self, payload: bytes) -> bytes:
        return self._key.sign(payload, padding.PKCS1v15(), hashes.SHA256())


class IAMSigner:
    """Signs through the IAM Credentials API (signBlob) as ``email``: no key leaves Google."""

    def __init__(self, email: str, iam: IamClient) -> None:
        self.email = email
        self._iam = iam

    async def sign(self, payload: bytes) -> bytes:
        answer = await self._iam.sign_blob(payload, service_account_email=self.email)
        return decode(answer["signedBlob"])


@dataclass(frozen=True)
class Target:
    """Where signed URLs point: ``https://storage.googleapis.com`` or the store's endpoint."""

    scheme: str = "https"
    host: str = GOOGLE_HOST


async def signed_url(signer: Signer, target: Target, bucket: str, name: str, expires_in: int,
                     now: datetime.datetime, method: str = "GET") -> str:
    """A path-style V4 URL for ``method`` on ``bucket``/``name``, valid ``expires_in`` s."""
    if not 1 <= expires_in <= MAX_EXPIRY:
        raise ValueError(f"expires_in {expires_in} is outside 1..{MAX_EXPIRY}")
    moment = now.astimezone(datetime.UTC)
    scope = f"{moment:%Y%m%d}/auto/storage/goog4_request"
    timestamp = f"{moment:%Y%m%dT%H%M%SZ}"
    query = _canonical_query({
        "X-Goog-Algorithm": ALGORITHM,
        "X-Goog-Credential": f"{signer.email}/{scope}",
        "X-Goog-Date": timestamp,
        "X-Goog-Expires": str(expires_in),
        "X-Goog-SignedHeaders": "host",
    })
    path = f"/{bucket}/{quote(name, safe='/~')}"
    canonical = "\n".join([method, path, query, f"host:{target.host}\n", "host",
                           "UNSIGNED-PAYLOAD"])
    to_sign = "\n".join([ALGORITHM, timestamp, scope,
                         hashlib.sha256(canonical.encode()).hexdigest()])
    signature = (await signer.sign(to_sign.encode())).hex()
    return f"{target.scheme}://{target.host}{path}?{query}&X-Goog-Signature={signature}"


def _canonical_query(params: dict[str, str]) -> str:
    return "&".join(f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in sorted(params.items()))



def utc_now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)
