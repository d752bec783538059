"""Content digests: parse, compute and verify, streaming for blobs of any size."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from registry.errors import ErrorCode, RegistryError

# distribution-spec: algorithm ":" encoded; regfront stores and serves sha256 and sha512 only,
# with the exact hex length each algorithm produces (lowercase, as the spec requires).
_HEX_LENGTH = {"sha256": 64, "sha512": 128}
_DIGEST = re.compile(r"^(sha256|sha512):([a-f0-9]+)$")


@dataclass(frozen=True, slots=True)
class Digest:
    """``algorithm:hex``; immutable and hashable, so it keys caches directly."""

    algorithm: str
    hex: str

    def __str__(self) -> str:
        return f"{self.algorithm}:{self.hex}"

    @classmethod
    def parse(cls, text: str) -> Digest:
        """Parse ``sha256:<64 hex>``; anything else is DIGEST_INVALID."""
        match = _DIGEST.match(text)
        if match is None or len(match.group(2)) != _HEX_LENGTH[match.group(1)]:
            raise RegistryError(ErrorCode.DIGEST_INVALID, {"digest": text[:200]},
                                "invalid digest")
        return cls(match.group(1), match.group(2))

    @classmethod
    def from_bytes(cls, data: bytes, algorithm: str = "sha256") -> Digest:
        return cls(algorithm, hashlib.new(algorithm, data).hexdigest())

    def matches(self, data: bytes) -> bool:
        return hashlib.new(self.algorithm, data).hexdigest() == self.hex

    def verifier(self) -> Verifier:
        return Verifier(self)


class Verifier:
    """Feed chunks, then ``verify()`` raises DIGEST_INVALID unless they hash to the digest."""

    def __init__(self, expected: Digest) -> None:
        self.expected = expected
        self.size = 0
        self._hash = hashlib.new(expected.algorithm)

    def update(self, chunk: bytes) -> None:
        self._hash.update(chunk)
        self.size += len(chunk)

    def verify(self) -> None:
        actual = self._hash.hexdigest()
        if actual != self.expected.hex:
            raise RegistryError(
                ErrorCode.DIGEST_INVALID,
                {"expected": str(self.expected), "actual": f"{self.expected.algorithm}:{actual}"},
            )
