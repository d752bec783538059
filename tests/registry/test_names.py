from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from registry.digest import Digest
from registry.errors import ErrorCode, RegistryError
from registry.names import (
    NAME_PATTERN,
    canonical_name,
    canonical_registry,
    parse_reference,
    repository_name,
    split_image,
    validate_name,
)


@pytest.mark.parametrize(("host", "expected"), [
    ("docker.io", "docker.io"),
    ("registry-1.docker.io", "docker.io"),
    ("index.docker.io", "docker.io"),
    ("Docker.IO", "docker.io"),
    ("ghcr.io", "ghcr.io"),
    ("reg.corp:5000", "reg.corp_5000"),
    ("LOCALHOST:5000", "localhost_5000"),
    ("quay.io", "quay.io"),
])
def test_canonical_registry(host: str, expected: str) -> None:
    assert canonical_registry(host) == expected


@pytest.mark.parametrize("host", ["", "a b", "reg/x", "-bad.io", "[::1]:5000", "reg:port",
                                  "x" * 300 + ":"])
def test_canonical_registry_rejects_non_hosts(host: str) -> None:
    with pytest.raises(RegistryError) as caught:
        canonical_registry(host)
    assert caught.value.code is ErrorCode.NAME_INVALID


def test_ns_prefixes_the_path_name() -> None:
    assert repository_name("library/nginx", "docker.io") == "docker.io/library/nginx"
    assert repository_name("library/nginx", "registry-1.docker.io") == "docker.io/library/nginx"
    assert repository_name("org/app", "reg.corp:5000") == "reg.corp_5000/org/app"


def test_without_ns_the_path_is_the_name() -> None:
    assert repository_name("team/app", None) == "team/app"
    assert repository_name("docker.io/library/nginx", None) == "docker.io/library/nginx"
    assert repository_name("a/b/c/d/e", "") == "a/b/c/d/e"


@pytest.mark.parametrize("name", ["UPPER", "a//b", "/a", "a/", "a__-b", "a..b", "-a", "a-", "",
                                  "a/" * 200 + "b", "a:b", "a@b"])
def test_invalid_names(name: str) -> None:
    with pytest.raises(RegistryError) as caught:
        validate_name(name)
    assert caught.value.code is ErrorCode.NAME_INVALID
    assert caught.value.status == 400


@pytest.mark.parametrize("name", ["a", "a/b", "a.b-c__d/e_f", "a--b", "0/1/2/3/4/5", "a" * 255])
def test_valid_names(name: str) -> None:
    assert validate_name(name) == name


@settings(max_examples=200, deadline=None)
@given(st.one_of(st.text(max_size=300), st.from_regex(NAME_PATTERN, fullmatch=True)))
def test_validate_name_accepts_exactly_the_grammar(text: str) -> None:
    if len(text) <= 255 and NAME_PATTERN.match(text) is not None:
        assert validate_name(text) == text
    else:
        with pytest.raises(RegistryError) as caught:
            validate_name(text)
        assert caught.value.code is ErrorCode.NAME_INVALID


def test_references() -> None:
    assert parse_reference("latest") == "latest"
    assert parse_reference("v1.2.3_rc-1") == "v1.2.3_rc-1"
    digest = "sha256:" + "a" * 64
    assert parse_reference(digest) == Digest("sha256", "a" * 64)


@pytest.mark.parametrize(("text", "code"), [
    (".hidden", ErrorCode.TAG_INVALID),
    ("-dash", ErrorCode.TAG_INVALID),
    ("t" * 129, ErrorCode.TAG_INVALID),
    ("sha256:abc", ErrorCode.DIGEST_INVALID),
    ("md5:" + "a" * 32, ErrorCode.DIGEST_INVALID),
])
def test_bad_references(text: str, code: ErrorCode) -> None:
    with pytest.raises(RegistryError) as caught:
        parse_reference(text)
    assert caught.value.code is code
    assert caught.value.status == 400


def test_split_image() -> None:
    assert split_image("docker.io/library/nginx:1.27") == ("docker.io/library/nginx", "1.27")
    assert split_image("reg.corp:5000/app:v1") == ("reg.corp_5000/app", "v1")
    assert split_image("Registry-1.Docker.io/library/x") == ("docker.io/library/x", "latest")
    assert split_image("team/app") == ("team/app", "latest")
    digest = "sha256:" + "b" * 64
    assert split_image(f"team/app@{digest}") == ("team/app", Digest.parse(digest))


def test_canonical_name_leaves_plain_paths_alone() -> None:
    assert canonical_name("library/nginx") == "library/nginx"
    assert canonical_name("localhost:5000/x") == "localhost_5000/x"
