"""The client sync (and the gateway) use per upstream: manifests, blobs, tags, catalog, referrers.

Failures raise the exceptions of errors.py beside it (its docstring draws the hierarchy); what
crosses the wire (redirect safety, Retry-After, raw bodies) is wire.py.

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
import json
import random
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from types import TracebackType
from typing import Any, TypeVar

import httpx

from registry.digest import Digest
from registry.errors import RegistryError
from registry.mediatypes import (
    DOCKER_MANIFEST,
    DOCKER_MANIFEST_LIST,
    DOCKER_MANIFEST_V1_SIGNED,
    MAX_MANIFEST_SIZE,
    OCI_INDEX,
    OCI_MANIFEST,
    media_type_of,
    parse_manifest,
)
from registry.mirrorconfig import UpstreamConfig
from registry.names import parse_reference, validate_name
from registry.upstream import wire
from registry.upstream.auth import (
    Authenticator,
    AuthError,
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

CHUNK_SIZE = 1024 * 1024  # a blob stream's largest chunk: memory stays flat for any blob size
PAGE_SIZE = 1000  # tags/list and _catalog ``n``
MAX_REDIRECTS = 5
RETRY_AFTER_CAP = 60.0  # one wait, whatever Retry-After asks: a sync run must keep moving
BACKOFF_BASE = 0.5
BACKOFF_CAP = 20.0
MAX_JSON_SIZE = 16 * 1024 * 1024  # one tags/list or _catalog page (Docker Hub tags are short)
MANIFEST_ACCEPT = ", ".join([OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_MANIFEST_LIST])
SCHEMA1_TYPES = frozenset({"application/vnd.docker.distribution.manifest.v1+json",
                           DOCKER_MANIFEST_V1_SIGNED})
CATALOG_SCOPE = "registry:catalog:*"

_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_TRANSIENT = frozenset({429, 500, 502, 503, 504})
_GENERIC_TYPES = frozenset({"", "application/json", "text/plain", "application/octet-stream"})
# Bytes exactly as stored: a Content-Encoding applied in transit would be undone by the reader
# and the digest, computed over the stored bytes, could never match.
_IDENTITY = {"Accept-Encoding": "identity"}

T = TypeVar("T")
Sleep = Callable[[float], Awaitable[None]]
Clock = Callable[[], float]
ResponseHook = Callable[[httpx.Response], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class ManifestRef:
    """What a manifest HEAD (or GET) tells: enough to decide whether to fetch it."""

    digest: Digest
    media_type: str
    size: int


@dataclass(frozen=True, slots=True)
class _Fetched:
    base: str  # which of config.urls answered
    headers: httpx.Headers
    links: dict[str | None, dict[str, str]]
    body: bytes


class BlobStream:
    """A blob's bytes as they arrive, in chunks of at most ``chunk_size``.

    The digest is NOT verified here: the caller hashes the chunks while committing them (one pass
    over the bytes) and discards the copy if they do not match ``digest``. A connection lost
    midway raises UpstreamUnavailable: bytes already handed out cannot be retried behind the
    caller's back, so the caller starts the blob again.
    """

    def __init__(self, digest: Digest, response: httpx.Response, where: str,
                 chunk_size: int) -> None:
        self.digest = digest
        length = response.headers.get("content-length", "")
        self.size: int | None = int(length) if length.isdigit() else None
        self._response = response
        self._where = where
        self._chunk_size = chunk_size

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in wire.raw_body(self._response, self._chunk_size):
                yield chunk
        except httpx.TransportError as exc:
            raise UpstreamUnavailable(f"{self._where}: blob {self.digest} broke off: "
                                      f"{wire.describe(exc)}") from exc


class Upstream:
    """One upstream registry as one sync worker sees it: one HTTP client, bounded concurrency."""

    def __init__(self, registry: str, config: UpstreamConfig, *,
                 transport: httpx.AsyncBaseTransport | None = None, sleep: Sleep = asyncio.sleep,
                 clock: Clock = time.monotonic, page_size: int = PAGE_SIZE,
                 chunk_size: int = CHUNK_SIZE, on_response: ResponseHook | None = None,
                 identities: Identities = DEFAULT_IDENTITIES) -> None:
        """``identities``: where a ``credentials.provider`` login comes from (tests put their
        own token issuers there)."""
        self.registry = registry
        self.config = config
        self.page_size = page_size
        self.chunk_size = chunk_size
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
        self._logins = login_source(config.credentials, registry, config.urls, self._client,
                                    clock, identities)
        self._auth = Authenticator(self._client, self._logins, clock)

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
            if self._logins is not None:
                await self._logins.aclose()
        finally:
            await self._client.aclose()

    async def __aenter__(self) -> Upstream:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.aclose()

    # -- the API -----------------------------------------------------------------------------

    async def head_manifest(self, repository: str, reference: str | Digest) -> ManifestRef:
        """Digest, media type and size without the body (a Docker Hub HEAD costs no pull)."""
        ref = _reference(reference)
        path = f"/v2/{validate_name(repository)}/manifests/{ref}"
        fetched = await self._fetch("HEAD", path, _pull(repository),
                                    {"Accept": MANIFEST_ACCEPT}, limit=0)
        media_type = wire.content_type(fetched.headers)
        self._refuse_schema1(fetched.base, media_type)
        header = fetched.headers.get("docker-content-digest")
        length = fetched.headers.get("content-length", "")
        if isinstance(ref, Digest) and not header:
            header = str(ref)
        if not header or not length.isdigit() or media_type in _GENERIC_TYPES:
            # Some registries leave these off a HEAD; the GET (and its bytes) tells for sure.
            manifest, _ = await self.get_manifest(repository, ref)
            return manifest
        digest = self._digest_header(fetched.base, header)
        if isinstance(ref, Digest) and digest != ref:
            raise UpstreamError(f"{self._where(fetched.base)}: digest mismatch: asked for {ref}, "
                                f"HEAD answered {digest}")
        return ManifestRef(digest, media_type, int(length))

    async def get_manifest(self, repository: str,
                           reference: str | Digest) -> tuple[ManifestRef, bytes]:
        """The manifest's bytes verbatim, checked against the digest that names them."""
        ref = _reference(reference)
        path = f"/v2/{validate_name(repository)}/manifests/{ref}"
        fetched = await self._fetch("GET", path, _pull(repository),
                                    {"Accept": MANIFEST_ACCEPT, **_IDENTITY},
                                    limit=MAX_MANIFEST_SIZE, raw=True)
        where, body = self._where(fetched.base), fetched.body
        media_type = wire.content_type(fetched.headers)
        self._refuse_schema1(fetched.base, media_type)
        try:
            doc = parse_manifest(body)
        except RegistryError as exc:
            raise UpstreamError(f"{where}: {repository}:{ref} is not a manifest: {exc}") from None
        if doc.get("schemaVersion") == 1:
            self._refuse_schema1(fetched.base, DOCKER_MANIFEST_V1_SIGNED)
        if media_type in _GENERIC_TYPES:
            media_type = media_type_of(doc)
        if isinstance(ref, Digest):
            if not ref.matches(body):
                raise UpstreamError(f"{where}: digest mismatch: {repository}@{ref} answered "
                                    f"bytes hashing to {Digest.from_bytes(body, ref.algorithm)}")
            digest = ref
        else:
            digest = Digest.from_bytes(body)
            header = fetched.headers.get("docker-content-digest")
            if header and not self._digest_header(fetched.base, header).matches(body):
                raise UpstreamError(f"{where}: digest mismatch: {repository}:{ref} has "
                                    f"Docker-Content-Digest {header}, its bytes hash to {digest}")
        return ManifestRef(digest, media_type, len(body)), body

    @contextlib.asynccontextmanager
    async def blob(self, repository: str, digest: Digest) -> AsyncIterator[BlobStream]:
        """Stream a blob, holding one concurrency slot until the block ends.

        The bytes are not verified against ``digest`` here: the caller does, while committing.
        """
        path = f"/v2/{validate_name(repository)}/blobs/{digest}"
        scope = _pull(repository)

        async def attempt(base: str) -> tuple[str, httpx.Response]:
            await self._slots.acquire()
            try:
                return base, await self._attempt(base, "GET", path, scope, _IDENTITY)
            except BaseException:
                self._slots.release()
                raise

        base, response = await self._with_retries(attempt)
        try:
            yield BlobStream(digest, response, self._where(base), self.chunk_size)
        finally:
            await response.aclose()
            self._slots.release()

    async def list_tags(self, repository: str) -> list[str]:
        """Every tag, following ``Link: rel="next"`` pages, in the order the upstream lists them."""
        return await self._paginate(f"/v2/{validate_name(repository)}/tags/list", "tags",
                                    _pull(repository))

    async def catalog(self) -> list[str] | None:
        """Every repository from ``/v2/_catalog``; None when the upstream offers no catalog."""
        try:
            return await self._paginate("/v2/_catalog", "repositories", CATALOG_SCOPE)
        except UpstreamNotFound:
            return None
        except UpstreamAuthError as exc:
            if exc.status is None:  # our own credentials are broken: that is no answer
                raise
            return None  # Docker Hub and most SaaS registries deny the catalog to everyone
        except UpstreamError as exc:
            if exc.status in (400, 405):  # registries that do not implement it at all
                return None
            raise

    async def referrers(self, repository: str, digest: Digest) -> list[dict[str, Any]]:
        """Descriptors of the manifests that refer to ``digest`` (signatures, SBOMs, ...).

        Without the referrers API (404) the ``sha256-<hex>`` tag that tools pushed before it
        existed holds the same kind of index; neither there means none.
        """
        path = f"/v2/{validate_name(repository)}/referrers/{digest}"
        try:
            fetched = await self._fetch("GET", path, _pull(repository), {"Accept": OCI_INDEX},
                                        limit=MAX_MANIFEST_SIZE)
            body, base = fetched.body, fetched.base
        except UpstreamNotFound:
            if digest.algorithm != "sha256":  # sha512-<128 hex> is longer than a tag may be
                return []
            try:
                _, body = await self.get_manifest(repository, f"sha256-{digest.hex}")
            except UpstreamNotFound:
                return []
            base = self.config.urls[0]
        try:
            manifests = parse_manifest(body).get("manifests")
        except RegistryError as exc:
            raise UpstreamError(f"{self._where(base)}: referrers of {digest}: {exc}") from None
        return [m for m in manifests or [] if isinstance(m, dict) and isinstance(
            m.get("digest"), str)]

    # -- requests ----------------------------------------------------------------------------

    async def _paginate(self, path: str, key: str, scope: str) -> list[str]:
        items: list[str] = []
        target = f"{path}?n={self.page_size}"
        seen = {target}
        while True:
            fetched = await self._fetch("GET", target, scope, {"Accept": "application/json"},
                                        limit=MAX_JSON_SIZE)
            try:
                doc = json.loads(fetched.body)
                page = doc.get(key) or []  # registry:2 answers "tags": null for an empty repo
            except (ValueError, AttributeError):
                page = None
            if not isinstance(page, list) or not all(isinstance(item, str) for item in page):
                raise UpstreamError(f"{self._where(fetched.base)}: GET {target}: no {key} list")
            items.extend(page)
            link = fetched.links.get("next", {}).get("url")
            if not link:
                return items
            # Relative or absolute, the next page is asked of the URL that is answering: an
            # absolute link naming another host must not receive this upstream's credentials.
            url = httpx.URL(fetched.base + target).join(link)
            target = url.raw_path.decode("ascii")
            if target in seen:
                raise UpstreamError(f"{self._where(fetched.base)}: pagination loops at {target}")
            seen.add(target)

    async def _fetch(self, method: str, path: str, scope: str, headers: dict[str, str], *,
                     limit: int, raw: bool = False) -> _Fetched:
        """A whole small response; failures while reading the body are retried too."""
        async def attempt(base: str) -> _Fetched:
            async with self._slots:
                response = await self._attempt(base, method, path, scope, headers)
                try:
                    body = await self._read(base, response, limit, raw)
                finally:
                    await response.aclose()
            return _Fetched(base, response.headers, response.links, body)

        return await self._with_retries(attempt)

    async def _read(self, base: str, response: httpx.Response, limit: int, raw: bool) -> bytes:
        length = response.headers.get("content-length", "")
        if response.request.method == "HEAD":
            return b""
        if length.isdigit() and int(length) > limit:
            raise UpstreamError(f"{self._where(base)}: {response.url.path}: {length} bytes is "
                                f"over the {limit} byte limit")
        chunks, total = [], 0
        try:
            async for chunk in (wire.raw_body(response, None) if raw else response.aiter_bytes()):
                total += len(chunk)
                if total > limit:
                    raise UpstreamError(f"{self._where(base)}: {response.url.path}: over the "
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
            raise UpstreamAuthError(f"{self._where(base)}: {exc}", exc.status) from None
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
        raise UpstreamError(f"{self._where(base)}: {method} {path}: more than {MAX_REDIRECTS} "
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
        where = f"{self._where(base)}: {method} {target}"
        if status in _TRANSIENT:
            retry_after = (wire.parse_retry_after(response.headers.get("retry-after"))
                           if status in (429, 503) else None)
            raise TransientError(f"{method} {target}: {status}{detail}", retry_after)
        if status == 404:
            raise UpstreamNotFound(f"{where}: 404{detail}", status)
        if status == 403 and wire.same_origin(response.url, base):
            raise UpstreamAuthError(f"{where}: 403 access denied{detail}", status)
        raise UpstreamError(f"{where}: {status}{detail}", status)

    # -- small helpers -----------------------------------------------------------------------

    def _where(self, base: str) -> str:
        return f"{self.registry} ({base})"

    def _refuse_schema1(self, base: str, media_type: str) -> None:
        if media_type in SCHEMA1_TYPES:
            raise UpstreamError(f"{self._where(base)}: schema 1 manifests are not supported "
                                f"({media_type})")

    def _digest_header(self, base: str, header: str) -> Digest:
        try:
            return Digest.parse(header.strip())
        except RegistryError:
            raise UpstreamError(f"{self._where(base)}: invalid Docker-Content-Digest "
                                f"{header[:100]!r}") from None


def _reference(reference: str | Digest) -> str | Digest:
    return reference if isinstance(reference, Digest) else parse_reference(reference)


def _pull(repository: str) -> str:
    return f"repository:{repository}:pull"
