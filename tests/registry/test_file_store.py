"""What only the file store has: directories. A delete leaves none empty (registry:2 lists a
tag directory as a tag), and the key of a directory with no file in it clears what a delete
killed halfway left - never a file."""

from __future__ import annotations

from pathlib import Path

from registry.store.file import FileStore


async def test_empty_directories_left_behind_are_removed_by_their_key(tmp_path: Path) -> None:
    store = FileStore(str(tmp_path))
    (tmp_path / "tags/old/index/sha256/ab").mkdir(parents=True)  # a delete killed before rmdir
    (tmp_path / "tags/old/current").mkdir(parents=True)
    await store.put("tags/new/current/link", b"1")
    assert await store.children("tags/") == ["new", "old"]
    await store.delete("tags/old")
    assert await store.children("tags/") == ["new"]
    assert not (tmp_path / "tags/old").exists()


async def test_a_directory_key_never_removes_a_file(tmp_path: Path) -> None:
    store = FileStore(str(tmp_path))
    await store.put("tags/live/current/link", b"1")
    (tmp_path / "tags/live/index/sha256").mkdir(parents=True)
    await store.delete("tags/live")
    assert await store.get("tags/live/current/link") == b"1"
    assert not (tmp_path / "tags/live/index").exists()  # the empty part went


async def test_deleting_a_missing_key_still_removes_empty_directories_above(tmp_path: Path) -> None:
    store = FileStore(str(tmp_path))
    (tmp_path / "a/b/c").mkdir(parents=True)
    await store.put("a/keep", b"1")
    await store.delete("a/b/c/d/gone")  # d/ was never there; c/ and b/ are empty
    assert await store.children("a/") == ["keep"]
