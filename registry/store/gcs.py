"""The Cloud Storage store (gcloud-aio-storage): a GCS bucket under an optional key prefix.

``gs://bucket[/prefix][?endpoint=URL&service_account=EMAIL&connect_timeout=SECONDS
&read_timeout=SECONDS&max_pool_connections=N]``. Credentials are Application Default
Credentials (GOOGLE_APPLICATION_CREDENTIALS, gcloud's ADC file, else the metadata server:
Workload Identity on GKE, Cloud Run, GCE). An emulator is named by ``endpoint=http://...`` or by
STORAGE_EMULATOR_HOST; no credential is ever sent to one (nor over plain http at all).
Blob redirects are V4 signed URLs (registry/store/gcs_signing.py).

Failures leave as the kinds of registry/store/errors.py, mapped from aiohttp's exceptions by
type and by HTTP status (``_failures``). GCS answers 404 alike for a missing object and a missing
bucket: reads take it as ``NotFound``, listing and writes (which never 404 on a bucket that
exists) as ``StoreRejected``.

Conditional writes are multipart uploads with ``ifGenerationMatch`` (0: only if absent); the
version is the object's generation. Multipart and not a media upload, because fake-gcs-server
ignores ``ifGenerationMatch=0`` on media uploads where GCS refuses with 412 on both.
``put_stream`` sends one upload when the stream fits in a part, else a resumable upload in parts
that GCS commits only with the last one; on failure the session is cancelled (GCS drops an
unfinished one after a week anyway).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
from collections.abc import AsyncIterable, AsyncIterator, Iterator, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit

import aiohttp
from gcloud.aio.auth import IamClient, Token
from gcloud.aio.auth.token import GCE_METADATA_BASE, GCE_METADATA_HEADERS
from gcloud.aio.storage import Storage

from registry.store import NotFound, PreconditionFailed, Reader, check_key
from registry.store.body import Body, check_range, empty, range_header
from registry.store.errors import (
    StoreAccessDenied,
    StoreError,
    StoreRejected,
    StoreServerError,
    StoreThrottled,
    StoreTimeout,
    StoreUnreachable,
)
from registry.store.gcs_signing import (
    GOOGLE_HOST,
    IAMSigner,
    KeySigner,
    Signer,
    Target,
    signed_url,
    utc_now,
)
from registry.store.options import (
    AT_LEAST_ONE,
    DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_MAX_POOL_CONNECTIONS,
    DEFAULT_READ_TIMEOUT,
    HTTP_URL,
    SECONDS,
    Option,
    parse_store_url,
)
from registry.store.parts import parts

logger = logging.getLogger("regfront.store")

DEFAULT_PART_SIZE = 8 * 1024 * 1024
PART_QUANTUM = 256 * 1024  # every resumable chunk but the last is a multiple of this
LIST_PAGE_SIZE = 1000  # objects.list's maximum; tests shrink it to see pagination
OCTET_STREAM = "application/octet-stream"  # opaque: never a Content-Encoding on a layer
# One token for storage and, where there is no key to sign with, IAM's signBlob.
SCOPES = ["https://www.googleapis.com/auth/cloud-platform"]
EMULATOR_ENV = "STORAGE_EMULATOR_HOST"

_BUCKET = re.compile(r"[a-z0-9][a-z0-9._-]{1,220}[a-z0-9]")
_EMAIL = re.compile(r"[^@\s/]+@[^@\s/]+")
_OPTIONS: dict[str, Option] = {
    "endpoint": HTTP_URL,
    "service_account": (str, _EMAIL.fullmatch, "must be a service account's email address"),
    "connect_timeout": SECONDS,
    "read_timeout": SECONDS,
    "max_pool_connections": AT_LEAST_ONE,
}


@dataclass(frozen=True, kw_only=True)
class GCSSettings:
    """Everything a ``gs://`` URL says; ``parse_url`` builds it."""

    bucket: str
    prefix: str = ""
    endpoint: str | None = None
    service_account: str | None = None
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT
    read_timeout: float = DEFAULT_READ_TIMEOUT
    max_pool_connections: int = DEFAULT_MAX_POOL_CONNECTIONS

    def api_root(self) -> tuple[str, bool]:
        """The JSON API's root URL, and whether it is an emulator (no credentials sent)."""
        if self.endpoint is not None:
            return self.endpoint.rstrip("/"), self.endpoint.startswith("http://")
        if host := os.environ.get(EMULATOR_ENV):
            return (host if "://" in host else f"http://{host}").rstrip("/"), True
        return f"https://{GOOGLE_HOST}", False


