"""What only the Azure store has: its URL and credentials, block uploads, key prefixes, SAS URLs.

The conformance suite (test_store.py) covers the ObjectStore behaviour itself, on Azurite.
Azurite checks account-key SAS signatures; it cannot issue user delegation keys without OAuth
over TLS, so the user-delegation path runs here on a stubbed key, its signature recomputed.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import hmac
from collections.abc import AsyncIterator, Callable
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from azure.core.credentials import AccessToken
from azure.core.exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
    ServiceRequestError,
    ServiceResponseError,
    ServiceResponseTimeoutError,
)
from azure.storage import blob as azure_blob
from azure.storage.blob import UserDelegationKey
from azure.storage.blob.aio import BlobServiceClient

from registry.errors import ConfigError
from registry.store import NotFound, open_store, presigner
from registry.store import azure as azure_module
from registry.store.azure import (
    CONNECTION_STRING_ENV,
    Account,
    AzureSettings,
    AzureStore,
    parse_url,
    resolve_account,
)
from registry.store.errors import (
    StoreAccessDenied,
    StoreRejected,
    StoreServerError,
    StoreThrottled,
    StoreTimeout,
    StoreUnreachable,
)
from tests.emulators import AZURITE_ACCOUNT, AZURITE_KEY, Azurite

KEY = "docker/registry/v2/blobs/sha256/ab/abcd/data"


@pytest.fixture
async def make_store() -> AsyncIterator[Callable[[str], AzureStore]]:
    """Build Azure stores that are closed when the test ends."""
    stores: list[AzureStore] = []

    def make(url: str) -> AzureStore:
        stores.append(AzureStore(url))
        return stores[-1]

    yield make
    for store in stores:
        await store.close()


# -- the URL and the credentials ---------------------------------------------------------------


def test_every_option() -> None:
    url = ("az://images/mirror/eu?account=regfront&endpoint=https://blob.example&"
           "connect_timeout=1.5&read_timeout=30&max_attempts=2&max_pool_connections=8")
    assert parse_url(url) == AzureSettings(
        container="images", prefix="mirror/eu", account="regfront",
        endpoint="https://blob.example", connect_timeout=1.5, read_timeout=30, max_attempts=2,
        max_pool_connections=8)


@pytest.mark.parametrize(("url", "why"), [
    ("az://", "valid container name"),
    ("az://Images", "valid container name"),
    ("az://a--b", "valid container name"),
    ("az://images/a//b", "empty, '.' or '..'"),
    ("az://images?account=Not_Valid", "account must be a storage account name"),
    ("az://images?bucket=x", "unknown option 'bucket'"),
    ("az://images?max_attempts=0", "max_attempts must be a whole number"),
])
def test_bad_urls_are_one_line_naming_the_url(url: str, why: str) -> None:
    with pytest.raises(ConfigError) as raised:
        parse_url(url)
    assert url in str(raised.value)
    assert why in str(raised.value)
    with pytest.raises(ConfigError):
        open_store(url)


def test_the_account_comes_from_the_url_or_the_connection_string() -> None:
    url = "az://images?account=regfront"
    assert resolve_account(url, parse_url(url), {}) == Account(
        "regfront", "https://regfront.blob.core.windows.net")
    conn = {CONNECTION_STRING_ENV: "DefaultEndpointsProtocol=https;AccountName=regfront;"
                                   "AccountKey=a2V5==;EndpointSuffix=core.chinacloudapi.cn"}
    assert resolve_account(url, parse_url(url), conn) == Account(
        "regfront", "https://regfront.blob.core.chinacloudapi.cn", "a2V5==")
    bare = "az://images?endpoint=http://127.0.0.1:1/regfront"
    assert resolve_account(bare, parse_url(bare), conn) == Account(
        "regfront", "http://127.0.0.1:1/regfront", "a2V5==")
    with pytest.raises(ConfigError, match="name the storage account"):
        resolve_account("az://images", parse_url("az://images"), {})
    other = "az://images?account=other"
    with pytest.raises(ConfigError, match="'other' is not AZURE_STORAGE_CONNECTION_STRING's"):
        resolve_account(other, parse_url(other), conn)
    with pytest.raises(ConfigError, match="needs AccountName and AccountKey"):
        resolve_account(url, parse_url(url), {CONNECTION_STRING_ENV: "AccountName=regfront"})
    plain = "az://images?account=regfront&endpoint=http://127.0.0.1:1/regfront"
    with pytest.raises(ConfigError, match="token goes over https only"):
        resolve_account(plain, parse_url(plain), {})


def test_open_store_builds_an_azure_store(azurite: Azurite) -> None:
    store = open_store("az://images/mirror")  # the session's connection string names it
    assert isinstance(store, AzureStore)
    assert presigner(store) is store
    assert store.account == Account(AZURITE_ACCOUNT, azurite.endpoint, AZURITE_KEY)


# -- on Azurite --------------------------------------------------------------------------------


async def _chunks(data: bytes, size: int) -> AsyncIterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i:i + size]


async def test_a_stream_goes_up_in_blocks_committed_at_its_end(
        azurite: Azurite, make_store: Callable[[str], AzureStore],
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(azure_module, "BLOCK_SIZE", 64 * 1024)
    store = make_store(azurite.url(azurite.new_container()))
    data = bytes(range(256)) * 1000 + b"tail"  # four blocks and a short one
    await store.put_stream(KEY, _chunks(data, 10_000))
    assert await store.get(KEY) == data

    async def broken() -> AsyncIterator[bytes]:
        yield b"n" * (200 * 1024)  # blocks are staged before the failure
        raise RuntimeError("upstream went away")

    with pytest.raises(RuntimeError):
        await store.put_stream(KEY, broken())
    assert await store.get(KEY) == data


async def test_prefixes_isolate_stores_in_one_container(
        azurite: Azurite, make_store: Callable[[str], AzureStore]) -> None:
    container = azurite.new_container()
    one, two = make_store(azurite.url(container, "one")), make_store(azurite.url(container, "two"))
    await one.put("k", b"1")
    with pytest.raises(NotFound):
        await two.get("k")
    assert await make_store(azurite.url(container)).children("one/") == ["k"]


async def test_children_follows_pagination(
        azurite: Azurite, make_store: Callable[[str], AzureStore],
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(azure_module, "LIST_PAGE_SIZE", 2)
    store = make_store(azurite.url(azurite.new_container()))
    for name in ("a/x", "b/x", "c", "d", "e/x/y"):
        await store.put(f"t/{name}", b"1")
    assert await store.children("t/") == ["a", "b", "c", "d", "e"]


async def test_reads_past_the_end_and_empty_ranges(
        azurite: Azurite, make_store: Callable[[str], AzureStore]) -> None:
    store = make_store(azurite.url(azurite.new_container()))
    await store.put("k", b"hello")
    assert [c async for c in await store.read("k", 5)] == []
    assert [c async for c in await store.read("k", 2, 0)] == []
    assert b"".join([c async for c in await store.read("k", 1, 3)]) == b"ell"
    with pytest.raises(NotFound):
        await store.read("absent", 2, 0)


async def test_a_missing_container_is_a_failure_not_an_absence(
        azurite: Azurite, make_store: Callable[[str], AzureStore]) -> None:
    store = make_store(azurite.url("no-such-container"))
    for attempt in (store.get("k"), store.size("k"), store.read("k"), store.put("k", b"1"),
                    store.create("k", b"1"), store.children("t/"), store.delete("k")):
        with pytest.raises(StoreRejected, match="ContainerNotFound"):
            await attempt


async def test_an_unreachable_endpoint_fails_fast(
        make_store: Callable[[str], AzureStore]) -> None:
    store = make_store(f"az://images?account={AZURITE_ACCOUNT}&max_attempts=1&"
                       "endpoint=http://127.0.0.1:9/x&connect_timeout=1")
    with pytest.raises(StoreUnreachable):
        await store.get("k")


def _http_error(status: int, code: str | None = None) -> HttpResponseError:
    error = HttpResponseError(message="no")
    error.status_code = status
    error.error_code = code  # type: ignore[attr-defined]  # as the storage SDK sets it
    return error


@pytest.mark.parametrize(("raised", "kind"), [
    (ServiceResponseTimeoutError("slow"), StoreTimeout),
    (ServiceRequestError("refused"), StoreUnreachable),
    (ServiceResponseError("reset"), StoreUnreachable),
    (ClientAuthenticationError("no credential"), StoreAccessDenied),
    (_http_error(503, "ServerBusy"), StoreThrottled),
    (_http_error(429), StoreThrottled),
    (_http_error(500, "InternalError"), StoreServerError),
    (_http_error(400, "InvalidHeaderValue"), StoreRejected),
])
def test_library_failures_map_to_their_kind_by_type(raised: Exception,
                                                    kind: type[Exception]) -> None:
    with pytest.raises(kind), azure_module._failures():
        raise raised


def test_anything_else_is_not_a_store_failure() -> None:
    with pytest.raises(KeyError), azure_module._failures():
        raise KeyError("a bug")


# -- SAS URLs ----------------------------------------------------------------------------------


async def test_sas_url_is_read_only_checked_by_azurite_and_fetches(
        azurite: Azurite, make_store: Callable[[str], AzureStore]) -> None:
    container = azurite.new_container()
    store = make_store(azurite.url(container, "mirror"))
    await store.put(KEY, b"layer bytes")
    url = await store.presign_get(KEY, 600)
    parts = urlsplit(url)
    assert url.startswith(f"{azurite.endpoint}/{container}/mirror/{KEY}?")
    query = parse_qs(parts.query)
    assert query["sp"] == ["r"]
    assert query["sr"] == ["b"]
    async with httpx.AsyncClient() as client:
        fetched = await client.get(url)
        assert fetched.status_code == 200
        assert fetched.content == b"layer bytes"
        # Azurite checks the signature: a forged one, or the URL used to write, is refused.
        assert (await client.get(url.replace("sig=", "sig=A"))).status_code == 403
        assert (await client.put(url, content=b"x",
                                 headers={"x-ms-blob-type": "BlockBlob"})).status_code == 403


@pytest.mark.parametrize("expires_in", [0, 7 * 24 * 3600 + 1])
async def test_presign_expiry_is_bounded(azurite: Azurite, expires_in: int,
                                         make_store: Callable[[str], AzureStore]) -> None:
    with pytest.raises(ValueError, match="expires_in"):
        await make_store(azurite.url("images")).presign_get(KEY, expires_in)


class _Identity:
    """A token credential that never leaves the process (DefaultAzureCredential's stand-in)."""

    async def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        return AccessToken("token", 2**40)

    async def close(self) -> None:
        pass


async def test_with_an_identity_urls_are_user_delegation_sas_on_one_reused_key(
        make_store: Callable[[str], AzureStore], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(CONNECTION_STRING_ENV, raising=False)
    monkeypatch.setattr("azure.identity.aio.DefaultAzureCredential", _Identity)
    asked: list[tuple[datetime.datetime, datetime.datetime]] = []
    secret = b"delegation key secret"

    async def get_user_delegation_key(self: BlobServiceClient, key_start_time: datetime.datetime,
                                      key_expiry_time: datetime.datetime,
                                      **kwargs: Any) -> UserDelegationKey:
        asked.append((key_start_time, key_expiry_time))
        key = UserDelegationKey()  # type: ignore[no-untyped-call]
        key.signed_oid, key.signed_tid = "oid-1", "tid-1"
        key.signed_start = f"{key_start_time:%Y-%m-%dT%H:%M:%SZ}"
        key.signed_expiry = f"{key_expiry_time:%Y-%m-%dT%H:%M:%SZ}"
        key.signed_service, key.signed_version = "b", "2025-01-05"
        key.value = base64.b64encode(secret).decode()
        return key

    monkeypatch.setattr(BlobServiceClient, "get_user_delegation_key", get_user_delegation_key)
    signed: list[str] = []
    real_sas = azure_blob.generate_blob_sas

    def generate_blob_sas(*args: Any, **kwargs: Any) -> str:
        return real_sas(*args, sts_hook=signed.append, **kwargs)

    monkeypatch.setattr(azure_module, "generate_blob_sas", generate_blob_sas)
    store = make_store("az://images/mirror?account=regfront")
    first = await store.presign_get(KEY, 1200)
    await store.presign_get(KEY, 3600)
    assert len(asked) == 1  # the key is valid a day: both URLs are signed with it
    longest = await store.presign_get(KEY, 7 * 24 * 3600)
    assert len(asked) == 2  # a URL outliving the key needs a new one

    assert first.startswith(f"https://regfront.blob.core.windows.net/images/mirror/{KEY}?")
    query = {k: v[0] for k, v in parse_qs(urlsplit(first).query).items()}
    assert (query["skoid"], query["sktid"], query["sp"], query["sr"]) == ("oid-1", "tid-1",
                                                                           "r", "b")
    # The signature is HMAC-SHA256 under the delegation key of the string the SDK signed, which
    # names this blob, the read permission and the key's identity.
    assert query["sig"] == base64.b64encode(
        hmac.new(secret, signed[0].encode(), hashlib.sha256).digest()).decode()
    lines = signed[0].split("\n")
    assert lines[0] == "r"
    assert f"/blob/regfront/images/mirror/{KEY}" in lines
    assert "oid-1" in lines
    assert "tid-1" in lines
    # No URL outlives its key.
    expiry = parse_qs(urlsplit(longest).query)["se"][0]
    assert expiry <= f"{asked[1][1]:%Y-%m-%dT%H:%M:%SZ}"
