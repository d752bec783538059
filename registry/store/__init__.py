"""The one store protocol every backend implements, and ``open_store(url)``.

A store is a flat key space of immutable-once-written objects under a root; keys come only from
``registry.layout``. Absence is always ``NotFound``; a store that cannot answer raises one of the
``StoreError`` kinds of ``registry.store.errors``; any other exception out of a store is a bug.
Writes are all-or-nothing: a reader never sees a partial object. A store that can send clients
to the bytes themselves (S3's pre-signed URLs) is also a ``Presigner``; ``presigner(store)`` says.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Sequence
from pathlib import Path
from typing import Protocol, runtime_checkable
from urllib.parse import urlsplit

from anyio import to_thread

from registry.errors import ConfigError

DEFAULT_STORAGE_URL = "./regfront-data"
CHUNK_SIZE = 1024 * 1024


class PreconditionFailed(Exception):
    """A conditional write lost: the object exists (``create``) or changed (``replace``)."""

    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


class NotFound(Exception):
    """The key does not exist in this store."""

    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


class Reader:
    """An opened object (``ObjectStore.read``): iterating yields the bytes asked for, and
    ``size`` is the whole object's length whatever range was asked - the open learns it (a
    file's ``fstat``, S3's ``Content-Range``), so a reader needs no separate ``size`` call."""

    __slots__ = ("_chunks", "size")

    def __init__(self, size: int, chunks: AsyncIterator[bytes]) -> None:
        self.size = size
        self._chunks = chunks

    def __aiter__(self) -> Reader:
        return self

    async def __anext__(self) -> bytes:
        return await anext(self._chunks)


class ObjectStore(Protocol):
    """Read side for the gateway, write side for import and sync."""

    url: str

    async def get(self, key: str) -> bytes:
        """The whole object (links, manifests: small things)."""
        ...

    async def size(self, key: str) -> int:
        """The object's length in bytes."""
        ...

    async def read(self, key: str, start: int = 0, length: int | None = None) -> Reader:
        """Open the object (raising ``NotFound`` now): its bytes from ``start`` (``length`` of
        them, or to the end; none past the end), and its whole size."""
        ...

    async def put(self, key: str, data: bytes) -> None:
        ...

    async def put_stream(self, key: str, chunks: AsyncIterable[bytes]) -> None:
        """Write from an iterator; if it raises, nothing is committed under ``key``."""
        ...

    async def children(self, prefix: str) -> list[str]:
        """Sorted names directly under ``prefix`` (which ends in ``/``); ``[]`` if none."""
        ...

    # Conditional writes (leases, the miss queue): compare-and-swap on an opaque version.

    async def get_versioned(self, key: str) -> tuple[bytes, str]:
        """The object and its version, for ``replace``."""
        ...

    async def create(self, key: str, data: bytes) -> str:
        """Write only if ``key`` is absent (else ``PreconditionFailed``); returns the version."""
        ...

    async def replace(self, key: str, data: bytes, version: str) -> str:
        """Write only if ``key`` is still at ``version`` (else ``PreconditionFailed``)."""
        ...

    async def delete(self, key: str) -> None:
        ...

    async def close(self) -> None:
        ...


@runtime_checkable
class Presigner(Protocol):
    """A store that can hand clients a time-limited URL to fetch an object themselves (S3)."""

    async def presign_get(self, key: str, expires_in: int) -> str:
        """A URL that GETs ``key`` without credentials for ``expires_in`` seconds."""
        ...


@runtime_checkable
class KeyLister(Protocol):
    """A store that lists every key under a prefix in one pass (S3's listing without a
    delimiter, a page per thousand keys): garbage collection reads a whole bucket this way."""

    async def list_keys(self, prefix: str) -> list[str]:
        """Every key under ``prefix`` (which ends in ``/``), whole, sorted; ``[]`` if none."""
        ...


@runtime_checkable
class BatchDeleter(Protocol):
    """A store that deletes many keys per request (S3's DeleteObjects, a thousand at a time):
    garbage collection deletes a bucket's worth of objects this way."""

    async def delete_many(self, keys: Sequence[str]) -> None:
        """Delete every key (an absent one is no error, as with ``delete``), in no set order."""
        ...


def batch_deleter(store: ObjectStore) -> BatchDeleter | None:
    """The store as a ``BatchDeleter`` if it deletes in batches, else ``None`` (one by one)."""
    return store if isinstance(store, BatchDeleter) else None


def key_lister(store: ObjectStore) -> KeyLister | None:
    """The store as a ``KeyLister`` if it lists whole prefixes, else ``None`` (walk
    ``children``)."""
    return store if isinstance(store, KeyLister) else None


def presigner(store: ObjectStore) -> Presigner | None:
    """The store as a ``Presigner`` if it can redirect blob GETs, else ``None`` (serve bytes)."""
    return store if isinstance(store, Presigner) else None


def check_key(key: str) -> str:
    """Refuse keys that could leave the store's root; layout never builds them."""
    parts = key.rstrip("/").split("/")
    if not key or key.startswith("/") or any(p in ("", ".", "..") for p in parts):
        raise ValueError(f"unsafe store key: {key!r}")
    return key


def check_url(url: str) -> str:
    """``url`` if ``open_store`` takes it, else the one-line ``ConfigError`` it would raise;
    opens nothing."""
    parts = urlsplit(url)
    if parts.scheme in ("", "file"):
        if parts.scheme == "file" and parts.netloc not in ("", "localhost"):
            raise ConfigError(f"storage url {url!r}: file URLs are file:///absolute/path")
    elif parts.scheme == "s3":
        from registry.store.s3 import parse_url

        parse_url(url)
    elif parts.scheme == "gs":
        from registry.store.gcs import parse_url as parse_gs_url

        parse_gs_url(url)
    elif parts.scheme == "az":
        from registry.store.azure import parse_url as parse_az_url

        parse_az_url(url)
    elif parts.scheme != "memory":
        raise ConfigError(f"storage url {url!r}: unsupported scheme {parts.scheme!r} "
                          "(use file:///path, a plain path, s3://bucket/prefix, "
                          "gs://bucket/prefix or az://container/prefix)")
    return url


def open_store(url: str) -> ObjectStore:
    """``file:///abs/path`` (or a plain path), ``s3://bucket[/prefix][?...]``,
    ``gs://bucket[/prefix][?...]``, ``az://container[/prefix]?account=NAME[&...]``,
    ``memory://``."""
    parts = urlsplit(check_url(url))
    if parts.scheme in ("", "file"):
        from registry.store.file import FileStore

        return FileStore(parts.path if parts.scheme else url)
    if parts.scheme == "memory":
        from registry.store.memory import MemoryStore

        return MemoryStore()
    if parts.scheme == "gs":
        from registry.store.gcs import GCSStore

        return GCSStore(url)
    if parts.scheme == "az":
        from registry.store.azure import AzureStore

        return AzureStore(url)
    from registry.store.s3 import S3Store

    return S3Store(url)


async def file_chunks(path: Path) -> AsyncIterator[bytes]:
    """A local file's bytes in ``CHUNK_SIZE`` pieces, read in a worker thread (spools,
    OCI layouts)."""
    handle = await to_thread.run_sync(path.open, "rb")
    try:
        while chunk := await to_thread.run_sync(handle.read, CHUNK_SIZE):
            yield chunk
    finally:
        handle.close()
