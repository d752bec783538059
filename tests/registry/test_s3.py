"""What only the S3 store has: its URL, multipart uploads, key prefixes, pre-signed URLs.

The conformance suite (test_store.py) covers the ObjectStore behaviour itself.
"""

from __future__ import annotations

import asyncio
import datetime
import http.server
import os
import re
import socket
import threading
import time
from collections.abc import AsyncIterator, Callable
from typing import ClassVar
from urllib.parse import parse_qs, parse_qsl, urlsplit, urlunsplit

import botocore.auth
import httpx
import pytest
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.exceptions import (
    ClientError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    ReadTimeoutError,
)

from registry.errors import ConfigError
from registry.store import NotFound, open_store, presigner
from registry.store import s3 as s3_module
from registry.store.errors import (
    StoreAccessDenied,
    StoreError,
    StoreRejected,
    StoreServerError,
    StoreThrottled,
    StoreTimeout,
    StoreUnreachable,
)
from registry.store.memory import MemoryStore
from registry.store.s3 import MIN_PART_SIZE, S3Settings, S3Store, parse_url
from tests.conftest import MotoS3

MiB = 1024 * 1024
KEY = "docker/registry/v2/blobs/sha256/ab/abcd/data"


@pytest.fixture
async def make_store() -> AsyncIterator[Callable[..., S3Store]]:
    """Build S3 stores that are closed when the test ends."""
    stores: list[S3Store] = []

    def make(url: str, **kwargs: int) -> S3Store:
        stores.append(S3Store(url, **kwargs))
        return stores[-1]

    yield make
    for store in stores:
        await store.close()


async def _chunks(data: bytes, size: int) -> AsyncIterator[bytes]:
    for offset in range(0, len(data), size):
        yield data[offset:offset + size]


async def _read_all(store: S3Store, key: str, start: int = 0, length: int | None = None) -> bytes:
    return b"".join([c async for c in await store.read(key, start, length)])


# -- the URL ------------------------------------------------------------------------------------

def test_a_bare_bucket_takes_every_default() -> None:
    assert parse_url("s3://images") == S3Settings(bucket="images")


def test_every_option() -> None:
    settings = parse_url(
        "s3://images/regfront/eu/?endpoint=http://minio:9000&region=eu-west-1"
        "&signing_endpoint=https://s3.example.com&connect_timeout=0.5&read_timeout=30"
        "&max_attempts=5&max_pool_connections=200&addressing=virtual")
    assert settings == S3Settings(
        bucket="images", prefix="regfront/eu", endpoint="http://minio:9000", region="eu-west-1",
        signing_endpoint="https://s3.example.com", connect_timeout=0.5, read_timeout=30.0,
        max_attempts=5, max_pool_connections=200, addressing="virtual")


@pytest.mark.parametrize(("url", "why"), [
    ("s3://", "with a valid bucket name"),
    ("s3:///prefix", "with a valid bucket name"),
    ("s3://key:secret@images", "with a valid bucket name"),
    ("s3://images:9000", "with a valid bucket name"),
    ("s3://images/a//b", "prefix 'a//b' has empty"),
    ("s3://images/a/../b", "'..' segments"),
    ("s3://images#x", "no #fragment"),
    ("s3://images?endpoint=minio:9000", "endpoint must be an http:// or https:// URL"),
    ("s3://images?signing_endpoint=ftp://x", "signing_endpoint must be an http://"),
    ("s3://images?endpoint=", "endpoint must be an http://"),
    ("s3://images?region=EU%20West", "region must be a region name"),
    ("s3://images?region=a&region=b", "region is given twice"),
    ("s3://images?connect_timeout=0", "connect_timeout must be a positive number"),
    ("s3://images?read_timeout=soon", "read_timeout must be a positive number"),
    ("s3://images?read_timeout=inf", "read_timeout must be a positive number"),
    ("s3://images?max_attempts=0", "max_attempts must be a whole number"),
    ("s3://images?max_attempts=2.5", "max_attempts must be a whole number"),
    ("s3://images?max_pool_connections=0", "max_pool_connections must be a whole number"),
    ("s3://images?connect_timeout=", "connect_timeout must be a positive number"),
    ("s3://images?addressing=dns", "addressing must be path or virtual"),
    ("s3://images?colour=blue", "unknown option 'colour'; options: endpoint, "),
])
def test_bad_urls_are_one_line_naming_the_url(url: str, why: str) -> None:
    with pytest.raises(ConfigError) as caught:
        open_store(url)
    message = str(caught.value)
    assert message.startswith(f"storage url {url!r}: ")
    assert why in message
    assert "\n" not in message


