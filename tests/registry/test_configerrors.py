"""Config mistakes all at once, in file order, each naming its line and key; an unknown key with
the known key it most resembles; a union reported once, for the member the value was meant for."""

from __future__ import annotations

import pytest

from registry.config import Config, parse_config
from registry.configerrors import did_you_mean, keys_at
from registry.errors import ConfigError


def problems(text: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_config(text, "c.yaml")
    assert str(caught.value) == "\n".join(caught.value.problems)
    return list(caught.value.problems)


def test_every_mistake_in_file_order() -> None:
    assert problems("gateway:\n  workers: 0\n  tag_tll: 5s\nstorage: []\n") == [
        "c.yaml:2: gateway.workers: Input should be greater than or equal to 1",
        "c.yaml:3: gateway.tag_tll: unknown key (did you mean tag_ttl?)",
        "c.yaml:4: storage: List should have at least 1 item after validation, not 0",
    ]


def test_a_misspelt_key_is_not_also_reported_missing() -> None:
    text = ("upstreams:\n  docker.io: {urls: ['https://registry-1.docker.io']}\nmirror:\n"
            "  - {name: a, registry: docker.io, repositorys: [x]}\n")
    assert problems(text) == [
        "c.yaml:4: mirror.0.repositorys: unknown key (did you mean repositories?)"]


def test_a_key_like_none_gets_no_guess() -> None:
    assert problems("gateway:\n  zzz: 1\n") == ["c.yaml:2: gateway.zzz: unknown key"]


def test_a_union_is_reported_for_the_member_the_value_was_meant_for() -> None:
    base = ("upstreams:\n  docker.io: {urls: ['https://registry-1.docker.io']}\nmirror:\n"
            "  - name: a\n    registry: docker.io\n    repositories: [x]\n")
    assert problems(base + "    tags: {includ: [a]}\n    schedule: {evry: 5m}\n") == [
        "c.yaml:7: mirror.0.tags.includ: unknown key (did you mean include?)",
        "c.yaml:8: mirror.0.schedule.evry: unknown key (did you mean every?)",
    ]
    (shapeless,) = problems(base + "    tags: 5\n")
    assert shapeless == ("c.yaml:7: mirror.0.tags: Input should be a valid dictionary or "
                         "instance of TagFilter / Input should be a valid list")


def test_references_are_checked_with_the_schema_and_survive_odd_shapes() -> None:
    text = ("gateway: {workers: 0}\nupstreams:\n  ghcr.io: {urls: ['https://ghcr.io']}\n"
            "mirror:\n  - {name: a, registry: ghcr.oi, repositories: [x]}\n"
            "  - {name: a, registry: docker.io, repositories: [x]}\n  - 7\n")
    assert problems(text) == [
        "c.yaml:1: gateway.workers: Input should be greater than or equal to 1",
        "c.yaml:5: mirror.0.registry: 'ghcr.oi' is not a key of upstreams "
        "(did you mean ghcr.io?)",
        "c.yaml:6: mirror.1.name: duplicate rule name 'a'",
        "c.yaml:6: mirror.1.registry: 'docker.io' is not a key of upstreams (ghcr.io)",
        "c.yaml:7: mirror.2: Input should be a valid dictionary or instance of MirrorRule",
    ]
    assert problems("[1, 2]\n") == [
        "c.yaml:1: (top level): Input should be a valid dictionary or instance of Config"]


def test_a_bad_storage_url_gets_its_line() -> None:
    (only,) = problems("storage:\n  - url: /a\n  - url: s3://b?regoin=eu-west-1\n")
    assert only.startswith("c.yaml:3: storage.1.url: storage url 's3://b?regoin=eu-west-1': "
                           "unknown option 'regoin' (did you mean region?)")


def test_keys_at_walks_lists_dicts_and_unions() -> None:
    assert "tag_ttl" in keys_at(Config, ("gateway",))
    assert "include" in keys_at(Config, ("mirror", 0, "tags"))
    assert "every" in keys_at(Config, ("mirror", 0, "schedule"))
    assert "username_env" in keys_at(Config, ("upstreams", "docker.io", "credentials"))
    assert keys_at(Config, ("nowhere", 3)) == set()
    assert did_you_mean("tag_tll", ["tag_ttl", "workers"]) == " (did you mean tag_ttl?)"
