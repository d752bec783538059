"""``create_app(config)``: the gateway's ASGI app, its stores, and error handling."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.auth import Auth
from gateway.freshness import Freshness
from gateway.http import API_VERSION_HEADER, render_error, repository, send_error
from gateway.misses import MissQueue
from gateway.pullthrough import PullThrough
from gateway.resolve import Resolver
from gateway.routes import HOT_PATH, hot_routes, routes
from registry.config import Config
from registry.errors import ErrorCode, RegistryError
from registry.store import ObjectStore, open_store

logger = logging.getLogger("regfront.gateway")

_HTTP_CODES = {404: ErrorCode.NOT_FOUND, 405: ErrorCode.UNSUPPORTED}
STORE_UNAVAILABLE = RegistryError(ErrorCode.UNAVAILABLE, {"reason": "storage unavailable"})


def _response(error: RegistryError) -> Response:
    status, headers, body = render_error(error)
    response = Response(body, status_code=status)
    response.raw_headers = headers
    return response


async def _registry_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RegistryError)
    return _response(exc)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    code = _HTTP_CODES.get(exc.status_code, ErrorCode.NOT_FOUND)
    headers = {"Allow": "GET, HEAD"} if code is ErrorCode.UNSUPPORTED else None
    return _response(RegistryError(code, headers=headers))


async def _store_error(request: Request, exc: Exception) -> Response:
    # A failing store must cost a fast 503 (containerd then tries its next host), not a hang.
    logger.warning("store failure on %s %s: %r", request.method, request.url.path, exc)
    return _response(STORE_UNAVAILABLE)


class Gateway:
    """Pure ASGI: the hot routes directly, the rest through Starlette (version header added).

    ``auth`` is ``None`` unless the config has ``auth:``; then every request naming a
    repository is checked here, before any handler runs (gateway/auth.py).
    """

    def __init__(self, resolver: Resolver, framework: ASGIApp, auth: Auth | None = None) -> None:
        self.resolver = resolver
        self.framework = framework
        self.auth = auth

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] in ("GET", "HEAD"):
            match = HOT_PATH.match(scope["path"])
            if match is not None:
                await self._hot(scope, send, match["kind"], match["name"], match["reference"])
                return
        if scope["type"] != "http":
            await self.framework(scope, receive, send)
            return
        if self.auth is not None:
            try:
                await self.auth.guard(scope)
            except RegistryError as error:
                await send_error(send, error, scope["method"])
                return

        async def stamped(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", ()), API_VERSION_HEADER]
            await send(message)

        await self.framework(scope, receive, stamped)

    async def _hot(self, scope: Scope, send: Send, kind: str, name: str, reference: str) -> None:
        started = False

        async def tracked(message: Message) -> None:
            nonlocal started
            started = True
            await send(message)

        try:
            if self.auth is not None:  # the repository as stored (ns applied) is what's checked
                await self.auth.check(scope, repository(scope, name)[0])
            await hot_routes[kind](scope, tracked, self.resolver, name, reference)
        except RegistryError as error:
            if started:
                raise
            await send_error(send, error, scope["method"])
        except Exception as exc:
            if started:
                raise  # mid-body: only closing the connection tells the client
            logger.warning("store failure on %s %s: %r", scope["method"], scope["path"], exc)
            await send_error(send, STORE_UNAVAILABLE, scope["method"])


def create_app(config: Config, stores: list[ObjectStore] | None = None) -> Gateway:
    """The gateway for ``config``; tests may pass ready stores (they are not closed)."""
    owned = stores is None
    if stores is None:
        stores = [open_store(s.url) for s in config.storage]
    misses = MissQueue(config, stores[-1]) if config.mirror else None
    checks = Freshness(config, misses)
    freshness = checks if checks.rules else None  # nothing to check: nothing on the hot path
    pull_through = (PullThrough(config, stores[-1]) if any(
        u.on_miss == "pull-through" for u in config.upstreams.values()) else None)
    resolver = Resolver(stores, config.gateway, misses, freshness, pull_through)
    auth = Auth(config) if config.auth is not None else None  # reads its files: ConfigError

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        if owned:
            await resolver.close()

    framework = Starlette(
        routes=routes,
        lifespan=lifespan,
        exception_handlers={
            RegistryError: _registry_error,
            HTTPException: _http_error,
            Exception: _store_error,
        },
    )
    framework.state.resolver = resolver
    framework.state.tokens = auth.tokens if auth is not None else None
    return Gateway(resolver, framework, auth)
