"""Fixtures shared by every test package."""

from __future__ import annotations

import os

# The tests use grpc (the CRI client) in the same process that forks servers with a preexec_fn
# (tests/e2e/harness.py): grpc's fork handlers then break the child's event engine and abort it
# before exec ("epoll_wait error: Bad file descriptor", SIGABRT). No test forks to run grpc in
# the child, so they are off; this must precede the first ``import grpc``.
os.environ["GRPC_ENABLE_FORK_SUPPORT"] = "false"

import uuid
from collections import Counter
from collections.abc import AsyncIterable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import pytest

from registry.store import ObjectStore, Reader, presigner
from tests.emulators import Azurite, FakeGCS, serving_azurite, serving_fake_gcs


class CountingStore:
    """Wraps a real store and counts calls per method: how the hot-path tests see store traffic."""

    def __init__(self, inner: ObjectStore) -> None:
        self.inner = inner
        self.url = inner.url
        self.calls: Counter[str] = Counter()

    def reset(self) -> None:
        self.calls.clear()

    @property
    def reads(self) -> int:
        return sum(self.calls[m] for m in ("get", "size", "read", "children"))

    async def get(self, key: str) -> bytes:
        self.calls["get"] += 1
        return await self.inner.get(key)

    async def size(self, key: str) -> int:
        self.calls["size"] += 1
        return await self.inner.size(key)

    async def read(self, key: str, start: int = 0, length: int | None = None) -> Reader:
        self.calls["read"] += 1
        return await self.inner.read(key, start, length)

    async def put(self, key: str, data: bytes) -> None:
        self.calls["put"] += 1
        await self.inner.put(key, data)

    async def put_stream(self, key: str, chunks: AsyncIterable[bytes]) -> None:
        self.calls["put_stream"] += 1
        await self.inner.put_stream(key, chunks)

    async def children(self, prefix: str) -> list[str]:
        self.calls["children"] += 1
        return await self.inner.children(prefix)

    async def delete(self, key: str) -> None:
        self.calls["delete"] += 1
        await self.inner.delete(key)

    async def get_versioned(self, key: str) -> tuple[bytes, str]:
        self.calls["get_versioned"] += 1
        return await self.inner.get_versioned(key)

    async def create(self, key: str, data: bytes) -> str:
        self.calls["create"] += 1
        return await self.inner.create(key, data)

    async def replace(self, key: str, data: bytes, version: str) -> str:
        self.calls["replace"] += 1
        return await self.inner.replace(key, data, version)

    async def close(self) -> None:
        await self.inner.close()


class CountingPresigner(CountingStore):
    """A ``CountingStore`` over a store that pre-signs (S3): signing is counted, not a read."""

    async def presign_get(self, key: str, expires_in: int) -> str:
        self.calls["presign_get"] += 1
        signer = presigner(self.inner)
        assert signer is not None
        return await signer.presign_get(key, expires_in)


@dataclass(frozen=True)
class MotoS3:
    """A running moto S3 server, its fake credentials, and a plain botocore client to inspect it."""

    endpoint: str
    region: str
    access_key: str
    secret_key: str
    admin: Any  # botocore S3 client (untyped)

    def new_bucket(self) -> str:
        """A fresh, empty bucket: tests share the server, never a bucket."""
        name = f"test-{uuid.uuid4().hex[:16]}"
        self.admin.create_bucket(Bucket=name)
        return name

    def url(self, bucket: str, prefix: str = "", **options: str) -> str:
        """The store URL for ``bucket`` on this server; ``options`` add to the query."""
        query = urlencode({"endpoint": self.endpoint, "region": self.region, **options})
        return f"s3://{bucket}{'/' + prefix if prefix else ''}?{query}"


@pytest.fixture(scope="session")
def moto_s3() -> Iterator[MotoS3]:
    """One in-process moto server for the session, on a free port.

    Stores get the endpoint from their URL, but credentials only from the AWS chain: so for the
    rest of the session (from the first test that asks for S3) the environment holds fake keys and
    none of a developer's AWS settings (profile, endpoint, config files), and is restored at exit.
    Nothing else in the suite reads AWS_* variables.
    """
    # Imported here: moto pulls in Flask and every AWS model, a cost runs without S3 skip.
    import botocore.session
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint, region = f"http://{host}:{port}", "us-east-1"
    access_key, secret_key = "regfront-test-key", "regfront-test-secret"
    with pytest.MonkeyPatch.context() as env:
        for name in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SESSION_TOKEN", "AWS_REGION",
                     "AWS_DEFAULT_REGION", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
            env.delenv(name, raising=False)
        env.setenv("AWS_CONFIG_FILE", "/nonexistent/regfront-test/config")
        env.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/regfront-test/credentials")
        env.setenv("AWS_ACCESS_KEY_ID", access_key)
        env.setenv("AWS_SECRET_ACCESS_KEY", secret_key)
        admin = botocore.session.get_session().create_client(
            "s3", endpoint_url=endpoint, region_name=region)
        moto = MotoS3(endpoint, region, access_key, secret_key, admin)
        try:
            yield moto
        finally:
            admin.close()
            server.stop()


@pytest.fixture
def s3_url(moto_s3: MotoS3) -> str:
    """The URL of an S3 store on a fresh bucket of the session's moto server."""
    return moto_s3.url(moto_s3.new_bucket())


@pytest.fixture(scope="session")
def fake_gcs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FakeGCS]:
    """One fake-gcs-server for the session (tests/emulators.py); ADC is a test key file."""
    with serving_fake_gcs(tmp_path_factory.mktemp("fake-gcs")) as server:
        yield server


@pytest.fixture
def gcs_url(fake_gcs: FakeGCS) -> str:
    """The URL of a GCS store on a fresh bucket of the session's fake-gcs-server."""
    return fake_gcs.url(fake_gcs.new_bucket())


@pytest.fixture(scope="session")
def azurite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Azurite]:
    """One Azurite for the session (tests/emulators.py); its key is in the environment."""
    with serving_azurite(tmp_path_factory.mktemp("azurite")) as server:
        yield server


@pytest.fixture
def azure_url(azurite: Azurite) -> str:
    """The URL of an Azure store on a fresh container of the session's Azurite."""
    return azurite.url(azurite.new_container())
