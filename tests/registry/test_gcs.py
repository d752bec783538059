"""What only the GCS store has: its URL, resumable uploads, key prefixes, V4 signed URLs.

The conformance suite (test_store.py) covers the ObjectStore behaviour itself, on
fake-gcs-server. fake-gcs-server checks no signature, so signed URLs are checked here: against
Google's published V4 test vectors, and by verifying each URL's signature with the public key.
"""

from __future__ import annotations

import base64
import datetime
import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import httpx
import pytest
from aiohttp import web
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding

from registry.errors import ConfigError
from registry.store import NotFound, open_store, presigner
from registry.store import gcs as gcs_module
from registry.store.errors import (
    StoreAccessDenied,
    StoreRejected,
    StoreServerError,
    StoreThrottled,
    StoreTimeout,
    StoreUnreachable,
)
from registry.store.gcs import PART_QUANTUM, GCSSettings, GCSStore, parse_url
from registry.store.gcs_signing import KeySigner, Target, signed_url
from tests.e2e.harness import free_port
from tests.emulators import SERVICE_ACCOUNT, FakeGCS, verify_v4_url, write_service_account

KEY = "docker/registry/v2/blobs/sha256/ab/abcd/data"
VECTORS = json.loads((Path(__file__).parent / "data" / "gcs-v4-signatures.json").read_text())


@pytest.fixture
async def make_store() -> AsyncIterator[Callable[..., GCSStore]]:
    """Build GCS stores that are closed when the test ends."""
    stores: list[GCSStore] = []

    def make(url: str, **kwargs: int) -> GCSStore:
        stores.append(GCSStore(url, **kwargs))
        return stores[-1]

    yield make
    for store in stores:
        await store.close()


# -- the URL -----------------------------------------------------------------------------------


def test_a_bare_bucket_takes_every_default() -> None:
    assert parse_url("gs://images") == GCSSettings(bucket="images")


def test_every_option() -> None:
    url = ("gs://images/mirror/eu?endpoint=https://storage.example&service_account=gw@p.iam."
           "gserviceaccount.com&connect_timeout=1.5&read_timeout=30&max_pool_connections=8")
    assert parse_url(url) == GCSSettings(
        bucket="images", prefix="mirror/eu", endpoint="https://storage.example",
        service_account="gw@p.iam.gserviceaccount.com", connect_timeout=1.5, read_timeout=30,
        max_pool_connections=8)


@pytest.mark.parametrize(("url", "why"), [
    ("gs://", "valid bucket name"),
    ("gs://UPPER", "valid bucket name"),
    ("gs://bkt/a//b", "empty, '.' or '..'"),
    ("gs://bkt?region=x", "unknown option 'region'; options: "),
    ("gs://bkt?read_timout=5", "unknown option 'read_timout' (did you mean read_timeout?)"),
    ("gs://bkt?read_timeout=0", "read_timeout must be a positive number"),
    ("gs://bkt?endpoint=storage.example", "endpoint must be an http"),
    ("gs://bkt?service_account=nobody", "service_account must be"),
    ("gs://bkt?max_pool_connections=1&max_pool_connections=2", "given twice"),
    ("gs://bkt#x", "no #fragment"),
])
def test_bad_urls_are_one_line_naming_the_url(url: str, why: str) -> None:
    with pytest.raises(ConfigError) as raised:
        parse_url(url)
    assert url in str(raised.value)
    assert why in str(raised.value)
    with pytest.raises(ConfigError):
        open_store(url)


def test_open_store_builds_a_gcs_store() -> None:
    store = open_store("gs://images/mirror")
    assert isinstance(store, GCSStore)
    assert presigner(store) is store


