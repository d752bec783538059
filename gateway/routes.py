"""The route table: the pull subset of the OCI distribution API.

Manifests and blobs are the hot path and are dispatched before the framework (raw ASGI,
``gateway/http.py``); everything else is an ordinary Starlette route.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from functools import lru_cache

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
hot_routes: dict[str, HotHandler] = {
    "manifests": get_manifest,
    "blobs": get_blob,
}

# Everything else, through the framework. Each route's name is its metric label; a route whose
# path has ``{name}`` names a repository, which auth scopes like a manifest (gateway/auth.py).
routes = [
    Route("/v2/", version_check, methods=READ, name="base"),
    Route("/v2/{name:path}/tags/list", list_tags, methods=READ, name="tags"),
    Route("/v2/{name:path}/referrers/{digest}", list_referrers, methods=READ, name="referrers"),
    Route("/healthz", healthz, methods=READ, name="healthz"),
    Route("/readyz", readyz, methods=READ, name="readyz"),
    Route("/metrics", metrics, methods=READ, name="metrics"),
    Route("/token", token_endpoint, methods=["GET", "POST"], name="token"),  # 404 if auth is off
    # Last: any other /v2/ request is a write (405 UNSUPPORTED) or an unknown endpoint (404).
    Route("/v2/{path:path}", unsupported, name="other"),
]


@lru_cache(maxsize=4096)
def framework_route(path: str) -> tuple[str, str | None]:
    """The framework route ``path`` takes: its metric label (bounded: never the path itself),
    and the repository name in the path, if it names one."""
    for route in routes:
        match = route.path_regex.match(path)
        if match is not None:
            return route.name, match.groupdict().get("name")
    return "other", None
