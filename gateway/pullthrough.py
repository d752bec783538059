"""``on_miss: pull-through``: content the stores lack is fetched from the upstream, served, and
committed to the primary store, so the next request (from any node) is a hit.

Manifests are fetched whole, checked against their digest, committed (bytes and revision
link) and served; a tag is committed only once its image is complete in the primary store
(``gateway/pending.py``), as sync commits one. A blob is downloaded once per process by a
*fill*: a background task that spools the upstream's bytes to a local file while hashing them,
then commits the blob to the primary store only if they match its digest, linked into every
repository a request for it named. Every request for that blob - concurrent ones included,
Range requests too - is served from the spool as it grows, so one upstream fetch feeds them all
and the gateway's memory stays flat; a blob the primary store already holds for another
repository is linked, not fetched again. A client that disconnects does not stop the fill; a
fill whose bytes do not match is never committed, and the clients reading it are cut off
(closing the connection is the only way to tell them mid-body). An upstream 429 or 408 is
never passed on (containerd would retry the same host): it becomes a 503, a missing image a 404.

The upstream is waited for at most its ``timeout`` (upstreams.<r>.timeout) for a manifest, and
for a blob's first answer; after that a stalled stream fails on httpx's read timeout (the same
setting). The primary store is written and read through the ``StoreSet`` (a ``guarded`` store).
"""

from __future__ import annotations

import asyncio
import logging
import os
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import BinaryIO

import httpx
from anyio import to_thread
from starlette.types import Send

from gateway.http import bytes_answer, stream
from gateway.metrics import GatewayMetrics
from gateway.pending import PendingTags
from gateway.tracing import child_span
from registry import layout, writer
from registry.digest import Digest
from registry.errors import ErrorCode, RegistryError
from registry.flight import SingleFlight
from registry.mediatypes import media_type_of, parse_manifest
from registry.mirrorconfig import MirrorIndex
from registry.store import CHUNK_SIZE, ObjectStore, file_chunks
from registry.upstream.client import Upstream
from registry.upstream.errors import UpstreamError, UpstreamNotFound

logger = logging.getLogger("regfront.gateway")


class Fill:
    """One blob on its way from the upstream to the primary store, readable while it grows."""

    def __init__(self, digest: Digest, spool: Path) -> None:
        self.digest = digest
        self.spool = spool
        self.names: set[str] = set()  # the repositories requests for it named
        self.size: int | None = None
        self.written = 0
        self.error: BaseException | None = None
        self.verified = False  # every byte is in the spool and matches the digest
        self.started = asyncio.Event()  # the upstream answered: size known (or failed)
        self._progress = asyncio.Condition()

    async def advanced(self) -> None:
        async with self._progress:
            self._progress.notify_all()

    async def wait_beyond(self, offset: int) -> None:
        async with self._progress:
            await self._progress.wait_for(lambda: self.written > offset or self.verified or
                                          self.error is not None)

    async def wait_verified(self) -> None:
        async with self._progress:
            await self._progress.wait_for(lambda: self.verified or self.error is not None)

    async def read(self, handle: BinaryIO, start: int, end: int) -> AsyncIterator[bytes]:
        """Bytes ``start..end`` (inclusive) of the open spool, as the fill writes them."""
        try:
            position = start
            await to_thread.run_sync(handle.seek, start)
            while position <= end:
                if self.error is not None:
                    raise self.error
                if position >= self.written:
                    if self.verified:  # never: _run checks the length it was announced
                        raise RuntimeError(f"{self.digest}: fewer bytes than announced")
                    await self.wait_beyond(position)
                    continue
                want = min(CHUNK_SIZE, end + 1 - position, self.written - position)
                chunk = await to_thread.run_sync(handle.read, want)
                position += len(chunk)
                if position > end and not self.verified:
                    # Hold the last bytes back until the digest checks out: a client must
                    # never complete a body the gateway would refuse to commit.
                    await self.wait_verified()
                    if self.error is not None:
                        raise self.error
                yield chunk
        finally:
            handle.close()


