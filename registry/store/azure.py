"""The Azure Blob store (azure-storage-blob, asyncio): a container under an optional key prefix.

``az://container[/prefix]?account=NAME[&endpoint=URL&connect_timeout=SECONDS
&read_timeout=SECONDS&max_attempts=N&max_pool_connections=N]``. Credentials come from
AZURE_STORAGE_CONNECTION_STRING when it is set (an account key: Azurite, or where keys are
allowed), else from azure-identity's DefaultAzureCredential (workload identity on AKS, managed
identity, a service principal's environment, the az CLI): nothing secret goes into the URL.
The endpoint is the URL's, else the connection string's, else ``https://NAME.blob.core.windows.net``.

Blob redirects are SAS URLs: service SAS signed with the account key when the credential is
one, else user-delegation SAS signed with a user delegation key (one Get User Delegation Key
call, reused until it nears its expiry; the identity needs "Storage Blob Delegator" or a data
role that includes it).

Failures leave as the kinds of registry/store/errors.py, mapped from azure-core's exceptions by
type (``_failures``); a missing blob is ``NotFound``, a missing container ``StoreRejected``.
Conditional writes send If-None-Match: * (create) and If-Match: ETAG (replace); the version is
the ETag. ``put_stream`` stages blocks and commits the block list only once the stream has
ended, so a failed stream commits nothing (Azure drops uncommitted blocks after a week).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import os
import re
from collections.abc import AsyncIterable, AsyncIterator, Iterator
from dataclasses import dataclass

import aiohttp
from azure.core import MatchConditions
from azure.core.credentials import AzureNamedKeyCredential
from azure.core.credentials_async import AsyncTokenCredential
from azure.core.exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceRequestTimeoutError,
    ServiceResponseError,
    ServiceResponseTimeoutError,
)
from azure.core.pipeline.transport import AioHttpTransport
from azure.storage.blob import (
    BlobSasPermissions,
    ContentSettings,
    UserDelegationKey,
    generate_blob_sas,
)
from azure.storage.blob.aio import BlobServiceClient, ContainerClient, ExponentialRetry

from registry.errors import ConfigError
from registry.store import CHUNK_SIZE, NotFound, PreconditionFailed, Reader, check_key
from registry.store.body import check_range, empty
from registry.store.errors import (
    StoreAccessDenied,
    StoreError,
    StoreRejected,
    StoreServerError,
    StoreThrottled,
    StoreTimeout,
    StoreUnreachable,
)
from registry.store.options import (
    AT_LEAST_ONE,
    DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_MAX_ATTEMPTS,
    DEFAULT_MAX_POOL_CONNECTIONS,
    DEFAULT_READ_TIMEOUT,
    HTTP_URL,
    SECONDS,
    Option,
    parse_store_url,
)

BLOCK_SIZE = 8 * 1024 * 1024  # put_stream's blocks
GET_SIZE = 4 * CHUNK_SIZE  # per ranged GET: the SDK's 32 MiB default would sit in memory
MAX_PRESIGN_EXPIRY = 7 * 24 * 3600  # a user delegation key lives 7 days at most
DELEGATION_KEY_LIFETIME = datetime.timedelta(days=1)
CLOCK_SKEW = datetime.timedelta(minutes=5)
LIST_PAGE_SIZE = 5000  # List Blobs' maximum; tests shrink it to see pagination
OCTET_STREAM = ContentSettings(content_type="application/octet-stream")
CONNECTION_STRING_ENV = "AZURE_STORAGE_CONNECTION_STRING"

_CONTAINER = re.compile(r"[a-z0-9](?!.*--)[a-z0-9-]{1,61}[a-z0-9]")
_ACCOUNT = re.compile(r"[a-z0-9]{3,24}")
_OPTIONS: dict[str, Option] = {
    "account": (str, _ACCOUNT.fullmatch, "must be a storage account name (3-24 a-z, 0-9)"),
    "endpoint": HTTP_URL,
    "connect_timeout": SECONDS,
    "read_timeout": SECONDS,
    "max_attempts": AT_LEAST_ONE,
    "max_pool_connections": AT_LEAST_ONE,
}


@dataclass(frozen=True, kw_only=True)
class AzureSettings:
    """Everything an ``az://`` URL says; ``parse_url`` builds it."""

    container: str
    prefix: str = ""
    account: str | None = None
    endpoint: str | None = None
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT
    read_timeout: float = DEFAULT_READ_TIMEOUT
    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    max_pool_connections: int = DEFAULT_MAX_POOL_CONNECTIONS


