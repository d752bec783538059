"""The store conformance suite: every backend must pass all of it (memory, file, S3 on moto,
GCS on fake-gcs-server, Azure on Azurite)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from registry.store import (
    NotFound,
    ObjectStore,
    PreconditionFailed,
    batch_deleter,
    check_key,
    key_lister,
    open_store,
)
from registry.store import s3 as s3_module
from registry.store.azure import AzureStore
from registry.store.file import FileStore
from registry.store.gcs import GCSStore
from registry.store.memory import MemoryStore
from registry.store.s3 import S3Store

# Each backend is built from the test's request (for fixtures only it needs) and tmp_path.
BACKENDS: dict[str, Callable[[pytest.FixtureRequest, Path], ObjectStore]] = {
    "memory": lambda request, tmp: MemoryStore(),
    "file": lambda request, tmp: FileStore(str(tmp / "store")),
    "s3": lambda request, tmp: S3Store(request.getfixturevalue("s3_url")),
    "gcs": lambda request, tmp: GCSStore(request.getfixturevalue("gcs_url")),
    "azure": lambda request, tmp: AzureStore(request.getfixturevalue("azure_url")),
}


@pytest.fixture(params=sorted(BACKENDS))
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[ObjectStore]:
    backend = BACKENDS[request.param](request, tmp_path)
    yield backend
    await backend.close()


async def _chunks(*parts: bytes) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


async def _read_all(store: ObjectStore, key: str, start: int = 0,
                    length: int | None = None) -> bytes:
    return b"".join([c async for c in await store.read(key, start, length)])


async def test_put_then_get_and_size(store: ObjectStore) -> None:
    await store.put("a/b/data", b"hello")
    assert await store.get("a/b/data") == b"hello"
    assert await store.size("a/b/data") == 5


async def test_missing_key_is_not_found_for_every_read(store: ObjectStore) -> None:
    with pytest.raises(NotFound):
        await store.get("nope/data")
    with pytest.raises(NotFound):
        await store.size("nope/data")
    with pytest.raises(NotFound):
        await store.read("nope/data")


async def test_a_directory_is_not_an_object(store: ObjectStore) -> None:
    await store.put("dir/child", b"x")
    with pytest.raises(NotFound):
        await store.get("dir")
    with pytest.raises(NotFound):
        await store.size("dir")


async def test_put_overwrites(store: ObjectStore) -> None:
    await store.put("k", b"one")
    await store.put("k", b"two!")
    assert await store.get("k") == b"two!"
    assert await store.size("k") == 4


async def test_ranged_reads(store: ObjectStore) -> None:
    data = bytes(range(256)) * 10_000  # spans several read chunks
    await store.put("blob", data)
    assert await _read_all(store, "blob") == data
    assert await _read_all(store, "blob", 10, 5) == data[10:15]
    assert await _read_all(store, "blob", len(data) - 3) == data[-3:]
    assert await _read_all(store, "blob", 1_048_570, 20) == data[1_048_570:1_048_590]


async def test_a_read_reports_the_whole_size(store: ObjectStore) -> None:
    """What lets a cold GET skip its ``size`` call: the open knows the object's whole length,
    whatever range was asked, and even when no byte is."""
    data = bytes(range(256)) * 10_000
    await store.put("blob", data)
    await store.put("empty", b"")
    for key, start, length in [("blob", 0, None), ("blob", 10, 5), ("blob", 0, 7),
                               ("blob", len(data) - 3, None), ("blob", 5, 0),
                               ("blob", len(data) + 10, None), ("empty", 0, None)]:
        reader = await store.read(key, start, length)
        expected = len(data) if key == "blob" else 0
        assert reader.size == expected, (key, start, length)
        end = None if length is None else start + length
        assert b"".join([c async for c in reader]) == (data if key == "blob" else b"")[
            start:end]


async def test_put_stream_commits_the_whole_object(store: ObjectStore) -> None:
    await store.put_stream("s", _chunks(b"ab", b"", b"cd"))
    assert await store.get("s") == b"abcd"


async def test_failed_put_stream_commits_nothing(store: ObjectStore) -> None:
    async def broken() -> AsyncIterator[bytes]:
        yield b"partial"
        raise RuntimeError("upstream went away")

    with pytest.raises(RuntimeError):
        await store.put_stream("p/data", broken())
    with pytest.raises(NotFound):
        await store.get("p/data")
    assert await store.children("p/") == []


async def test_failed_put_stream_keeps_the_previous_object(store: ObjectStore) -> None:
    await store.put("q", b"old")

    async def broken() -> AsyncIterator[bytes]:
        yield b"new"
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        await store.put_stream("q", broken())
    assert await store.get("q") == b"old"


async def test_children_lists_one_level_sorted(store: ObjectStore) -> None:
    for key in ("t/b/current/link", "t/a/current/link", "t/a/index/x", "t/c", "u/z"):
        await store.put(key, b"1")
    assert await store.children("t/") == ["a", "b", "c"]
    assert await store.children("t/a/") == ["current", "index"]
    assert await store.children("missing/") == []


async def test_delete(store: ObjectStore) -> None:
    await store.put("d", b"1")
    await store.delete("d")
    await store.delete("d")  # deleting what is gone is not an error
    with pytest.raises(NotFound):
        await store.get("d")


async def test_s3_deletes_in_batches(request: pytest.FixtureRequest, tmp_path: Path,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """The store that deletes in batches (garbage collection sweeps a bucket so): every key
    goes, over several requests, absent keys included; others stay. (Azure's Blob Batch is
    not here: Azurite answers every batch 400 InvalidInput, Azure/Azurite#2509, so it could not
    be tested; Azure and GCS delete one key per call.)"""
    store = BACKENDS["s3"](request, tmp_path)
    monkeypatch.setattr(s3_module, "DELETE_BATCH", 2)
    deleter = batch_deleter(store)
    assert deleter is not None, f"{type(store).__name__} cannot delete in batches"
    try:
        doomed = [f"b/{n}/link" for n in range(5)]
        for key in [*doomed, "b/stays", "c/x"]:
            await store.put(key, b"1")
        await deleter.delete_many([*doomed, "b/never-written"])
        await deleter.delete_many([])
        assert await store.children("b/") == ["stays"]
        assert await store.get("c/x") == b"1"
    finally:
        await store.close()


async def test_deleting_the_last_object_under_a_directory_unlists_it(store: ObjectStore) -> None:
    """As on S3: a tag whose links are deleted is no longer listed (registry:2 lists the
    directories under ``_manifests/tags/`` as tags)."""
    for key in ("tags/old/current/link", "tags/old/index/sha256/ab/link", "tags/new/current/link"):
        await store.put(key, b"1")
    await store.delete("tags/old/current/link")
    assert await store.children("tags/") == ["new", "old"]
    await store.delete("tags/old/index/sha256/ab/link")
    assert await store.children("tags/") == ["new"]
    await store.put("tags/old/current/link", b"2")  # and the directory comes back when written
    assert await store.children("tags/old/") == ["current"]
    await store.delete("tags/old")  # a key that is no object: deleting it is no error ...
    assert await store.get("tags/old/current/link") == b"2"  # ... and removes nothing


async def test_a_key_lister_lists_every_key_under_a_prefix(store: ObjectStore) -> None:
    """Stores that list whole prefixes (garbage collection reads a bucket so) agree with
    ``children`` walked down, leave out what is no object, and keep their own prefix out."""
    lister = key_lister(store)
    assert lister is not None, f"{type(store).__name__} cannot list a prefix in one pass"
    keys = ["r/a/_manifests/tags/1/current/link", "r/a/_layers/sha256/ab/link", "r/b/x", "s/y"]
    for key in keys:
        await store.put(key, b"1")
    assert await store.create("r/lease", b"held")  # conditional files' sidecars are no keys
    assert await lister.list_keys("r/") == sorted([*keys[:3], "r/lease"])
    assert await lister.list_keys("r/a/_layers/") == ["r/a/_layers/sha256/ab/link"]
    assert await lister.list_keys("nothing/") == []


async def test_empty_object(store: ObjectStore) -> None:
    await store.put("empty", b"")
    assert await store.get("empty") == b""
    assert await store.size("empty") == 0
    assert await _read_all(store, "empty") == b""


@pytest.mark.parametrize("key", ["", "/abs", "a/../b", "a//b", "./a", ".."])
async def test_unsafe_keys_are_refused(store: ObjectStore, key: str) -> None:
    with pytest.raises(ValueError, match="unsafe store key"):
        await store.put(key, b"x")


def test_check_key_accepts_layout_keys() -> None:
    assert check_key("docker/registry/v2/blobs/sha256/ab/abcd/data")


def test_open_store_by_url(tmp_path: Path) -> None:
    assert isinstance(open_store(tmp_path.as_uri()), FileStore)
    assert isinstance(open_store(str(tmp_path)), FileStore)
    assert isinstance(open_store("memory://"), MemoryStore)
    file_store = open_store(f"file://{tmp_path}/x")
    assert isinstance(file_store, FileStore)
    assert file_store.root == tmp_path / "x"


def test_open_store_rejects_unknown_schemes() -> None:
    from registry.errors import ConfigError

    with pytest.raises(ConfigError, match="unsupported scheme 'gopher'"):
        open_store("gopher://x")
    with pytest.raises(ConfigError, match="file:///absolute/path"):
        open_store("file://host/x")


async def test_create_writes_only_what_is_absent(store: ObjectStore) -> None:
    version = await store.create("lease", b"mine")
    assert await store.get_versioned("lease") == (b"mine", version)
    with pytest.raises(PreconditionFailed):
        await store.create("lease", b"theirs")
    assert await store.get("lease") == b"mine"


async def test_replace_is_compare_and_swap(store: ObjectStore) -> None:
    first = await store.create("lease", b"one")
    second = await store.replace("lease", b"two", first)
    assert second != first
    with pytest.raises(PreconditionFailed):
        await store.replace("lease", b"three", first)  # stale version: someone else wrote
    assert await store.get_versioned("lease") == (b"two", second)
    with pytest.raises(PreconditionFailed):
        await store.replace("absent", b"x", second)


async def test_conditional_files_are_not_listed(store: ObjectStore) -> None:
    await store.create("leases/a", b"1")
    assert await store.children("leases/") == ["a"]


async def test_get_versioned_of_a_missing_key(store: ObjectStore) -> None:
    with pytest.raises(NotFound):
        await store.get_versioned("nothing")
