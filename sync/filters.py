"""What a mirror rule copies: which tags (``TagFilter``) and which children of an image index.

Versions are read leniently, as registries tag them: ``v1.25``, ``1.25`` (1.25.0) and ``1``
(1.0.0) are versions, and a suffix after ``-`` is a semver prerelease, so ``1.25.3-alpine`` is
1.25.3-alpine and ``1.27-bookworm`` is 1.27.0-bookworm. Ranges compare by plain semver
precedence, with no npm-style rule that hides prereleases: a prerelease sorts just below its
release, so ``1.25.3-alpine`` is inside ``>=1.25 <2``, ``2.0.0-rc1`` is inside ``<2`` too, and
``1.25-alpine`` (1.25.0-alpine) is *outside* ``>=1.25``. Exclude variants with ``exclude``.
``latest`` ranks by precedence when every kept tag is a version, else by image creation time.
``names`` are added after every filter, even when the upstream lacks them: the caller reports
those missing.

Index children: an attestation manifest (buildx: platform ``unknown/unknown``, annotation
``vnd.docker.reference.type: attestation-manifest``) is a referrer of the manifest it attests,
so it is copied only when the rule sets ``referrers`` and that manifest is copied too, even
when ``platforms`` is unset.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

import semver

from registry.mirrorconfig import TagFilter

_VERSION = re.compile(
    r"^v?(\d+)(?:\.(\d+))?(?:\.(\d+))?(?:-([0-9A-Za-z.-]+))?(?:\+([0-9A-Za-z.-]+))?\Z"
)
# Two-character operators first, so ">=1" is not read as ">" and "=1".
_COMPARATOR = re.compile(r"^(>=|<=|==|!=|>|<|=)?(.+)$")
_COMPARE: dict[str, Callable[[semver.Version, semver.Version], bool]] = {
    ">=": lambda a, b: a >= b,
    "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b,
    "<": lambda a, b: a < b,
    "==": lambda a, b: a == b,
    "=": lambda a, b: a == b,
    "": lambda a, b: a == b,
    "!=": lambda a, b: a != b,
}

ATTESTATION_TYPE = "attestation-manifest"
REFERENCE_TYPE = "vnd.docker.reference.type"
REFERENCE_DIGEST = "vnd.docker.reference.digest"


def parse_version(tag: str) -> semver.Version | None:
    """The tag as a semver version (``v1.25-alpine`` is 1.25.0-alpine), or None."""
    match = _VERSION.match(tag)
    if match is None:
        return None
    major, minor, patch, prerelease, build = match.groups()
    # int() drops leading zeros ("24.04" is 24.4.0), which strict semver would refuse.
    text = f"{int(major)}.{int(minor or 0)}.{int(patch or 0)}"
    if prerelease is not None:
        text += f"-{prerelease}"
    if build is not None:
        text += f"+{build}"
    try:
        return semver.Version.parse(text)
    except ValueError:  # e.g. an empty identifier ("1.2-a..b") or "rc.01"
        return None


def in_range(version: semver.Version, spec: str) -> bool:
    """Whether ``version`` satisfies every comparator of ``spec`` (``">=1.25 <2"``)."""
    comparators = spec.replace(",", " ").split()
    if not comparators:
        raise ValueError(f"empty semver range {spec!r}")
    for comparator in comparators:
        match = _COMPARATOR.match(comparator)
        bound = parse_version(match.group(2)) if match else None
        if match is None or bound is None:
            raise ValueError(f"invalid comparator {comparator!r} in semver range {spec!r}")
        if not _COMPARE[match.group(1) or ""](version, bound):
            return False
    return True


async def select_tags(
    tags: Sequence[str],
    spec: TagFilter,
    created_at: Callable[[str], Awaitable[datetime | None]],
) -> list[str]:
    """The tags ``spec`` keeps, sorted; ``spec.names`` are added even when absent from ``tags``.

    ``created_at`` (an image's config ``created``, timezone-aware) is awaited, concurrently, only
    to rank more than ``latest`` kept tags when one of them is not a version; it bounds its own
    upstream concurrency.
    """
    include = [re.compile(pattern) for pattern in spec.include]
    exclude = [re.compile(pattern) for pattern in spec.exclude]
    kept = [
        tag for tag in dict.fromkeys(tags)
        if (not include or any(p.search(tag) for p in include))
        and not any(p.search(tag) for p in exclude)
    ]
    versions = {tag: parse_version(tag) for tag in kept}
    if spec.semver is not None:
        kept = [
            tag for tag in kept
            if (version := versions[tag]) is not None and in_range(version, spec.semver)
        ]
    if spec.latest is not None and len(kept) > spec.latest:
        kept = await _newest(kept, versions, spec.latest, created_at)
    return sorted({*kept, *spec.names})


async def _newest(
    tags: list[str],
    versions: Mapping[str, semver.Version | None],
    count: int,
    created_at: Callable[[str], Awaitable[datetime | None]],
) -> list[str]:
    ranked = sorted(tags)  # ties keep this order: the sorts below are stable
    parsed = {tag: version for tag in ranked if (version := versions[tag]) is not None}
    if len(parsed) == len(ranked):
        ranked.sort(key=parsed.__getitem__, reverse=True)
        return ranked[:count]
    times = await asyncio.gather(*map(created_at, ranked))
    dated = {tag: time for tag, time in zip(ranked, times, strict=True) if time is not None}
    # Newest first, then the undated ones (a missing or unreadable config), by tag.
    ranked = sorted(dated, key=dated.__getitem__, reverse=True) + [
        tag for tag in ranked if tag not in dated
    ]
    return ranked[:count]


def platform_key(os: str, architecture: str, variant: str | None = None) -> tuple[str, str, str]:
    """``(os, architecture, variant)`` normalized as containerd does, so equal platforms match."""
    os, arch, var = os.lower(), architecture.lower(), (variant or "").lower()
    if arch in ("x86_64", "x86-64", "amd64"):
        arch, var = "amd64", "" if var == "v1" else var
    elif arch in ("aarch64", "arm64"):
        arch = "arm64"
        var = {"": "v8", "8": "v8", "v8.0": "v8", "9": "v9", "9.0": "v9", "v9.0": "v9"}.get(
            var, var)
    elif arch == "armhf":
        arch, var = "arm", "v7"
    elif arch == "armel":
        arch, var = "arm", "v6"
    elif arch == "arm":
        var = {"": "v7", "5": "v5", "6": "v6", "7": "v7", "8": "v8"}.get(var, var)
    elif arch in ("i386", "i686"):
        arch, var = "386", ""
    return os, arch, var


def parse_platform(text: str) -> tuple[str, str, str]:
    """``os/architecture[/variant]`` (``linux/arm64/v8``) as a :func:`platform_key`."""
    parts = text.split("/")
    if len(parts) not in (2, 3) or not all(parts):
        raise ValueError(f"invalid platform {text!r} (os/arch[/variant])")
    return platform_key(*parts)


def select_children(
    manifests: Sequence[Mapping[str, Any]],
    platforms: Sequence[str] | None,
    referrers: bool,
) -> list[Mapping[str, Any]]:
    """The children of an index's ``manifests`` to copy, in index order.

    ``platforms`` None copies every platform; a child without a ``platform`` is copied only
    then. Attestations follow the manifest they attest, and only when ``referrers`` is set.
    """
    wanted = None if platforms is None else {parse_platform(p) for p in platforms}

    def platform_wanted(descriptor: Mapping[str, Any]) -> bool:
        if wanted is None:
            return True
        platform = descriptor.get("platform")
        if not isinstance(platform, Mapping):
            return False
        key = platform_key(str(platform.get("os") or ""), str(platform.get("architecture") or ""),
                           str(platform.get("variant") or ""))
        return key in wanted

    keep = [not _is_attestation(d) and platform_wanted(d) for d in manifests]
    copied = {d.get("digest") for d, kept in zip(manifests, keep, strict=True) if kept} - {None}
    return [
        descriptor for descriptor, kept in zip(manifests, keep, strict=True)
        if kept or (referrers and _is_attestation(descriptor)
                    and _annotations(descriptor).get(REFERENCE_DIGEST) in copied)
    ]


def _annotations(descriptor: Mapping[str, Any]) -> Mapping[str, Any]:
    annotations = descriptor.get("annotations")
    return annotations if isinstance(annotations, Mapping) else {}


def _is_attestation(descriptor: Mapping[str, Any]) -> bool:
    return _annotations(descriptor).get(REFERENCE_TYPE) == ATTESTATION_TYPE
