"""A cloud backend's streamed object body (``ObjectStore.read``): the response's bytes in
``CHUNK_SIZE`` pieces, each read under the backend's failure mapping, and the connection given
back however the reader stops."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractContextManager

from registry.store import CHUNK_SIZE


class Body:
    """An open response body as an iterator that always gives its pooled connection back.

    aiohttp keeps an unfinished response alive from its connection pool, so one dropped unread
    (a client that hung up before streaming began) would hold a pooled connection forever, and a
    few dozen would hang the store: hence ``__del__``, not a generator's ``finally``.
    """

    def __init__(self, read: Callable[[int], Awaitable[bytes]], close: Callable[[], object],
                 failures: Callable[[], AbstractContextManager[object]]) -> None:
        self._read = read  # at most n bytes; b"" at the end
        self._close = close  # drops the connection unless the body was read to its end
        self._failures = failures  # the backend's exceptions as the store failure kinds
        self._open = True

    def __aiter__(self) -> Body:
        return self

    async def __anext__(self) -> bytes:
        if not self._open:
            raise StopAsyncIteration
        try:
            with self._failures():
                chunk = await self._read(CHUNK_SIZE)
        except BaseException:
            self.close()
            raise
        if not chunk:
            self.close()
            raise StopAsyncIteration
        return chunk

    def close(self) -> None:
        """Drop the connection unless the body was read to its end (then it is pooled already)."""
        if self._open:
            self._open = False
            self._close()

    async def aclose(self) -> None:
        self.close()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):  # the loop may be gone at interpreter exit
            self.close()


async def empty() -> AsyncIterator[bytes]:
    """No bytes: a zero-length range, or a start at or past the object's end."""
    return
    yield
