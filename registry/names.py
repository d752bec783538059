"""Repository names, tags and references, per the OCI distribution-spec grammar.

Mirrored images are stored under a name that starts with their registry
(``docker.io/library/nginx``); containerd's ``?ns=`` mirror parameter names that registry.
"""

from __future__ import annotations

import re

from registry.digest import Digest
from registry.errors import ErrorCode, RegistryError

_COMPONENT = r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*"
NAME_PATTERN = re.compile(rf"^{_COMPONENT}(?:/{_COMPONENT})*$")
TAG_PATTERN = re.compile(r"^[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}$")
# distribution caps the whole name at 255 characters; so do we, so both read one bucket.
NAME_MAX_LENGTH = 255
_REGISTRY_HOST = re.compile(r"^[a-z0-9](?:[a-z0-9.-]*[a-z0-9])?(?::[0-9]{1,5})?$")

DOCKER_HUB = "docker.io"
_DOCKER_HUB_ALIASES = frozenset({"docker.io", "registry-1.docker.io", "index.docker.io"})

Reference = str | Digest
"""A tag (``str``) or a ``Digest``."""


def canonical_registry(host: str) -> str:
    """``Reg.Corp:5000`` -> ``reg.corp_5000``; Docker Hub's aliases -> ``docker.io``."""
    host = host.strip().lower()
    if not _REGISTRY_HOST.match(host):
        raise RegistryError(ErrorCode.NAME_INVALID, {"ns": host[:200]}, "invalid registry name")
    if host in _DOCKER_HUB_ALIASES:
        return DOCKER_HUB
    # ':' is not allowed in a repository name; '_' is, and never appears in a host name.
    return host.replace(":", "_")


def validate_name(name: str) -> str:
    """Return ``name`` if it is a valid repository name, else raise NAME_INVALID."""
    if len(name) > NAME_MAX_LENGTH or not NAME_PATTERN.match(name):
        raise RegistryError(ErrorCode.NAME_INVALID, {"name": name[:300]})
    return name


def repository_name(path_name: str, ns: str | None) -> str:
    """The stored name for a request: ``ns`` (if any) prefixed to the path's name."""
    if ns:
        return validate_name(f"{canonical_registry(ns)}/{path_name}")
    return validate_name(path_name)


def canonical_name(name: str) -> str:
    """Canonicalise a user-written name: a leading registry host gets ``canonical_registry``."""
    first, sep, rest = name.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost"):
        return validate_name(f"{canonical_registry(first)}/{rest}")
    return validate_name(name)


def validate_tag(tag: str) -> str:
    if not TAG_PATTERN.match(tag):
        raise RegistryError(ErrorCode.TAG_INVALID, {"tag": tag[:200]}, "invalid tag")
    return tag


def parse_reference(text: str) -> Reference:
    """A manifest reference from a URL: a digest if it has an algorithm, else a tag."""
    if ":" in text:
        return Digest.parse(text)
    return validate_tag(text)


def split_image(text: str) -> tuple[str, Reference]:
    """``name:tag`` or ``name@digest`` (as written on a command line) -> (name, reference)."""
    if "@" in text:
        name, _, digest = text.partition("@")
        return canonical_name(name), Digest.parse(digest)
    slash = text.rfind("/")
    colon = text.rfind(":")
    if colon > slash:
        return canonical_name(text[:colon]), validate_tag(text[colon + 1:])
    return canonical_name(text), "latest"
