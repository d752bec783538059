"""``/v2/regfront-probe/node/...``: the probe image (registry/probe.py), answered from memory.

Whatever the ``ns``, the store, or the store's health: the probe asks "does this node's kubelet
reach this gateway", nothing else. Blobs are served directly (a kilobyte or two), never 307'd.
"""

from __future__ import annotations

from starlette.types import Scope, Send

from gateway.http import header_value, respond
from registry import probe
from registry.digest import Digest
from registry.errors import ErrorCode, RegistryError
from registry.names import parse_reference


async def get_probe_manifest(scope: Scope, send: Send, reference: str) -> None:
    parsed = parse_reference(reference)
    digest = probe.INDEX_DIGEST if isinstance(parsed, str) else parsed
    found = probe.MANIFESTS.get(digest)
    if found is None:
        raise RegistryError(ErrorCode.MANIFEST_UNKNOWN, {"name": probe.NAME,
                                                        "digest": str(digest)})
    media_type, data = found
    await _send(scope, send, media_type, digest, data)


async def get_probe_blob(scope: Scope, send: Send, reference: str) -> None:
    digest = Digest.parse(reference)
    data = probe.BLOBS.get(digest)
    if data is None:
        raise RegistryError(ErrorCode.BLOB_UNKNOWN, {"digest": str(digest)})
    await _send(scope, send, "application/octet-stream", digest, data)


async def _send(scope: Scope, send: Send, media_type: str, digest: Digest, data: bytes) -> None:
    headers = [(b"content-type", media_type.encode()),
               (b"docker-content-digest", str(digest).encode()),
               (b"content-length", header_value(len(data)))]
    await respond(send, 200, headers, b"" if scope["method"] == "HEAD" else data)