def parse_url(url: str) -> GCSSettings:
    """Read a ``gs://`` storage URL; any mistake is a one-line ``ConfigError`` naming it."""
    parsed = parse_store_url(url, "gs", _BUCKET, "bucket", _OPTIONS)
    return GCSSettings(bucket=parsed.container, prefix=parsed.prefix, **parsed.options)


class GCSStore:
    def __init__(self, url: str, *, part_size: int = DEFAULT_PART_SIZE) -> None:
        if part_size <= 0 or part_size % PART_QUANTUM:
            raise ValueError(f"part_size {part_size} is not a multiple of {PART_QUANTUM}")
        self.url = url
        self.settings = parse_url(url)
        self.part_size = part_size
        root, self.emulator = self.settings.api_root()
        self._root = root
        self._target = Target(urlsplit(root).scheme, urlsplit(root).netloc) if (
            self.settings.endpoint or self.emulator) else Target()
        # gcloud-aio annotates timeouts as int, but its session takes an aiohttp.ClientTimeout
        # too: a total timeout would cut off a long blob read that is making progress.
        self._timeout: Any = aiohttp.ClientTimeout(
            total=None, sock_connect=self.settings.connect_timeout,
            sock_read=self.settings.read_timeout)
        self._storage: Storage | None = None
        self._token: Token | None = None
        self._signer: Signer | None = None
        self._lock = asyncio.Lock()

    def _name(self, key: str) -> str:
        check_key(key)
        return f"{self.settings.prefix}/{key}" if self.settings.prefix else key

    async def _client(self) -> Storage:
        # The aiohttp session binds to the running loop: so opened here, not in __init__.
        if self._storage is None:
            async with self._lock:
                if self._storage is None:
                    session = aiohttp.ClientSession(
                        connector=aiohttp.TCPConnector(limit=self.settings.max_pool_connections),
                        timeout=self._timeout)
                    # gcloud-aio annotates sessions with its synchronous twin's type
                    # (requests'); at run time it takes this aiohttp one.
                    shared: Any = session
                    try:  # reads the ADC key file, if there is one
                        self._token = Token(scopes=SCOPES, session=shared)
                    except BaseException:
                        await session.close()
                        raise
                    self._storage = Storage(token=self._token, session=shared,
                                            api_root=self._root, api_is_dev=self.emulator)
        return self._storage

    async def _auth(self) -> dict[str, str]:
        if self.emulator:
            return {}
        await self._client()
        assert self._token is not None
        return {"Authorization": f"Bearer {await self._token.get()}"}

    async def get(self, key: str) -> bytes:
        with _failures(), _absent_is(NotFound(key)):
            gcs = await self._client()
            return await gcs.download(self.settings.bucket, self._name(key),
                                      timeout=self._timeout)

    async def size(self, key: str) -> int:
        with _failures(), _absent_is(NotFound(key)):
            gcs = await self._client()
            meta = await gcs.download_metadata(self.settings.bucket, self._name(key),
                                               timeout=self._timeout)
            return int(meta["size"])

    async def read(self, key: str, start: int = 0, length: int | None = None) -> Reader:
        check_range(start, length)
        if length == 0:  # HTTP has no empty Range; still say NotFound for a missing key
            return Reader(await self.size(key), empty())
        with _failures():
            try:
                response = await self._open_media(key, range_header(start, length))
            except aiohttp.ClientResponseError as e:
                if e.status != 416:
                    raise
                # The object exists but ends before ``start``: no bytes.
                return Reader(await self.size(key), empty())
        body = Body(response.content.read, response.close, _failures)  # gives it back
        size = _whole_size(response.headers)
        return Reader(await self.size(key) if size is None else size, body)

    async def _open_media(self, key: str, byte_range: str | None = None
                          ) -> aiohttp.ClientResponse:
        gcs = await self._client()
        headers = {"Range": byte_range} if byte_range else {}
        with _absent_is(NotFound(key)):
            stream = await gcs.download_stream(self.settings.bucket, self._name(key),
                                               headers=headers, timeout=self._timeout)
        # Entering gcloud-aio's StreamResponse yields the aiohttp response itself (so its
        # docs): what lets a dropped reader give the connection back, and shows the headers.
        response: aiohttp.ClientResponse = await stream.__aenter__()
        return response

    async def get_versioned(self, key: str) -> tuple[bytes, str]:
        with _failures():
            response = await self._open_media(key)
            try:
                return await response.read(), response.headers["x-goog-generation"]
            finally:
                response.release()

    async def put(self, key: str, data: bytes) -> None:
        with _failures(), _absent_is(StoreRejected(f"no bucket {self.settings.bucket!r}")):
            gcs = await self._client()
            # One request whatever the size (gcloud-aio would switch to a resumable upload
            # past 5 MB, with its own timeouts and retries).
            await gcs.upload(self.settings.bucket, self._name(key), data,
                             content_type=OCTET_STREAM, force_resumable_upload=False,
                             timeout=self._timeout)

    async def create(self, key: str, data: bytes) -> str:
        return await self._put_conditional(key, data, "0")

    async def replace(self, key: str, data: bytes, version: str) -> str:
        return await self._put_conditional(key, data, version)

    async def _put_conditional(self, key: str, data: bytes, generation: str) -> str:
        with _failures(), _absent_is(StoreRejected(f"no bucket {self.settings.bucket!r}")):
            gcs = await self._client()
            try:
                # Metadata makes gcloud-aio send a multipart upload (see the module's doc).
                written = await gcs.upload(
                    self.settings.bucket, self._name(key), data, content_type=OCTET_STREAM,
                    metadata={"Content-Type": OCTET_STREAM}, force_resumable_upload=False,
                    parameters={"ifGenerationMatch": generation}, timeout=self._timeout)
            except aiohttp.ClientResponseError as e:
                if e.status == 412:  # also when a replaced object is gone
                    raise PreconditionFailed(key) from None
                raise
            return str(written["generation"])

    async def put_stream(self, key: str, chunks: AsyncIterable[bytes]) -> None:
        cut = parts(chunks, self.part_size)
        first, last = await anext(cut)
        if last:
            await self.put(key, first)
            return
        with _failures(), _absent_is(StoreRejected(f"no bucket {self.settings.bucket!r}")):
            await self._resumable(self._name(key), first, cut)

    async def _resumable(self, name: str, body: bytes,
                         cut: AsyncIterator[tuple[bytes, bool]]) -> None:
        gcs = await self._client()
        metadata = json.dumps({"name": name, "contentType": OCTET_STREAM})
        started = await gcs.session.post(
            f"{self._root}/upload/storage/v1/b/{quote(self.settings.bucket, safe='')}/o",
            headers={**await self._auth(), "Content-Type": "application/json; charset=UTF-8",
                     "X-Upload-Content-Type": OCTET_STREAM},
            params={"uploadType": "resumable", "name": name}, data=metadata,
            timeout=self._timeout)
        session_uri = started.headers["Location"]
        started.release()
        sent, last = 0, False
        try:
            while True:
                # The last part is sent with the total, which commits the object.
                total = str(sent + len(body)) if last else "*"
                answer = await gcs.session.put(
                    session_uri, data=body, timeout=self._timeout,
                    headers={**await self._auth(),
                             "Content-Range": f"bytes {sent}-{sent + len(body) - 1}/{total}"})
                answer.release()
                sent += len(body)
                if last:
                    return
                body, last = await anext(cut)
        except BaseException:
            try:
                await gcs.session.delete(session_uri, headers=await self._auth(),
                                         timeout=self._timeout)
            except aiohttp.ClientResponseError as e:
                if e.status != 499:  # GCS's answer to a cancelled upload
                    logger.warning("could not cancel upload of %s", name, exc_info=True)
            except (aiohttp.ClientError, TimeoutError):
                logger.warning("could not cancel upload of %s", name, exc_info=True)
            raise

    async def children(self, prefix: str) -> list[str]:
        full_prefix = self._name(prefix)
        names: set[str] = set()
        params = {"prefix": full_prefix, "delimiter": "/", "maxResults": str(LIST_PAGE_SIZE)}
        with _failures(), _absent_is(StoreRejected(f"no bucket {self.settings.bucket!r}")):
            gcs = await self._client()
            while True:
                page = await gcs.list_objects(self.settings.bucket, params=dict(params),
                                              timeout=self._timeout)
                names.update(p[len(full_prefix):].rstrip("/") for p in page.get("prefixes", ()))
                names.update(o["name"][len(full_prefix):] for o in page.get("items", ()))
                if not page.get("nextPageToken"):
                    break
                params["pageToken"] = page["nextPageToken"]
        names.discard("")  # an object named exactly ``prefix`` is not a child
        return sorted(names)

    async def list_keys(self, prefix: str) -> list[str]:
        """Every key under ``prefix``: one listing without a delimiter, a page per thousand."""
        full_prefix = self._name(prefix)
        strip = len(full_prefix) - len(prefix)  # the store's own prefix
        found: list[str] = []
        params = {"prefix": full_prefix, "maxResults": str(LIST_PAGE_SIZE)}
        with _failures(), _absent_is(StoreRejected(f"no bucket {self.settings.bucket!r}")):
            gcs = await self._client()
            while True:
                page = await gcs.list_objects(self.settings.bucket, params=dict(params),
                                              timeout=self._timeout)
                found += [o["name"][strip:] for o in page.get("items", ())]
                if not page.get("nextPageToken"):
                    break
                params["pageToken"] = page["nextPageToken"]
        return sorted(found)

    async def delete(self, key: str) -> None:
        with _failures():
            gcs = await self._client()
            try:
                await gcs.delete(self.settings.bucket, self._name(key), timeout=self._timeout)
            except aiohttp.ClientResponseError as e:
                if e.status != 404:  # gone already: deleting it again is not an error
                    raise

    async def presign_get(self, key: str, expires_in: int) -> str:
        """A V4 signed GET URL for ``key``, valid ``expires_in`` seconds (at most 7 days).

        Signed by the store's service account: with a key file locally, else by IAM signBlob.
        """
        name = self._name(key)
        with _failures():
            signer = self._signer or await self._make_signer()
            return await signed_url(signer, self._target, self.settings.bucket, name,
                                    expires_in, utc_now())

    async def _make_signer(self) -> Signer:
        await self._client()
        token = self._token
        assert token is not None
        key_email = token.service_data.get("client_email")
        private_key = token.service_data.get("private_key")
        wanted = self.settings.service_account
        if private_key and key_email and wanted in (None, key_email):
            self._signer = KeySigner(key_email, private_key)
            return self._signer
        try:
            shared: Any = token.session.session  # typed as requests' (see _client)
            iam = IamClient(token=token, session=shared)
        except TypeError as e:  # user credentials (gcloud auth application-default login)
            raise StoreAccessDenied(
                "gs:// presigning needs a service account: user credentials cannot sign "
                "(name one with ?service_account=EMAIL to sign through IAM)") from e
        email = wanted or iam.service_account_email or await self._metadata_email(token)
        self._signer = IAMSigner(email, iam)
        return self._signer

    async def _metadata_email(self, token: Token) -> str:
        """The metadata server's default service account (Workload Identity's bound one)."""
        answer = await token.session.get(
            f"{GCE_METADATA_BASE}/instance/service-accounts/default/email",
            headers=GCE_METADATA_HEADERS, timeout=self._timeout)
        return (await answer.text()).strip()

    async def close(self) -> None:
        async with self._lock:
            storage, self._storage, self._token, self._signer = self._storage, None, None, None
            if storage is not None:
                await storage.session.session.close()  # ours: gcloud-aio leaves it open


