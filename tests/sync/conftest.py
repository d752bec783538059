"""Fakes for the sync unit tests: an in-process upstream behind httpx.MockTransport, a store
that logs its writes and fails the calls a test picks, and time that moves only when told."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

import httpx

from registry.digest import Digest
from registry.mediatypes import OCI_INDEX, OCI_MANIFEST
from registry.store.errors import StoreServerError
from registry.store.memory import MemoryStore
from sync.lease import Clocks
from tests.conftest import CountingStore

UPSTREAM = "https://upstream.test"
CONFIG_TYPE = "application/vnd.oci.image.config.v1+json"
LAYER_TYPE = "application/vnd.oci.image.layer.v1.tar+gzip"

T = TypeVar("T")


class Changes:
    """Pulsed by the fakes below whenever their state changes (a write, a sleeper), so a test
    waits for a condition on them without a fixed sleep or a busy loop."""

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def pulse(self) -> None:
        self._event.set()
        self._event = asyncio.Event()

    async def until(self, condition: Callable[[], bool], what: str) -> None:
        """Return once ``condition()`` holds; fail after 10 s."""
        try:
            async with asyncio.timeout(10):
                while True:
                    event = self._event  # taken before the check: no pulse is missed
                    if condition():
                        return
                    await event.wait()
        except TimeoutError:
            raise AssertionError(f"timed out waiting for {what}") from None


CHANGES = Changes()
until = CHANGES.until


# -- time ----------------------------------------------------------------------------------------


class ManualTime:
    """Monotonic and wall clocks that move only on ``advance``; ``sleep`` returns once they
    have moved far enough. ``skew`` sets the wall clock ahead of the shared one."""

    EPOCH = 1_700_000_000.0

    def __init__(self) -> None:
        self.now = 100.0
        self._sleepers: list[tuple[float, asyncio.Future[None]]] = []

    def clocks(self, skew: float = 0.0) -> Clocks:
        return Clocks(monotonic=lambda: self.now, wall=lambda: self.EPOCH + self.now + skew,
                      sleep=self.sleep)

    async def sleep(self, seconds: float) -> None:
        future = asyncio.get_running_loop().create_future()
        self._sleepers.append((self.now + seconds, future))
        CHANGES.pulse()
        await future

    @property
    def sleeping(self) -> int:
        return sum(1 for _, future in self._sleepers if not future.done())

    def advance(self, seconds: float) -> None:
        self.now += seconds
        for deadline, future in self._sleepers:
            if deadline <= self.now and not future.done():
                future.set_result(None)
        self._sleepers = [(d, f) for d, f in self._sleepers if not f.done()]
        # After the woken sleepers' next step (callbacks run in order): a test waiting on
        # what they do then re-checks its condition.
        asyncio.get_running_loop().call_soon(CHANGES.pulse)


# -- the store ------------------------------------------------------------------------------------


class StoreDown(StoreServerError):
    """What an injected store fault raises: a store failure, as backends report one."""


FaultMode = Literal["fail", "written", "hang"]


@dataclass
class Fault:
    """A store call of ``op`` on a key ``matches`` accepts: ``fail`` raises ``StoreDown``,
    ``written`` raises it after the write went through (an answer lost on the way back),
    ``hang`` never answers (until cancelled). ``fired`` counts the calls it took."""

    op: str
    matches: Callable[[str], bool]
    mode: FaultMode = "fail"
    times: int | None = None  # None: every time
    fired: int = 0

    def fires(self, op: str, key: str) -> bool:
        if op != self.op or not self.matches(key) or self.times == 0:
            return False
        self.fired += 1
        if self.times is not None:
            self.times -= 1
        CHANGES.pulse()
        return True


@dataclass
class Write:
    op: str
    key: str
    outcome: str  # "ok", or the exception's type name


class RecordingStore(CountingStore):
    """A store that logs every write in order (with its outcome) and fails chosen calls."""

    def __init__(self, inner: MemoryStore) -> None:
        super().__init__(inner)
        self.memory = inner
        self.writes: list[Write] = []
        self.faults: list[Fault] = []

    def fault(self, op: str, matches: Callable[[str], bool], mode: FaultMode = "fail", *,
              times: int | None = None) -> Fault:
        """Add a fault; of those that match a call, the first added takes it."""
        fault = Fault(op, matches, mode, times)
        self.faults.append(fault)
        return fault

    def keys_written(self, start: int = 0) -> list[str]:
        return [w.key for w in self.writes[start:] if w.outcome == "ok"]

    async def _write(self, op: str, key: str, call: Callable[[], Awaitable[T]]) -> T:
        fault = next((f for f in self.faults if f.fires(op, key)), None)
        if fault is not None and fault.mode == "hang":
            await asyncio.Event().wait()
        if fault is not None and fault.mode == "fail":
            self.writes.append(Write(op, key, StoreDown.__name__))
            CHANGES.pulse()
            raise StoreDown(f"injected: {op} {key}")
        try:
            result = await call()
        except Exception as exc:
            self.writes.append(Write(op, key, type(exc).__name__))
            CHANGES.pulse()
            raise
        self.writes.append(Write(op, key, "ok"))
        CHANGES.pulse()
        if fault is not None:
            raise StoreDown(f"injected after writing: {op} {key}")
        return result

    async def put(self, key: str, data: bytes) -> None:
        await self._write("put", key, lambda: CountingStore.put(self, key, data))

    async def put_stream(self, key: str, chunks: AsyncIterable[bytes]) -> None:
        await self._write("put_stream", key, lambda: CountingStore.put_stream(self, key, chunks))

    async def create(self, key: str, data: bytes) -> str:
        return await self._write("create", key, lambda: CountingStore.create(self, key, data))

    async def replace(self, key: str, data: bytes, version: str) -> str:
        return await self._write("replace", key,
                                 lambda: CountingStore.replace(self, key, data, version))

    async def delete(self, key: str) -> None:
        await self._write("delete", key, lambda: CountingStore.delete(self, key))


def recording(url: str = "memory://") -> RecordingStore:
    """A recording memory store; ``url`` tells several apart (a run's targets)."""
    store = RecordingStore(MemoryStore())
    store.url = store.inner.url = url
    return store


# -- the upstream ---------------------------------------------------------------------------------


@dataclass
class Gate:
    """Holds one blob's response after its first half: ``sent_part`` is set once that half is
    out, and the rest follows ``release``."""

    sent_part: asyncio.Event = field(default_factory=asyncio.Event)
    release: asyncio.Event = field(default_factory=asyncio.Event)


@dataclass
class Image:
    digest: Digest
    manifest: bytes
    blobs: list[Digest]  # config first, then layers


class FakeUpstream:
    """A registry in process: manifests by tag and digest (HEAD and GET), blobs, tags/list and
    _catalog; anything else answers 404. Every request is recorded."""

    def __init__(self) -> None:
        self.manifests: dict[str, dict[str, bytes]] = {}  # repository -> tag or digest -> bytes
        self.blobs: dict[Digest, bytes] = {}
        self.catalog: list[str] | None = None
        self.gates: dict[Digest, Gate] = {}
        self.corrupt: set[Digest] = set()
        self.requests: list[tuple[str, str]] = []
        self.blob_bytes_sent = 0  # blob bytes the client read: the upstream's egress

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)

    def blob(self, data: bytes) -> Digest:
        digest = Digest.from_bytes(data)
        self.blobs[digest] = data
        return digest

    def push(self, repository: str, tag: str | None, manifest: bytes) -> Digest:
        digest = Digest.from_bytes(manifest)
        refs = self.manifests.setdefault(repository, {})
        refs[str(digest)] = manifest
        if tag is not None:
            refs[tag] = manifest
        return digest

    def image(self, repository: str, tag: str | None, layers: list[bytes], *,
              architecture: str = "amd64", created: str = "2024-01-01T00:00:00Z",
              urls: list[str] | None = None) -> Image:
        config = json.dumps({"architecture": architecture, "os": "linux", "created": created,
                             "rootfs": {"type": "layers", "diff_ids": []}}).encode()
        descriptors: list[dict[str, Any]] = [
            {"mediaType": LAYER_TYPE, "digest": str(self.blob(layer)), "size": len(layer),
             **({"urls": urls} if urls else {})} for layer in layers]
        manifest = json.dumps({
            "schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": {"mediaType": CONFIG_TYPE, "digest": str(self.blob(config)),
                       "size": len(config)},
            "layers": descriptors}).encode()
        blobs = [Digest.from_bytes(config), *(Digest.parse(d["digest"]) for d in descriptors)]
        return Image(self.push(repository, tag, manifest), manifest, blobs)

    def index(self, repository: str, tag: str, children: dict[str, Image]) -> Image:
        """An index of ``children`` by platform (``os/arch``)."""
        manifests = [{"mediaType": OCI_MANIFEST, "digest": str(child.digest),
                      "size": len(child.manifest),
                      "platform": {"os": platform.split("/")[0],
                                   "architecture": platform.split("/")[1]}}
                     for platform, child in children.items()]
        data = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX,
                           "manifests": manifests}).encode()
        return Image(self.push(repository, tag, data), data, [])

    def gate(self, digest: Digest) -> Gate:
        self.gates[digest] = Gate()
        return self.gates[digest]

    def gets(self, path_end: str) -> int:
        return sum(1 for method, path in self.requests if method == "GET" and
                   path.endswith(path_end))

    async def handle(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        self.requests.append((request.method, path))
        if path == "/v2/_catalog":
            if self.catalog is None:
                return _error(404, "UNSUPPORTED")
            return httpx.Response(200, json={"repositories": self.catalog})
        for kind in ("manifests", "blobs", "tags"):
            marker = f"/{kind}/"
            if marker in path:
                name, _, rest = path.removeprefix("/v2/").rpartition(marker)
                if kind == "manifests":
                    return self._manifest(request, name, rest)
                if kind == "blobs":
                    return self._blob(Digest.parse(rest))
                if name in self.manifests:
                    tags = [t for t in self.manifests[name] if ":" not in t]
                    return httpx.Response(200, json={"name": name, "tags": tags})
        return _error(404, "NAME_UNKNOWN")

    def _manifest(self, request: httpx.Request, name: str, reference: str) -> httpx.Response:
        data = self.manifests.get(name, {}).get(reference)
        if data is None:
            return _error(404, "MANIFEST_UNKNOWN")
        headers = {"Content-Type": json.loads(data)["mediaType"],
                   "Docker-Content-Digest": str(Digest.from_bytes(data)),
                   "Content-Length": str(len(data))}
        if request.method == "HEAD":
            return httpx.Response(200, headers=headers)
        return httpx.Response(200, headers=headers, content=data)

    def _blob(self, digest: Digest) -> httpx.Response:
        data = self.blobs.get(digest)
        if data is None:
            return _error(404, "BLOB_UNKNOWN")
        if digest in self.corrupt:
            data = data[:-1] + bytes([data[-1] ^ 1])
        gate = self.gates.get(digest)

        async def sent() -> AsyncIterator[bytes]:
            half = len(data) // 2
            for part in (data[:half], data[half:]):
                self.blob_bytes_sent += len(part)
                yield part
                if gate is not None and not gate.sent_part.is_set():
                    gate.sent_part.set()
                    await gate.release.wait()

        return httpx.Response(200, headers={"Content-Length": str(len(data))}, content=sent())


def _error(status: int, code: str) -> httpx.Response:
    return httpx.Response(status, json={"errors": [{"code": code, "message": code.lower()}]})
