"""A counting TCP relay: what a server sent, for servers /proc cannot count.

``/proc/<pid>/io`` counts bytes a process passed to ``write()``; uvloop and Go write to their
sockets that way, but a Python server that uses ``send()`` (moto's werkzeug) goes uncounted. So
moto is reached through this relay, which runs its own event loop in a thread of the benchmark
process and counts the bytes in each direction, and the transfers cut short on either side. It
parses nothing: S3 pre-signed URLs name the relay's address, and moto checks no signature.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
from collections.abc import Iterator

from tests.e2e.harness import LOOPBACK

CHUNK = 256 * 1024


class CountingRelay:
    """Listens on 127.0.0.1:``port``; relays each connection to ``target_port``."""

    def __init__(self, target_port: int, cpu: str | None = None) -> None:
        self.target_port = target_port
        self.cpu = cpu  # the relay thread's core (a server's: it carries the bucket's bytes)
        self.sent_to_clients = 0  # bytes from the target to the clients
        self.received_from_clients = 0
        self.connections = 0
        self.target_refused = 0  # connections the target would not take (it was overloaded)
        self.client_gone = 0  # a client closed or reset while the target was still sending
        self.target_failed = 0  # the target reset a connection (its reply cut short)
        self.port = 0
        self.thread_id = 0  # the relay thread's native id, for its CPU time
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, name="counting-relay", daemon=True)

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    def _run(self) -> None:
        self.thread_id = threading.get_native_id()
        if self.cpu is not None and hasattr(os, "sched_setaffinity"):
            os.sched_setaffinity(0, {int(self.cpu)})  # 0: this thread only
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
                while True:
                    try:
                        chunk = await reader.read(CHUNK)
                    except (ConnectionError, OSError):
                        if downstream:
                            self.target_failed += 1
                        return
                    if not chunk:
                        return
                    if downstream:
                        self.sent_to_clients += len(chunk)
                    else:
                        self.received_from_clients += len(chunk)
                    try:
                        writer.write(chunk)
                        await writer.drain()
                    except (ConnectionError, OSError):
                        if downstream:
                            self.client_gone += 1
                        return
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
def counting_relay(target_port: int, cpu: str | None = None) -> Iterator[CountingRelay]:
    """A running relay to ``target_port`` (its thread on ``cpu``) until the block ends."""
    relay = CountingRelay(target_port, cpu)
    relay.start()
    try:
        yield relay
    finally:
        relay.stop()