def test_where_requests_go_and_whether_credentials_are_sent(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("STORAGE_EMULATOR_HOST", raising=False)
    assert GCSSettings(bucket="b").api_root() == ("https://storage.googleapis.com", False)
    # A private endpoint over TLS gets credentials; plain http never does: an emulator.
    assert GCSSettings(bucket="b", endpoint="https://psc.example/").api_root() == (
        "https://psc.example", False)
    assert GCSSettings(bucket="b", endpoint="http://127.0.0.1:1").api_root() == (
        "http://127.0.0.1:1", True)
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", "localhost:4443")  # the convention: no scheme
    assert GCSSettings(bucket="b").api_root() == ("http://localhost:4443", True)


def test_part_size_is_a_multiple_of_gcs_quantum() -> None:
    with pytest.raises(ValueError, match="multiple of 262144"):
        GCSStore("gs://bkt", part_size=PART_QUANTUM + 1)


# -- on fake-gcs-server ------------------------------------------------------------------------


async def _chunks(data: bytes, size: int) -> AsyncIterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i:i + size]


async def test_resumable_upload_in_parts_round_trips(
        fake_gcs: FakeGCS, make_store: Callable[..., GCSStore]) -> None:
    store = make_store(fake_gcs.url(fake_gcs.new_bucket()), part_size=PART_QUANTUM)
    for size in (3 * PART_QUANTUM + 17, 2 * PART_QUANTUM):  # a short last part; an exact fit
        data = bytes(range(256)) * (size // 256) + b"x" * (size % 256)
        await store.put_stream(KEY, _chunks(data, 100_000))
        assert await store.get(KEY) == data


async def test_a_failed_resumable_upload_commits_nothing_and_is_cancelled(
        fake_gcs: FakeGCS, make_store: Callable[..., GCSStore],
        monkeypatch: pytest.MonkeyPatch) -> None:
    store = make_store(fake_gcs.url(fake_gcs.new_bucket()), part_size=PART_QUANTUM)
    cancelled: list[str] = []
    real_delete = aiohttp.ClientSession.delete

    def delete(self: aiohttp.ClientSession, url: str, **kwargs: Any) -> Any:
        cancelled.append(url)
        return real_delete(self, url, **kwargs)

    monkeypatch.setattr(aiohttp.ClientSession, "delete", delete)

    async def broken() -> AsyncIterator[bytes]:
        yield b"a" * (2 * PART_QUANTUM)  # a part is sent before the failure
        raise RuntimeError("upstream went away")

    with pytest.raises(RuntimeError):
        await store.put_stream(KEY, broken())
    with pytest.raises(NotFound):
        await store.get(KEY)
    assert len(cancelled) == 1
    assert "upload_id=" in cancelled[0]


async def test_prefixes_isolate_stores_in_one_bucket(
        fake_gcs: FakeGCS, make_store: Callable[..., GCSStore]) -> None:
    bucket = fake_gcs.new_bucket()
    one, two = make_store(fake_gcs.url(bucket, "one")), make_store(fake_gcs.url(bucket, "two"))
    await one.put("k", b"1")
    with pytest.raises(NotFound):
        await two.get("k")
    assert await one.get("k") == b"1"
    root = make_store(fake_gcs.url(bucket))
    assert await root.children("one/") == ["k"]


async def test_children_follows_pagination(
        fake_gcs: FakeGCS, make_store: Callable[..., GCSStore],
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(gcs_module, "LIST_PAGE_SIZE", 2)
    store = make_store(fake_gcs.url(fake_gcs.new_bucket()))
    for name in ("a/x", "b/x", "c", "d", "e/x/y"):
        await store.put(f"t/{name}", b"1")
    assert await store.children("t/") == ["a", "b", "c", "d", "e"]


async def test_reads_past_the_end_and_empty_ranges(
        fake_gcs: FakeGCS, make_store: Callable[..., GCSStore]) -> None:
    store = make_store(fake_gcs.url(fake_gcs.new_bucket()))
    await store.put("k", b"hello")
    assert [c async for c in await store.read("k", 5)] == []
    assert [c async for c in await store.read("k", 2, 0)] == []
    with pytest.raises(NotFound):
        await store.read("absent", 2, 0)


async def test_reads_dropped_unfinished_give_their_connections_back(
        fake_gcs: FakeGCS, make_store: Callable[..., GCSStore]) -> None:
    store = make_store(fake_gcs.url(fake_gcs.new_bucket(), max_pool_connections="2"))
    await store.put("big", b"x" * (3 * 1024 * 1024))
    for _ in range(6):  # three times the pool: each dropped read must release its connection
        chunks = await store.read("big")
        assert len(await anext(chunks)) > 0
        del chunks
    assert await store.get("big") == b"x" * (3 * 1024 * 1024)


async def test_a_missing_bucket_fails_lists_and_writes(
        fake_gcs: FakeGCS, make_store: Callable[..., GCSStore]) -> None:
    store = make_store(fake_gcs.url("no-such-bucket"))
    with pytest.raises(StoreRejected):
        await store.children("t/")
    with pytest.raises(StoreRejected):
        await store.put("k", b"1")
    with pytest.raises(StoreRejected):
        await store.create("k", b"1")
    with pytest.raises(NotFound):  # GCS's 404 is the same for both: a read cannot tell
        await store.get("k")


async def test_the_emulator_host_convention(
        fake_gcs: FakeGCS, make_store: Callable[..., GCSStore],
        monkeypatch: pytest.MonkeyPatch) -> None:
    bucket = fake_gcs.new_bucket()
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", fake_gcs.endpoint.removeprefix("http://"))
    store = make_store(f"gs://{bucket}/p")
    await store.put("k", b"via the variable")
    assert await make_store(fake_gcs.url(bucket, "p")).get("k") == b"via the variable"
    assert urlsplit(await store.presign_get("k", 60)).netloc == urlsplit(fake_gcs.endpoint).netloc


async def test_an_unreachable_endpoint_fails_fast(make_store: Callable[..., GCSStore]) -> None:
    store = make_store("gs://bkt?endpoint=http://127.0.0.1:9&connect_timeout=1")
    with pytest.raises(StoreUnreachable):
        await store.get("k")


@pytest.mark.parametrize(("status", "kind"), [
    (429, StoreThrottled), (401, StoreAccessDenied), (403, StoreAccessDenied),
    (500, StoreServerError), (503, StoreServerError), (400, StoreRejected),
])
def test_answers_map_to_their_kind_by_status(status: int, kind: type[Exception]) -> None:
    error = aiohttp.ClientResponseError(None, (), status=status, message="no")  # type: ignore[arg-type]
    with pytest.raises(kind), gcs_module._failures():
        raise error


@pytest.mark.parametrize(("raised", "kind"), [
    (aiohttp.SocketTimeoutError("slow"), StoreTimeout),
    (TimeoutError(), StoreTimeout),
    (aiohttp.ServerDisconnectedError(), StoreUnreachable),
    (aiohttp.ClientPayloadError("cut"), StoreUnreachable),
    (FileNotFoundError(2, "no key file"), StoreAccessDenied),
])
def test_library_failures_map_to_their_kind_by_type(raised: Exception,
                                                    kind: type[Exception]) -> None:
    with pytest.raises(kind), gcs_module._failures():
        raise raised


def test_anything_else_is_not_a_store_failure() -> None:
    with pytest.raises(KeyError), gcs_module._failures():
        raise KeyError("a bug")


# -- signed URLs -------------------------------------------------------------------------------


@pytest.mark.parametrize("vector", VECTORS["signingV4Tests"], ids=lambda v: v["description"])
async def test_signing_matches_googles_v4_test_vectors(vector: dict[str, str]) -> None:
    account = VECTORS["service_account"]
    signer = KeySigner(account["client_email"], account["private_key"])
    now = datetime.datetime.fromisoformat(vector["timestamp"].replace("Z", "+00:00"))
    url = await signed_url(signer, Target(), vector["bucket"], vector["object"],
                           int(vector["expiration"]), now, vector["method"])
    assert url == vector["expectedUrl"]


async def test_presigned_url_points_at_the_endpoint_verifies_and_fetches(
        fake_gcs: FakeGCS, make_store: Callable[..., GCSStore]) -> None:
    bucket = fake_gcs.new_bucket()
    store = make_store(fake_gcs.url(bucket, "mirror"))
    await store.put(KEY, b"layer bytes")
    url = await store.presign_get(KEY, 600)
    parts = urlsplit(url)
    assert f"{parts.scheme}://{parts.netloc}" == fake_gcs.endpoint
    assert parts.path == f"/{bucket}/mirror/{KEY}"
    query = verify_v4_url(url, fake_gcs.private_key.public_key(), SERVICE_ACCOUNT)
    assert query["X-Goog-Expires"] == "600"
    async with httpx.AsyncClient() as client:
        fetched = await client.get(url)
    assert fetched.status_code == 200
    assert fetched.content == b"layer bytes"


@pytest.mark.parametrize("expires_in", [0, 7 * 24 * 3600 + 1])
async def test_presign_expiry_is_bounded(fake_gcs: FakeGCS, expires_in: int,
                                         make_store: Callable[..., GCSStore]) -> None:
    with pytest.raises(ValueError, match="expires_in"):
        await make_store(fake_gcs.url("bkt")).presign_get(KEY, expires_in)


# -- signing without a key: IAM signBlob, as on GKE with Workload Identity ---------------------


@pytest.fixture
async def google(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                 ) -> AsyncIterator[dict[str, Any]]:
    """A stand-in for the metadata server and the IAM Credentials API, with ADC finding no key
    file: the credentials a pod with Workload Identity has."""
    key = write_service_account(tmp_path / "unused.json")
    port = free_port()
    state: dict[str, Any] = {"key": key, "signed": [], "port": port}
    base = f"http://127.0.0.1:{port}"
    monkeypatch.delenv("GOOGLE_APPLICATION_CREDENTIALS", raising=False)
    monkeypatch.setenv("CLOUDSDK_CONFIG", str(tmp_path / "no-gcloud"))
    monkeypatch.setattr("gcloud.aio.auth.token.GCE_ENDPOINT_TOKEN",
                        f"{base}/computeMetadata/v1/instance/service-accounts/default/token")
    monkeypatch.setattr(gcs_module, "GCE_METADATA_BASE", f"{base}/computeMetadata/v1")
    monkeypatch.setattr("gcloud.aio.auth.iam.API_ROOT_IAM_CREDENTIALS", f"{base}/v1")
    runner = await _serve_google(state)
    yield state
    await runner.cleanup()


async def _serve_google(state: dict[str, Any]) -> web.AppRunner:
    async def token(request: web.Request) -> web.Response:
        assert request.headers["Metadata-Flavor"] == "Google"
        return web.json_response({"access_token": "wi-token", "expires_in": 3600})

    async def email(request: web.Request) -> web.Response:
        assert request.headers["Metadata-Flavor"] == "Google"
        return web.Response(text=SERVICE_ACCOUNT)

    async def sign_blob(request: web.Request) -> web.Response:
        assert request.headers["Authorization"] == "Bearer wi-token"
        payload = base64.b64decode((await request.json())["payload"], altchars=b"-_")
        state["signed"].append((request.match_info["account"], payload))
        signature = state["key"].sign(payload, padding.PKCS1v15(), hashes.SHA256())
        return web.json_response({"keyId": "k", "signedBlob": base64.b64encode(signature)
                                  .decode()})

    app = web.Application()
    metadata = "/computeMetadata/v1/instance/service-accounts/default"
    app.router.add_get(f"{metadata}/token", token)
    app.router.add_get(f"{metadata}/email", email)
    app.router.add_post("/v1/projects/-/serviceAccounts/{account}:signBlob", sign_blob)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", state["port"]).start()
    return runner


async def test_without_a_key_urls_are_signed_by_iam_as_the_metadata_servers_account(
        google: dict[str, Any], make_store: Callable[..., GCSStore]) -> None:
    store = make_store("gs://images/mirror")
    first = await store.presign_get(KEY, 300)
    await store.presign_get(KEY, 300)
    assert urlsplit(first).netloc == "storage.googleapis.com"
    verify_v4_url(first, google["key"].public_key(), SERVICE_ACCOUNT)
    assert [account for account, _ in google["signed"]] == [SERVICE_ACCOUNT] * 2


async def test_a_named_service_account_signs_through_iam(
        google: dict[str, Any], make_store: Callable[..., GCSStore]) -> None:
    other = "signer@p.iam.gserviceaccount.com"
    url = await make_store(f"gs://images?service_account={other}").presign_get(KEY, 60)
    verify_v4_url(url, google["key"].public_key(), other)
    assert [account for account, _ in google["signed"]] == [other]
