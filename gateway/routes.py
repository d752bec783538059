"""The route table: the pull subset of the OCI distribution API."""

from __future__ import annotations

from starlette.routing import Route

from gateway.base import version_check
from gateway.blobs import get_blob
from gateway.health import healthz, readyz, unsupported
from gateway.manifests import get_manifest
from gateway.referrers import list_referrers
from gateway.tags import list_tags

READ = ["GET", "HEAD"]

routes = [
    Route("/v2/", version_check, methods=READ),
    Route("/v2/{name:path}/manifests/{reference}", get_manifest, methods=READ),
    Route("/v2/{name:path}/blobs/{digest}", get_blob, methods=READ),
    Route("/v2/{name:path}/tags/list", list_tags, methods=READ),
    Route("/v2/{name:path}/referrers/{digest}", list_referrers, methods=READ),
    Route("/healthz", healthz, methods=READ),
    Route("/readyz", readyz, methods=READ),
    # Last: any other /v2/ request is a write (405 UNSUPPORTED) or an unknown endpoint (404).
    Route("/v2/{path:path}", unsupported),
]
