"""``GET/HEAD /v2/<name>/manifests/<reference>``: stored bytes, verbatim.

The stored manifest is served whatever the client's ``Accept`` says: converting would change
its digest, and every current client accepts the OCI and Docker v2 types (docs/api.md).
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from gateway.base import repository, resolver
from registry.names import parse_reference


async def get_manifest(request: Request) -> Response:
    name, headers = repository(request)
    reference = parse_reference(request.path_params["reference"])
    manifest = await resolver(request).manifest(name, reference)
    digest = str(manifest.digest)
    etag = f'"{digest}"'
    headers.update({
        "Docker-Content-Digest": digest,
        "ETag": etag,
        "Content-Type": manifest.media_type,
    })
    if etag in request.headers.get("if-none-match", ""):
        return Response(status_code=304, headers=headers)
    if request.method == "HEAD":
        headers["Content-Length"] = str(len(manifest.data))
        return Response(headers=headers)
    return Response(manifest.data, headers=headers)
