"""Liveness, readiness, and the answer to every write."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from gateway.base import resolver
from registry.errors import ErrorCode, RegistryError


async def healthz(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


async def readyz(request: Request) -> Response:
    """503 only when every store is down for hard failures (refused, unreachable, 5xx, denied):
    load balancers route by it, and every gateway shares the stores, so a slow or throttling
    store must not empty the pool - reads wait for it (gateway/stores.py)."""
    stores = resolver(request).stores
    ready = stores.ready
    return JSONResponse({"status": "ok" if ready else "unavailable",
                         "stores": [entry.detail() for entry in stores.entries]},
                        status_code=200 if ready else 503)


async def unsupported(request: Request) -> Response:
    """regfront is a read-only mirror: pushes and deletes go to the source registry."""
    if request.method in ("GET", "HEAD"):
        raise RegistryError(ErrorCode.NOT_FOUND, {"path": request.url.path[:200]})
    raise RegistryError(ErrorCode.UNSUPPORTED, {"method": request.method},
                        headers={"Allow": "GET, HEAD"})


async def metrics(request: Request) -> Response:
    """Prometheus text for this worker (run one worker per container: docs/operations.md)."""
    from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

    registry = CollectorRegistry(auto_describe=False)
    registry.register(request.app.state.metrics.registry)
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
