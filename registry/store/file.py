"""The embedded store: a directory tree, so ``regfront serve`` works with no cloud at all.

Blocking file calls run in worker threads. Writes go to a temporary file in the target's
directory and are renamed into place, so readers see a whole object or none. A missing file is
``NotFound``; any other ``OSError`` leaves as its store failure kind (registry/store/errors.py).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import uuid
from collections.abc import AsyncIterable, AsyncIterator
from pathlib import Path
from typing import BinaryIO

from anyio import to_thread

from registry.store import CHUNK_SIZE, NotFound, PreconditionFailed, Reader, check_key
from registry.store.errors import os_failures

_TEMP_MARK = ".regfront-tmp-"
_CREATE_ATTEMPTS = 10


class FileStore:
    def __init__(self, root: str) -> None:
        self.root = Path(root).absolute()
        self.url = self.root.as_uri()

    def _path(self, key: str) -> Path:
        return self.root / check_key(key)

    async def get(self, key: str) -> bytes:
        path = self._path(key)
        with os_failures():
            try:
                return await to_thread.run_sync(path.read_bytes)
            except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
                raise NotFound(key) from None

    async def size(self, key: str) -> int:
        path = self._path(key)
        with os_failures():
            try:
                stat = await to_thread.run_sync(path.stat)
            except (FileNotFoundError, NotADirectoryError):
                raise NotFound(key) from None
        if not path.is_file():
            raise NotFound(key)
        return stat.st_size

    async def read(self, key: str, start: int = 0, length: int | None = None) -> Reader:
        path = self._path(key)
        first_want = CHUNK_SIZE if length is None else min(CHUNK_SIZE, length)

        def open_and_read() -> tuple[BinaryIO, int, bytes]:
            # One worker-thread hop for open, fstat, seek and the first chunk: a small blob (a
            # config, a small layer) costs one hop instead of three, and no size call.
            handle = path.open("rb")
            try:
                size = os.fstat(handle.fileno()).st_size
                handle.seek(start)
                return handle, size, handle.read(first_want)
            except BaseException:
                handle.close()
                raise

        with os_failures():
            try:
                handle, size, first = await to_thread.run_sync(open_and_read)
            except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
                raise NotFound(key) from None

        async def chunks() -> AsyncIterator[bytes]:
            remaining = None if length is None else length - len(first)
            try:
                if first:
                    yield first
                if len(first) < first_want:
                    return  # the end of the file came with the first read
                while remaining is None or remaining > 0:
                    want = CHUNK_SIZE if remaining is None else min(CHUNK_SIZE, remaining)
                    with os_failures():
                        chunk = await to_thread.run_sync(handle.read, want)
                    if not chunk:
                        return
                    if remaining is not None:
                        remaining -= len(chunk)
                    yield chunk
            finally:
                handle.close()

        return Reader(size, chunks())

    async def put(self, key: str, data: bytes) -> None:
        async def one() -> AsyncIterator[bytes]:
            yield data

        await self.put_stream(key, one())

    async def put_stream(self, key: str, chunks: AsyncIterable[bytes]) -> None:
        with os_failures():
            await self._put_stream(self._path(key), chunks)

    async def _put_stream(self, path: Path, chunks: AsyncIterable[bytes]) -> None:
        temp = path.with_name(f"{path.name}{_TEMP_MARK}{uuid.uuid4().hex}")
        handle = await to_thread.run_sync(_create, temp)
        try:
            async for chunk in chunks:
                await to_thread.run_sync(handle.write, chunk)
            await to_thread.run_sync(handle.close)
            await to_thread.run_sync(os.replace, temp, path)
        except BaseException:
            handle.close()
            temp.unlink(missing_ok=True)
            raise

    async def children(self, prefix: str) -> list[str]:
        path = self._path(prefix)
        with os_failures():
            try:
                names = await to_thread.run_sync(os.listdir, path)
            except (FileNotFoundError, NotADirectoryError):
                return []
        return sorted(n for n in names if _TEMP_MARK not in n)

    async def list_keys(self, prefix: str) -> list[str]:
        top = self._path(prefix)

        def walk() -> list[str]:
            found = []
            for directory, _, files in os.walk(top):
                base = Path(directory).relative_to(self.root).as_posix()
                found += [f"{base}/{name}" for name in files if _TEMP_MARK not in name]
            return sorted(found)

        with os_failures():
            return await to_thread.run_sync(walk)

    async def get_versioned(self, key: str) -> tuple[bytes, str]:
        data = await self.get(key)
        return data, hashlib.sha256(data).hexdigest()

    async def create(self, key: str, data: bytes) -> str:
        with os_failures():
            return await to_thread.run_sync(self._swap, key, data, None)

    async def replace(self, key: str, data: bytes, version: str) -> str:
        with os_failures():
            return await to_thread.run_sync(self._swap, key, data, version)

    def _swap(self, key: str, data: bytes, version: str | None) -> str:
        """Compare-and-swap under an exclusive lock on a sidecar file (hidden from listings)."""
        path = self._path(key)
        with _create(path.with_name(f"{path.name}{_TEMP_MARK}lock"), "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                current = path.read_bytes()
            except FileNotFoundError:
                current = None
            expected_absent = version is None
            if (current is None) != expected_absent or (
                    current is not None and hashlib.sha256(current).hexdigest() != version):
                raise PreconditionFailed(key)
            temp = path.with_name(f"{path.name}{_TEMP_MARK}{uuid.uuid4().hex}")
            temp.write_bytes(data)
            os.replace(temp, path)
        return hashlib.sha256(data).hexdigest()

    async def delete(self, key: str) -> None:
        path = self._path(key)
        with os_failures():
            await to_thread.run_sync(self._delete, path)

    def _delete(self, path: Path) -> None:
        """Unlink, then remove the directories left empty up to the root: an object store has
        no empty directories, and registry:2 lists an empty tag directory as a tag. The key of
        a directory that holds no file deletes its empty directories (what a delete killed
        before its ``rmdir`` left behind); files are never removed but by their own key."""
        try:
            path.unlink(missing_ok=True)
        except IsADirectoryError:
            for directory, _, _ in sorted(os.walk(path), key=lambda e: -len(e[0])):
                with contextlib.suppress(OSError):  # not empty: a file is there, it stays
                    os.rmdir(directory)
        parent = path.parent
        while parent != self.root and self.root in parent.parents:
            try:
                parent.rmdir()
            except FileNotFoundError:  # already gone: the one above may be empty still
                pass
            except OSError:  # not empty: the directories above are not empty either
                return
            parent = parent.parent

    async def close(self) -> None:
        pass


def _create(path: Path, mode: str = "wb") -> BinaryIO:
    """Open ``path`` for writing, making its directories; a delete may remove an empty one
    between the two (see ``FileStore._delete``), so that is tried again."""
    for _ in range(_CREATE_ATTEMPTS - 1):
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            return path.open(mode)  # type: ignore[return-value]
        except FileNotFoundError:
            continue
    path.parent.mkdir(parents=True, exist_ok=True)
    return path.open(mode)  # type: ignore[return-value]
