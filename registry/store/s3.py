"""The S3 store (aioboto3): AWS S3 or any S3-compatible endpoint, under an optional key prefix.

``s3://bucket[/prefix][?endpoint=URL&region=NAME&signing_endpoint=URL&connect_timeout=SECONDS
&read_timeout=SECONDS&max_attempts=N&max_pool_connections=N&addressing=path|virtual]``.
Credentials, and the endpoint when the URL names none, come from the standard AWS chain
(environment, profiles, instance roles).

Failures leave as the kinds of registry/store/errors.py, mapped from botocore's and aiohttp's
exceptions by type (``_failures``); absence is ``NotFound``.

One client per store, opened lazily inside the running event loop and closed by ``close()``.
``put_stream`` sends one ``PutObject`` for a stream that fits in a part and a multipart upload
otherwise, aborted on any failure so nothing is committed; an abort that itself fails (or a process
killed mid-upload) leaves parts behind, which a bucket lifecycle rule
(``AbortIncompleteMultipartUpload``) reclaims.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
from collections.abc import AsyncIterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal, cast, get_args
from urllib.parse import urlsplit

import aioboto3
import aiohttp
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectTimeoutError,
    CredentialRetrievalError,
    HTTPClientError,
    NoCredentialsError,
    PartialCredentialsError,
    ReadTimeoutError,
)
from botocore.exceptions import ConnectionError as BotoConnectionError

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
    connection_failure,
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
from registry.store.parts import parts

logger = logging.getLogger("regfront.store")

Addressing = Literal["path", "virtual"]

DEFAULT_PART_SIZE = 8 * 1024 * 1024
MIN_PART_SIZE = 5 * 1024 * 1024  # S3's floor for every part but the last
MAX_PRESIGN_EXPIRY = 7 * 24 * 3600  # SigV4's ceiling
LIST_PAGE_SIZE = 1000  # ListObjectsV2's maximum; tests shrink it to see pagination
DELETE_BATCH = 1000  # DeleteObjects' maximum; tests shrink it to see several requests

# Error codes that mean "no such object"; NoSuchBucket is deliberately absent: that is a
# misconfiguration, not an absent key, and must surface as a store failure.
_ABSENT = {"404", "NoSuchKey", "NotFound"}
_CONDITION_LOST = {"412", "PreconditionFailed", "409", "ConditionalRequestConflict"}
# S3 says "slow down" as 503 SlowDown; S3-compatible stores and other AWS front ends use these.
_THROTTLED = {"SlowDown", "Throttling", "ThrottlingException", "RequestLimitExceeded",
              "TooManyRequests", "RequestThrottled", "RequestThrottledException"}
_DENIED = {"AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken",
           "InvalidToken", "TokenRefreshRequired", "AllAccessDisabled", "AccountProblem"}
_BUCKET = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_DNS_BUCKET = re.compile(r"[a-z0-9][a-z0-9-]{1,61}[a-z0-9]")  # virtual-host safe, even over TLS
_REGION = re.compile(r"[a-z0-9-]+")
_ENDPOINT_ENV = ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL")


_OPTIONS: dict[str, Option] = {
    "endpoint": HTTP_URL,
    "signing_endpoint": HTTP_URL,
    "region": (str, _REGION.fullmatch, "must be a region name such as eu-west-1"),
    "connect_timeout": SECONDS,
    "read_timeout": SECONDS,
    "max_attempts": AT_LEAST_ONE,
    "max_pool_connections": AT_LEAST_ONE,
    "addressing": (str, lambda a: a in get_args(Addressing), "must be path or virtual"),
}


@dataclass(frozen=True, kw_only=True)
class S3Settings:
    """Everything an ``s3://`` URL says; ``parse_url`` builds it."""

    bucket: str
    prefix: str = ""
    endpoint: str | None = None
    region: str | None = None
    signing_endpoint: str | None = None
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT
    read_timeout: float = DEFAULT_READ_TIMEOUT
    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    max_pool_connections: int = DEFAULT_MAX_POOL_CONNECTIONS
    addressing: Addressing | None = None

    def client_config(self, *, custom_endpoint: bool) -> Config:
        """botocore settings for a client of this store; ``custom_endpoint`` means "not AWS"."""
        addressing = self.addressing or (
            "path" if custom_endpoint
            # On AWS, "auto" picks virtual hosts for such names anyway, but pre-signs them for
            # the legacy global host, which opt-in regions and day-old buckets refuse.
            else "virtual" if _DNS_BUCKET.fullmatch(self.bucket) else "auto")
        # botocore's default CRC checksums on every request (and the aws-chunked uploads they
        # bring) are rejected by several S3-compatible stores; AWS itself keeps the default.
        checksums = ({"request_checksum_calculation": "when_required",
                      "response_checksum_validation": "when_required"}
                     if custom_endpoint else {})
        return Config(
            connect_timeout=self.connect_timeout,
            read_timeout=self.read_timeout,
            # total_max_attempts counts the first try, like AWS_MAX_ATTEMPTS; botocore's
            # "max_attempts" key would count retries only.
            retries={"mode": "standard", "total_max_attempts": self.max_attempts},
            max_pool_connections=self.max_pool_connections,
            s3={"addressing_style": addressing},
            signature_version="s3v4",
            **checksums,
        )


