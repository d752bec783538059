from __future__ import annotations

from pathlib import Path

import pytest

from registry.config import Config, load_config, parse_config
from registry.configtypes import parse_duration
from registry.errors import ConfigError


def test_defaults_serve_the_embedded_store() -> None:
    config = load_config(None)
    assert [s.url for s in config.storage] == ["./regfront-data"]
    assert config.gateway.listen == "127.0.0.1:5000"


def test_a_full_gateway_section(tmp_path: Path) -> None:
    path = tmp_path / "regfront.yaml"
    path.write_text("storage:\n  - url: file:///srv/a\n  - url: file:///srv/b\n"
                    "gateway:\n  listen: 0.0.0.0:8080\n  workers: 4\n  tag_ttl: 1m30s\n"
                    "  manifest_cache_bytes: 128MiB\n")
    config = load_config(path)
    assert [s.url for s in config.storage] == ["file:///srv/a", "file:///srv/b"]
    assert config.gateway.workers == 4
    assert config.gateway.tag_ttl == 90.0
    assert config.gateway.manifest_cache_bytes == 128 * 1024 * 1024


@pytest.mark.parametrize(("text", "message"), [
    ("gateway:\n  listen: 0.0.0.0:1\n  tag_tll: 5s\n", "c.yaml:3: gateway.tag_tll: unknown key"),
    ("storage:\n  - url: /x\n  - urll: /y\n", "c.yaml:3: storage.1.urll: unknown key"),
    ("gateway:\n  workers: 0\n", "c.yaml:2: gateway.workers:"),
    ("gateway:\n  tag_ttl: soon\n", "c.yaml:2: gateway.tag_ttl: invalid duration 'soon'"),
    ("gateway:\n  listen: nowhere\n", "c.yaml:2: gateway.listen: invalid listen address"),
    ("storage: []\n", "c.yaml:1: storage:"),
    ("auth:\n  acess: []\n", "c.yaml:2: auth.acess: unknown key"),
    ("gateway: [1\n", "c.yaml:2: invalid YAML"),
    ("gateway:\n  workers: 1\n  workers: 2\n", "c.yaml:3: invalid YAML: duplicate key 'workers'"),
])
def test_errors_name_the_line_and_key(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(text, "c.yaml")
    assert str(caught.value).startswith(message)
    assert "\n" not in str(caught.value)


def test_empty_file_is_the_defaults() -> None:
    assert parse_config("", "c.yaml") == Config()


def test_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read config"):
        load_config(tmp_path / "missing.yaml")


@pytest.mark.parametrize(("value", "seconds"), [
    (5, 5.0), (0.5, 0.5), ("500ms", 0.5), ("90s", 90.0), ("15m", 900.0), ("1h30m", 5400.0),
    ("2d", 172800.0),
])
def test_durations(value: object, seconds: float) -> None:
    assert parse_duration(value) == seconds


@pytest.mark.parametrize("value", ["", "5", "5 s", "m", True, -1, None, "1h-30m"])
def test_bad_durations(value: object) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(value)


def test_primaries_are_the_marked_stores_else_the_last() -> None:
    plain = parse_config("storage:\n  - url: /replica\n  - url: /primary\n")
    assert [s.url for s in plain.primaries] == ["/primary"]
    assert plain.primary.url == "/primary"
    several = parse_config("storage:\n  - {url: /aws, primary: true}\n  - url: /replica\n"
                           "  - {url: /gcp, primary: true}\n")
    assert [s.url for s in several.primaries] == ["/aws", "/gcp"]
    assert several.primary.url == "/aws"  # the first: where sync's leases live
    assert parse_config("sync: {target_stall: 2m}\n").sync.target_stall == 120.0


def test_retention_and_gc_defaults_and_overrides() -> None:
    """Rules keep a week of pulls by default; repositories no rule covers keep their newest 3
    and a month of pulls; gc: null retention keeps everything there."""
    config = parse_config("""
upstreams: {docker.io: {urls: ["https://registry-1.docker.io"]}}
mirror:
  - {name: a, registry: docker.io, repositories: [library/a]}
  - {name: b, registry: docker.io, repositories: [library/b],
     retention: {pulled_within: 2d, newest: 5}}
gc: {grace: 0s, schedule: {every: 6h}}
""")
    assert config.mirror[0].retention.pulled_within == 7 * 86400
    assert (config.mirror[1].retention.pulled_within, config.mirror[1].retention.newest) == (
        2 * 86400, 5)
    assert config.gc.grace == 0.0
    assert config.gc.retention is not None
    assert (config.gc.retention.pulled_within, config.gc.retention.newest) == (30 * 86400, 3)
    assert parse_config("gc: {retention: null}").gc.retention is None
    assert parse_config("").gc.grace == 86400.0
    assert parse_config("gateway: {usage_entries: 0}").gateway.usage_entries == 0


@pytest.mark.parametrize(("text", "message"), [
    ("gc:\n  grace: never\n", "c.yaml:2: gc.grace: invalid duration 'never'"),
    ("gc:\n  retention: {newest: -1}\n", "c.yaml:2: gc.retention.newest:"),
    ("gc:\n  schedule: 'every day'\n", "c.yaml:2: gc.schedule"),
    ("gc:\n  sweep_budget: 0s\n", "c.yaml:2: gc.sweep_budget:"),
    ("gateway:\n  usage_interval: 0s\n", "c.yaml:2: gateway.usage_interval:"),
])
def test_gc_mistakes_name_their_line(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(text, "c.yaml")
    assert str(caught.value).startswith(message)