def test_open_store_builds_an_s3_store() -> None:
    store = open_store("s3://images/mirror?region=eu-west-1")
    assert isinstance(store, S3Store)
    assert store.url == "s3://images/mirror?region=eu-west-1"
    assert (store.settings.bucket, store.settings.prefix) == ("images", "mirror")
    assert presigner(store) is store
    assert presigner(MemoryStore()) is None


def test_part_size_has_s3s_floor() -> None:
    with pytest.raises(ValueError, match="below S3's minimum"):
        S3Store("s3://images", part_size=MIN_PART_SIZE - 1)


def test_client_config_is_bounded_and_plain_for_other_endpoints() -> None:
    settings = parse_url("s3://images?connect_timeout=1.5&read_timeout=7&max_attempts=4")
    other = settings.client_config(custom_endpoint=True)
    assert (other.connect_timeout, other.read_timeout) == (1.5, 7.0)
    assert other.retries == {"mode": "standard", "total_max_attempts": 4}
    assert other.max_pool_connections == 64  # botocore's 10 queue a burst of cold requests
    assert other.s3 == {"addressing_style": "path"}
    assert other.signature_version == "s3v4"
    assert other.request_checksum_calculation == "when_required"
    assert other.response_checksum_validation == "when_required"
    aws = settings.client_config(custom_endpoint=False)
    assert aws.s3 == {"addressing_style": "virtual"}  # a plain DNS name
    assert aws.request_checksum_calculation is None  # botocore's own default
    dotted = parse_url("s3://my.images").client_config(custom_endpoint=False)
    assert dotted.s3 == {"addressing_style": "auto"}  # a virtual host would break TLS
    virtual = parse_url("s3://images?addressing=virtual").client_config(custom_endpoint=True)
    assert virtual.s3 == {"addressing_style": "virtual"}


# -- against moto ---------------------------------------------------------------------------------