def parse_url(url: str) -> S3Settings:
    """Read an ``s3://`` storage URL; any mistake is a one-line ``ConfigError`` naming it."""
    parsed = parse_store_url(url, "s3", _BUCKET, "bucket", _OPTIONS)
    return S3Settings(bucket=parsed.container, prefix=parsed.prefix, **parsed.options)


class S3Store:
    def __init__(self, url: str, *, part_size: int = DEFAULT_PART_SIZE) -> None:
        if part_size < MIN_PART_SIZE:
            raise ValueError(f"part_size {part_size} is below S3's minimum of {MIN_PART_SIZE}")
        self.url = url
        self.settings = parse_url(url)
        self.part_size = part_size
        # By endpoint: the store's own, and the signing endpoint's if it has one. aiobotocore
        # is untyped, so clients are Any, kept inside this class.
        self._clients: dict[str | None, Any] = {}
        self._session: aioboto3.Session | None = None
        self._exits = contextlib.AsyncExitStack()
        self._lock = asyncio.Lock()

    def _key(self, key: str) -> str:
        check_key(key)
        return f"{self.settings.prefix}/{key}" if self.settings.prefix else key

    async def _open(self, endpoint: str | None) -> Any:
        if self._session is None:
            self._session = aioboto3.Session()
        custom = endpoint is not None or any(os.environ.get(v) for v in _ENDPOINT_ENV)
        config = self.settings.client_config(custom_endpoint=custom)
        creator = self._session.client("s3", endpoint_url=endpoint,
                                       region_name=self.settings.region, config=config)
        return await self._exits.enter_async_context(creator)

    async def _client(self, endpoint: str | None) -> Any:
        # Clients own an aiohttp session, which binds to the running loop: so not in __init__.
        if endpoint not in self._clients:
            async with self._lock:
                if endpoint not in self._clients:
                    self._clients[endpoint] = await self._open(endpoint)
        return self._clients[endpoint]

    async def _s3(self) -> Any:
        return await self._client(self.settings.endpoint)

    async def get(self, key: str) -> bytes:
        with _failures():
            body = (await self._get_object(key))["Body"]
            try:
                return cast(bytes, await body.read())
            finally:
                body.close()

    async def size(self, key: str) -> int:
        with _failures():
            s3 = await self._s3()
            try:
                head = await s3.head_object(Bucket=self.settings.bucket, Key=self._key(key))
            except ClientError as e:
                if _absent(e):
                    raise NotFound(key) from None
                raise
            return int(head["ContentLength"])

    async def read(self, key: str, start: int = 0, length: int | None = None) -> Reader:
        check_range(start, length)
        if length == 0:  # S3 has no empty Range; still say NotFound for a missing key
            return Reader(await self.size(key), empty())
        with _failures():
            try:
                response = await self._get_object(key, range_header(start, length))
            except ClientError as e:
                error = e.response.get("Error", {})
                if error.get("Code") != "InvalidRange":
                    raise
                # The object exists but ends before ``start``: no bytes. S3 names its size.
                actual = error.get("ActualObjectSize")
                return Reader(int(actual) if actual else await self.size(key), empty())
        body = response["Body"]
        # A ranged answer's Content-Range ends in the whole size; a whole one's length is it.
        whole = response.get("ContentRange", "").rpartition("/")[2]
        size = int(whole) if whole.isdigit() else int(response["ContentLength"])
        return Reader(size, Body(body.read, body.close, _failures))

    async def _get_object(self, key: str, byte_range: str | None = None) -> Any:
        s3 = await self._s3()
        extra = {"Range": byte_range} if byte_range else {}
        try:
            response = await s3.get_object(Bucket=self.settings.bucket, Key=self._key(key),
                                           **extra)
        except ClientError as e:
            if _absent(e):
                raise NotFound(key) from None
            raise
        return response

    async def put(self, key: str, data: bytes) -> None:
        with _failures():
            s3 = await self._s3()
            await s3.put_object(Bucket=self.settings.bucket, Key=self._key(key), Body=data)

    async def get_versioned(self, key: str) -> tuple[bytes, str]:
        with _failures():
            s3 = await self._s3()
            try:
                response = await s3.get_object(Bucket=self.settings.bucket, Key=self._key(key))
            except ClientError as e:
                if _absent(e):
                    raise NotFound(key) from None
                raise
            body = response["Body"]
            try:
                return cast(bytes, await body.read()), str(response["ETag"])
            finally:
                body.close()

    async def create(self, key: str, data: bytes) -> str:
        # S3 (and GCS's XML API, R2, MinIO) honour If-None-Match: * on PutObject.
        return await self._put_conditional(key, data, IfNoneMatch="*")

    async def replace(self, key: str, data: bytes, version: str) -> str:
        return await self._put_conditional(key, data, IfMatch=version)

    async def _put_conditional(self, key: str, data: bytes, **condition: str) -> str:
        with _failures():
            s3 = await self._s3()
            try:
                response = await s3.put_object(Bucket=self.settings.bucket, Key=self._key(key),
                                               Body=data, **condition)
            except ClientError as e:
                # 412 when the condition failed; 409 when a concurrent conditional write won;
                # 404 when If-Match names an object that is gone.
                if e.response.get("Error", {}).get("Code") in _CONDITION_LOST or (
                        "IfMatch" in condition and _absent(e)):
                    raise PreconditionFailed(key) from None
                raise
            return str(response["ETag"])

    async def put_stream(self, key: str, chunks: AsyncIterable[bytes]) -> None:
        with _failures():
            await self._put_stream(key, chunks)

    async def _put_stream(self, key: str, chunks: AsyncIterable[bytes]) -> None:
        full_key = self._key(key)
        cut = parts(chunks, self.part_size)
        body, last = await anext(cut)
        s3 = await self._s3()
        if last:
            await s3.put_object(Bucket=self.settings.bucket, Key=full_key, Body=body)
            return

        upload = await s3.create_multipart_upload(Bucket=self.settings.bucket, Key=full_key)
        upload_id: str = upload["UploadId"]
        uploaded: list[dict[str, Any]] = []
        try:
            while True:  # parts(): every part but the last of one size, as R2 also wants
                number = len(uploaded) + 1
                sent = await s3.upload_part(Bucket=self.settings.bucket, Key=full_key,
                                            UploadId=upload_id, PartNumber=number, Body=body)
                uploaded.append({"ETag": sent["ETag"], "PartNumber": number})
                if last:
                    break
                body, last = await anext(cut)
            await s3.complete_multipart_upload(Bucket=self.settings.bucket, Key=full_key,
                                               UploadId=upload_id,
                                               MultipartUpload={"Parts": uploaded})
        except BaseException:
            try:
                await s3.abort_multipart_upload(Bucket=self.settings.bucket, Key=full_key,
                                                UploadId=upload_id)
            except (ClientError, BotoCoreError):
                logger.warning("could not abort multipart upload %s of %s", upload_id,
                               full_key, exc_info=True)
            raise

    async def children(self, prefix: str) -> list[str]:
        full_prefix = self._key(prefix)
        names: set[str] = set()
        with _failures():
            s3 = await self._s3()
            pages = s3.get_paginator("list_objects_v2").paginate(
                Bucket=self.settings.bucket, Prefix=full_prefix, Delimiter="/",
                PaginationConfig={"PageSize": LIST_PAGE_SIZE})
            async for page in pages:
                names.update(p["Prefix"][len(full_prefix):].rstrip("/")
                             for p in page.get("CommonPrefixes", ()))
                names.update(o["Key"][len(full_prefix):] for o in page.get("Contents", ()))
        names.discard("")  # an object named exactly ``prefix`` is not a child
        return sorted(names)

    async def list_keys(self, prefix: str) -> list[str]:
        full_prefix = self._key(prefix)
        strip = len(full_prefix) - len(prefix)  # the store's own prefix
        found: list[str] = []
        with _failures():
            s3 = await self._s3()
            pages = s3.get_paginator("list_objects_v2").paginate(
                Bucket=self.settings.bucket, Prefix=full_prefix,
                PaginationConfig={"PageSize": LIST_PAGE_SIZE})
            async for page in pages:
                found += [o["Key"][strip:] for o in page.get("Contents", ())]
        return sorted(found)

    async def delete(self, key: str) -> None:
        with _failures():
            s3 = await self._s3()
            await s3.delete_object(Bucket=self.settings.bucket, Key=self._key(key))

    async def delete_many(self, keys: Sequence[str]) -> None:
        """DeleteObjects, a thousand keys a request (S3's limit), quiet: only failures come
        back, and the first one is raised as its kind (a missing key is no failure)."""
        full = [self._key(key) for key in keys]
        with _failures():
            s3 = await self._s3()
            for start in range(0, len(full), DELETE_BATCH):
                answer = await s3.delete_objects(Bucket=self.settings.bucket, Delete={
                    "Objects": [{"Key": key} for key in full[start:start + DELETE_BATCH]],
                    "Quiet": True})
                if errors := answer.get("Errors"):
                    first = errors[0]
                    code = str(first.get("Code", ""))
                    status = 500 if code == "InternalError" else 0
                    raise ClientError({"Error": {"Code": code, "Message": (
                        f"{len(errors)} of the keys, first {first.get('Key')}: "
                        f"{first.get('Message', '')}")},
                        "ResponseMetadata": {"HTTPStatusCode": status}}, "DeleteObjects")

    async def presign_get(self, key: str, expires_in: int) -> str:
        """A GET URL for ``key`` valid ``expires_in`` seconds, addressed at ``signing_endpoint``.

        Signed with whatever credentials the store holds: URLs signed with temporary (role)
        credentials stop working when those expire, whatever ``expires_in`` says.
        """
        if not 1 <= expires_in <= MAX_PRESIGN_EXPIRY:
            raise ValueError(f"expires_in {expires_in} is outside 1..{MAX_PRESIGN_EXPIRY}")
        with _failures():  # no request is sent, but credentials may have to be fetched
            signer = await self._client(self.settings.signing_endpoint or self.settings.endpoint)
            url = await signer.generate_presigned_url(
                "get_object", Params={"Bucket": self.settings.bucket, "Key": self._key(key)},
                ExpiresIn=expires_in)
        return str(url)

    async def close(self) -> None:
        async with self._lock:
            self._clients.clear()
            exits, self._exits = self._exits, contextlib.AsyncExitStack()
            await exits.aclose()


