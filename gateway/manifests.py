"""``GET/HEAD /v2/<name>/manifests/<reference>``: stored bytes, verbatim (hot path, raw ASGI).

The stored manifest is served whatever the client's ``Accept`` says: converting would change
its digest, and every current client accepts the OCI and Docker v2 types (docs/api.md).
"""

from __future__ import annotations

from starlette.types import Scope, Send

from gateway.answers import manifest_answer, send_answer
from gateway.http import repository, request_header
from gateway.probe import get_probe_manifest
from gateway.resolve import Resolver
from registry import probe
from registry.errors import ErrorCode, RegistryError
from registry.names import Reference, parse_reference


def manifest_reference(name: str, text: str) -> Reference:
    """A tag or digest; anything else names no manifest: 404 MANIFEST_UNKNOWN, as registry:2
    answers (its route does not match) and as clients expect of a GET or HEAD."""
    try:
        return parse_reference(text)
    except RegistryError as error:
        raise RegistryError(ErrorCode.MANIFEST_UNKNOWN, {"name": name,
                                                        "reference": text[:200]}) from error


async def get_manifest(scope: Scope, send: Send, resolver: Resolver, path_name: str,
                       reference: str) -> None:
    if path_name == probe.NAME:
        await get_probe_manifest(scope, send, reference)
        return
    name, ns = repository(scope, path_name)
    parsed = manifest_reference(name, reference)
    resolver.metrics.cache[("answers", "miss")] += 1
    warm = resolver.warm_manifest(name, parsed)
    if warm is None:
        manifest, expires, cached = await resolver.manifest(name, parsed), None, False
    else:
        (manifest, expires), cached = warm, True
    headers = [
        (b"content-type", manifest.media_type.encode()),
        (b"docker-content-digest", manifest.digest_header),
        (b"etag", manifest.etag),
    ]
    if ns:
        headers.append((b"oci-namespace", ns.encode("latin-1")))
    method = scope["method"]
    finished = manifest_answer(name, parsed if isinstance(parsed, str) else None,
                               manifest.digest, expires, manifest.etag, headers,
                               manifest.data, method)
    if cached:  # built from the caches alone: it holds as long as they do (gateway/answers.py)
        resolver.answers.put((method, scope["path"], scope["query_string"]), finished)
    await send_answer(send, finished, request_header(scope, b"if-none-match"))
