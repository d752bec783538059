"""``create_app(config)``: the gateway's ASGI app, its stores, and error handling.

Every failure is answered through ``gateway.http.answer`` (store failures: a 503 naming the
kind; bugs: a 500, their traceback logged once here) and every answer that sends containerd to
the upstream is counted by ``Fallbacks``.
"""

from __future__ import annotations

import contextlib
import logging
import random
import re
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from anyio import to_thread
from opentelemetry.sdk.trace.export import SpanExporter
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.answers import Answer, send_answer
from gateway.auth import Auth
from gateway.fallbacks import Fallbacks
from gateway.freshness import Freshness
from gateway.gcwatch import GCWatch
from gateway.http import (
    API_VERSION_HEADER,
    INTERNAL_ERROR,
    answer,
    render_error,
    repository,
    request_header,
    send_error,
)
from gateway.metrics import GatewayMetrics, start_otlp_metrics
from gateway.misses import MissQueue
from gateway.pullthrough import PullThrough
from gateway.resolve import Resolver
from gateway.routes import HOT_PATH, framework_route, hot_routes, routes
from gateway.stores import StorePolicy, StoreSet
from gateway.syncwatch import SyncWatch
from gateway.tracing import Tracing
from gateway.usage import UsageRecorder
from registry import layout, probe
from registry.config import Config
from registry.errors import ErrorCode, RegistryError
from registry.store import NotFound, ObjectStore, open_store
from registry.store.errors import StoreError

logger = logging.getLogger("regfront.gateway")
access_log = logging.getLogger("regfront.access")

_HTTP_CODES = {404: ErrorCode.NOT_FOUND, 405: ErrorCode.UNSUPPORTED}


def _response(request: Request, error: RegistryError) -> Response:
    fallbacks: Fallbacks = request.app.state.fallbacks
    fallbacks.answered(request.scope, error)
    status, headers, body = render_error(error)
    response = Response(body, status_code=status)
    response.raw_headers = headers
    return response


async def _failure(request: Request, exc: Exception) -> Response:
    """A ``RegistryError``, a store failure, or (Starlette re-raises it after this answer, and
    ``Gateway`` logs it once) a bug."""
    return _response(request, answer(exc))


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    code = _HTTP_CODES.get(exc.status_code, ErrorCode.NOT_FOUND)
    headers = {"Allow": "GET, HEAD"} if code is ErrorCode.UNSUPPORTED else None
    return _response(request, RegistryError(code, headers=headers))


