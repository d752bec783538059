"""An in-process store for unit tests: a dict of keys to bytes."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterable, AsyncIterator

from registry.store import CHUNK_SIZE, NotFound, PreconditionFailed, Reader, check_key


def _version(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class MemoryStore:
    def __init__(self) -> None:
        self.url = "memory://"
        self.objects: dict[str, bytes] = {}

    async def get(self, key: str) -> bytes:
        try:
            return self.objects[key]
        except KeyError:
            raise NotFound(key) from None

    async def size(self, key: str) -> int:
        return len(await self.get(key))

    async def read(self, key: str, start: int = 0, length: int | None = None) -> Reader:
        data = await self.get(key)
        end = len(data) if length is None else min(len(data), start + length)

        async def chunks() -> AsyncIterator[bytes]:
            for offset in range(start, end, CHUNK_SIZE):
                yield data[offset:min(end, offset + CHUNK_SIZE)]

        return Reader(len(data), chunks())

    async def put(self, key: str, data: bytes) -> None:
        self.objects[check_key(key)] = bytes(data)

    async def put_stream(self, key: str, chunks: AsyncIterable[bytes]) -> None:
        check_key(key)
        parts = [chunk async for chunk in chunks]
        self.objects[key] = b"".join(parts)

    async def children(self, prefix: str) -> list[str]:
        names = {key[len(prefix):].split("/", 1)[0]
                 for key in self.objects if key.startswith(prefix)}
        return sorted(names)

    async def list_keys(self, prefix: str) -> list[str]:
        return sorted(key for key in self.objects if key.startswith(prefix))

    async def get_versioned(self, key: str) -> tuple[bytes, str]:
        data = await self.get(key)
        return data, _version(data)

    async def create(self, key: str, data: bytes) -> str:
        if check_key(key) in self.objects:
            raise PreconditionFailed(key)
        self.objects[key] = bytes(data)
        return _version(data)

    async def replace(self, key: str, data: bytes, version: str) -> str:
        current = self.objects.get(check_key(key))
        if current is None or _version(current) != version:
            raise PreconditionFailed(key)
        self.objects[key] = bytes(data)
        return _version(data)

    async def delete(self, key: str) -> None:
        self.objects.pop(key, None)

    async def close(self) -> None:
        pass