@contextlib.contextmanager
def _absent_is(replacement: Exception) -> Iterator[None]:
    """A 404 out of the block leaves as ``replacement`` (``NotFound``, or a missing bucket)."""
    try:
        yield
    except aiohttp.ClientResponseError as error:
        if error.status == 404:
            raise replacement from None
        raise


@contextlib.contextmanager
def _failures() -> Iterator[None]:
    """aiohttp's exceptions as the store failure kinds, by type; absence and lost conditions
    are raised as ``NotFound``/``PreconditionFailed`` inside, before this."""
    try:
        yield
    except aiohttp.ClientResponseError as error:  # the store (or the token service) answered
        raise _answered(error) from error
    except (aiohttp.ServerTimeoutError, TimeoutError) as error:
        # Before the connection errors: aiohttp's socket timeouts are among them.
        raise StoreTimeout(str(error) or type(error).__name__) from error
    except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError) as error:
        # Refused, reset, closed mid-body, name not resolved, TLS failed; also the metadata
        # server when there is none (ADC found no credentials).
        raise StoreUnreachable(str(error)) from error
    except OSError as error:  # GOOGLE_APPLICATION_CREDENTIALS names a file we cannot read
        raise StoreAccessDenied(f"credentials: {error}") from error


def _answered(error: aiohttp.ClientResponseError) -> StoreError:
    text = f"{error.status} {error.message}"[:200]
    if error.status == 429:
        return StoreThrottled(text)
    if error.status in (401, 403):
        return StoreAccessDenied(text)
    if error.status >= 500:
        return StoreServerError(text)
    return StoreRejected(text)


def _whole_size(headers: Mapping[str, str]) -> int | None:
    """An object's whole size from a media download's headers: a ranged answer's
    Content-Range ends in it; else the stored length, or the length sent."""
    whole = headers.get("Content-Range", "").rpartition("/")[2]
    for value in (whole, headers.get("x-goog-stored-content-length", ""),
                  headers.get("Content-Length", "")):
        if value.isdigit():
            return int(value)
    return None
