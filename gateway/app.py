"""``create_app(config)``: the Starlette app, its stores, and the one error renderer."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.base import API_VERSION_HEADER
from gateway.resolve import Resolver
from gateway.routes import routes
from registry.config import Config
from registry.errors import ErrorCode, RegistryError
from registry.store import ObjectStore, open_store

logger = logging.getLogger("regfront.gateway")

_HTTP_CODES = {404: ErrorCode.NOT_FOUND, 405: ErrorCode.UNSUPPORTED}


def render_error(error: RegistryError) -> Response:
    """The only place an error body is built: ``{"errors": [{code, message, detail}]}``."""
    return JSONResponse({"errors": [error.to_json()]}, status_code=error.status,
                        headers=error.headers)


async def _registry_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RegistryError)
    return render_error(exc)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    code = _HTTP_CODES.get(exc.status_code, ErrorCode.NOT_FOUND)
    headers = {"Allow": "GET, HEAD"} if code is ErrorCode.UNSUPPORTED else None
    return render_error(RegistryError(code, headers=headers))


async def _store_error(request: Request, exc: Exception) -> Response:
    # A failing store must cost a fast 503 (containerd then tries its next host), not a hang.
    logger.warning("store failure on %s %s: %r", request.method, request.url.path, exc)
    return render_error(RegistryError(ErrorCode.UNAVAILABLE, {"reason": "storage unavailable"}))


class APIVersionHeader:
    """Pure ASGI: stamp ``Docker-Distribution-API-Version`` on every response, errors too."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def stamped(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", ()), API_VERSION_HEADER]
            await send(message)

        await self.app(scope, receive, stamped)


def create_app(config: Config, stores: list[ObjectStore] | None = None) -> ASGIApp:
    """The gateway for ``config``; tests may pass ready stores (they are not closed)."""
    owned = stores is None
    resolver = Resolver(stores if stores is not None else
                        [open_store(s.url) for s in config.storage], config.gateway)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        if owned:
            await resolver.close()

    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        exception_handlers={
            RegistryError: _registry_error,
            HTTPException: _http_error,
            Exception: _store_error,
        },
    )
    app.state.resolver = resolver
    return APIVersionHeader(app)
