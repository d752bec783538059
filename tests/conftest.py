"""Fixtures shared by every test package."""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterable, AsyncIterator

from registry.store import ObjectStore


class CountingStore:
    """Wraps a real store and counts calls per method: how the hot-path tests see store traffic."""

    def __init__(self, inner: ObjectStore) -> None:
        self.inner = inner
        self.url = inner.url
        self.calls: Counter[str] = Counter()

    def reset(self) -> None:
        self.calls.clear()

    @property
    def reads(self) -> int:
        return sum(self.calls[m] for m in ("get", "size", "read", "children"))

    async def get(self, key: str) -> bytes:
        self.calls["get"] += 1
        return await self.inner.get(key)

    async def size(self, key: str) -> int:
        self.calls["size"] += 1
        return await self.inner.size(key)

    async def read(self, key: str, start: int = 0,
                   length: int | None = None) -> AsyncIterator[bytes]:
        self.calls["read"] += 1
        return await self.inner.read(key, start, length)

    async def put(self, key: str, data: bytes) -> None:
        self.calls["put"] += 1
        await self.inner.put(key, data)

    async def put_stream(self, key: str, chunks: AsyncIterable[bytes]) -> None:
        self.calls["put_stream"] += 1
        await self.inner.put_stream(key, chunks)

    async def children(self, prefix: str) -> list[str]:
        self.calls["children"] += 1
        return await self.inner.children(prefix)

    async def delete(self, key: str) -> None:
        self.calls["delete"] += 1
        await self.inner.delete(key)

    async def close(self) -> None:
        await self.inner.close()
