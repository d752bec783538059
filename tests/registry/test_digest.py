from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from registry.digest import Digest
from registry.errors import ErrorCode, RegistryError


def test_parse_round_trips() -> None:
    text = "sha256:" + hashlib.sha256(b"x").hexdigest()
    assert str(Digest.parse(text)) == text
    long = "sha512:" + hashlib.sha512(b"x").hexdigest()
    assert Digest.parse(long).algorithm == "sha512"


@pytest.mark.parametrize("text", [
    "", "sha256:", "sha256:" + "A" * 64, "sha256:" + "a" * 63, "sha256:" + "a" * 65,
    "sha512:" + "a" * 64, "md5:" + "a" * 32, "sha256" + "a" * 64, "sha256:" + "g" * 64,
])
def test_parse_rejects(text: str) -> None:
    with pytest.raises(RegistryError) as caught:
        Digest.parse(text)
    assert caught.value.code is ErrorCode.DIGEST_INVALID


@settings(max_examples=50, deadline=None)
@given(st.binary(max_size=4096), st.integers(min_value=1, max_value=97))
def test_streaming_verifier_matches_whole_hash(data: bytes, step: int) -> None:
    digest = Digest.from_bytes(data)
    verifier = digest.verifier()
    for offset in range(0, len(data), step):
        verifier.update(data[offset:offset + step])
    verifier.verify()
    assert verifier.size == len(data)
    assert digest.matches(data)


def test_verifier_rejects_other_bytes() -> None:
    verifier = Digest.from_bytes(b"expected").verifier()
    verifier.update(b"something else")
    with pytest.raises(RegistryError) as caught:
        verifier.verify()
    assert caught.value.code is ErrorCode.DIGEST_INVALID
    assert caught.value.detail["actual"] == str(Digest.from_bytes(b"something else"))