class Gateway:
    """Pure ASGI: the hot routes directly, the rest through Starlette (version header added).

    ``auth`` is ``None`` unless the config has ``auth:``; then every request naming a
    repository is checked here, before any handler runs (gateway/auth.py). ``usage`` counts the
    manifests served (gateway/usage.py), for retention's pulled_within and for exposure.
    """

    def __init__(self, resolver: Resolver, framework: ASGIApp, fallbacks: Fallbacks,
                 auth: Auth | None = None, tracing: Tracing | None = None,
                 access_log_sample: float = 0.0, usage: UsageRecorder | None = None) -> None:
        self.resolver = resolver
        self.usage = usage
        self.framework = framework
        self.fallbacks = fallbacks
        self.auth = auth
        self.tracing = tracing  # None unless spans go somewhere: then no span work at all
        self.metrics = resolver.metrics
        self.access_log_sample = access_log_sample
        self.answers = resolver.answers.entries  # warm answers (gateway/answers.py)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.framework(scope, receive, send)
            return
        started = time.perf_counter()
        # A repeated manifest request: its finished answer, unless traced (spans need the
        # full path).
        warm = (self.answers.get((scope["method"], scope["path"], scope["query_string"]))
                if self.tracing is None else None)
        if warm is not None and warm.expires > time.monotonic():
            route = "manifests"
            status = await self._warm(scope, send, warm)
        else:
            match = HOT_PATH.match(scope["path"]) if scope["method"] in ("GET", "HEAD") else None
            route = match["kind"] if match is not None else framework_route(scope["path"])[0]
            if self.tracing is None:
                status = await self._dispatch(scope, receive, send, match)
            else:
                with self.tracing.request(scope, route) as span:
                    status = await self._dispatch(scope, receive, send, match)
                    if span is not None:
                        span.set_attribute("http.response.status_code", status)
        elapsed = time.perf_counter() - started
        # Plain dict and bucket increments: an SDK instrument call here would cost ~40%.
        self.metrics.requests[(route, scope["method"], _STATUS.get(status) or str(status))] += 1
        self.metrics.duration[(route,)].observe(elapsed)
        if self.access_log_sample and random.random() < self.access_log_sample:
            access_log.info("%s %s %d", scope["method"], scope["path"], status, extra={
                "fields": {"method": scope["method"], "path": scope["path"], "route": route,
                           "status": status, "seconds": round(elapsed, 6)}})

    async def _dispatch(self, scope: Scope, receive: Receive, send: Send,
                        match: re.Match[str] | None) -> int:
        """Answer the request; returns the status sent (0 if none was)."""
        if match is not None:
            return await self._hot(scope, send, match["kind"], match["name"], match["reference"])
        status = 0

        async def observed(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        if self.auth is not None:
            try:
                await self.auth.guard(scope)
            except RegistryError as error:
                await send_error(observed, error, scope["method"])
                return status

        async def stamped(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", ()), API_VERSION_HEADER]
            await observed(message)

        try:
            await self.framework(scope, receive, stamped)
        except Exception:
            # Starlette answered it (a 500, through _failure) and re-raises it for the server to
            # log: logged here instead, once, with its traceback.
            logger.exception("bug answering %s %s", scope["method"], scope["path"][:200])
            if not status:
                raise
        return status

    async def _hot(self, scope: Scope, send: Send, kind: str, name: str, reference: str) -> int:
        """Answer a manifest or blob request; returns the status sent."""
        status = 0
        digest = b""

        async def tracked(message: Message) -> None:
            nonlocal status, digest
            if not status:
                status = message.get("status", 200)
                if kind == "manifests":
                    digest = next((v for k, v in message.get("headers", ())
                                   if k == b"docker-content-digest"), b"")
            await send(message)

        try:
            if self.auth is not None:  # the repository as stored (ns applied) is what's checked
                await self.auth.check(scope, repository(scope, name)[0])
            await hot_routes[kind](scope, tracked, self.resolver, name, reference)
            if digest and self.usage is not None and status in (200, 304) and \
                    name != probe.NAME:
                # A manifest served (or confirmed unchanged) is a pull; the tag it was asked by.
                tag = None if reference == digest.decode() else reference
                self.usage.record(repository(scope, name)[0], digest.decode(), tag)
        except Exception as exc:
            if status:
                raise  # mid-body: only closing the connection tells the client
            # A 404's repository, for the fallback count (its name parsed before it was raised).
            await self._failed(scope, tracked, exc, lambda: repository(scope, name)[0])
        return status

    async def _warm(self, scope: Scope, send: Send, warm: Answer) -> int:
        """A warm manifest answer (gateway/answers.py): checked, told to freshness and
        recorded as a pull as any manifest request is, then sent; returns the status sent."""
        if self.auth is not None:
            try:
                await self.auth.check(scope, warm.name)
            except Exception as exc:
                return await self._failed(scope, send, exc, lambda: warm.name)
        self.resolver.served(warm.name, warm.digest, warm.tag)
        self.metrics.cache[("answers", "hit")] += 1
        status = await send_answer(send, warm, request_header(scope, b"if-none-match"))
        if self.usage is not None:  # a 200 or a 304: a pull, as in _hot
            self.usage.record(warm.name, warm.digest_text, warm.tag)
        return status

    async def _failed(self, scope: Scope, send: Send, exc: Exception,
                      stored: Callable[[], str]) -> int:
        """Answer a hot-path failure before any byte was sent, and count it if it sends
        containerd away (``stored()``: the repository as stored, for a 404); the status."""
        error = answer(exc)
        if error is INTERNAL_ERROR:
            logger.error("bug answering %s %s", scope["method"], scope["path"][:200],
                         exc_info=exc)
        await send_error(send, error, scope["method"])
        self.fallbacks.answered(scope, error, stored() if error.status == 404 else None)
        return error.status


_STATUS = {code: str(code)
           for code in (200, 206, 304, 307, 400, 401, 403, 404, 405, 416, 500, 503)}


async def warm_up(resolver: Resolver) -> None:
    """Pay one-time costs before the first request does: anyio's thread pool and each store's
    client (an S3 client loads botocore's service model: ~150 ms on a new worker)."""
    await to_thread.run_sync(lambda: None)
    for entry in resolver.stores.entries:
        with contextlib.suppress(NotFound, StoreError):  # counted in the store's health
            await resolver.stores.first(lambda s: s.size(layout.WARM_UP), layout.WARM_UP,
                                        operation="warm_up", only=entry, retry=False)


def create_app(config: Config, stores: list[ObjectStore] | None = None, *,
               span_exporter: SpanExporter | None = None) -> Gateway:
    """The gateway for ``config``; tests may pass ready stores (they are not closed) and an
    exporter that receives every span (with the configured sampling)."""
    owned = stores is None
    if stores is None:
        stores = [open_store(s.url) for s in config.storage]
    metrics = GatewayMetrics()
    mirrors = config.mirror_index()
    # The one way to the stores: reads, miss records, pull-through commits, sync state.
    store_set = StoreSet(stores, StorePolicy.of(config.gateway), metrics=metrics)
    primary = store_set.guarded(store_set.primary)
    # Miss records and sync state are repeated by the next miss, the next minute: one attempt.
    once = store_set.guarded(store_set.primary, retry=False)
    misses = MissQueue(mirrors, once, metrics) if config.mirror else None
    checks = Freshness(mirrors, misses, metrics=metrics)
    freshness = checks if checks.enabled else None  # nothing to check: nothing on the hot path
    pull_through = (PullThrough(mirrors, primary, metrics=metrics) if any(
        u.on_miss == "pull-through" for u in config.upstreams.values()) else None)
    resolver = Resolver(store_set, config.gateway, metrics, misses, freshness, pull_through)
    auth = Auth(config, mirrors) if config.auth is not None else None  # reads files: ConfigError
    telemetry = config.telemetry
    tracing = (Tracing(service_name=telemetry.service_name, ratio=telemetry.trace_sample_ratio,
                       otlp_endpoint=telemetry.otlp_endpoint, exporter=span_exporter)
               if telemetry.otlp_endpoint or span_exporter is not None else None)
    if freshness is not None:
        metrics.watch_breakers(freshness)
    sync_watch = (SyncWatch(once, [rule.name for rule in config.mirror], metrics)
                  if config.mirror else None)
    gc_watch = GCWatch(once, metrics)
    # Pull records: a batch per interval, written once (the next batch carries on).
    usage = (UsageRecorder(once, interval=config.gateway.usage_interval,
                           max_entries=config.gateway.usage_entries)
             if config.gateway.usage_entries else None)
    if usage is not None:
        usage.export(metrics)
    fallbacks = Fallbacks(metrics, mirrors)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await warm_up(resolver)
        meters = start_otlp_metrics(metrics, telemetry.otlp_endpoint, telemetry.service_name)
        if sync_watch is not None:
            sync_watch.start()
        gc_watch.start()
        if usage is not None:
            usage.start()
        yield
        if usage is not None:
            await usage.stop()  # what was counted since the last batch is written now
        await gc_watch.stop()
        if sync_watch is not None:
            await sync_watch.stop()
        if meters is not None:
            meters.shutdown()
        if tracing is not None:
            tracing.shutdown()
        if owned:
            await resolver.close()

    framework = Starlette(
        routes=routes,
        lifespan=lifespan,
        exception_handlers={
            RegistryError: _failure,
            StoreError: _failure,
            HTTPException: _http_error,
            Exception: _failure,  # a bug: Starlette answers, then re-raises it (see Gateway)
        },
    )
    framework.state.resolver = resolver
    framework.state.tokens = auth.tokens if auth is not None else None
    framework.state.metrics = metrics
    framework.state.fallbacks = fallbacks
    return Gateway(resolver, framework, fallbacks, auth, tracing, telemetry.access_log_sample,
                   usage)
