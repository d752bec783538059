"""The client sync (and the gateway) use per upstream: manifests, blobs, tags, catalog, referrers.

The registry API over HTTP: which path and scope each call asks for, what it accepts, and what
the answer must be before it is believed. A manifest's bytes are checked against the digest that
names them (the one asked for, else any Docker-Content-Digest sent); schema 1 is refused;
tags/list and _catalog pages follow ``Link: rel="next"``, always asked of the URL that answered.
Failures raise the exceptions of errors.py beside it (its docstring draws the hierarchy).

How each request travels - ``config.urls`` tried in order, a 404 final, transient failures
retried honouring ``Retry-After``, the token and Basic auth flows, redirects followed by hand so
``Authorization`` only goes to the upstream's own origin - is session.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from types import TracebackType
from typing import Any

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
from registry.upstream.cloud import DEFAULT_IDENTITIES, Identities
from registry.upstream.errors import (
    UpstreamAuthError,
    UpstreamError,
    UpstreamNotFound,
    UpstreamUnavailable,
)
from registry.upstream.session import Clock, ResponseHook, Session, Sleep

CHUNK_SIZE = 1024 * 1024  # a blob stream's largest chunk: memory stays flat for any blob size
PAGE_SIZE = 1000  # tags/list and _catalog ``n``
MAX_JSON_SIZE = 16 * 1024 * 1024  # one tags/list or _catalog page (Docker Hub tags are short)
MANIFEST_ACCEPT = ", ".join([OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_MANIFEST_LIST])
SCHEMA1_TYPES = frozenset({"application/vnd.docker.distribution.manifest.v1+json",
                           DOCKER_MANIFEST_V1_SIGNED})
CATALOG_SCOPE = "registry:catalog:*"

_GENERIC_TYPES = frozenset({"", "application/json", "text/plain", "application/octet-stream"})
# Bytes exactly as stored: a Content-Encoding applied in transit would be undone by the reader
# and the digest, computed over the stored bytes, could never match.
_IDENTITY = {"Accept-Encoding": "identity"}


@dataclass(frozen=True, slots=True)
class ManifestRef:
    """What a manifest HEAD (or GET) tells: enough to decide whether to fetch it."""

    digest: Digest
    media_type: str
    size: int


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
    """One upstream registry as one sync worker sees it: one Session (one HTTP client, bounded
    concurrency)."""

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
        self._session = Session(registry, config, transport=transport, sleep=sleep, clock=clock,
                                on_response=on_response, identities=identities)

    async def aclose(self) -> None:
        await self._session.aclose()

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
        fetched = await self._session.fetch("HEAD", path, _pull(repository),
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
        fetched = await self._session.fetch("GET", path, _pull(repository),
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
        async with self._session.stream(path, _pull(repository), _IDENTITY) as (base, response):
            yield BlobStream(digest, response, self._where(base), self.chunk_size)

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
            fetched = await self._session.fetch("GET", path, _pull(repository),
                                                {"Accept": OCI_INDEX}, limit=MAX_MANIFEST_SIZE)
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
            fetched = await self._session.fetch("GET", target, scope,
                                                {"Accept": "application/json"},
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

    # -- small helpers -----------------------------------------------------------------------

    def _where(self, base: str) -> str:
        return self._session.where(base)

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
