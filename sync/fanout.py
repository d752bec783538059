"""One blob's bytes into every target that lacks it: read once from its source - a target that
already has it (no upstream egress), else the upstream - and written to all of them in parallel.
Concurrent images that share a layer share its transfer.

Why a tee and not a spool file: memory and disk stay bounded whatever the layer size - each
target has a queue of ``QUEUE_CHUNKS`` chunks (1 MiB from the upstream), so a blob in flight
holds at most targets x 4 MiB besides what each store's own upload buffers - where a spool
needs the whole layer on local disk, which on Cloud Run jobs and the like is memory. The cost:
targets move at the pace of the slowest one while its queue is full. A target whose queue stays
full for ``stall`` seconds (it stopped reading: a hung upload) is cut off - its upload is
cancelled, so nothing is committed there - and the others go on; the next run fills it from one
of them. With a single target there is nobody to protect and no alternative, so it is never cut.

The digest is checked over the source's bytes before the end of the stream reaches any target,
so a mismatch is the source's failure (the image's), not each target's: every upload is aborted.
Each target's upload also verifies what it was given (``writer.put_blob``, the one committing
path for every writer), so no target commits unverified bytes: N+1 hashes of each blob, a second
of CPU per 500 MB layer for three targets, against the tens of seconds it takes to send it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Literal

from registry import layout, writer
from registry.digest import Digest
from registry.errors import RegistryError
from registry.flight import SingleFlight
from registry.store import NotFound
from registry.store.errors import StoreError
from sync.targets import Target, Targets, TargetStalled

logger = logging.getLogger("regfront.sync")

QUEUE_CHUNKS = 4

Kind = Literal["present", "written", "absent"]
"""What a blob is in one target after ``Blobs.ensure``: there already, written now, or left
out (a foreign layer the target lacks: clients fetch it from its own URLs)."""
Source = Literal["upstream", "peer"]
Download = Callable[[], AbstractAsyncContextManager[AsyncIterable[bytes]]]


class _End:
    """The verified end of the stream."""


_END = _End()


class _Sink:
    """One target's upload, fed through a bounded queue."""

    def __init__(self, target: Target, digest: Digest, depth: int) -> None:
        self.target = target
        self.queue: asyncio.Queue[bytes | _End] = asyncio.Queue(depth)
        self.stalled = False
        self.progressed = asyncio.get_running_loop().time()  # when it last took an item
        # The writer's own path, as for one store: claimed, verified again, then committed.
        self.task = asyncio.create_task(writer.put_blob(target.store, digest, self._chunks()))

    async def _chunks(self) -> AsyncIterator[bytes]:
        while True:
            item = await self.queue.get()
            self.progressed = asyncio.get_running_loop().time()
            if isinstance(item, _End):
                return
            yield item

    @property
    def live(self) -> bool:
        return not self.stalled and not self.task.done()

    @property
    def committed(self) -> bool:
        task = self.task
        return task.done() and not task.cancelled() and task.exception() is None

    async def offer(self, item: bytes | _End, stall: float | None) -> None:
        """Queue ``item``; cut the upload off if it takes no item for ``stall`` seconds."""
        if not self.live:
            return
        if not self.queue.full():
            self.queue.put_nowait(item)
            return
        put = asyncio.ensure_future(self.queue.put(item))
        done, _ = await asyncio.wait({put, self.task}, timeout=stall,
                                     return_when=asyncio.FIRST_COMPLETED)
        if put in done:
            return
        put.cancel()
        if not done:  # still not reading after ``stall``
            self.cut()

    def cut(self) -> None:
        """Cancel the upload (stores commit nothing then) as this target's failure."""
        self.stalled = True
        self.task.cancel()

    async def outcome(self, stall: float) -> BaseException | None:
        """None once committed; else why not."""
        try:
            await self.task
        except asyncio.CancelledError:
            if not self.stalled:
                raise  # this copy is being cancelled, not the target
            return TargetStalled(f"took no bytes for {stall:g}s while other targets waited")
        except Exception as exc:
            return exc
        return None


async def fan_out(digest: Digest, source: AsyncIterable[bytes], targets: Sequence[Target], *,
                  stall: float, advance: Callable[[int], None] = lambda n: None,
                  depth: int = QUEUE_CHUNKS) -> dict[Target, BaseException | None]:
    """Write ``source`` (``digest``'s bytes) to each of ``targets``; each target's outcome (None:
    committed). A failing source (or a digest mismatch) raises, and no target commits."""
    sinks = [_Sink(target, digest, depth) for target in targets]
    verifier = digest.verifier()
    try:
        async for chunk in source:
            verifier.update(chunk)
            advance(len(chunk))
            await _offer(sinks, chunk, stall)
        verifier.verify()  # raises RegistryError (DIGEST_INVALID): no target gets the end
        await _offer(sinks, _END, stall)
    except BaseException:
        # Cancelled, not fed an error: a target blocked in its store would never read one.
        for sink in sinks:
            sink.task.cancel()
        for sink in sinks:
            with contextlib.suppress(BaseException):
                await sink.task
        raise
    await _settle(sinks, stall)
    return {sink.target: await sink.outcome(stall) for sink in sinks}


async def _offer(sinks: Sequence[_Sink], item: bytes | _End, stall: float) -> None:
    live = [sink for sink in sinks if sink.live]
    # A lone target is never cut: there is nobody waiting on it, and no alternative.
    limit = stall if len(live) > 1 else None
    await asyncio.gather(*(sink.offer(item, limit) for sink in live))


