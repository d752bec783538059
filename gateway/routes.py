"""The route table: the pull subset of the OCI distribution API.

Manifests and blobs are the hot path and are dispatched before the framework (raw ASGI,
``gateway/http.py``); everything else is an ordinary Starlette route.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable

from starlette.routing import Route
from starlette.types import Scope, Send

from gateway.base import version_check
from gateway.blobs import get_blob
from gateway.health import healthz, metrics, readyz, unsupported
from gateway.manifests import get_manifest
from gateway.referrers import list_referrers
from gateway.resolve import Resolver
from gateway.tags import list_tags
from gateway.token import token_endpoint

READ = ["GET", "HEAD"]

HotHandler = Callable[[Scope, Send, Resolver, str, str], Awaitable[None]]
# GET/HEAD /v2/<name>/(manifests|blobs)/<reference>, <name> with any number of segments.
HOT_PATH = re.compile(r"^/v2/(?P<name>.+)/(?P<kind>manifests|blobs)/(?P<reference>[^/]+)$")
# The framework-routed requests that name a repository: scoped like manifests when auth is on.
NAMED_PATH = re.compile(r"^/v2/(?P<name>.+)/(?:tags/list|referrers/[^/]+)$")
hot_routes: dict[str, HotHandler] = {
    "manifests": get_manifest,
    "blobs": get_blob,
}

routes = [
    Route("/v2/", version_check, methods=READ),
    Route("/v2/{name:path}/tags/list", list_tags, methods=READ),
    Route("/v2/{name:path}/referrers/{digest}", list_referrers, methods=READ),
    Route("/healthz", healthz, methods=READ),
    Route("/readyz", readyz, methods=READ),
    Route("/metrics", metrics, methods=READ),
    Route("/token", token_endpoint, methods=["GET", "POST"]),  # 404 while auth is off
    # Last: any other /v2/ request is a write (405 UNSUPPORTED) or an unknown endpoint (404).
    Route("/v2/{path:path}", unsupported),
]
