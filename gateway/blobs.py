"""``GET/HEAD /v2/<name>/blobs/<digest>``: a 307 to the bucket, or the bytes with ``Range``.

Hot path, raw ASGI. On a store that can pre-sign (S3), a GET is redirected to a pre-signed GET
URL, so no image byte flows through the gateway; clients keep ``Range`` across the redirect.
A HEAD is always answered here: a pre-signed URL is bound to one method, so redirecting a HEAD
to a GET-signed URL would fail. Blobs are opaque octet-streams: never a ``Content-Encoding``,
or clients would decode the layer and fail its digest check.
"""

from __future__ import annotations

from starlette.types import Scope, Send

from gateway.http import bytes_answer, repository, request_header, respond, stream
from gateway.probe import get_probe_blob
from gateway.resolve import Blob, Resolver
from registry import probe
from registry.digest import Digest
from registry.errors import ErrorCode, RegistryError
from registry.store import Reader

_NO_BODY = (b"content-length", b"0")


async def get_blob(scope: Scope, send: Send, resolver: Resolver, path_name: str,
                   reference: str) -> None:
    if path_name == probe.NAME:
        await get_probe_blob(scope, send, reference)
        return
    name, ns = repository(scope, path_name)
    digest = Digest.parse(reference)
    range_header = request_header(scope, b"range")
    method = scope["method"]
    try:
        blob, opened = await _stored(resolver, method, name, digest, range_header)
    except RegistryError as error:
        pull_through = resolver.pull_through
        if error.code is not ErrorCode.BLOB_UNKNOWN or pull_through is None or \
                not pull_through.covers(name):
            raise
        if not await pull_through.adopt(name, digest):
            echoed = [(b"oci-namespace", ns.encode("latin-1"))] if ns else []
            await pull_through.serve_blob(send, method, name, digest, echoed, range_header)
            return
        blob, opened = await _stored(resolver, method, name, digest, range_header)
    headers = [(b"oci-namespace", ns.encode("latin-1"))] if ns else []
    if method == "GET":
        url = await resolver.blob_url(blob)
        if url is not None:
            headers += [(b"docker-content-digest", blob.digest_header), (b"location", url),
                        _NO_BODY]
            await respond(send, 307, headers)
            return
    status, start, end = bytes_answer(blob.digest_header, blob.etag, blob.size, range_header,
                                      headers)
    body = opened
    if body is None and method == "GET":
        body = await resolver.read_blob(blob, start, end - start + 1)
    await stream(send, status, headers, body)


async def _stored(resolver: Resolver, method: str, name: str, digest: Digest,
                  range_header: str | None) -> tuple[Blob, Reader | None]:
    """The stored blob; a whole GET's bytes opened with its size when that saves a call."""
    if method == "GET" and range_header is None:
        return await resolver.open_blob(name, digest)
    return await resolver.blob(name, digest), None
