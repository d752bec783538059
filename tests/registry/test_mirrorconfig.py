"""The sync sections of the config file: the shipped example, and errors that name the line."""

from __future__ import annotations

from pathlib import Path

import pytest

from registry.config import load_config, parse_config
from registry.errors import ConfigError
from registry.mirrorconfig import Every, TagFilter

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "regfront.yaml"

BASE = """\
upstreams:
  docker.io:
    urls: ["https://registry-1.docker.io"]
  reg.corp:5000:
    urls: ["http://127.0.0.1:5001"]
mirror:
  - name: one
    registry: docker.io
    repositories: [library/nginx]
"""


def test_the_shipped_example_is_accepted_as_written() -> None:
    config = load_config(EXAMPLE)
    assert [s.url for s in config.storage] == ["s3://images-eu-west-1/mirror",
                                               "s3://images-primary/mirror"]
    assert config.primary.url == "s3://images-primary/mirror"
    python, nginx = config.mirror
    assert python.tags == TagFilter(include=[r"^3\.1[23]-slim$"])
    assert python.platforms == ["linux/amd64", "linux/arm64"]
    assert python.schedule == "*/30 * * * *"
    assert nginx.tag_filter.semver == ">=1.25 <2"
    assert nginx.tag_filter.latest == 3
    assert nginx.referrers is True
    assert nginx.schedule == Every(every=900.0, jitter=120.0)
    hub = config.upstreams["docker.io"]
    assert hub.credentials is not None
    assert hub.credentials.password_env == "DOCKERHUB_TOKEN"


def test_a_plain_tag_list_means_exactly_those_tags() -> None:
    config = parse_config(BASE + "    tags: ['1.27', latest]\n")
    assert config.mirror[0].tag_filter.names == ["1.27", "latest"]
    with pytest.raises(ConfigError, match=r"c.yaml:10: mirror.0.tags: tag 1.1 is not a string"):
        parse_config(BASE + "    tags: [1.10]\n", "c.yaml")


@pytest.mark.parametrize(("extra", "message"), [
    ("    tags: {include: ['(']}\n", "c.yaml:10: mirror.0.tags.include: invalid regex"),
    ("    tags: {semver: 'about 2'}\n", "c.yaml:10: mirror.0.tags.semver: invalid semver"),
    ("    schedule: '61 * * * *'\n", "c.yaml:10: mirror.0.schedule"),
    ("    schedule: {every: soon}\n", "c.yaml:10: mirror.0.schedule"),
    ("    platforms: [amd64]\n", "c.yaml:10: mirror.0.platforms: invalid platform 'amd64'"),
    ("    digests: [sha256:1]\n", "c.yaml:10: mirror.0.digests"),
    ("    tag: [x]\n", "c.yaml:10: mirror.0.tag: unknown key"),
    ("  - name: one\n    registry: docker.io\n    repositories: [x]\n",
     "c.yaml:10: mirror.1.name: duplicate rule name 'one'"),
    ("  - name: two\n    registry: quay.io\n    repositories: [x]\n",
     "c.yaml:11: mirror.1.registry: 'quay.io' is not a key of upstreams "
     "(docker.io, reg.corp:5000)"),
    ("  - name: two\n    registry: docker.io\n    repositories: ['library/*']\n",
     "c.yaml:12: mirror.1.repositories: 'library/*': Docker Hub has no catalog"),
    ("  - name: Bad Name\n    registry: docker.io\n    repositories: [x]\n",
     "c.yaml:10: mirror.1.name: invalid rule name"),
])
def test_mistakes_name_their_line(extra: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(BASE + extra, "c.yaml")
    assert str(caught.value).startswith(message), str(caught.value)


@pytest.mark.parametrize(("credentials", "message"), [
    ("{username: u}", "set exactly one of password_env, password_file"),
    ("{username: u, username_env: U, password_env: P}", "set exactly one of username"),
    ("{docker_config: /x, username: u}", "docker_config excludes"),
])
def test_credentials_need_one_source_each(credentials: str, message: str) -> None:
    text = f"upstreams:\n  docker.io:\n    urls: [https://x]\n    credentials: {credentials}\n"
    with pytest.raises(ConfigError, match=message):
        parse_config(text, "c.yaml")


def test_upstream_urls_are_hosts() -> None:
    with pytest.raises(ConfigError, match=r"c\.yaml:3: upstreams\.docker\.io\.urls: "):
        parse_config("upstreams:\n  docker.io:\n    urls: [ftp://x/path]\n", "c.yaml")


INDEXED = """
upstreams:
  docker.io: {urls: ["https://registry-1.docker.io"], on_miss: pull-through, tag_ttl: 5m}
  Reg.Corp:5000:
    urls: ["https://reg.corp:5000"]
    credentials: {username: ci, password_env: RF_PASSWORD}
mirror:
  - {name: hub, registry: docker.io, repositories: [library/nginx, library/python], tag_ttl: 60s}
  - {name: slow, registry: docker.io, repositories: [library/python]}
  - {name: corp, registry: Reg.Corp:5000, repositories: ["team/app"], tag_ttl: 30s}
"""


def test_the_mirror_index_answers_per_stored_name() -> None:
    """One derivation for every consumer: coverage, pull-through, credentials, tag TTLs."""
    index = parse_config(INDEXED).mirror_index()
    assert index.covers("docker.io/library/nginx")
    assert not index.covers("docker.io/other/app")
    assert [rule.name for rule in index.rules_for("docker.io/library/python")] == ["hub", "slow"]
    assert index.pulled_through("docker.io/library/nginx")
    assert not index.pulled_through("docker.io/other/app")  # no rule: never on a client's ask
    assert not index.pulled_through("reg.corp_5000/team/app")
    assert index.credentialed("reg.corp_5000/team/app")
    assert not index.credentialed("docker.io/library/nginx")
    # the shortest of the covering rules' TTLs and the pull-through upstream's
    assert index.tag_ttl("docker.io/library/nginx") == 60.0
    assert index.tag_ttl("docker.io/library/python") == 60.0
    assert index.tag_ttl("reg.corp_5000/team/app") == 30.0
    assert index.tag_ttl("docker.io/other/app") is None
    assert index.checks_tags
    assert not parse_config("upstreams: {ghcr.io: {urls: ['https://ghcr.io']}}\n"
                            "mirror: [{name: x, registry: ghcr.io, repositories: [a/b]}]\n"
                            ).mirror_index().checks_tags
