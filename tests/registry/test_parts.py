"""A streamed write cut into upload parts (registry/store/parts.py): every part but the last of
one size, the last never empty unless the stream is, and which one is last said with it."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from registry.store.parts import parts


async def _chunks(data: bytes, size: int) -> AsyncIterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i:i + size]


@pytest.mark.parametrize(("length", "chunk", "expected"), [
    (0, 1, [0]),
    (3, 1, [3]),
    (4, 3, [4]),
    (8, 3, [4, 4]),  # a multiple of the part size: the last part is whole, not empty
    (9, 5, [4, 4, 1]),
    (9, 100, [4, 4, 1]),  # chunks larger than a part
])
async def test_parts(length: int, chunk: int, expected: list[int]) -> None:
    data = bytes(range(length))
    cut = [p async for p in parts(_chunks(data, chunk), 4)]
    assert [len(part) for part, _ in cut] == expected
    assert [last for _, last in cut] == [False] * (len(expected) - 1) + [True]
    assert b"".join(part for part, _ in cut) == data