async def test_an_endpoint_from_the_environment_counts_as_not_aws(
        moto_s3: MotoS3, make_store: Callable[..., S3Store],
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", moto_s3.endpoint)
    store = make_store(f"s3://{moto_s3.new_bucket()}?region={moto_s3.region}")
    await store.put("k", b"v")
    assert await store.get("k") == b"v"
    config = (await store._s3()).meta.config
    assert config.s3 == {"addressing_style": "path"}
    assert config.request_checksum_calculation == "when_required"


async def test_multipart_upload_round_trips(
        moto_s3: MotoS3, make_store: Callable[..., S3Store]) -> None:
    bucket = moto_s3.new_bucket()
    store = make_store(moto_s3.url(bucket), part_size=MIN_PART_SIZE)
    data = os.urandom(11 * MiB + 123)
    await store.put_stream(KEY, _chunks(data, 700 * 1024))
    etag = moto_s3.admin.head_object(Bucket=bucket, Key=KEY)["ETag"]
    assert etag.endswith('-3"')  # three parts: 5 MiB, 5 MiB, the rest
    assert await store.get(KEY) == data
    boundary = MIN_PART_SIZE - 10
    assert await _read_all(store, KEY, boundary, 20) == data[boundary:boundary + 20]


async def test_a_failed_multipart_upload_is_aborted(
        moto_s3: MotoS3, make_store: Callable[..., S3Store]) -> None:
    bucket = moto_s3.new_bucket()
    store = make_store(moto_s3.url(bucket), part_size=MIN_PART_SIZE)
    await store.put(KEY, b"old")

    async def broken() -> AsyncIterator[bytes]:
        yield os.urandom(6 * MiB)
        # By now the first part is uploaded: the failure really is mid-multipart.
        assert len(moto_s3.admin.list_multipart_uploads(Bucket=bucket).get("Uploads", [])) == 1
        raise RuntimeError("upstream went away")

    with pytest.raises(RuntimeError, match="upstream went away"):
        await store.put_stream(KEY, broken())
    assert moto_s3.admin.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
    assert await store.get(KEY) == b"old"


async def test_prefixes_isolate_stores_in_one_bucket(
        moto_s3: MotoS3, make_store: Callable[..., S3Store]) -> None:
    bucket = moto_s3.new_bucket()
    one = make_store(moto_s3.url(bucket, "one"))
    two = make_store(moto_s3.url(bucket, "two/"))
    root = make_store(moto_s3.url(bucket))
    await one.put("k", b"1")
    await one.put("dir/x", b"x")
    await two.put("k", b"2")
    assert (await one.get("k"), await two.get("k")) == (b"1", b"2")
    assert await one.children("dir/") == ["x"]
    assert await two.children("dir/") == []
    with pytest.raises(NotFound):
        await two.get("dir/x")
    await two.delete("dir/x")
    assert await one.get("dir/x") == b"x"
    assert await root.children("one/") == ["dir", "k"]
    listed = moto_s3.admin.list_objects_v2(Bucket=bucket)["Contents"]
    assert sorted(o["Key"] for o in listed) == ["one/dir/x", "one/k", "two/k"]


async def test_children_follows_pagination(
        moto_s3: MotoS3, make_store: Callable[..., S3Store],
        monkeypatch: pytest.MonkeyPatch) -> None:
    bucket = moto_s3.new_bucket()
    store = make_store(moto_s3.url(bucket, "p"))
    monkeypatch.setattr(s3_module, "LIST_PAGE_SIZE", 2)
    for key in ("t/a/current/link", "t/b/x", "t/b/y", "t/c", "t/d/z", "t/e", "t/f/w", "t/g"):
        await store.put(key, b"")
    page = moto_s3.admin.list_objects_v2(Bucket=bucket, Prefix="p/t/", Delimiter="/", MaxKeys=2)
    assert page["IsTruncated"]  # so the store did follow continuation tokens
    assert await store.children("t/") == ["a", "b", "c", "d", "e", "f", "g"]


async def test_reads_past_the_end_and_empty_ranges(
        moto_s3: MotoS3, make_store: Callable[..., S3Store]) -> None:
    store = make_store(moto_s3.url(moto_s3.new_bucket()))
    await store.put("k", b"abc")
    assert await _read_all(store, "k", 3) == b""
    assert await _read_all(store, "k", 10, 5) == b""
    assert await _read_all(store, "k", 1, 0) == b""
    assert await _read_all(store, "k", 1, 100) == b"bc"
    with pytest.raises(NotFound):
        await store.read("missing", 1, 0)


async def test_reads_dropped_unfinished_give_their_connections_back(
        moto_s3: MotoS3, make_store: Callable[..., S3Store]) -> None:
    store = make_store(moto_s3.url(moto_s3.new_bucket()))
    data = os.urandom(3 * MiB)  # more than one socket read: the response stays unfinished
    await store.put("k", data)
    for _ in range(12):  # more than aiobotocore's pool of 10 connections
        await store.read("k")  # never iterated
        partly = await store.read("k")
        await anext(partly)
        del partly
    assert await asyncio.wait_for(store.get("k"), 5) == data


async def test_a_missing_bucket_is_a_failure_not_an_absence(
        moto_s3: MotoS3, make_store: Callable[..., S3Store]) -> None:
    store = make_store(moto_s3.url("no-such-bucket-here"))
    with pytest.raises(StoreRejected) as caught:
        await store.get("k")
    assert isinstance(caught.value.__cause__, ClientError)
    assert caught.value.__cause__.response["Error"]["Code"] == "NoSuchBucket"


async def test_an_unreachable_endpoint_fails_fast(
        moto_s3: MotoS3, make_store: Callable[..., S3Store]) -> None:
    store = make_store("s3://b?endpoint=http://127.0.0.1:9&region=us-east-1&max_attempts=2")
    started = time.monotonic()
    with pytest.raises(StoreUnreachable) as caught:
        await store.size("k")
    assert isinstance(caught.value.__cause__, EndpointConnectionError)
    assert time.monotonic() - started < 5
    # The endpoint and how it failed, not "could not connect to <the key's whole URL>".
    assert str(caught.value) == "http://127.0.0.1:9: connection refused"


@pytest.mark.parametrize(("cause", "said"), [
    (ConnectionRefusedError(111, "Connect call failed"), "connection refused"),
    (socket.gaierror(-2, "Name or service not known"), "host name not resolved"),
    (ConnectionResetError(104, "reset"), "connection reset"),
])
def test_a_connection_failure_says_how_it_failed(cause: OSError, said: str) -> None:
    wrapped = EndpointConnectionError(endpoint_url="https://s3.example/b/k", error=cause)
    with pytest.raises(StoreUnreachable) as caught, s3_module._failures():
        raise wrapped
    assert str(caught.value) == f"https://s3.example: {said}"


def _client_error(status: int, code: str) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": "m"},
                        "ResponseMetadata": {"HTTPStatusCode": status}}, "HeadObject")