def parse_url(url: str) -> AzureSettings:
    """Read an ``az://`` storage URL; any mistake is a one-line ``ConfigError`` naming it."""
    parsed = parse_store_url(url, "az", _CONTAINER, "container", _OPTIONS)
    return AzureSettings(container=parsed.container, prefix=parsed.prefix, **parsed.options)


@dataclass(frozen=True)
class Account:
    """Which account, at which endpoint, and its shared key if the credential is one."""

    name: str
    endpoint: str
    key: str | None = None


def resolve_account(url: str, settings: AzureSettings, environ: dict[str, str]) -> Account:
    """The account from the URL and the AZURE_STORAGE_CONNECTION_STRING convention."""
    def bad(why: str) -> ConfigError:
        return ConfigError(f"storage url {url!r}: {why}")

    conn = environ.get(CONNECTION_STRING_ENV)
    if not conn:
        if settings.account is None:
            raise bad(f"name the storage account (?account=NAME) or set {CONNECTION_STRING_ENV}")
        endpoint = settings.endpoint or f"https://{settings.account}.blob.core.windows.net"
        if not endpoint.startswith("https://"):
            # The SDK sends an Azure AD token over TLS only (its ValueError would read as a bug).
            raise bad(f"endpoint {endpoint!r}: an identity's token goes over https only; for an "
                      f"emulator over http, give its account key in {CONNECTION_STRING_ENV}")
        return Account(settings.account, endpoint)
    # Key=value pairs split on ';'; a base64 key's '=' padding stays in its value.
    fields = dict(part.split("=", 1) for part in conn.split(";") if "=" in part)
    name = fields.get("AccountName")
    if not name or not fields.get("AccountKey"):
        raise bad(f"{CONNECTION_STRING_ENV} needs AccountName and AccountKey")
    if settings.account not in (None, name):
        raise bad(f"account {settings.account!r} is not {CONNECTION_STRING_ENV}'s ({name!r})")
    endpoint = settings.endpoint or fields.get("BlobEndpoint") or (
        f"{fields.get('DefaultEndpointsProtocol', 'https')}://{name}.blob."
        f"{fields.get('EndpointSuffix', 'core.windows.net')}")
    return Account(name, endpoint, fields["AccountKey"])


