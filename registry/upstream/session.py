"""How one request travels to one upstream: URLs, retries, concurrency, authentication, redirects.

The registry API (client.py) says what to ask; a Session gets it asked. Failures raise the
exceptions of errors.py (its docstring draws the hierarchy); what crosses the wire (redirect
safety, Retry-After, raw bodies) is wire.py.

Each request tries ``config.urls`` in order (mirrors first). Transient failures are retried on
the same URL (``config.retries`` times, honouring ``Retry-After``), then the next URL is tried.
A 404 is final and the next URL is not asked: it is an answer about the content, not about the
server's health, and asking every URL about each absent tag would multiply traffic against the
rate-limited primary while making the result depend on which URL happened to answer.

Authentication is the distribution token flow (Bearer, tokens cached per URL and scope until
shortly before they expire) or HTTP Basic, whichever the upstream's 401 asks for, with the
configured login or the worker's cloud identity (cloud.py). Redirects are
followed here, not by httpx, so ``Authorization`` only ever goes to the upstream's own origin:
blob GETs redirect to CDNs and buckets, and S3 rejects a request carrying two auth mechanisms.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from typing import TypeVar

import httpx

from registry.mirrorconfig import UpstreamConfig
from registry.upstream import wire
from registry.upstream.auth import (
    Authenticator,
    AuthError,
    LoginSource,
    TokenServiceUnavailable,
    parse_challenges,
    pick_challenge,
)
from registry.upstream.cloud import DEFAULT_IDENTITIES, Identities, login_source
from registry.upstream.errors import (
    TransientError,
    UpstreamAuthError,
    UpstreamError,
    UpstreamNotFound,
    UpstreamUnavailable,
)

try:
    USER_AGENT = f"regfront-sync/{version('regfront')}"
except PackageNotFoundError:  # running from a checkout that was never installed
    USER_AGENT = "regfront-sync/0+unknown"

MAX_REDIRECTS = 5
RETRY_AFTER_CAP = 60.0  # one wait, whatever Retry-After asks: a sync run must keep moving
BACKOFF_BASE = 0.5
BACKOFF_CAP = 20.0

_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_TRANSIENT = frozenset({429, 500, 502, 503, 504})

T = TypeVar("T")
Sleep = Callable[[float], Awaitable[None]]
Clock = Callable[[], float]
ResponseHook = Callable[[httpx.Response], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Fetched:
    """A whole small response, as ``Session.fetch`` returns it."""

    base: str  # which of config.urls answered
    headers: httpx.Headers
    links: dict[str | None, dict[str, str]]
    body: bytes


class Session:
    """Requests to one upstream: one HTTP client, bounded concurrency, its login."""

    def __init__(self, registry: str, config: UpstreamConfig, *,
                 transport: httpx.AsyncBaseTransport | None = None, sleep: Sleep = asyncio.sleep,
                 clock: Clock = time.monotonic, on_response: ResponseHook | None = None,
                 identities: Identities = DEFAULT_IDENTITIES) -> None:
        """``identities``: where a ``credentials.provider`` login comes from (tests put their
        own token issuers there)."""
        self.registry = registry
        self.config = config
        self._sleep = sleep
        self._clock = clock
        self._random = random.Random()
        self._slots = asyncio.Semaphore(config.concurrency)
        self._interval = 1.0 / config.rate_limit if config.rate_limit else None
        self._next_start = 0.0
        self._client = httpx.AsyncClient(
            transport=transport, verify=self._verify(),
            timeout=httpx.Timeout(config.timeout, connect=config.connect_timeout),
            # The semaphore bounds requests; the pool only needs to keep their connections.
            limits=httpx.Limits(max_connections=None,
                                max_keepalive_connections=config.concurrency),
            headers={"User-Agent": USER_AGENT}, follow_redirects=False,
            # Sees every response's headers (regfront check reports rate-limit headers).
            event_hooks={"response": [on_response]} if on_response else None)
        self.logins: LoginSource | None = login_source(
            config.credentials, registry, config.urls, self._client, clock, identities)
        self._auth = Authenticator(self._client, self.logins, clock)

    def _verify(self) -> ssl.SSLContext | bool:
        if not self.config.tls_verify:
            return False
        if self.config.ca_file is None:
            return True
        # Added to the system's CAs, not instead of them: a private mirror first in
        # config.urls and the public registry after it must both verify.
        context = ssl.create_default_context()
        try:
            context.load_verify_locations(cafile=self.config.ca_file)
        except (OSError, ssl.SSLError) as exc:
            raise UpstreamError(f"{self.registry}: cannot load ca_file {self.config.ca_file}: "
                                f"{exc}") from None
        return context

    async def aclose(self) -> None:
        try:
            if self.logins is not None:
                await self.logins.aclose()
        finally:
            await self._client.aclose()

    def where(self, base: str) -> str:
        """How messages name the registry and which of its URLs answered."""
        return f"{self.registry} ({base})"

    # -- requests ----------------------------------------------------------------------------

    async def fetch(self, method: str, path: str, scope: str, headers: dict[str, str], *,
                    limit: int, raw: bool = False) -> Fetched:
        """A whole small response; failures while reading the body are retried too.

        At most ``limit`` bytes of body, else UpstreamError; ``raw``: the body as sent, not
        decoded (wire.raw_body).
        """
        async def attempt(base: str) -> Fetched:
            async with self._slots:
                response = await self._attempt(base, method, path, scope, headers)
                try:
                    body = await self._read(base, response, limit, raw)
                finally:
                    await response.aclose()
            return Fetched(base, response.headers, response.links, body)

        return await self._with_retries(attempt)

    @contextlib.asynccontextmanager
    async def stream(self, path: str, scope: str,
                     headers: dict[str, str]) -> AsyncIterator[tuple[str, httpx.Response]]:
        """GET ``path``: which URL answered and its open 2xx response, body not yet read.

        Holds one concurrency slot until the block ends, then closes the response. Only the
        request is retried: bytes the caller has read cannot be taken back.
        """
        async def attempt(base: str) -> tuple[str, httpx.Response]:
            await self._slots.acquire()
            try:
                return base, await self._attempt(base, "GET", path, scope, headers)
            except BaseException:
                self._slots.release()
                raise

        base, response = await self._with_retries(attempt)
        try:
            yield base, response
        finally:
            await response.aclose()
            self._slots.release()

    async def _read(self, base: str, response: httpx.Response, limit: int, raw: bool) -> bytes:
        length = response.headers.get("content-length", "")
        if response.request.method == "HEAD":
            return b""
        if length.isdigit() and int(length) > limit:
            raise UpstreamError(f"{self.where(base)}: {response.url.path}: {length} bytes is "
                                f"over the {limit} byte limit")
        chunks, total = [], 0
        try:
            async for chunk in (wire.raw_body(response, None) if raw else response.aiter_bytes()):
                total += len(chunk)
                if total > limit:
                    raise UpstreamError(f"{self.where(base)}: {response.url.path}: over the "
                                        f"{limit} byte limit")
                chunks.append(chunk)
        except httpx.TransportError as exc:
            raise TransientError(wire.describe(exc)) from exc
        return b"".join(chunks)

    async def _with_retries(self, attempt: Callable[[str], Awaitable[T]]) -> T:
        """``attempt(url)`` on each URL in turn until one succeeds or answers finally."""
        failures: list[str] = []
        for base in self.config.urls:
            delay, reason = 0.0, ""
            for number in range(self.config.retries + 1):
                if number:
                    await self._sleep(delay)
                await self._throttle()
                try:
                    return await attempt(base)
                except TransientError as exc:
                    reason = exc.reason
                    delay = (min(exc.retry_after, RETRY_AFTER_CAP) if exc.retry_after is not None
                             else self._backoff(number))
            failures.append(f"{base}: {reason} ({self.config.retries + 1} attempts)")
        raise UpstreamUnavailable(f"{self.registry} ({', '.join(self.config.urls)}): "
                                  f"unavailable: {'; '.join(failures)}")

    def _backoff(self, number: int) -> float:
        # Full jitter: workers that failed together do not come back together.
        return self._random.uniform(0.0, min(BACKOFF_CAP, BACKOFF_BASE * 2 ** number))

    async def _throttle(self) -> None:
        """Space request starts ``1 / rate_limit`` apart; no lock needed between awaits."""
        if self._interval is None:
            return
        now = self._clock()
        start = max(now, self._next_start)
        self._next_start = start + self._interval
        if start > now:
            await self._sleep(start - now)

    async def _attempt(self, base: str, method: str, path: str, scope: str,
                       headers: dict[str, str]) -> httpx.Response:
        """One authenticated request; returns an open 2xx response or raises."""
        request = f"{method} {path}"
        try:
            authorization = await self._auth.authorization(base, scope)
            response = await self._send(base, method, path, headers, authorization)
            if response.status_code == 401 and wire.same_origin(response.url, base):
                challenge = pick_challenge(parse_challenges(
                    response.headers.get_list("www-authenticate")))
                await response.aclose()
                authorization = await self._auth.answer(base, scope, challenge, authorization,
                                                        request)
                response = await self._send(base, method, path, headers, authorization)
                if response.status_code == 401:
                    await response.aclose()
                    raise self._auth.refusal(base, scope, 401, request)
            if response.status_code == 403 and authorization is not None \
                    and wire.same_origin(response.url, base):
                await response.aclose()
                raise self._auth.refusal(base, scope, 403, request)
        except AuthError as exc:
            raise UpstreamAuthError(f"{self.where(base)}: {exc}", exc.status) from None
        except TokenServiceUnavailable as exc:
            raise TransientError(str(exc)) from exc
        return await self._check(base, method, path, response)

    async def _send(self, base: str, method: str, path: str, headers: dict[str, str],
                    authorization: str | None) -> httpx.Response:
        url = httpx.URL(base + path)
        for _ in range(MAX_REDIRECTS + 1):
            sent = dict(headers)
            if authorization is not None and wire.same_origin(url, base):
                sent["Authorization"] = authorization
            request = self._client.build_request(method, url, headers=sent)
            try:
                response = await self._client.send(request, stream=True)
            except httpx.TransportError as exc:
                raise TransientError(f"{method} {wire.redact(url)}: {wire.describe(exc)}") from exc
            location = response.headers.get("location")
            if response.status_code not in _REDIRECTS or not location:
                return response
            await response.aclose()
            url = response.url.join(location)
        raise UpstreamError(f"{self.where(base)}: {method} {path}: more than {MAX_REDIRECTS} "
                            "redirects")

    async def _check(self, base: str, method: str, path: str,
                     response: httpx.Response) -> httpx.Response:
        status = response.status_code
        if 200 <= status < 300:
            return response
        detail = await wire.error_detail(response)
        await response.aclose()
        target = (path if wire.same_origin(response.url, base)
                  else f"{path} -> {wire.redact(response.url)}")
        where = f"{self.where(base)}: {method} {target}"
        if status in _TRANSIENT:
            retry_after = (wire.parse_retry_after(response.headers.get("retry-after"))
                           if status in (429, 503) else None)
            raise TransientError(f"{method} {target}: {status}{detail}", retry_after)
        if status == 404:
            raise UpstreamNotFound(f"{where}: 404{detail}", status)
        if status == 403 and wire.same_origin(response.url, base):
            raise UpstreamAuthError(f"{where}: 403 access denied{detail}", status)
        raise UpstreamError(f"{where}: {status}{detail}", status)
