"""A counting TCP relay: what a server sent, for servers /proc cannot count.

``/proc/<pid>/io`` counts bytes a process passed to ``write()``; uvloop and Go write to their
sockets that way, but a Python server that uses ``send()`` (moto's werkzeug) goes uncounted. So
moto is reached through this relay, which runs its own event loop in a thread of the benchmark
process and counts the bytes in each direction. It parses nothing: S3 pre-signed URLs name the
relay's address, and moto checks no signature.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator

from tests.e2e.harness import LOOPBACK

CHUNK = 256 * 1024


class CountingRelay:
    """Listens on 127.0.0.1:``port``; relays each connection to ``target_port``."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.sent_to_clients = 0  # bytes from the target to the clients
        self.received_from_clients = 0
        self.connections = 0
        self.target_refused = 0  # connections the target would not take (it was overloaded)
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, name="counting-relay", daemon=True)

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    def _run(self) -> None:
        self._loop.run_until_complete(self._serve())

    async def _serve(self) -> None:
        self._stop = asyncio.Event()
        # A fleet opens hundreds of connections at once: a short accept queue would refuse some.
        server = await asyncio.start_server(self._relay, LOOPBACK, 0, backlog=4096)
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        async with server:
            await self._stop.wait()

    async def _relay(self, client_reader: asyncio.StreamReader,
                     client_writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            target_reader, target_writer = await asyncio.open_connection(LOOPBACK,
                                                                         self.target_port)
        except OSError:
            self.target_refused += 1
            client_writer.close()
            return

        async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                       downstream: bool) -> None:
            try:
                while chunk := await reader.read(CHUNK):
                    if downstream:
                        self.sent_to_clients += len(chunk)
                    else:
                        self.received_from_clients += len(chunk)
                    writer.write(chunk)
                    await writer.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                with contextlib.suppress(Exception):
                    writer.close()

        await asyncio.gather(pipe(client_reader, target_writer, False),
                             pipe(target_reader, client_writer, True))

    def start(self) -> None:
        self._thread.start()
        if not self._ready.wait(timeout=10):
            raise RuntimeError("counting relay did not start")

    def stop(self) -> None:
        if self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout=10)


@contextlib.contextmanager
def counting_relay(target_port: int) -> Iterator[CountingRelay]:
    """A running relay to ``target_port`` until the block ends."""
    relay = CountingRelay(target_port)
    relay.start()
    try:
        yield relay
    finally:
        relay.stop()
