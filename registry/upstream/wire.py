"""What crosses the wire to an upstream: redirect safety, Retry-After, raw bodies.

Small functions over httpx requests and responses, used by the upstream session and client
(session.py, client.py): which URL may receive credentials, what a URL may show in a log, how
long a server asked us to wait, and a body's bytes exactly as they were sent.
"""

from __future__ import annotations

import email.utils
import json
import time
from collections.abc import AsyncIterator

import httpx

from registry import urls


def same_origin(url: httpx.URL, base: str) -> bool:
    """Whether ``url`` is on ``base``'s origin: only there may ``Authorization`` go."""
    other = httpx.URL(base)
    return (url.scheme, url.host, url.port) == (other.scheme, other.host, other.port)


def redact(url: httpx.URL) -> str:
    """``url`` as it may be logged: a pre-signed URL's signature must not end up in a log."""
    return urls.redact(str(url))


def content_type(headers: httpx.Headers) -> str:
    """The media type of ``Content-Type``, without parameters; empty when absent."""
    return str(headers.get("content-type", "")).split(";", 1)[0].strip()


def describe(exc: Exception) -> str:
    """An exception as ``TypeName: text`` (or just the name when it has no text)."""
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


async def raw_body(response: httpx.Response, chunk_size: int | None) -> AsyncIterator[bytes]:
    """The body as sent, undecoded. An in-process transport (tests inject one) that built its
    response with ``content=`` hands it over already read: then those bytes are the body."""
    if not response.is_stream_consumed:
        async for chunk in response.aiter_raw(chunk_size):
            yield chunk
        return
    data = response.content
    step = chunk_size or len(data) or 1
    for start in range(0, len(data), step):
        yield data[start:start + step]


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from ``Retry-After``: a number of seconds or an HTTP date; None if neither."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


async def error_detail(response: httpx.Response) -> str:
    """The first OCI error's code and message (or the body's start), for the exception text."""
    if response.request.method == "HEAD":
        return ""
    start = b""
    try:
        async for chunk in response.aiter_bytes():
            start += chunk
            if len(start) >= 4096:  # an error page from a proxy can be large: its start will do
                break
    except httpx.HTTPError:
        pass
    try:
        error = json.loads(start)["errors"][0]
        return f" {error['code']}: {error.get('message', '')}"
    except (ValueError, KeyError, IndexError, TypeError):
        text = start.decode(errors="replace").strip().splitlines()
        return f" {text[0][:100]}" if text else ""
