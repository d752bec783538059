"""Raw ASGI for the hot path (manifests and blobs), and the one error renderer.

Manifest and blob requests are most of what a fleet sends; they skip the framework's routing,
request and response objects (measured: the framework costs about two thirds of a warm
manifest request). Everything else goes through Starlette.

``answer`` is the one place a failure becomes an HTTP answer: a ``RegistryError`` is its own,
every store failure a 503 naming its reason (docs/operations.md, "Failure modes"), and
anything else - a bug - a 500.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from functools import lru_cache
from types import MappingProxyType
from typing import Any
from urllib.parse import parse_qsl

from starlette.types import Scope, Send

from registry.errors import ErrorCode, RegistryError
from registry.names import repository_name
from registry.store.errors import StoreError

Headers = list[tuple[bytes, bytes]]
_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")

API_VERSION_HEADER = (b"docker-distribution-api-version", b"registry/2.0")
_JSON = (b"content-type", b"application/json")


def request_header(scope: Scope, name: bytes) -> str | None:
    """The first header ``name`` (lowercase bytes) of the request, decoded."""
    for key, value in scope["headers"]:
        if key == name:
            decoded: str = value.decode("latin-1")
            return decoded
    return None


@lru_cache(maxsize=4096)
def query(query_string: bytes) -> MappingProxyType[str, str]:
    """The query's parameters (first value wins); cached, as clients repeat the same few."""
    pairs = parse_qsl(query_string.decode("latin-1"), keep_blank_values=True)
    return MappingProxyType(dict(reversed(pairs)))


@lru_cache(maxsize=65536)
def _name(path_name: str, ns: str | None) -> str:
    return repository_name(path_name, ns)


def repository(scope: Scope, path_name: str) -> tuple[str, str | None]:
    """The stored name for a request (``ns`` prepended), and the ``ns`` to echo."""
    ns = query(scope["query_string"]).get("ns") if scope["query_string"] else None
    return _name(path_name, ns or None), ns or None


async def respond(send: Send, status: int, headers: Headers, body: bytes = b"") -> None:
    headers.append(API_VERSION_HEADER)
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


INTERNAL_ERROR = RegistryError(ErrorCode.UNKNOWN, {"reason": "internal_error"})


def answer(failure: Exception) -> RegistryError:
    """The answer to any failure: its own for a ``RegistryError``, a 503 naming the kind for a
    store failure, ``INTERNAL_ERROR`` (500) for anything else - the caller logs that one."""
    if isinstance(failure, RegistryError):
        return failure
    if isinstance(failure, StoreError):
        # Every kind is a 503 (containerd moves on after any 5xx); by now the stores have been
        # asked until gateway.store_deadline, or the failure is one no retry mends.
        return RegistryError(ErrorCode.UNAVAILABLE, {"reason": failure.reason})
    return INTERNAL_ERROR


def render_error(error: RegistryError) -> tuple[int, Headers, bytes]:
    """The only place an error body is built: ``{"errors": [{code, message, detail}]}``."""
    body = json.dumps({"errors": [error.to_json()]}).encode()
    headers = [_JSON, (b"content-length", str(len(body)).encode())]
    headers += [(k.lower().encode("latin-1"), v.encode("latin-1"))
                for k, v in error.headers.items()]
    return error.status, headers, body


async def send_error(send: Send, error: RegistryError, method: str) -> None:
    status, headers, body = render_error(error)
    await respond(send, status, headers, b"" if method == "HEAD" else body)


def header_value(value: Any) -> bytes:
    return str(value).encode("latin-1")


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """One ``bytes=`` range -> (start, end inclusive); ``None`` means serve it all.

    Malformed or multi-range headers are ignored (RFC 9110 lets a server do so); a range that
    starts past the end is RANGE_INVALID (416).
    """
    if not header:
        return None
    match = _RANGE.match(header.strip())
    if match is None or match.group(1) == match.group(2) == "":
        return None
    first, last = match.group(1), match.group(2)
    if first == "":  # suffix: the last N bytes
        length = int(last)
        if length == 0:
            raise _unsatisfiable(header, size)
        return max(0, size - length), size - 1
    start = int(first)
    end = min(int(last), size - 1) if last else size - 1
    if start >= size or end < start:
        raise _unsatisfiable(header, size)
    return start, end


def _unsatisfiable(header: str, size: int) -> RegistryError:
    return RegistryError(ErrorCode.RANGE_INVALID, {"range": header[:100], "size": size},
                         headers={"Content-Range": f"bytes */{size}"})


_OCTET_STREAM = (b"content-type", b"application/octet-stream")
_ACCEPT_RANGES = (b"accept-ranges", b"bytes")


def bytes_answer(digest_header: bytes, etag: bytes, size: int, range_header: str | None,
                 headers: Headers) -> tuple[int, int, int]:
    """Status, first and last byte of an answer with a blob's bytes (``Range`` honoured); adds
    its headers to ``headers``. The one place a blob's byte answer is described."""
    headers += [(b"docker-content-digest", digest_header), _OCTET_STREAM, (b"etag", etag),
                _ACCEPT_RANGES]
    span = parse_range(range_header, size)
    start, end, status = 0, size - 1, 200
    if span is not None:
        start, end, status = span[0], span[1], 206
        headers.append((b"content-range", f"bytes {start}-{end}/{size}".encode()))
    headers.append((b"content-length", header_value(end - start + 1)))
    return status, start, end


async def stream(send: Send, status: int, headers: Headers,
                 body: AsyncIterator[bytes] | None) -> None:
    """Send a response whose body (if any) arrives in chunks."""
    headers.append(API_VERSION_HEADER)
    await send({"type": "http.response.start", "status": status, "headers": headers})
    if body is not None:
        async for chunk in body:
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
    await send({"type": "http.response.body", "body": b""})