@pytest.mark.parametrize(("raised", "kind"), [
    (_client_error(503, "SlowDown"), StoreThrottled),
    (_client_error(503, "503"), StoreThrottled),  # a HEAD's answer has no body, no code
    (_client_error(429, "TooManyRequests"), StoreThrottled),
    (_client_error(500, "InternalError"), StoreServerError),
    (_client_error(502, "502"), StoreServerError),
    (_client_error(403, "403"), StoreAccessDenied),
    (_client_error(400, "ExpiredToken"), StoreAccessDenied),
    (_client_error(404, "NoSuchBucket"), StoreRejected),
    (ReadTimeoutError(endpoint_url="http://s3"), StoreTimeout),
    (ConnectTimeoutError(endpoint_url="http://s3"), StoreTimeout),  # before connection errors
    (EndpointConnectionError(endpoint_url="http://s3"), StoreUnreachable),
    (NoCredentialsError(), StoreAccessDenied),
])
def test_library_failures_map_to_their_kind_by_type(raised: Exception,
                                                    kind: type[StoreError]) -> None:
    with pytest.raises(StoreError) as caught, s3_module._failures():
        raise raised
    assert type(caught.value) is kind
    assert caught.value.__cause__ is raised


class _DeleteRefuser(http.server.BaseHTTPRequestHandler):
    """An S3 endpoint whose DeleteObjects answers 200 with a per-key error (the ``code`` class
    attribute) - what no real server does on cue; every key it was asked for is recorded."""

    code = "AccessDenied"
    asked: ClassVar[list[str]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        keys = re.findall(r"<Key>([^<]*)</Key>", body.decode())
        type(self).asked += keys
        answer = ('<?xml version="1.0" encoding="UTF-8"?><DeleteResult '
                  'xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
                  f"<Error><Key>{keys[0]}</Key><Code>{self.code}</Code>"
                  "<Message>refused</Message></Error></DeleteResult>").encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/xml")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.mark.parametrize(("code", "kind"), [("AccessDenied", StoreAccessDenied),
                                            ("InternalError", StoreServerError),
                                            ("SlowDown", StoreThrottled)])
async def test_a_batch_delete_that_refuses_a_key_fails_as_its_kind(
        code: str, kind: type[StoreError], make_store: Callable[..., S3Store],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """DeleteObjects answers 200 even when it deleted nothing: its per-key errors are read."""
    for name, value in (("AWS_ACCESS_KEY_ID", "k"), ("AWS_SECRET_ACCESS_KEY", "s")):
        monkeypatch.setenv(name, value)
    handler: type[_DeleteRefuser] = type("Refuser", (_DeleteRefuser,),
                                         {"code": code, "asked": []})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        store = make_store(f"s3://bucket/p?endpoint=http://127.0.0.1:{server.server_port}"
                           "&region=us-east-1")
        with pytest.raises(kind, match="1 of the keys, first p/a: refused"):
            await store.delete_many(["a", "b"])
    finally:
        server.shutdown()
    assert handler.asked == ["p/a", "p/b"]


def test_anything_else_is_not_a_store_failure() -> None:
    with pytest.raises(KeyError), s3_module._failures():
        raise KeyError("a bug stays a bug")


async def test_one_client_per_store_reopened_after_close(
        moto_s3: MotoS3, make_store: Callable[..., S3Store]) -> None:
    store = make_store(moto_s3.url(moto_s3.new_bucket()))
    clients = await asyncio.gather(*(store._s3() for _ in range(8)))
    assert all(c is clients[0] for c in clients)
    await store.presign_get("k", 60)
    assert list(store._clients.values()) == [clients[0]]  # no signing_endpoint: it signs too
    await store.close()
    await store.put("k", b"v")  # a closed store opens a new client on next use
    assert await store._s3() is not clients[0]
    await store.close()
    await store.close()


# -- pre-signed URLs ------------------------------------------------------------------------------

def _expected_signature(moto_s3: MotoS3, url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """Sign ``url``'s GET ourselves, at the instant the URL says it was signed."""
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query))
    signed_at = datetime.datetime.strptime(query["X-Amz-Date"], "%Y%m%dT%H%M%SZ")
    monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda *a, **k: signed_at)
    request = AWSRequest("GET", urlunsplit((parts.scheme, parts.netloc, parts.path, "", "")))
    signer = botocore.auth.S3SigV4QueryAuth(
        Credentials(moto_s3.access_key, moto_s3.secret_key), "s3", moto_s3.region,
        expires=int(query["X-Amz-Expires"]))
    signer.add_auth(request)
    ours = parse_qs(urlsplit(str(request.url)).query)
    assert ours["X-Amz-Date"] == [query["X-Amz-Date"]]  # the clock really was frozen
    return ours["X-Amz-Signature"][0]


