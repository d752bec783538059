"""``GET/HEAD /v2/<name>/blobs/<digest>``: the bytes, streamed, with single ``Range`` support.

Blobs are opaque octet-streams: never a ``Content-Encoding``, or clients would decode the layer
and fail its digest check.
"""

from __future__ import annotations

import re

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from gateway.base import repository, resolver
from registry.digest import Digest
from registry.errors import ErrorCode, RegistryError
from registry.mediatypes import OCTET_STREAM

_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


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


async def get_blob(request: Request) -> Response:
    name, headers = repository(request)
    digest = Digest.parse(request.path_params["digest"])
    blob = await resolver(request).blob(name, digest)
    headers.update({
        "Docker-Content-Digest": str(digest),
        "ETag": f'"{digest}"',
        "Accept-Ranges": "bytes",
        "Content-Type": OCTET_STREAM,
    })
    span = parse_range(request.headers.get("range"), blob.size)
    start, end, status = 0, blob.size - 1, 200
    if span is not None:
        start, end, status = span[0], span[1], 206
        headers["Content-Range"] = f"bytes {start}-{end}/{blob.size}"
    headers["Content-Length"] = str(end - start + 1)
    if request.method == "HEAD":
        return Response(status_code=status, headers=headers)
    body = await resolver(request).read_blob(blob, start, end - start + 1)
    return StreamingResponse(body, status_code=status, headers=headers)
