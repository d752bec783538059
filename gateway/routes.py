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
# Everything a push or delete sends: one 405 UNSUPPORTED whatever the path.
WRITE = ["POST", "PUT", "PATCH", "DELETE"]

routes = [
    Route("/v2/", version_check, methods=READ),
    Route("/v2/{name:path}/manifests/{reference}", get_manifest, methods=READ),
    Route("/v2/{name:path}/blobs/{digest}", get_blob, methods=READ),
    Route("/v2/{name:path}/tags/list", list_tags, methods=READ),
    Route("/v2/{name:path}/referrers/{digest}", list_referrers, methods=READ),
    Route("/v2/{path:path}", unsupported, methods=WRITE),
    Route("/healthz", healthz, methods=READ),
    Route("/readyz", readyz, methods=READ),
]