class AzureStore:
    def __init__(self, url: str) -> None:
        self.url = url
        self.settings = parse_url(url)
        self.account = resolve_account(url, self.settings, dict(os.environ))
        self._service: BlobServiceClient | None = None
        self._container: ContainerClient | None = None
        self._credential: AsyncTokenCredential | None = None
        self._session: aiohttp.ClientSession | None = None
        self._delegation: UserDelegationKey | None = None
        self._lock = asyncio.Lock()

    def _name(self, key: str) -> str:
        check_key(key)
        return f"{self.settings.prefix}/{key}" if self.settings.prefix else key

    async def _client(self) -> ContainerClient:
        # The aiohttp session binds to the running loop: so opened here, not in __init__.
        if self._container is None:
            async with self._lock:
                if self._container is None:
                    self._container = self._open()
        return self._container

    def _open(self) -> ContainerClient:
        settings = self.settings
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=settings.max_pool_connections))
        credential: AzureNamedKeyCredential | AsyncTokenCredential
        if self.account.key is not None:
            credential = AzureNamedKeyCredential(self.account.name, self.account.key)
        else:
            from azure.identity.aio import DefaultAzureCredential

            credential = self._credential = DefaultAzureCredential()
        self._service = BlobServiceClient(
            self.account.endpoint, credential=credential,
            transport=AioHttpTransport(session=self._session, session_owner=False),
            connection_timeout=settings.connect_timeout, read_timeout=settings.read_timeout,
            # The SDK's default waits 15 s and more between its 10 retries: a pull that
            # waits that long has long gone to the upstream.
            # Here: a random wait under a second, then about 2 s, 4 s, ...
            retry_policy=ExponentialRetry(initial_backoff=0, increment_base=2,
                                          retry_total=settings.max_attempts - 1,
                                          random_jitter_range=1),
            max_single_get_size=GET_SIZE, max_chunk_get_size=GET_SIZE,
            max_block_size=BLOCK_SIZE, max_single_put_size=BLOCK_SIZE)
        return self._service.get_container_client(settings.container)

    async def get(self, key: str) -> bytes:
        with _failures(), _absent_is(NotFound(key)):
            blob = (await self._client()).get_blob_client(self._name(key))
            return await (await blob.download_blob()).readall()

    async def size(self, key: str) -> int:
        with _failures(), _absent_is(NotFound(key)):
            blob = (await self._client()).get_blob_client(self._name(key))
            return int((await blob.get_blob_properties()).size)

    async def read(self, key: str, start: int = 0, length: int | None = None) -> Reader:
        check_range(start, length)
        if length == 0:  # HTTP has no empty Range; still say NotFound for a missing key
            return Reader(await self.size(key), empty())
        with _failures(), _absent_is(NotFound(key)):
            blob = (await self._client()).get_blob_client(self._name(key))
            try:
                # Opens with the first ranged GET (NotFound now); later chunks are GETs of
                # their own, pinned to this ETag, each read whole: none holds a connection.
                download = await blob.download_blob(
                    offset=start if start or length is not None else None, length=length)
            except HttpResponseError as e:
                if e.status_code != 416:
                    raise
                # The object exists but ends before ``start``: no bytes.
                return Reader(await self.size(key), empty())
        # The SDK's content range ends in the blob's whole size (its ``size`` is the range's).
        whole = (download.properties.content_range or "").rpartition("/")[2]
        size = int(whole) if whole.isdigit() else await self.size(key)
        return Reader(size, _chunks(download.chunks()))

    async def get_versioned(self, key: str) -> tuple[bytes, str]:
        with _failures(), _absent_is(NotFound(key)):
            blob = (await self._client()).get_blob_client(self._name(key))
            download = await blob.download_blob()
            return await download.readall(), str(download.properties.etag)

    async def put(self, key: str, data: bytes) -> None:
        with _failures(), _absent_is(None):
            blob = (await self._client()).get_blob_client(self._name(key))
            await blob.upload_blob(data, overwrite=True, content_settings=OCTET_STREAM)

    async def create(self, key: str, data: bytes) -> str:
        with _failures(), _absent_is(None):
            blob = (await self._client()).get_blob_client(self._name(key))
            try:  # overwrite=False: If-None-Match: *
                written = await blob.upload_blob(data, overwrite=False,
                                                 content_settings=OCTET_STREAM)
            except (ResourceExistsError, ResourceModifiedError):
                raise PreconditionFailed(key) from None
            return str(written["etag"])

    async def replace(self, key: str, data: bytes, version: str) -> str:
        with _failures(), _absent_is(PreconditionFailed(key)):  # gone is changed, too
            blob = (await self._client()).get_blob_client(self._name(key))
            try:
                written = await blob.upload_blob(
                    data, overwrite=True, content_settings=OCTET_STREAM, etag=version,
                    match_condition=MatchConditions.IfNotModified)
            except ResourceModifiedError:
                raise PreconditionFailed(key) from None
            return str(written["etag"])

    async def put_stream(self, key: str, chunks: AsyncIterable[bytes]) -> None:
        with _failures(), _absent_is(None):
            blob = (await self._client()).get_blob_client(self._name(key))
            # A stream of unknown length goes up as staged blocks, committed at its end.
            await blob.upload_blob(chunks, overwrite=True, content_settings=OCTET_STREAM)

    async def children(self, prefix: str) -> list[str]:
        full_prefix = self._name(prefix)
        names: set[str] = set()
        with _failures(), _absent_is(None):
            container = await self._client()
            async for item in container.walk_blobs(name_starts_with=full_prefix, delimiter="/",
                                                   results_per_page=LIST_PAGE_SIZE):
                names.add(item.name[len(full_prefix):].rstrip("/"))
        names.discard("")  # an object named exactly ``prefix`` is not a child
        return sorted(names)

    async def list_keys(self, prefix: str) -> list[str]:
        """Every key under ``prefix``: one flat listing, a page per thousand blobs."""
        full_prefix = self._name(prefix)
        strip = len(full_prefix) - len(prefix)  # the store's own prefix
        found: list[str] = []
        with _failures(), _absent_is(None):
            container = await self._client()
            async for item in container.list_blobs(name_starts_with=full_prefix,
                                                   results_per_page=LIST_PAGE_SIZE):
                found.append(item.name[strip:])
        return sorted(found)

    async def delete(self, key: str) -> None:
        with _failures():
            blob = (await self._client()).get_blob_client(self._name(key))
            try:
                await blob.delete_blob()
            except ResourceNotFoundError as error:
                if _code(error) != "BlobNotFound":  # gone already: that is no error
                    raise StoreRejected(f"{error.status_code} {_code(error)}") from error

    async def presign_get(self, key: str, expires_in: int) -> str:
        """A read-only SAS URL for ``key`` valid ``expires_in`` seconds (at most 7 days).

        A user-delegation SAS dies with its key (revoked, or expired: never before the URL).
        """
        if not 1 <= expires_in <= MAX_PRESIGN_EXPIRY:
            raise ValueError(f"expires_in {expires_in} is outside 1..{MAX_PRESIGN_EXPIRY}")
        name = self._name(key)
        now = datetime.datetime.now(datetime.UTC)
        expiry = now + datetime.timedelta(seconds=expires_in)
        with _failures():
            blob = (await self._client()).get_blob_client(name)
            if self.account.key is not None:
                sas = generate_blob_sas(self.account.name, self.settings.container, name,
                                        account_key=self.account.key,
                                        permission=BlobSasPermissions(read=True), expiry=expiry)
            else:
                delegation = await self._delegation_key(now, expiry)
                sas = generate_blob_sas(self.account.name, self.settings.container, name,
                                        user_delegation_key=delegation,
                                        permission=BlobSasPermissions(read=True), expiry=expiry)
        return f"{blob.url}?{sas}"

    async def _delegation_key(self, now: datetime.datetime,
                              expiry: datetime.datetime) -> UserDelegationKey:
        """A user delegation key valid past ``expiry``: the one held, or a new one."""
        async with self._lock:
            held = self._delegation
            if held is None or _parse_time(held.signed_expiry) < expiry:
                assert self._service is not None
                until = min(max(expiry, now + DELEGATION_KEY_LIFETIME),
                            now + datetime.timedelta(seconds=MAX_PRESIGN_EXPIRY))
                held = self._delegation = await self._service.get_user_delegation_key(
                    now - CLOCK_SKEW, until)
            return held

    async def close(self) -> None:
        async with self._lock:
            service, credential, session = self._service, self._credential, self._session
            self._service = self._container = self._credential = self._session = None
            self._delegation = None
            if service is not None:
                await service.close()
            if credential is not None:
                await credential.close()
            if session is not None:
                await session.close()  # ours: the transport was told it does not own it


