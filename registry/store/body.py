"""A cloud backend's ``ObjectStore.read``: the range asked for, checked and as an HTTP ``Range``,
and the streamed body - the response's bytes in ``CHUNK_SIZE`` pieces, each read under the
backend's failure mapping, and the connection given back however the reader stops."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractContextManager

from registry.store import CHUNK_SIZE


def check_range(start: int, length: int | None) -> None:
    """A negative start or length is the caller's bug."""
    if start < 0 or (length is not None and length < 0):
        raise ValueError(f"bad range: start={start} length={length}")


def range_header(start: int, length: int | None) -> str | None:
    """The HTTP ``Range`` for ``length`` bytes (None: to the end) from ``start``; None for the
    whole object. Not for a zero length: HTTP has no empty range."""
    end = "" if length is None else str(start + length - 1)
    return f"bytes={start}-{end}" if start or end else None


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
