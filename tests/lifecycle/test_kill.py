"""``regfront gc`` killed with SIGKILL while it marks, and while it sweeps (each moment observed
in the bucket, not guessed with a timer): the bucket stays valid - every tag and every revision
link left pulls whole - and a second run finishes the collection."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from registry import layout
from registry.store.file import FileStore
from tests.e2e.harness import clean_env, regfront_binary
from tests.lifecycle.bucket import pull, raw_image, valid

NAME = "docker.io/library/app"
KEPT, OLD = 20, 300


def bucket(root: Path) -> None:
    """``KEPT`` tags a rule keeps and ``OLD`` it no longer selects, sharing one layer."""
    rng = random.Random(7)
    shared = rng.randbytes(512)
    for n in range(KEPT):
        raw_image(root, NAME, f"keep-{n}", [shared, rng.randbytes(128)])
    for n in range(OLD):
        raw_image(root, NAME, f"old-{n}", [shared, rng.randbytes(128)])


def config(tmp_path: Path, root: Path) -> Path:
    path = tmp_path / "regfront.yaml"
    path.write_text(yaml.safe_dump({
        "storage": [{"url": str(root)}],
        "upstreams": {"docker.io": {"urls": ["https://registry-1.docker.io"]}},
        "mirror": [{"name": "app", "registry": "docker.io", "repositories": ["library/app"],
                    "tags": {"include": ["^keep-"]}, "retention": {"pulled_within": None}}],
        "gc": {"grace": "0s", "settle": "0s", "sweep_budget": "1h"}}))
    return path


def gc(cfg: Path, log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen([regfront_binary(), "gc", "--config", str(cfg)], stdout=out,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env=clean_env("REGFRONT_"))


def kill_when(process: subprocess.Popen[bytes], condition: Callable[[], bool], what: str,
              log: Path) -> None:
    """SIGKILL ``process`` the moment ``condition()`` holds (polled every millisecond)."""
    deadline = time.monotonic() + 120
    while not condition():
        if process.poll() is not None:
            pytest.fail(f"gc exited ({process.returncode}) before {what}:\n{log.read_text()}")
        if time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"gc never reached {what}:\n{log.read_text()}")
        time.sleep(0.001)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL


def tags(root: Path) -> list[str]:
    path = root / layout.tags_dir(NAME)
    return sorted(os.listdir(path)) if path.exists() else []


async def finish(cfg: Path, root: Path) -> None:
    """A second run completes the collection; the kept images pull whole."""
    rerun = await asyncio.to_thread(
        subprocess.run, [regfront_binary(), "gc", "--config", str(cfg)], capture_output=True,
        env=clean_env("REGFRONT_"), timeout=300, check=False)
    assert rerun.returncode == 0, rerun.stdout.decode() + rerun.stderr.decode()
    assert tags(root) == sorted(f"keep-{n}" for n in range(KEPT))
    store = FileStore(str(root))
    assert await valid(store) == []
    assert not (root / layout.DOOMED_DIR).exists() or not os.listdir(root / layout.DOOMED_DIR)
    blobs = sum(len(files) for _, _, files in os.walk(root / layout.blobs_dir()))
    assert blobs == 1 + 3 * KEPT  # the shared layer; each kept image's config, layer, manifest


async def test_killed_while_marking(tmp_path: Path) -> None:
    root, log = tmp_path / "bucket", tmp_path / "gc.log"
    bucket(root)
    cfg = config(tmp_path, root)
    process = gc(cfg, log)
    # The lease is taken before marking starts; the state is written when marking ends.
    kill_when(process, lambda: (root / layout.gc_lease()).exists(), "taking its lease", log)
    assert not (root / layout.gc_state()).exists(), "marking was over before the kill"
    assert not (root / layout.DOOMED_DIR).exists()
    assert len(tags(root)) == KEPT + OLD  # nothing deleted
    await finish(cfg, root)


async def test_killed_while_sweeping(tmp_path: Path) -> None:
    root, log = tmp_path / "bucket", tmp_path / "gc.log"
    bucket(root)
    cfg = config(tmp_path, root)
    process = gc(cfg, log)
    kill_when(process, lambda: len(tags(root)) < KEPT + OLD, "deleting its first tag", log)
    left = [t for t in tags(root) if t.startswith("old-")]
    assert 0 < len(left) < OLD, "not killed in the middle of the sweep"
    assert os.listdir(root / layout.DOOMED_DIR)  # announced, never withdrawn
    store = FileStore(str(root))
    # Every tag and revision left pulls whole (a tag directory the kill left empty is no tag;
    # the next run removes it).
    assert await valid(store, empty_directories=True) == []
    for n in range(KEPT):
        assert await pull(store, NAME, f"keep-{n}") is None
    await finish(cfg, root)