def _code(error: HttpResponseError) -> str | None:
    """The storage error code (BlobNotFound, ContainerNotFound, ...), which the storage SDK
    sets on the exceptions it raises (from x-ms-error-code: HEAD answers have no body)."""
    code = getattr(error, "error_code", None)
    return None if code is None else str(code)


def _parse_time(value: str | None) -> datetime.datetime:
    if not value:
        return datetime.datetime.min.replace(tzinfo=datetime.UTC)
    return datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))


@contextlib.contextmanager
def _absent_is(replacement: Exception | None) -> Iterator[None]:
    """A missing blob out of the block leaves as ``replacement`` (None: as a failure); a
    missing container always as ``StoreRejected``: a misconfiguration, not an absent key."""
    try:
        yield
    except ResourceNotFoundError as error:
        if _code(error) == "BlobNotFound" and replacement is not None:
            raise replacement from None
        raise StoreRejected(f"{error.status_code} {_code(error)}") from error


@contextlib.contextmanager
def _failures() -> Iterator[None]:
    """azure-core's exceptions as the store failure kinds, by type; absence and lost conditions
    are raised as ``NotFound``/``PreconditionFailed`` inside, before this."""
    try:
        yield
    except (ServiceRequestTimeoutError, ServiceResponseTimeoutError, TimeoutError) as error:
        raise StoreTimeout(str(error)[:200] or type(error).__name__) from error
    except (ServiceRequestError, ServiceResponseError) as error:
        # Refused, reset, closed mid-body, name not resolved, TLS failed.
        raise StoreUnreachable(str(error)[:200]) from error
    except ClientAuthenticationError as error:  # 401, 403, and no credential found at all
        raise StoreAccessDenied(str(error)[:200]) from error
    except HttpResponseError as error:
        raise _answered(error) from error


def _answered(error: HttpResponseError) -> StoreError:
    status = error.status_code or 0
    text = f"{status} {_code(error) or error.reason}"[:200]
    # Azure says "slow down" as 503 ServerBusy (and 500 OperationTimedOut when it is late).
    if status == 429 or _code(error) == "ServerBusy":
        return StoreThrottled(text)
    if status == 0:  # no answer: the body broke off mid-read (IncompleteReadError)
        return StoreUnreachable(str(error)[:200])
    if status >= 500:
        return StoreServerError(text)
    return StoreRejected(text)


async def _chunks(chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    while True:
        with _failures():
            try:
                chunk = await anext(chunks)
            except StopAsyncIteration:
                return
        yield chunk
