"""``/v2/`` and what every endpoint shares: the repository a request names."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from gateway.resolve import Resolver
from registry.names import repository_name

API_VERSION_HEADER = (b"docker-distribution-api-version", b"registry/2.0")


async def version_check(request: Request) -> Response:
    """The API base: 200 ``{}`` tells clients this is a v2 registry (auth comes later)."""
    return Response(b"{}", media_type="application/json")


def resolver(request: Request) -> Resolver:
    value: Resolver = request.app.state.resolver
    return value


def repository(request: Request) -> tuple[str, dict[str, str]]:
    """The stored name (``ns`` prepended, as containerd mirrors send it) and headers to echo."""
    ns = request.query_params.get("ns")
    name = repository_name(request.path_params["name"], ns)
    return name, ({"OCI-Namespace": ns} if ns else {})
