"""Warm answers: finished manifest responses, so a repeated manifest request is one dict lookup
and two sends.

A manifest request served from the resolver's caches leaves its answer here, keyed by method,
path and query (so ``ns``, and the ``OCI-Namespace`` header it echoes, are part of the key). An
answer holds exactly as long as what it was built from: by tag until the tag's cache entry
expires (``gateway.tag_ttl``), by digest until evicted, as the resolver's own caches do. What
depends on the request, not the content, still runs for every request: the auth check,
``If-None-Match`` (a 304), the tag's freshness bookkeeping and the metrics. Errors are never
kept: every 404 and 5xx is decided (and counted as a fallback) afresh.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from starlette.types import Send

from gateway.http import API_VERSION_HEADER, Headers, header_value
from registry.digest import Digest

Key = tuple[str, str, bytes]  # method, path, query string
Header = tuple[bytes, bytes]
ENTRY_OVERHEAD = 1024  # bytes an answer costs beyond its body (key, headers, entry), roughly


@dataclass(frozen=True, slots=True)
class Answer:
    name: str  # the stored repository, for the auth check
    tag: str | None  # by tag: freshness hears of every serve
    digest: Digest
    digest_text: str  # for the pull record
    expires: float  # time.monotonic() seconds; inf for an answer by digest
    etag: str
    ok: tuple[Header, ...]  # a 200's headers, Content-Length and the API version included
    not_modified: tuple[Header, ...]  # a 304's
    body: bytes  # empty for a HEAD


def manifest_answer(name: str, tag: str | None, digest: Digest, expires: float | None, etag: bytes,
           headers: Headers, body: bytes, method: str) -> Answer:
    """The answer to a manifest request with ``headers`` (without Content-Length)."""
    return Answer(
        name=name, tag=tag, digest=digest, digest_text=str(digest),
        expires=math.inf if expires is None else expires,
        etag=etag.decode(), not_modified=(*headers, API_VERSION_HEADER),
        ok=(*headers, (b"content-length", header_value(len(body))), API_VERSION_HEADER),
        body=b"" if method == "HEAD" else body)


async def send_answer(send: Send, answer: Answer, if_none_match: str | None) -> int:
    """Send ``answer`` (a 304 when ``If-None-Match`` names its ETag); the status sent."""
    if if_none_match and answer.etag in if_none_match:
        await send({"type": "http.response.start", "status": 304,
                    "headers": answer.not_modified})
        await send({"type": "http.response.body", "body": b""})
        return 304
    await send({"type": "http.response.start", "status": 200, "headers": answer.ok})
    await send({"type": "http.response.body", "body": answer.body})
    return 200


class Answers:
    """The warm answers, at most ``max_entries`` and about ``max_bytes``; the oldest go first."""

    def __init__(self, max_entries: int, max_bytes: int) -> None:
        self.entries: dict[Key, Answer] = {}  # read directly on the hot path
        self.max_entries = max(1, max_entries)
        self.max_bytes = max_bytes
        self._bytes = 0

    def put(self, key: Key, answer: Answer) -> None:
        old = self.entries.pop(key, None)
        if old is not None:
            self._bytes -= len(old.body) + ENTRY_OVERHEAD
        size = len(answer.body) + ENTRY_OVERHEAD
        if size > self.max_bytes:
            return
        while self.entries and (len(self.entries) >= self.max_entries
                                or self._bytes + size > self.max_bytes):
            oldest = self.entries.pop(next(iter(self.entries)))
            self._bytes -= len(oldest.body) + ENTRY_OVERHEAD
        self.entries[key] = answer
        self._bytes += size
