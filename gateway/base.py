"""``/v2/`` and what the framework-routed endpoints share."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from gateway import http
from gateway.resolve import Resolver


async def version_check(request: Request) -> Response:
    """The API base: 200 ``{}`` tells clients this is a v2 registry (auth comes later)."""
    return Response(b"{}", media_type="application/json")


def resolver(request: Request) -> Resolver:
    value: Resolver = request.app.state.resolver
    return value


def repository(request: Request) -> tuple[str, dict[str, str]]:
    """The stored name (``ns`` prepended, as containerd mirrors send it) and headers to echo."""
    name, ns = http.repository(request.scope, request.path_params["name"])
    return name, ({"OCI-Namespace": ns} if ns else {})
