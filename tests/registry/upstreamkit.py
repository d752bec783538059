"""Shared by the upstream client's tests: scripted registries (httpx.MockTransport), an injected
sleep and clock that record instead of waiting, and a transport that keeps what it sent."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

import httpx

from registry.digest import Digest
from registry.mediatypes import OCI_MANIFEST
from registry.mirrorconfig import UpstreamConfig
from registry.upstream.client import (
    Upstream,
)

REG = "https://reg.test"
MIRROR = "https://mirror.test"
CDN = "https://cdn.test"
NAME = "team/app"
MANIFEST = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": {},
                       "layers": []}).encode()
MANIFEST_DIGEST = Digest.from_bytes(MANIFEST)


class Sleeps:
    """The injected ``sleep``: records each wait and moves the fake clock on by it."""

    def __init__(self, clock: Clock | None = None) -> None:
        self.calls: list[float] = []
        self.clock = clock

    async def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)
        if self.clock is not None:
            self.clock.now += seconds


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


Handler = Callable[[httpx.Request], httpx.Response | Awaitable[httpx.Response]]


class Fake:
    """A scripted set of HTTP origins behind httpx.MockTransport; unknown URLs answer 404.

    ``on(url, *responses)`` answers with each response in turn, repeating the last; a callable
    response is called with the request.
    """

    def __init__(self) -> None:
        self.routes: dict[str, list[httpx.Response | Handler]] = {}
        self.requests: list[httpx.Request] = []

    def on(self, url: str, *responses: httpx.Response | Handler) -> None:
        self.routes[url] = list(responses)

    async def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        key = str(request.url.copy_with(query=None))
        script = self.routes.get(key)
        if not script:
            return httpx.Response(404, json={"errors": [{"code": "NOT_FOUND", "message": "x"}]})
        answer = script.pop(0) if len(script) > 1 else script[0]
        if callable(answer):
            result = answer(request)
            return await result if isinstance(result, Awaitable) else result
        # Built with content=, a response is already read, so one object can answer many
        # requests; the client hands out such a body as it is (the real servers cover streams).
        return answer

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)

    def to(self, origin: str) -> list[httpx.Request]:
        return [r for r in self.requests if str(r.url).startswith(origin)]


def config(*urls: str, **options: Any) -> UpstreamConfig:
    return UpstreamConfig(urls=list(urls or [REG]), **options)


def upstream(fake: Fake, *urls: str, sleep: Sleeps | None = None, clock: Clock | None = None,
             page_size: int = 1000, **options: Any) -> Upstream:
    return Upstream("reg.test", config(*urls, **options), transport=fake.transport(),
                    sleep=sleep or Sleeps(), clock=clock or Clock(), page_size=page_size)


def manifest_response(body: bytes = MANIFEST, media_type: str = OCI_MANIFEST,
                      digest: Digest | None = None) -> httpx.Response:
    headers = {"Content-Type": media_type}
    if digest is not None:
        headers["Docker-Content-Digest"] = str(digest)
    return httpx.Response(200, content=body, headers=headers)


class Recording(httpx.AsyncBaseTransport):
    """A real HTTP transport that keeps every request it sent."""

    def __init__(self) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.requests: list[httpx.Request] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()