class PullThrough:
    def __init__(self, mirrors: MirrorIndex, primary: ObjectStore, *,
                 metrics: GatewayMetrics, spool_dir: str | None = None,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.mirrors = mirrors
        self.primary = primary
        self.metrics = metrics
        self.spool_dir = spool_dir or tempfile.gettempdir()
        self.transport = transport  # tests: a corrupting upstream
        self._clients: dict[str, Upstream] = {}
        self._manifests = SingleFlight()
        self.pending = PendingTags(primary, metrics)
        self.fills: dict[Digest, Fill] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def covers(self, name: str) -> bool:
        """Pulled through: see ``MirrorIndex.pulled_through``."""
        return self.mirrors.pulled_through(name)

    def _client(self, registry: str) -> Upstream:
        if registry not in self._clients:
            configured, upstream = self.mirrors.upstreams[registry]
            self._clients[registry] = Upstream(configured, upstream, transport=self.transport)
        return self._clients[registry]

    # -- manifests -------------------------------------------------------------------------

    def pending_tag(self, name: str, tag: str) -> tuple[Digest, str, bytes] | None:
        """A tag fetched but not committed yet (its image not whole in the bucket), as fetched,
        while the mirror's tag TTL allows: no store call, no upstream call."""
        pending = self.pending.answer(name, tag, self.mirrors.tag_ttl)
        return None if pending is None else (pending.digest, pending.media_type, pending.data)

    async def manifest(self, name: str, reference: str | Digest) -> tuple[Digest, str, bytes]:
        """Fetch, commit and return a manifest (one upstream fetch per name and reference)."""
        # Asked again: another request may have fetched the tag while this one read the store.
        if isinstance(reference, str) and (pending := self.pending_tag(name, reference)):
            return pending
        digest, data = await self._manifests.do(
            (name, str(reference)), lambda: self._fetch_manifest(name, reference))
        return digest, media_type_of(parse_manifest(data)), data

    def _timeout(self, registry: str) -> float:
        return self.mirrors.upstreams[registry][1].timeout

    async def _fetch_manifest(self, name: str, reference: str | Digest) -> tuple[Digest, bytes]:
        registry, _, repository = name.partition("/")
        try:
            with child_span("upstream get_manifest", registry=registry):
                async with asyncio.timeout(self._timeout(registry)):
                    ref, data = await self._client(registry).get_manifest(repository, reference)
        except UpstreamNotFound:
            raise RegistryError(ErrorCode.MANIFEST_UNKNOWN, {"name": name}) from None
        except (UpstreamError, TimeoutError) as exc:
            self.metrics.upstream[(registry, "pull_failed")] += 1
            raise _unavailable(exc) from None
        self.metrics.upstream[(registry, "manifest_pulled")] += 1
        await writer.put_manifest(self.primary, name, data)
        if isinstance(reference, str):
            self.pending.tagged(name, reference, ref.digest, data)
        else:
            self.pending.manifest_stored(name, ref.digest, data)
        return ref.digest, data

    # -- blobs -----------------------------------------------------------------------------

    async def adopt(self, name: str, digest: Digest) -> bool:
        """Link a blob the primary store holds (for another repository) into ``name``, where
        it was asked for; False when it must be filled."""
        if digest in self.fills or not await writer.has_blob(self.primary, digest):
            return False
        await writer.link_blob(self.primary, name, digest)
        await self.pending.blob_stored(digest, [name])
        return True

    async def fill(self, name: str, digest: Digest) -> Fill:
        """The running (or a new) fill of ``digest``, once the upstream has answered."""
        fill = self.fills.get(digest)
        if fill is None:
            descriptor, spool = tempfile.mkstemp(prefix="regfront-fill-", dir=self.spool_dir)
            os.close(descriptor)
            fill = self.fills[digest] = Fill(digest, Path(spool))
            task = asyncio.get_running_loop().create_task(self._run(fill, name))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        fill.names.add(name)
        await fill.started.wait()
        if fill.error is not None and fill.size is None:
            error = fill.error
            if isinstance(error, UpstreamNotFound):
                raise RegistryError(ErrorCode.BLOB_UNKNOWN, {"digest": str(digest)})
            if isinstance(error, UpstreamError | TimeoutError):
                raise _unavailable(error)
            raise error  # a store failure is answered as one; anything else is a bug (a 500)
        return fill

    async def _run(self, fill: Fill, name: str) -> None:
        registry, _, repository = name.partition("/")
        linked: set[str] = set()
        verifier = fill.digest.verifier()
        try:
            async with asyncio.timeout(self._timeout(registry)) as first_answer, \
                    self._client(registry).blob(repository, fill.digest) as stream:
                first_answer.reschedule(None)  # from here a stall is httpx's read timeout
                fill.size = stream.size
                fill.started.set()
                with fill.spool.open("wb") as spool:
                    async for chunk in stream:
                        verifier.update(chunk)
                        await to_thread.run_sync(spool.write, chunk)
                        await to_thread.run_sync(spool.flush)
                        fill.written += len(chunk)
                        await fill.advanced()
            if fill.size is not None and fill.written != fill.size:
                raise RegistryError(ErrorCode.SIZE_INVALID, {"digest": str(fill.digest),
                                                             "announced": fill.size,
                                                             "received": fill.written})
            verifier.verify()  # a mismatch raises: never committed
            fill.size = fill.written
            fill.verified = True
            await fill.advanced()
            await writer.put_blob(self.primary, fill.digest, file_chunks(fill.spool))
            while unlinked := fill.names - linked:  # requests may join until the fill is gone
                for other in unlinked:
                    await writer.link_blob(self.primary, other, fill.digest)
                    linked.add(other)
            self._forget(fill)
            self.metrics.upstream[(registry, "blob_pulled")] += 1
            await self.pending.blob_stored(fill.digest, linked)
        except BaseException as exc:
            fill.error = exc
            self.metrics.upstream[(registry, "pull_failed")] += 1
            logger.warning("pull-through of %s@%s failed: %r", name, fill.digest, exc)
            if not isinstance(exc, Exception):
                raise
        finally:
            fill.started.set()
            await fill.advanced()
            self._forget(fill)
            # Readers hold their own handle: unlinking now frees the disk when they finish.
            fill.spool.unlink(missing_ok=True)

    def _forget(self, fill: Fill) -> None:
        if self.fills.get(fill.digest) is fill:
            del self.fills[fill.digest]

    async def serve_blob(self, send: Send, method: str, name: str, digest: Digest,
                         headers: list[tuple[bytes, bytes]], range_header: str | None) -> None:
        fill = await self.fill(name, digest)
        if fill.size is None:  # no Content-Length: wait for the whole blob
            await fill.wait_verified()
        size = fill.size if fill.size is not None else fill.written
        digest_header = str(digest).encode()
        status, start, end = bytes_answer(digest_header, b'"' + digest_header + b'"', size,
                                          range_header, headers)
        body: AsyncIterator[bytes] | None = None
        if method == "GET":
            try:  # opened before answering: the fill may finish and remove its spool
                handle = await to_thread.run_sync(fill.spool.open, "rb")
                body = fill.read(handle, start, end)
            except FileNotFoundError:  # finished: the blob is committed in the primary store
                body = await self.primary.read(layout.blob_data(digest), start, end - start + 1)
        await stream(send, status, headers, body)

    async def aclose(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await self.pending.aclose()
        for client in self._clients.values():
            await client.aclose()


def _unavailable(exc: BaseException) -> RegistryError:
    # Never the upstream's own status: a 429 or 408 would make containerd retry this host.
    return RegistryError(ErrorCode.UNAVAILABLE, {"reason": "upstream_unavailable",
                                                 "upstream": (str(exc) or repr(exc))[:200]})
