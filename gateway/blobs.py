"""``GET/HEAD /v2/<name>/blobs/<digest>``: a 307 to the bucket, or the bytes with ``Range``.

Hot path, raw ASGI. On a store that can pre-sign (S3), a GET is redirected to a pre-signed GET
URL, so no image byte flows through the gateway; clients keep ``Range`` across the redirect.
A HEAD is always answered here: a pre-signed URL is bound to one method, so redirecting a HEAD
to a GET-signed URL would fail. Blobs are opaque octet-streams: never a ``Content-Encoding``,
or clients would decode the layer and fail its digest check.
"""

from __future__ import annotations

from starlette.types import Scope, Send

from gateway.http import (
    API_VERSION_HEADER,
    header_value,
    parse_range,
    repository,
    request_header,
    respond,
)
from gateway.probe import get_probe_blob
from gateway.resolve import Resolver
from registry import probe
from registry.digest import Digest
from registry.errors import ErrorCode, RegistryError

_OCTET_STREAM = (b"content-type", b"application/octet-stream")
_ACCEPT_RANGES = (b"accept-ranges", b"bytes")
_NO_BODY = (b"content-length", b"0")


async def get_blob(scope: Scope, send: Send, resolver: Resolver, path_name: str,
                   reference: str) -> None:
    if path_name == probe.NAME:
        await get_probe_blob(scope, send, reference)
        return
    name, ns = repository(scope, path_name)
    digest = Digest.parse(reference)
    try:
        blob = await resolver.blob(name, digest)
    except RegistryError as error:
        pull_through = resolver.pull_through
        if error.code is not ErrorCode.BLOB_UNKNOWN or pull_through is None or \
                not pull_through.covers(name):
            raise
        echoed = [(b"oci-namespace", ns.encode("latin-1"))] if ns else []
        await pull_through.serve_blob(send, scope["method"], name, digest, echoed,
                                      request_header(scope, b"range"))
        return
    headers = [(b"docker-content-digest", blob.digest_header)]
    if ns:
        headers.append((b"oci-namespace", ns.encode("latin-1")))
    if scope["method"] == "GET":
        url = await resolver.blob_url(blob)
        if url is not None:
            headers += [(b"location", url), _NO_BODY]
            await respond(send, 307, headers)
            return
    headers += [_OCTET_STREAM, (b"etag", blob.etag), _ACCEPT_RANGES]
    span = parse_range(request_header(scope, b"range"), blob.size)
    start, end, status = 0, blob.size - 1, 200
    if span is not None:
        start, end, status = span[0], span[1], 206
        headers.append((b"content-range", f"bytes {start}-{end}/{blob.size}".encode()))
    headers.append((b"content-length", header_value(end - start + 1)))
    if scope["method"] == "HEAD":
        await respond(send, status, headers)
        return
    body = await resolver.read_blob(blob, start, end - start + 1)
    headers.append(API_VERSION_HEADER)
    await send({"type": "http.response.start", "status": status, "headers": headers})
    async for chunk in body:
        await send({"type": "http.response.body", "body": chunk, "more_body": True})
    await send({"type": "http.response.body", "body": b""})
