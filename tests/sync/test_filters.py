"""Tag selection, version ranges and index-child selection for mirror rules."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import pytest
import semver
from hypothesis import given, settings
from hypothesis import strategies as st

from registry.mirrorconfig import MirrorRule, TagFilter
from sync.filters import (
    in_range,
    parse_platform,
    parse_version,
    platform_key,
    select_children,
    select_tags,
)


class CreatedAt:
    """A fake ``created_at`` that records which tags it was asked about."""

    def __init__(self, times: Mapping[str, datetime | None] | None = None) -> None:
        self.times = dict(times or {})
        self.calls: list[str] = []

    async def __call__(self, tag: str) -> datetime | None:
        self.calls.append(tag)
        return self.times.get(tag)


def day(n: int) -> datetime:
    return datetime(2024, 1, n, tzinfo=UTC)


async def select(tags: Sequence[str], **spec: Any) -> list[str]:
    return await select_tags(tags, TagFilter(**spec), CreatedAt())


# -- versions -------------------------------------------------------------------------------

@pytest.mark.parametrize(("tag", "expected"), [
    ("1.25.3", "1.25.3"),
    ("v1.25.3", "1.25.3"),
    ("1.25", "1.25.0"),
    ("1", "1.0.0"),
    ("v2", "2.0.0"),
    ("24.04", "24.4.0"),
    ("1.25.3-alpine", "1.25.3-alpine"),
    ("3.12-slim", "3.12.0-slim"),
    ("1.27-bookworm", "1.27.0-bookworm"),
    ("1.25.3-alpine3.20", "1.25.3-alpine3.20"),
    ("3.12-slim-bookworm", "3.12.0-slim-bookworm"),
    ("2.0.0-rc.1", "2.0.0-rc.1"),
    ("1.2.3+build.5", "1.2.3+build.5"),
    ("1.2-rc1+meta", "1.2.0-rc1+meta"),
])
def test_parse_version_is_lenient(tag: str, expected: str) -> None:
    assert parse_version(tag) == semver.Version.parse(expected)
    assert str(parse_version(tag)) == expected


@pytest.mark.parametrize("tag", [
    "latest", "stable", "mainline", "stable-perl", "3.12.1.2", "", "v", "1.", "1.2.", ".1",
    "V1.2", "1.2\n", "1.2-", "1.2-a..b", "1.0.0-rc.01", "1.2+", "sha256-" + "a" * 64,
    "1.2_3", "alpine3.20",
])
def test_parse_version_refuses_other_tags(tag: str) -> None:
    assert parse_version(tag) is None


@pytest.mark.parametrize(("version", "spec", "expected"), [
    ("1.25.0", ">=1.25 <2", True),
    ("1.24.9", ">=1.25 <2", False),
    ("2.0.0", ">=1.25 <2", False),
    ("1.99.99", ">=1.25, <2", True),
    ("1.99.99", ">=1.25,<2", True),
    # Plain precedence: a prerelease sorts just below its release.
    ("1.25.3-alpine", ">=1.25 <2", True),
    ("2.0.0-rc1", ">=1.25 <2", True),
    ("1.25.0-alpine", ">=1.25 <2", False),
    ("1.25.0", ">1.25", False),
    ("1.25.1", ">1.25", True),
    ("1.25.0", "<=1.25", True),
    ("1.25.0", "1.25", True),
    ("1.25.0", "=1.25.0", True),
    ("1.25.0", "==v1.25", True),
    ("1.25.0+build", "==1.25.0", True),  # build metadata has no precedence
    ("1.25.1", "1.25", False),
    ("1.25.0", "!=1.25", False),
    ("1.26.0", ">=1.25 !=1.26", False),
    ("2.0.0-rc1", ">=2.0.0-rc1", True),
    ("2.0.0-beta", ">=2.0.0-rc1", False),
])
def test_in_range(version: str, spec: str, expected: bool) -> None:
    assert in_range(semver.Version.parse(version), spec) is expected


@pytest.mark.parametrize("spec", ["", " , ", ">=", ">=latest", "~1.2", ">= 1.2", "1.2.3.4"])
def test_in_range_refuses_bad_ranges(spec: str) -> None:
    with pytest.raises(ValueError, match="semver range"):
        in_range(semver.Version(1, 0, 0), spec)


@settings(max_examples=200, deadline=None)
@given(st.tuples(*[st.integers(0, 30)] * 3), st.tuples(*[st.integers(0, 30)] * 3))
def test_in_range_agrees_with_semver(version: tuple[int, int, int],
                                     bound: tuple[int, int, int]) -> None:
    parsed = parse_version("{}.{}.{}".format(*version))
    assert parsed == semver.Version(*version)
    bound_text = "{}.{}.{}".format(*bound)
    assert in_range(parsed, f">={bound_text}") is (version >= bound)
    assert in_range(parsed, f"<{bound_text}") is (version < bound)
    assert in_range(parsed, bound_text) is (version == bound)


# -- select_tags: filters ---------------------------------------------------------------------

TAGS = ["1.24.0", "1.25", "1.25.3-alpine", "2.0.0-rc1", "2.0.0", "v1.26", "latest", "stable-perl",
        "3.12-slim", "edge"]


@pytest.mark.parametrize(("spec", "expected"), [
    pytest.param({}, sorted(TAGS), id="no-filters-keeps-all"),
    pytest.param({"include": [r"^1\."]}, ["1.24.0", "1.25", "1.25.3-alpine"], id="include-only"),
    pytest.param({"include": [r"^1\.24", "rc"]}, ["1.24.0", "2.0.0-rc1"], id="include-any"),
    pytest.param({"include": ["^1"]}, ["1.24.0", "1.25", "1.25.3-alpine"],
                 id="include-is-search-anchored-by-the-pattern"),
    pytest.param({"include": ["25"]}, ["1.25", "1.25.3-alpine"], id="include-is-search"),
    pytest.param({"exclude": ["alpine", "perl", "slim"]},
                 ["1.24.0", "1.25", "2.0.0", "2.0.0-rc1", "edge", "latest", "v1.26"],
                 id="exclude-only"),
    pytest.param({"include": [r"^1\.", "^v"], "exclude": ["alpine", r"^v"]}, ["1.24.0", "1.25"],
                 id="exclude-wins-over-include"),
    # Non-versions (latest, stable-perl, edge) are dropped; prereleases compare by precedence:
    # 1.25.3-alpine > 1.25.0 is in, 2.0.0-rc1 < 2.0.0 is in '<2', 3.12.0-slim is out.
    pytest.param({"semver": ">=1.25 <2"}, ["1.25", "1.25.3-alpine", "2.0.0-rc1", "v1.26"],
                 id="semver-range"),
    pytest.param({"semver": ">=1.25 <2", "exclude": ["-"]}, ["1.25", "v1.26"],
                 id="semver-range-without-variants"),
    pytest.param({"semver": ">=2"}, ["2.0.0", "3.12-slim"], id="semver-open-range"),
    pytest.param({"include": ["(?!)"]}, [], id="include-nothing"),
])
async def test_select_tags_filters(spec: dict[str, Any], expected: list[str]) -> None:
    assert await select(TAGS, **spec) == expected


async def test_select_tags_returns_sorted_unique_tags() -> None:
    assert await select(["b", "a", "b", "c", "a"]) == ["a", "b", "c"]


# -- select_tags: latest ----------------------------------------------------------------------

@pytest.mark.parametrize(("tags", "latest", "expected"), [
    (["1.2.0", "1.10.0", "1.9.0"], 2, ["1.10.0", "1.9.0"]),  # precedence, not string order
    (["1.0.0", "2.0.0-rc1", "2.0.0-rc2", "1.5"], 2, ["2.0.0-rc1", "2.0.0-rc2"]),
    (["1.0.0", "2.0.0", "2.0.0-rc2"], 2, ["2.0.0", "2.0.0-rc2"]),
    # 1.25, v1.25 and 1.25.0 are all 1.25.0: ties go to the smallest tag string.
    (["v1.25", "1.25.0", "1.25", "1.24"], 1, ["1.25"]),
    (["v1.25", "1.25.0", "1.25", "1.24"], 2, ["1.25", "1.25.0"]),
    (["1.0.0+b", "1.0.0+a"], 1, ["1.0.0+a"]),
    (["1", "2"], 5, ["1", "2"]),
])
async def test_latest_by_version(tags: list[str], latest: int, expected: list[str]) -> None:
    created_at = CreatedAt()
    assert await select_tags(tags, TagFilter(latest=latest), created_at) == expected
    assert created_at.calls == []  # all versions: no config fetched


async def test_latest_by_created_time_when_a_tag_is_not_a_version() -> None:
    created_at = CreatedAt({"main": day(5), "1.0.0": day(1), "nightly": day(9), "dev": day(7),
                            "feature-x": day(30), "old": day(2)})
    spec = TagFilter(exclude=["^feature-"], latest=2)
    tags = ["main", "1.0.0", "nightly", "dev", "feature-x", "old"]
    assert await select_tags(tags, spec, created_at) == ["dev", "nightly"]
    # Asked only about the tags the filters kept: never the excluded feature-x.
    assert sorted(created_at.calls) == ["1.0.0", "dev", "main", "nightly", "old"]


async def test_latest_by_created_time_puts_undated_tags_last_and_breaks_ties_by_tag() -> None:
    created_at = CreatedAt({"b": day(3), "a": day(3), "c": day(1), "z": day(2)})  # x, y: None
    tags = ["x", "c", "b", "y", "z", "a"]
    assert await select_tags(tags, TagFilter(latest=2), created_at) == ["a", "b"]
    assert await select_tags(tags, TagFilter(latest=3), created_at) == ["a", "b", "z"]
    assert await select_tags(tags, TagFilter(latest=5), created_at) == ["a", "b", "c", "x", "z"]
    undated = CreatedAt()
    assert await select_tags(tags, TagFilter(latest=2), undated) == ["a", "b"]


async def test_latest_by_created_time_only_among_semver_survivors() -> None:
    # With semver set every survivor is a version, so created time never decides.
    created_at = CreatedAt({"1.0.0": day(9), "1.1.0": day(1)})
    spec = TagFilter(semver=">=1", latest=1)
    assert await select_tags(["1.0.0", "1.1.0", "main"], spec, created_at) == ["1.1.0"]
    assert created_at.calls == []


async def test_latest_does_not_fetch_when_no_more_tags_than_latest_survive() -> None:
    created_at = CreatedAt()
    spec = TagFilter(include=["^main$", "^dev$"], latest=2)
    assert await select_tags(["main", "dev", "other"], spec, created_at) == ["dev", "main"]
    assert created_at.calls == []


# -- select_tags: explicit names -----------------------------------------------------------------

async def test_explicit_names_are_always_added() -> None:
    spec = TagFilter(exclude=["alpine"], semver=">=1.25", latest=1,
                     names=["1.20-alpine", "missing", "1.26.0"])
    tags = ["1.20-alpine", "1.25.0", "1.26.0", "1.27.0"]
    # 1.20-alpine is excluded, out of range and not the latest; "missing" is not upstream at
    # all (the caller reports it); 1.26.0 appears once.
    assert await select_tags(tags, spec, CreatedAt()) == [
        "1.20-alpine", "1.26.0", "1.27.0", "missing"]


async def test_a_plain_tag_list_rule_selects_exactly_those_tags() -> None:
    rule = MirrorRule(name="r", registry="docker.io", repositories=["library/nginx"],
                      tags=["1.27", "stable", "gone"])
    tags = ["1.27", "1.27.1", "stable", "latest"]
    created_at = CreatedAt()
    assert await select_tags(tags, rule.tag_filter, created_at) == ["1.27", "gone", "stable"]
    assert created_at.calls == []


# -- the nginx rule of examples/regfront.yaml -------------------------------------------------

NGINX_TAGS = ["1.24.0", "1.25", "1.25.5", "1.26.2", "1.27.0", "1.27.1", "1.27.1-alpine",
              "1.27.1-perl", "1.27-bookworm", "mainline", "latest", "stable"]


async def test_the_nginx_example_rule() -> None:
    spec = TagFilter(exclude=["alpine", "perl"], semver=">=1.25 <2", latest=3)
    # exclude drops 1.27.1-alpine and 1.27.1-perl. The range drops 1.24.0 and the non-versions
    # mainline, latest and stable. 1.27-bookworm is the prerelease 1.27.0-bookworm, which is a
    # version inside '>=1.25 <2', so it stays. By precedence 1.27.1 > 1.27.0 > 1.27.0-bookworm
    # > 1.26.2 > 1.25.5 > 1.25.0: the 3 highest include 1.27-bookworm and not 1.26.2.
    assert await select_tags(NGINX_TAGS, spec, CreatedAt()) == [
        "1.27-bookworm", "1.27.0", "1.27.1"]


async def test_the_nginx_example_rule_without_variant_tags() -> None:
    # To mean "releases only", exclude every suffixed tag as well.
    spec = TagFilter(exclude=["alpine", "perl", "-"], semver=">=1.25 <2", latest=3)
    assert await select_tags(NGINX_TAGS, spec, CreatedAt()) == ["1.26.2", "1.27.0", "1.27.1"]


# -- select_tags: properties ------------------------------------------------------------------

tag_text = st.from_regex(r"\A[a-z0-9][a-z0-9._-]{0,8}\Z")
patterns = st.lists(st.sampled_from(["^1", "a", r"\.", "-", "^v", "0$", "x"]), max_size=3)


@settings(max_examples=200, deadline=None)
@given(tags=st.lists(tag_text, max_size=15), include=patterns, exclude=patterns,
       semver_range=st.sampled_from([None, ">=1", "<2", ">=0.1 <10"]),
       latest=st.none() | st.integers(1, 5), names=st.lists(tag_text, max_size=3))
async def test_select_tags_properties(tags: list[str], include: list[str], exclude: list[str],
                                      semver_range: str | None, latest: int | None,
                                      names: list[str]) -> None:
    spec = TagFilter(include=include, exclude=exclude, semver=semver_range, latest=latest,
                     names=names)
    created_at = CreatedAt({tag: day(1 + len(tag)) for tag in tags})
    result = await select_tags(tags, spec, created_at)
    assert set(result) <= set(tags) | set(names)
    assert set(names) <= set(result)
    assert result == sorted(set(result))
    assert set(created_at.calls) <= set(tags)
    for tag in set(result) - set(names):
        assert not any(p in tag for p in ["-", "x", "a"] if p in exclude)
    if exclude and not names:
        # Exclude wins over include: an excluded tag is never selected, even when included.
        both = TagFilter(include=exclude, exclude=exclude)
        assert await select_tags(tags, both, created_at) == []


@settings(max_examples=100, deadline=None)
@given(st.lists(tag_text, max_size=20))
async def test_select_tags_without_filters_returns_every_tag(tags: list[str]) -> None:
    created_at = CreatedAt()
    assert await select_tags(tags, TagFilter(), created_at) == sorted(set(tags))
    assert created_at.calls == []


# -- platforms ----------------------------------------------------------------------------------

@pytest.mark.parametrize(("first", "second"), [
    ("linux/arm64", "linux/arm64/v8"),
    ("linux/aarch64", "linux/arm64/v8"),
    ("linux/arm64/8", "linux/arm64"),
    ("linux/x86_64", "linux/amd64"),
    ("linux/x86-64", "linux/amd64"),
    ("linux/amd64/v1", "linux/amd64"),
    ("linux/armhf", "linux/arm/v7"),
    ("linux/arm", "linux/arm/v7"),
    ("linux/arm/7", "linux/arm/v7"),
    ("linux/armel", "linux/arm/v6"),
    ("linux/i386", "linux/386"),
    ("linux/i686", "linux/386"),
    ("Linux/AMD64", "linux/amd64"),
    ("windows/amd64", "windows/amd64"),
])
def test_equal_platforms(first: str, second: str) -> None:
    assert parse_platform(first) == parse_platform(second)


@pytest.mark.parametrize(("first", "second"), [
    ("linux/amd64", "linux/amd64/v2"),
    ("linux/arm64", "linux/arm64/v9"),
    ("linux/arm", "linux/arm/v6"),
    ("linux/arm64", "linux/arm"),
    ("linux/amd64", "windows/amd64"),
    ("linux/386", "linux/amd64"),
])
def test_different_platforms(first: str, second: str) -> None:
    assert parse_platform(first) != parse_platform(second)


def test_platform_key() -> None:
    assert platform_key("linux", "arm64") == ("linux", "arm64", "v8")
    assert platform_key("linux", "amd64") == ("linux", "amd64", "")
    assert platform_key("LINUX", "AArch64", None) == ("linux", "arm64", "v8")
    assert platform_key("linux", "riscv64", "") == ("linux", "riscv64", "")


@pytest.mark.parametrize("text", ["linux", "linux/", "/amd64", "linux/arm/v7/extra", ""])
def test_parse_platform_refuses_malformed_text(text: str) -> None:
    with pytest.raises(ValueError, match="invalid platform"):
        parse_platform(text)


# -- select_children ------------------------------------------------------------------------------

AMD64 = "sha256:" + "a" * 64
ARM64 = "sha256:" + "b" * 64
ATTEST_AMD64 = "sha256:" + "c" * 64
ATTEST_ARM64 = "sha256:" + "d" * 64
MANIFEST = "application/vnd.oci.image.manifest.v1+json"


def attestation(digest: str, subject: str) -> dict[str, Any]:
    return {
        "mediaType": MANIFEST, "digest": digest, "size": 839,
        "annotations": {"vnd.docker.reference.digest": subject,
                        "vnd.docker.reference.type": "attestation-manifest"},
        "platform": {"architecture": "unknown", "os": "unknown"},
    }


# The shape `docker buildx build --platform linux/amd64,linux/arm64 --provenance --sbom` pushes.
BUILDX_INDEX: list[dict[str, Any]] = [
    {"mediaType": MANIFEST, "digest": AMD64, "size": 1201,
     "platform": {"architecture": "amd64", "os": "linux"}},
    {"mediaType": MANIFEST, "digest": ARM64, "size": 1201,
     "platform": {"architecture": "arm64", "os": "linux", "variant": "v8"}},
    attestation(ATTEST_AMD64, AMD64),
    attestation(ATTEST_ARM64, ARM64),
]


@pytest.mark.parametrize(("platforms", "referrers", "expected"), [
    (["linux/arm64"], False, [ARM64]),
    (["linux/arm64"], True, [ARM64, ATTEST_ARM64]),
    (["linux/aarch64/v8"], True, [ARM64, ATTEST_ARM64]),
    (["linux/x86_64", "linux/arm64"], False, [AMD64, ARM64]),
    (["linux/arm64", "linux/amd64"], True, [AMD64, ARM64, ATTEST_AMD64, ATTEST_ARM64]),
    # No platform filter: every platform manifest; attestations are referrers, so only with
    # referrers set.
    (None, False, [AMD64, ARM64]),
    (None, True, [AMD64, ARM64, ATTEST_AMD64, ATTEST_ARM64]),
    (["linux/arm/v7"], True, []),
    # An attestation is never wanted for its own unknown/unknown platform.
    (["unknown/unknown"], True, []),
])
def test_select_children_of_a_buildx_index(platforms: list[str] | None, referrers: bool,
                                           expected: list[str]) -> None:
    selected = select_children(BUILDX_INDEX, platforms, referrers)
    assert [d["digest"] for d in selected] == expected
    assert all(any(d is original for original in BUILDX_INDEX) for d in selected)


def test_select_children_drops_an_attestation_of_a_manifest_not_in_the_index() -> None:
    index = [BUILDX_INDEX[0], attestation(ATTEST_ARM64, ARM64)]
    assert [d["digest"] for d in select_children(index, None, True)] == [AMD64]


def test_select_children_without_a_platform() -> None:
    index: list[dict[str, Any]] = [{"mediaType": MANIFEST, "digest": AMD64, "size": 1}]
    assert select_children(index, None, False) == index
    assert select_children(index, ["linux/amd64"], False) == []


def test_select_children_keeps_a_platform_named_unknown_without_the_annotation() -> None:
    plain = {"mediaType": MANIFEST, "digest": AMD64, "size": 1,
             "platform": {"architecture": "unknown", "os": "unknown"}}
    assert select_children([plain], None, False) == [plain]
