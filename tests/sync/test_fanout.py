"""The tee (sync/fanout.py): one source read once into several stores; a digest mismatch or a
broken source commits nothing anywhere; a failing or hung target is cut off while the others
commit; memory stays bounded by the queue whatever the blob size; a lone slow target is never
cut."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator

import pytest

from registry import layout
from registry.digest import Digest
from registry.errors import RegistryError
from sync.fanout import QUEUE_CHUNKS, fan_out
from sync.targets import Target, TargetStalled
from tests.sync.conftest import RecordingStore, StoreDown, recording

CHUNK = 1024
STALL = 0.2  # seconds: real time, kept short


def blob(chunks: int = 8, seed: int = 1) -> tuple[Digest, list[bytes]]:
    rng = random.Random(seed)
    parts = [rng.randbytes(CHUNK) for _ in range(chunks)]
    return Digest.from_bytes(b"".join(parts)), parts


class Source:
    """Chunks on demand, counting what was read: the upstream's bytes sent."""

    def __init__(self, parts: list[bytes], *, fail_after: int | None = None) -> None:
        self.parts = parts
        self.fail_after = fail_after
        self.sent = 0
        self.reads = 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        self.reads += 1
        for index, part in enumerate(self.parts):
            if index == self.fail_after:
                raise ConnectionResetError("the upstream broke off")
            self.sent += len(part)
            yield part
            await asyncio.sleep(0)


def stores(count: int) -> list[RecordingStore]:
    return [recording() for _ in range(count)]


def committed(store: RecordingStore, digest: Digest) -> bool:
    return layout.blob_data(digest) in store.memory.objects


async def test_one_read_of_the_source_commits_the_blob_to_every_target() -> None:
    digest, parts = blob()
    source, backends = Source(parts), stores(3)
    targets = [Target(s) for s in backends]
    outcomes = await fan_out(digest, source, targets, stall=STALL)
    assert outcomes == {t: None for t in targets}
    assert (source.reads, source.sent) == (1, len(b"".join(parts)))
    for backend in backends:
        assert backend.memory.objects[layout.blob_data(digest)] == b"".join(parts)


@pytest.mark.parametrize("fault", ["corrupt", "broken"])
async def test_a_bad_source_commits_nothing_anywhere(fault: str) -> None:
    digest, parts = blob()
    if fault == "corrupt":
        parts[-1] = parts[-1][:-1] + bytes([parts[-1][-1] ^ 1])
    source = Source(parts, fail_after=5 if fault == "broken" else None)
    backends = stores(3)
    with pytest.raises((RegistryError, ConnectionResetError)) as raised:
        await fan_out(digest, source, [Target(s) for s in backends], stall=STALL)
    assert ("DIGEST_INVALID" in str(raised.value)) == (fault == "corrupt")
    assert source.sent == len(b"".join(parts[:5 if fault == "broken" else None]))  # it fired
    assert not any(committed(s, digest) for s in backends)


async def test_a_target_that_fails_is_reported_and_the_others_commit() -> None:
    digest, parts = blob()
    backends = stores(3)
    fault = backends[1].fault("put_stream", lambda key: True)
    targets = [Target(s) for s in backends]
    outcomes = await fan_out(digest, Source(parts), targets, stall=STALL)
    assert fault.fired == 1
    assert isinstance(outcomes[targets[1]], StoreDown)
    assert [committed(s, digest) for s in backends] == [True, False, True]


@pytest.mark.parametrize("chunks", [2, 4 * QUEUE_CHUNKS])  # under a queue's worth, and over
async def test_a_hung_target_is_cut_after_the_stall_and_the_others_commit(chunks: int) -> None:
    digest, parts = blob(chunks)
    backends = stores(3)
    hung = backends[2].fault("put_stream", lambda key: True, "hang")
    targets = [Target(s) for s in backends]
    started = time.monotonic()
    outcomes = await fan_out(digest, Source(parts), targets, stall=STALL)
    assert hung.fired == 1
    assert isinstance(outcomes[targets[2]], TargetStalled)
    assert [committed(s, digest) for s in backends] == [True, True, False]
    assert time.monotonic() - started < 10 * STALL


async def test_memory_stays_within_the_queues_while_a_target_is_slow() -> None:
    """The source is never more than a queue (and the chunk in hand) ahead of the slowest
    target: a slow, live target holds the others back, it is not buffered without bound."""
    digest, parts = blob(10 * QUEUE_CHUNKS)
    source = Source(parts)
    backends = stores(2)
    ahead: list[int] = []
    original = backends[1].inner.put_stream

    async def slow(key: str, chunks: object) -> None:
        async def paced() -> AsyncIterator[bytes]:
            taken = 0
            async for chunk in chunks:  # type: ignore[attr-defined]
                taken += len(chunk)
                ahead.append((source.sent - taken) // CHUNK)
                await asyncio.sleep(0.002)
                yield chunk
        await original(key, paced())

    backends[1].inner.put_stream = slow  # type: ignore[method-assign]
    outcomes = await fan_out(digest, source, [Target(s) for s in backends], stall=STALL)
    assert set(outcomes.values()) == {None}
    assert len(ahead) == len(parts)
    assert max(ahead) <= QUEUE_CHUNKS + 1
    assert max(ahead) >= QUEUE_CHUNKS - 1  # the queue did fill: the slowness was real


async def test_a_lone_target_is_never_cut() -> None:
    digest, parts = blob(4 * QUEUE_CHUNKS)
    backend = recording()
    original = backend.inner.put_stream

    async def late(key: str, chunks: object) -> None:
        await asyncio.sleep(3 * STALL)  # no reading at all for longer than the stall
        await original(key, chunks)  # type: ignore[arg-type]

    backend.inner.put_stream = late  # type: ignore[method-assign]
    target = Target(backend)
    assert await fan_out(digest, Source(parts), [target], stall=STALL) == {target: None}
    assert committed(backend, digest)
