"""A streamed write (``ObjectStore.put_stream``) cut into the parts of an upload in pieces: S3's
multipart upload, GCS's resumable one."""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterable, AsyncIterator


async def parts(chunks: AsyncIterable[bytes], size: int) -> AsyncGenerator[tuple[bytes, bool]]:
    """``chunks`` re-cut into parts of ``size`` bytes but the last, each with whether it is the
    last; one part ahead is read first, so the last is never empty (S3 and GCS refuse that)
    unless the whole stream is, and then it is the only part."""
    stream = aiter(chunks)
    buffer = bytearray()
    cut = False
    while True:
        more = await _fill(stream, buffer, size)
        while len(buffer) > size or (not more and buffer):
            part = bytes(buffer[:size])
            del buffer[:size]
            cut = True
            yield part, not more and not buffer
        if not more:
            if not cut:
                yield b"", True
            return


async def _fill(stream: AsyncIterator[bytes], buffer: bytearray, size: int) -> bool:
    """Read until more than one part is buffered; False when the stream ended first."""
    while len(buffer) <= size:
        try:
            buffer += await anext(stream)
        except StopAsyncIteration:
            return False
    return True
