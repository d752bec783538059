"""``regfront gc`` and ``regfront status`` on a file store: what they print (text and JSON),
their exit status, and a config mistake as one line."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import yaml
from click.testing import CliRunner

from regfront.cli import main
from registry import layout
from tests.lifecycle.bucket import raw_image

NAME = "imported/tool"


def setup(tmp_path: Path) -> tuple[Path, Path]:
    """Three tags of an imported repository; gc keeps the newest one (undated: by name)."""
    root = tmp_path / "store"
    for tag in ("a", "b", "c"):
        raw_image(root, NAME, tag, [os.urandom(64)])
    config = tmp_path / "regfront.yaml"
    config.write_text(yaml.safe_dump({
        "storage": [{"url": str(root)}],
        "gc": {"grace": "0s", "settle": "0s", "retention": {"newest": 1}}}))
    return root, config


def test_gc_dry_run_then_gc_then_verify_and_status(tmp_path: Path) -> None:
    root, config = setup(tmp_path)
    runner = CliRunner()
    dry = runner.invoke(main, ["gc", "--config", str(config), "--dry-run"])
    assert dry.exit_code == 0, dry.output
    assert f"would delete tag {NAME}:a" in dry.output
    assert f"would delete tag {NAME}:c" not in dry.output
    assert sorted(os.listdir(root / layout.tags_dir(NAME))) == ["a", "b", "c"]
    done = runner.invoke(main, ["gc", "--config", str(config), "--json"])
    assert done.exit_code == 0, done.output
    report = json.loads(done.output)
    assert report["deleted"]["tag"] == 2
    assert report["freed_bytes"][NAME] > 0
    assert os.listdir(root / layout.tags_dir(NAME)) == ["c"]
    verified = runner.invoke(main, ["gc", "--config", str(config), "--verify", "--hash"])
    assert verified.exit_code == 0, verified.output
    # One kept image; its manifest, config and layer read and hashed.
    assert "1 kept images checked, 3 blobs" in verified.output
    assert ": 0 damaged" in verified.output
    status = runner.invoke(main, ["status", "--config", str(config), "--json"])
    assert status.exit_code == 0, status.output
    [repo] = json.loads(status.output)["unruled"]
    assert (repo["name"], repo["tags"]) == (NAME, 1)


def test_verify_fails_when_damage_stays(tmp_path: Path) -> None:
    root, config = setup(tmp_path)
    shutil.rmtree(root / layout.blobs_dir())  # every blob gone; no rule to repair from
    result = CliRunner().invoke(main, ["gc", "--config", str(config), "--verify"])
    assert result.exit_code == 1
    assert "NOT repaired: no mirror rule covers the repository" in result.output


def test_hash_without_verify_is_a_usage_error(tmp_path: Path) -> None:
    _, config = setup(tmp_path)
    result = CliRunner().invoke(main, ["gc", "--config", str(config), "--hash"])
    assert result.exit_code == 2
    assert "--hash goes with --verify" in result.output
