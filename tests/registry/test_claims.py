"""Writers' claims (registry/claims.py): every write of the writer comes after a claim on its
subject, a claim is reused for a while, and a writer whose subject a collection announced waits
until the announcement's deadline before it writes."""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator

import pytest

from registry import layout, writer
from registry.claims import (
    CLAIM_REUSE,
    CLAIM_WINDOW,
    ClaimExpired,
    Claims,
    Doomed,
    claims_for,
    use_claims,
)
from registry.digest import Digest
from registry.store.memory import MemoryStore
from tests.conftest import CountingStore
from tests.lifecycle.bucket import Bucket, FakeTime

NAME = "team/app"


class Logged(CountingStore):
    """Every put, in order."""

    def __init__(self) -> None:
        super().__init__(MemoryStore())
        self.puts: list[str] = []

    async def put(self, key: str, data: bytes) -> None:
        self.puts.append(key)
        await super().put(key, data)

    async def put_stream(self, key: str, chunks: AsyncIterable[bytes]) -> None:
        self.puts.append(key)
        await super().put_stream(key, chunks)


def subject_of(key: str, digests: dict[str, Digest]) -> str:
    """The claim a written key needs (what the collector would announce to delete it)."""
    if key.endswith("/current/link"):
        tag = key.split("/_manifests/tags/")[1].split("/")[0]
        return layout.subject_key((NAME, tag))
    hex_part = next(h for h in digests if h in key)
    return layout.subject_key(digests[hex_part])


async def test_every_write_follows_a_claim_on_its_subject() -> None:
    store, time = Logged(), FakeTime()
    bucket = Bucket(store, time)
    base = await bucket.image(NAME, tag="1")
    await bucket.image(NAME, [bucket.layer()], tag="2")
    index = await bucket.index(NAME, [base], tag="multi")
    digests = {d.hex: d for d in index.everything() | base.everything()}
    for n, key in enumerate(store.puts):
        if key.startswith(layout.CLAIMS_DIR):
            continue
        claimed = {k.rpartition("/")[2].partition("-")[2] for k in store.puts[:n]
                   if k.startswith(layout.CLAIMS_DIR)}
        if key.endswith("/current/link") or any(h in key for h in digests):
            assert subject_of(key, digests) in claimed, key
    assert claims_for(store).stats.written == len(
        [k for k in store.puts if k.startswith(layout.CLAIMS_DIR)])


async def test_a_claim_is_reused_then_renewed() -> None:
    store, time = Logged(), FakeTime()
    claims = use_claims(store, Claims(store, time.timing()))
    digest = Digest.from_bytes(b"x")
    await claims.claim(digest)
    await claims.claim(digest)
    assert claims.stats.written == 1
    time.now += CLAIM_REUSE + 1
    await claims.ensure([digest])  # still within the window: renewed, no gap
    assert claims.stats.written == 2
    time.now += CLAIM_WINDOW + 1
    with pytest.raises(ClaimExpired):
        await claims.ensure([digest])
    with pytest.raises(ClaimExpired):
        await claims.ensure([Digest.from_bytes(b"never claimed here")])


async def test_a_writer_waits_out_an_announced_deletion() -> None:
    store, time = Logged(), FakeTime()
    claims = use_claims(store, Claims(store, time.timing()))
    digest = Digest.from_bytes(b"doomed")
    key = layout.subject_key(digest)
    doomed = Doomed("run-1", time.wall() + 30, {key})
    await store.put(layout.doomed_shard(key), doomed.to_json())
    store.puts.clear()

    async def one_chunk() -> AsyncIterator[bytes]:
        yield b"doomed"

    await writer.put_blob(store, digest, one_chunk())
    assert claims.stats.waits > 0
    assert time.now >= 30  # it wrote only after the deadline
    assert store.puts[0].startswith(layout.CLAIMS_DIR)
    assert store.puts[-1] == layout.blob_data(digest)


async def test_an_announcement_for_other_subjects_or_past_its_deadline_is_no_wait() -> None:
    store, time = Logged(), FakeTime()
    claims = use_claims(store, Claims(store, time.timing()))
    digest = Digest.from_bytes(b"free")
    key = layout.subject_key(digest)
    other = key[:-1] + ("0" if key[-1] != "0" else "1")
    await store.put(layout.doomed_shard(key), Doomed("r", time.wall() + 30, {other}).to_json())
    await claims.claim(digest)
    await store.put(layout.doomed_shard(key), Doomed("r", time.wall() - 1, {key}).to_json())
    await claims.claim(Digest.from_bytes(b"free too"))
    assert claims.stats.waits == 0
    assert time.now == 0
