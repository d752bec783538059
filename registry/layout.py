"""The only place bucket keys are built.

The pull subset of CNCF distribution's (registry:2) storage layout, so either can serve a bucket
the other wrote; regfront's own objects live beside it under ``regfront/``, a prefix registry:2
never reads. Keys are relative to a store's root and use ``/`` on every backend.
See docs/bucket-layout.md.
"""

from __future__ import annotations

from registry.digest import Digest
from registry.errors import RegistryError
from registry.names import NAME_PATTERN, TAG_PATTERN, Reference

DISTRIBUTION_ROOT = "docker/registry/v2"
REGFRONT_ROOT = "regfront/v1"
WARM_UP = f"{REGFRONT_ROOT}/warm-up"  # never written: gateways ask for it to open clients


def check_dir() -> str:
    """Where ``regfront check`` puts its probe objects; it lists this to prove listing works."""
    return f"{REGFRONT_ROOT}/check/"


def check_probe(token: str) -> str:
    """What ``regfront check`` writes, reads back and deletes to prove a store takes writes;
    ``token`` is new each run, so checks running at once never touch each other's object."""
    return f"{check_dir()}{token}"


def blob_data(digest: Digest) -> str:
    """Blob bytes (manifests included): ``blobs/sha256/ab/abcd.../data``."""
    return f"{DISTRIBUTION_ROOT}/blobs/{digest.algorithm}/{digest.hex[:2]}/{digest.hex}/data"


def _repository(name: str) -> str:
    return f"{DISTRIBUTION_ROOT}/repositories/{name}"


def tags_dir(name: str) -> str:
    """Directory whose children are the repository's tag names (trailing ``/``)."""
    return f"{_repository(name)}/_manifests/tags/"


def tag_current_link(name: str, tag: str) -> str:
    """The link a tag resolves through: holds the digest it points to now."""
    return f"{_repository(name)}/_manifests/tags/{tag}/current/link"


def tag_index_link(name: str, tag: str, digest: Digest) -> str:
    """The tag's history entry for ``digest``; registry:2 writes one for every tag push."""
    return (f"{_repository(name)}/_manifests/tags/{tag}/index/"
            f"{digest.algorithm}/{digest.hex}/link")


def revision_link(name: str, digest: Digest) -> str:
    """Marks a manifest as belonging to the repository."""
    return f"{_repository(name)}/_manifests/revisions/{digest.algorithm}/{digest.hex}/link"


def layer_link(name: str, digest: Digest) -> str:
    """Marks a blob (layer or config) as belonging to the repository."""
    return f"{_repository(name)}/_layers/{digest.algorithm}/{digest.hex}/link"


def link_content(digest: Digest) -> bytes:
    """What a link holds: the digest string, no trailing newline (as registry:2 writes it)."""
    return str(digest).encode()


def referrers_dir(name: str, subject: Digest) -> str:
    """regfront's referrers index: one child per manifest whose ``subject`` is ``subject``."""
    return (f"{REGFRONT_ROOT}/repositories/{name}/_referrers/"
            f"{subject.algorithm}/{subject.hex}/")


def referrer_entry(name: str, subject: Digest, digest: Digest) -> str:
    """One referrer: holds its descriptor as JSON, so listing needs no manifest reads."""
    return f"{referrers_dir(name, subject)}{digest.algorithm}-{digest.hex}"


def referrers_tag(subject: Digest) -> str:
    """The OCI 1.1 fallback tag (``sha256-<hex>``) that clients push when a registry has no API."""
    return f"{subject.algorithm}-{subject.hex}"


def sync_lease(rule: str) -> str:
    """The lease a sync worker holds while it runs ``rule`` (conditional writes only)."""
    return f"{REGFRONT_ROOT}/sync/leases/{rule}"


def sync_state(rule: str) -> str:
    """What the last run of ``rule`` did: when, how long, what it copied, what failed."""
    return f"{REGFRONT_ROOT}/sync/state/{rule}.json"


MISSES_ROOT = f"{REGFRONT_ROOT}/misses/"


def misses_dir(name: str) -> str:
    """Where the gateway queues what clients asked ``name`` for and no store had."""
    return f"{MISSES_ROOT}{name}/"


def miss(name: str, reference: Reference) -> str:
    """One queued miss: ``_tags/<tag>`` or ``_digests/<alg>-<hex>`` under ``misses_dir``."""
    if isinstance(reference, Digest):
        return f"{misses_dir(name)}_digests/{reference.algorithm}-{reference.hex}"
    return f"{misses_dir(name)}_tags/{reference}"


def parse_miss(key: str) -> tuple[str, Reference] | None:
    """The (name, reference) a ``miss`` key queues; None for any other key (a directory on the
    way down to one, or something that is no miss)."""
    if not key.startswith(MISSES_ROOT):
        return None
    parts = key[len(MISSES_ROOT):].rsplit("/", 2)
    if len(parts) != 3 or not NAME_PATTERN.match(parts[0]):
        return None
    name, kind, entry = parts
    if kind == "_tags" and TAG_PATTERN.match(entry):
        return name, entry
    algorithm, dash, encoded = entry.partition("-")
    if kind != "_digests" or not dash:
        return None
    try:
        return name, Digest.parse(f"{algorithm}:{encoded}")
    except RegistryError:
        return None