async def _settle(sinks: Sequence[_Sink], stall: float) -> None:
    """Wait for every upload to end; once one has committed, cut those that took nothing for
    ``stall`` (a store that hangs before reading a small blob never fills its queue)."""
    loop = asyncio.get_running_loop()
    while pending := [sink for sink in sinks if not sink.task.done()]:
        watched = [sink for sink in pending if not sink.stalled]
        timeout = None
        if watched and any(sink.committed for sink in sinks):
            timeout = max(0.0, min(sink.progressed for sink in watched) + stall - loop.time())
        await asyncio.wait([sink.task for sink in pending], timeout=timeout,
                           return_when=asyncio.FIRST_COMPLETED)
        for sink in watched:
            if timeout is not None and not sink.task.done() and \
                    loop.time() - sink.progressed >= stall:
                sink.cut()


@dataclass
class Filled:
    """One blob across the run's targets: what it is in each, and where its bytes came from
    the first time some target lacked it."""

    kinds: dict[Target, Kind] = field(default_factory=dict)
    source: Source | None = None  # of the last transfer
    transfers: list[Source] = field(default_factory=list)  # each time bytes moved, in order
    via: dict[Target, Source] = field(default_factory=dict)  # where a written target's came from


class Blobs:
    """Each blob of a rule's run into every live target that lacks it, once."""

    def __init__(self, targets: Targets, *, slots: asyncio.Semaphore, stall: float,
                 guard: Callable[[str], None], advance: Callable[[int], None],
                 dry_run: bool = False) -> None:
        self.targets = targets
        self.slots = slots
        self.stall = stall
        self.guard = guard
        self.advance = advance
        self.dry_run = dry_run
        self._filled: dict[Digest, Filled] = {}
        self._flights = SingleFlight()

    async def ensure(self, digest: Digest, wanted: Sequence[Target], download: Download, *,
                     foreign: bool = False) -> Filled:
        """Make ``digest`` present in each of ``wanted`` that is live; ``download`` opens the
        upstream's bytes, used only when no target has them."""
        filled = self._filled.setdefault(digest, Filled())
        while pending := [t for t in wanted if t.live and t not in filled.kinds]:
            # Another image's transfer of this blob may be under way for other targets: wait
            # for it, then start one for whatever is still missing.
            await self._flights.do(digest, lambda: self._fill(digest, filled, pending,
                                                              download, foreign))
        return filled

    async def _fill(self, digest: Digest, filled: Filled, pending: list[Target],
                    download: Download, foreign: bool) -> None:
        await _each(self.targets, pending, f"blob {digest}", lambda t: self._check(t, digest,
                                                                                    filled))
        lacking = [t for t in pending if t.live and t not in filled.kinds]
        if not lacking:
            return
        if foreign:
            filled.kinds.update(dict.fromkeys(lacking, "absent"))
            return
        peers = [t for t, kind in filled.kinds.items() if kind != "absent" and t.live]
        if not peers:  # a target that needs nothing of this image may still hold the blob
            others = [t for t in self.targets.live() if t not in filled.kinds]
            await _each(self.targets, others, f"blob {digest}",
                        lambda t: self._check(t, digest, filled))
            peers = [t for t, kind in filled.kinds.items() if kind != "absent" and t.live]
        if self.dry_run:
            filled.kinds.update(dict.fromkeys(lacking, "written"))
            filled.source = "peer" if peers else "upstream"
            filled.transfers.append(filled.source)
            filled.via.update(dict.fromkeys(lacking, filled.source))
            return
        async with self.slots:
            self.guard(f"blob {digest}")  # a transfer that could not be linked is wasted
            source, outcomes = await self._transfer(digest, lacking, peers, download)
        filled.source = source
        filled.transfers.append(source)
        for target, error in outcomes.items():
            if error is None:
                filled.kinds[target] = "written"
                filled.via[target] = source
        for target, error in outcomes.items():  # after the successes: this may raise
            if error is not None:
                self.targets.failed(target, f"blob {digest}", error)

    async def _check(self, target: Target, digest: Digest, filled: Filled) -> None:
        if await writer.has_blob(target.store, digest, claim=not self.dry_run):
            filled.kinds[target] = "present"

    async def _transfer(self, digest: Digest, lacking: list[Target], peers: list[Target],
                        download: Download) -> tuple[Source, dict[Target, BaseException | None]]:
        """From a target that has the blob (no upstream egress), else from the upstream."""
        for peer in peers:
            try:
                stored = await peer.store.read(layout.blob_data(digest))
                return "peer", await fan_out(digest, stored, lacking, stall=self.stall,
                                             advance=self.advance)
            except (StoreError, NotFound, RegistryError) as exc:  # RegistryError: corrupt there
                logger.warning("reading blob %s from %s failed (%r); trying elsewhere", digest,
                               peer.label, exc)
        async with download() as downloaded:
            return "upstream", await fan_out(digest, downloaded, lacking, stall=self.stall,
                                             advance=self.advance)


async def _each(targets: Targets, among: Sequence[Target], what: str,
                call: Callable[[Target], Awaitable[None]]) -> None:
    """``call`` for each live target of ``among`` at once; a store failure is that target's
    (``Targets.failed``)."""
    async def one(target: Target) -> None:
        with targets.failing(target, what):
            await call(target)

    async with asyncio.TaskGroup() as group:
        for target in among:
            if target.live:
                group.create_task(one(target))
