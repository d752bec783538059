"""Reads through the caches: tag -> digest, manifests, repository links and blob sizes.

The warm path makes no store call. Cold, a manifest costs at most two lookups (its link, then
its bytes) and a blob two (its layer link, then its size - or, for a GET of bytes the gateway
sends itself, the read, which reports the size; a manifest fetched as a blob checks the
revision link after the layer link: one more); each lookup
goes through the ``StoreSet`` (gateway/stores.py: stores in order, retries until
``gateway.store_deadline``), so a replica that lags behind the primary costs a read, not a
failed pull. Concurrent misses for one key share one lookup.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from cachetools import LRUCache, TTLCache

from gateway.answers import Answers
from gateway.freshness import Freshness
from gateway.metrics import GatewayMetrics
from gateway.misses import MissQueue
from gateway.pullthrough import PullThrough
from gateway.stores import StoreSet
from registry import layout
from registry.config import GatewayConfig
from registry.digest import Digest
from registry.errors import ErrorCode, RegistryError
from registry.flight import SingleFlight
from registry.mediatypes import INDEX_TYPES, media_type_of, parse_manifest
from registry.store import NotFound, ObjectStore, Reader, presigner
from registry.store.errors import StoreError, StoreTimeout

logger = logging.getLogger("regfront.gateway")
T = TypeVar("T")
PRESIGNED_REUSE_MAX = 300.0
ANSWERS = 4096  # warm answers kept at most
_MISSING: Any = object()


@dataclass(frozen=True, slots=True)
class Manifest:
    digest: Digest
    media_type: str
    data: bytes
    # Header values computed once per cache fill, not per request.
    digest_header: bytes = field(init=False)
    etag: bytes = field(init=False)

    def __post_init__(self) -> None:
        _set_digest_headers(self, self.digest)


@dataclass(frozen=True, slots=True)
class Blob:
    digest: Digest
    size: int
    store: ObjectStore
    digest_header: bytes = field(init=False)
    etag: bytes = field(init=False)

    def __post_init__(self) -> None:
        _set_digest_headers(self, self.digest)


def _set_digest_headers(content: Manifest | Blob, digest: Digest) -> None:
    object.__setattr__(content, "digest_header", str(digest).encode())
    object.__setattr__(content, "etag", f'"{digest}"'.encode())


def _manifest_weight(manifest: Manifest) -> int:
    return len(manifest.data) + 200  # the entry's own overhead, roughly


class Resolver:
    """Everything the endpoints read goes through here. Every store call - these reads, and the
    miss queue's, pull-through's and sync state's (given ``stores.guarded`` stores) - goes
    through ``stores``."""

    def __init__(self, stores: StoreSet, config: GatewayConfig, metrics: GatewayMetrics,
                 misses: MissQueue | None = None, freshness: Freshness | None = None,
                 pull_through: PullThrough | None = None) -> None:
        self.metrics = metrics
        self.misses = misses
        self.pull_through = pull_through
        self.freshness = freshness
        self.stores = stores
        # Each tag with the time (time.monotonic) its entry expires: a warm answer by tag
        # holds until then, never longer.
        self.tags: TTLCache[tuple[str, str], tuple[Digest, float]] = TTLCache(
            maxsize=max(1, config.link_cache_entries), ttl=config.tag_ttl, timer=time.monotonic)
        self.tag_ttl = config.tag_ttl
        self.tag_lists: TTLCache[str, list[str]] = TTLCache(maxsize=1024, ttl=config.tag_ttl)
        self.manifests: LRUCache[Digest, Manifest] = LRUCache(
            maxsize=max(1, int(config.manifest_cache_bytes)), getsizeof=_manifest_weight)
        self.links: LRUCache[tuple[str, str, Digest], bool] = LRUCache(
            maxsize=max(1, config.link_cache_entries))
        self.blobs: LRUCache[Digest, Blob] = LRUCache(maxsize=max(1, config.blob_cache_entries))
        # Looked up once: isinstance against a runtime-checkable protocol costs microseconds.
        self._signers = {id(store): signer for store in stores
                         if config.blob_redirect and (signer := presigner(store)) is not None}
        self.presign_expiry = int(config.presign_expiry)
        # A URL is reused for half its lifetime, at most 5 minutes: one signed with temporary
        # credentials (IAM roles) dies with them, and botocore renews those 10 minutes early.
        self.urls: TTLCache[Digest, bytes] = TTLCache(
            maxsize=max(1, config.blob_cache_entries),
            ttl=min(config.presign_expiry / 2, PRESIGNED_REUSE_MAX))
        self._flights = SingleFlight()
        # Finished manifest answers (gateway/answers.py): the requests a fleet repeats, so a
        # few thousand; their bodies are mostly the very bytes the manifest cache holds.
        self.answers = Answers(ANSWERS, int(config.manifest_cache_bytes) // 8)

    async def _cached(self, name: str, cache: Any, key: Hashable,
                      load: Callable[[], Awaitable[T]]) -> T:
        value: T = cache.get(key, _MISSING)
        if value is _MISSING:
            self.metrics.cache[(name, "miss")] += 1
            value = await self._shared((name, key), load)
            cache[key] = value
        else:
            self.metrics.cache[(name, "hit")] += 1
        return value

    async def _shared(self, key: Hashable, load: Callable[[], Awaitable[T]]) -> T:
        """``load``, once for every concurrent caller. Its retries run until the store deadline
        from its start; a caller that joined it late and sees it fail tries once more, within
        its own deadline: one failure is not handed to everyone that happened to be waiting."""
        give_up = self.stores.clock() + self.stores.policy.deadline
        try:
            return await self._flights.do(key, load)
        except StoreError as error:
            left = give_up - self.stores.clock()
            if not error.retryable or left < self.stores.policy.timeout:
                raise
        try:
            async with asyncio.timeout(left):
                return await self._flights.do(key, load)
        except TimeoutError:
            raise StoreTimeout(f"no answer within {self.stores.policy.deadline:g} s") from None

    # -- manifests -------------------------------------------------------------------------

    async def tag(self, name: str, tag: str) -> Digest:
        async def load() -> tuple[Digest, float]:
            data = await self._first(layout.tag_current_link(name, tag))
            # Taken before the entry is stored, so never later than the cache's own expiry.
            return Digest.parse(data.decode()), time.monotonic() + self.tag_ttl

        try:
            return (await self._cached("tags", self.tags, (name, tag), load))[0]
        except NotFound:
            raise RegistryError(ErrorCode.MANIFEST_UNKNOWN, {"name": name, "tag": tag}) from None

    def warm_manifest(self, name: str,
                      reference: str | Digest) -> tuple[Manifest, float | None] | None:
        """The manifest when the caches hold everything it needs, without awaiting, and until
        when an answer built from it holds (a tag's expiry; ``None``: a digest's, forever);
        ``None`` when ``manifest`` must be asked. Its serve passes ``served``, as
        ``manifest``'s does."""
        counts = self.metrics.cache
        if isinstance(reference, Digest):
            if not self.links.get(("revision", name, reference)):
                return None
            manifest = self.manifests.get(reference)
            if manifest is None:
                return None
            counts[("links", "hit")] += 1
            counts[("manifests", "hit")] += 1
            self.served(name, reference, None)
            return manifest, None
        entry = self.tags.get((name, reference))
        if entry is None:
            return None
        digest, expires = entry
        manifest = self.manifests.get(digest)
        if manifest is None:
            return None
        counts[("tags", "hit")] += 1
        counts[("manifests", "hit")] += 1
        self.served(name, digest, reference)
        return manifest, expires

    def served(self, name: str, digest: Digest, tag: str | None) -> None:
        """Every manifest served from the caches or the store passes here (by tag as soon as
        the tag resolves), warm answers (gateway/answers.py) included: a tag's serve is told to
        freshness. Anything that must see every pull belongs here."""
        if tag is not None and self.freshness is not None:
            self.freshness.served(name, tag, digest)

    async def manifest(self, name: str, reference: str | Digest) -> Manifest:
        """A manifest of ``name`` by tag or digest, as stored, verified once on load; a miss
        is queued for the sync worker (``gateway/misses.py``)."""
        if isinstance(reference, str) and self.pull_through is not None and \
                (pending := self.pull_through.pending_tag(name, reference)) is not None:
            return Manifest(*pending)  # not in the bucket yet: asking it would cost a call
        try:
            return await self._manifest(name, reference)
        except RegistryError as error:
            if error.code is not ErrorCode.MANIFEST_UNKNOWN:
                raise
            if self.pull_through is not None and self.pull_through.covers(name):
                digest, media_type, data = await self.pull_through.manifest(name, reference)
                return Manifest(digest, media_type, data)
            if self.misses is not None:
                self.misses.record(name, reference)
            raise

    async def _manifest(self, name: str, reference: str | Digest) -> Manifest:
        if isinstance(reference, str):
            digest = await self.tag(name, reference)
            self.served(name, digest, reference)  # as resolved: a tag whose bytes are gone too
        else:
            digest = reference
            await self._linked(name, "revision", digest, ErrorCode.MANIFEST_UNKNOWN)
        try:
            manifest = await self._cached("manifests", self.manifests, digest,
                                         lambda: self._load_manifest(digest))
        except NotFound:
            raise RegistryError(ErrorCode.MANIFEST_UNKNOWN, {"name": name,
                                                            "digest": str(digest)}) from None
        if not isinstance(reference, str):
            self.served(name, digest, None)
        return manifest

    async def _load_manifest(self, digest: Digest) -> Manifest:
        async def verified(store: ObjectStore) -> bytes:
            data = await store.get(layout.blob_data(digest))
            if not digest.matches(data):
                # Corrupt or half-replicated bytes: never served; the next store may be whole.
                logger.warning("%s: stored bytes of %s do not match; skipping", store.url, digest)
                raise NotFound(layout.blob_data(digest))
            return data

        _, data = await self.stores.first(verified, str(digest))
        return Manifest(digest, media_type_of(parse_manifest(data)), data)

    # -- blobs -----------------------------------------------------------------------------

    async def blob(self, name: str, digest: Digest) -> Blob:
        """A blob linked in ``name`` (as a layer or config, or a manifest of it), with its size."""
        await self._blob_linked(name, digest)
        try:
            return await self._cached("blobs", self.blobs, digest,
                                     lambda: self._load_blob(digest))
        except NotFound:
            raise RegistryError(ErrorCode.BLOB_UNKNOWN, {"digest": str(digest)}) from None

    async def open_blob(self, name: str, digest: Digest) -> tuple[Blob, Reader | None]:
        """``blob``, for a GET of the whole blob: when its size is not cached yet and its store
        serves the bytes itself (no redirect), with the bytes opened too - the open reports the
        size, so such a cold GET costs its link and one read, not a ``size`` and a read."""
        await self._blob_linked(name, digest)
        blob = self.blobs.get(digest)
        if blob is not None:
            self.metrics.cache[("blobs", "hit")] += 1
            return blob, None
        self.metrics.cache[("blobs", "miss")] += 1
        key = layout.blob_data(digest)

        async def open_or_size(store: ObjectStore) -> tuple[int, Reader | None]:
            if id(store) in self._signers:  # redirected: the bucket sends the bytes
                return await store.size(key), None
            reader = await store.read(key)
            return reader.size, reader

        try:
            store, (size, reader) = await self.stores.first(open_or_size, key)
        except NotFound:
            raise RegistryError(ErrorCode.BLOB_UNKNOWN, {"digest": str(digest)}) from None
        blob = self.blobs[digest] = Blob(digest, size, store)
        return blob, reader

    async def _blob_linked(self, name: str, digest: Digest) -> None:
        try:
            await self._linked(name, "layer", digest, ErrorCode.BLOB_UNKNOWN)
        except RegistryError:
            await self._linked(name, "revision", digest, ErrorCode.BLOB_UNKNOWN)

    async def _load_blob(self, digest: Digest) -> Blob:
        """The first store holding the blob's data (a replica may have its link but not yet
        its bytes: cross-region replication does not keep the order of writes)."""
        key = layout.blob_data(digest)
        store, size = await self.stores.first(lambda s: s.size(key), key)
        return Blob(digest, size, store)

    async def blob_url(self, blob: Blob) -> bytes | None:
        """A pre-signed URL (as a header value) when the blob's store signs and redirects are on."""
        signer = self._signers.get(id(blob.store))
        if signer is None:
            return None
        url = self.urls.get(blob.digest)
        if url is None:
            # Through the StoreSet too: signing may call out (credentials, GCS's signBlob).
            key = layout.blob_data(blob.digest)
            _, signed = await self.stores.first(
                lambda _: signer.presign_get(key, self.presign_expiry), key,
                operation="presign", only=self.stores.entry(blob.store))
            url = self.urls[blob.digest] = signed.encode("latin-1")
        return url

    async def read_blob(self, blob: Blob, start: int, length: int) -> Reader:
        key = layout.blob_data(blob.digest)
        try:
            return (await self.stores.first(lambda s: s.read(key, start, length), key,
                                            only=self.stores.entry(blob.store)))[1]
        except NotFound:
            self.blobs.pop(blob.digest, None)  # deleted since we looked: forget its size
            raise RegistryError(ErrorCode.BLOB_UNKNOWN, {"digest": str(blob.digest)}) from None

    async def _linked(self, name: str, kind: str, digest: Digest, code: ErrorCode) -> None:
        key = (layout.layer_link if kind == "layer" else layout.revision_link)(name, digest)

        async def load() -> bool:
            return (await self._first(key)).strip() == layout.link_content(digest)

        try:
            if await self._cached("links", self.links, (kind, name, digest), load):
                return
        except NotFound:
            pass
        raise RegistryError(code, {"name": name, "digest": str(digest)})

    # -- listings --------------------------------------------------------------------------

    async def tag_list(self, name: str) -> list[str]:
        async def load() -> list[str]:
            listings = await self.stores.each(lambda s: s.children(layout.tags_dir(name)))
            return sorted({tag for listing in listings for tag in listing})

        tags = await self._cached("tag_lists", self.tag_lists, name, load)
        if not tags:
            raise RegistryError(ErrorCode.NAME_UNKNOWN, {"name": name})
        return tags

    async def referrers(self, name: str, subject: Digest) -> list[dict[str, Any]]:
        """Descriptors of ``name``'s manifests whose subject is ``subject``, by digest order."""
        found: dict[str, dict[str, Any]] = {}
        directory = layout.referrers_dir(name, subject)
        for child in sorted({c for listing in await self.stores.each(
                lambda s: s.children(directory)) for c in listing}):
            try:
                data = await self._first(directory + child)
            except NotFound:
                continue
            found[child] = json.loads(data)
        # Buckets registry:2 (or an OCI 1.0 client) wrote keep referrers in a fallback tag.
        try:
            fallback = await self._manifest(name, layout.referrers_tag(subject))
        except RegistryError:
            fallback = None
        if fallback is not None and fallback.media_type in INDEX_TYPES:
            for descriptor in parse_manifest(fallback.data).get("manifests", []):
                if isinstance(descriptor, dict) and isinstance(descriptor.get("digest"), str):
                    key = descriptor["digest"].replace(":", "-", 1)
                    found.setdefault(key, descriptor)
        return [found[key] for key in sorted(found)]

    async def _first(self, key: str) -> bytes:
        _, data = await self.stores.first(lambda s: s.get(key), key)
        return data

    async def close(self) -> None:
        if self.pull_through is not None:
            await self.pull_through.aclose()
        if self.freshness is not None:
            await self.freshness.aclose()
        for store in self.stores:
            await store.close()
