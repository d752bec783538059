"""Liveness, readiness, and the answer to every write."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from gateway.base import resolver
from registry.errors import ErrorCode, RegistryError


async def healthz(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


async def readyz(request: Request) -> Response:
    stores = [{"url": store.url} for store in resolver(request).stores]
    return JSONResponse({"status": "ok", "stores": stores})


async def unsupported(request: Request) -> Response:
    """regfront is a read-only mirror: pushes and deletes go to the source registry."""
    if request.method in ("GET", "HEAD"):
        raise RegistryError(ErrorCode.NOT_FOUND, {"path": request.url.path[:200]})
    raise RegistryError(ErrorCode.UNSUPPORTED, {"method": request.method},
                        headers={"Allow": "GET, HEAD"})