async def test_presigned_url_names_the_signing_endpoint_and_verifies(
        moto_s3: MotoS3, make_store: Callable[..., S3Store],
        monkeypatch: pytest.MonkeyPatch) -> None:
    bucket = moto_s3.new_bucket()
    port = urlsplit(moto_s3.endpoint).port
    # Clients reach the same server by another name than the gateway does.
    store = make_store(moto_s3.url(bucket, "mirror",
                                   signing_endpoint=f"http://localhost:{port}"))
    data = os.urandom(1000)
    await store.put(KEY, data)

    url = await store.presign_get(KEY, 300)
    assert len(store._clients) == 2  # the signing endpoint has a client of its own

    parts = urlsplit(url)
    assert (parts.scheme, parts.netloc) == ("http", f"localhost:{port}")
    assert parts.path == f"/{bucket}/mirror/{KEY}"
    query = dict(parse_qsl(parts.query))
    assert query["X-Amz-Algorithm"] == "AWS4-HMAC-SHA256"
    assert query["X-Amz-Expires"] == "300"
    assert query["X-Amz-SignedHeaders"] == "host"
    signed_at = datetime.datetime.strptime(query["X-Amz-Date"], "%Y%m%dT%H%M%SZ")
    now = datetime.datetime.now(datetime.UTC).replace(tzinfo=None)
    assert abs((now - signed_at).total_seconds()) < 60
    assert query["X-Amz-Credential"] == (
        f"{moto_s3.access_key}/{signed_at:%Y%m%d}/{moto_s3.region}/s3/aws4_request")
    assert query["X-Amz-Signature"] == _expected_signature(moto_s3, url, monkeypatch)

    async with httpx.AsyncClient() as http:
        response = await http.get(url)
    assert response.status_code == 200
    assert response.content == data


async def test_presigned_url_without_signing_endpoint_uses_the_store_endpoint(
        moto_s3: MotoS3, make_store: Callable[..., S3Store],
        monkeypatch: pytest.MonkeyPatch) -> None:
    bucket = moto_s3.new_bucket()
    store = make_store(moto_s3.url(bucket))
    await store.put("k", b"v")
    url = await store.presign_get("k", 60)
    assert url.startswith(f"{moto_s3.endpoint}/{bucket}/k?")
    assert dict(parse_qsl(urlsplit(url).query))["X-Amz-Signature"] == _expected_signature(
        moto_s3, url, monkeypatch)


async def test_presigned_url_on_aws_is_regional_virtual_host_sigv4(
        moto_s3: MotoS3, make_store: Callable[..., S3Store]) -> None:
    store = make_store("s3://images/mirror?region=eu-west-1")  # signing needs no network
    url = await store.presign_get("k", 60)
    parts = urlsplit(url)
    assert parts.netloc == "images.s3.eu-west-1.amazonaws.com"
    assert parts.path == "/mirror/k"
    assert "/eu-west-1/s3/aws4_request" in dict(parse_qsl(parts.query))["X-Amz-Credential"]


@pytest.mark.parametrize("expires_in", [0, 7 * 24 * 3600 + 1])
async def test_presign_expiry_is_bounded(expires_in: int) -> None:
    with pytest.raises(ValueError, match="expires_in"):
        await S3Store("s3://images").presign_get("k", expires_in)