@contextlib.contextmanager
def _failures() -> Iterator[None]:
    """botocore's and aiohttp's exceptions as the store failure kinds, by type; absence and
    lost conditions are raised as ``NotFound``/``PreconditionFailed`` inside, before this."""
    try:
        yield
    except ClientError as error:  # the store answered with an error status
        raise _answered(error) from error
    except (ConnectTimeoutError, ReadTimeoutError, TimeoutError) as error:
        # Before the connection errors: botocore's connect timeout is one of them.
        raise StoreTimeout(str(error)) from error
    except (BotoConnectionError, HTTPClientError, aiohttp.ClientPayloadError,
            aiohttp.ClientConnectionError) as error:
        # Refused, reset, closed mid-body, name not resolved, TLS failed.
        raise StoreUnreachable(_unreachable(error)) from error
    except (NoCredentialsError, PartialCredentialsError, CredentialRetrievalError) as error:
        raise StoreAccessDenied(f"no usable credentials: {error}") from error


def _unreachable(error: Exception) -> str:
    """``endpoint: how`` (refused, not resolved, reset, TLS): the endpoint's origin only, the
    rest of the URL being the bucket and key."""
    endpoint = getattr(error, "kwargs", {}).get("endpoint_url")
    parts = urlsplit(endpoint) if isinstance(endpoint, str) else None
    where = f"{parts.scheme}://{parts.netloc}: " if parts else ""
    return where + (connection_failure(error) or str(error))


def _answered(error: ClientError) -> StoreError:
    # HEAD answers have no body: their code is the status as text ("403", "503").
    code = str(error.response.get("Error", {}).get("Code", ""))
    status = int(error.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
    text = str(error)[:200]
    if code in _THROTTLED or status in (429, 503):
        return StoreThrottled(text)
    if code in _DENIED or status in (401, 403):
        return StoreAccessDenied(text)
    if status >= 500:
        return StoreServerError(text)
    return StoreRejected(text)  # NoSuchBucket, InvalidRequest, ...


def _absent(error: ClientError) -> bool:
    return bool(error.response.get("Error", {}).get("Code") in _ABSENT)
