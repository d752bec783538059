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


def sync_selection(rule: str) -> str:
    """The tags ``rule`` selected upstream on its last run, per repository (garbage collection
    keeps them)."""
    return f"{REGFRONT_ROOT}/sync/selected/{rule}.json"


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


# -- walking the layout (garbage collection, verify, status) ------------------------------------

REPOSITORIES_ROOT = f"{DISTRIBUTION_ROOT}/repositories/"
REFERRER_REPOSITORIES_ROOT = f"{REGFRONT_ROOT}/repositories/"
# Children of a repository directory that are its own (registry:2's, and regfront's referrers
# directory): any other child is a path component of a longer repository name.
REPOSITORY_PARTS = frozenset({"_manifests", "_layers", "_uploads", "_referrers"})


def blobs_dir(algorithm: str | None = None) -> str:
    """The blob store: children are algorithms, then (with ``algorithm``) two-hex-digit
    shards."""
    base = f"{DISTRIBUTION_ROOT}/blobs/"
    return base if algorithm is None else f"{base}{algorithm}/"


def blob_shard_dir(algorithm: str, prefix: str) -> str:
    """One shard of the blob store: children are the hex digests of its blobs."""
    return f"{blobs_dir(algorithm)}{prefix}/"


def revisions_dir(name: str, algorithm: str | None = None) -> str:
    """Children: algorithms, then the hex digests of the repository's manifests."""
    base = f"{_repository(name)}/_manifests/revisions/"
    return base if algorithm is None else f"{base}{algorithm}/"


def layers_dir(name: str, algorithm: str | None = None) -> str:
    """Children: algorithms, then the hex digests of the blobs the repository links."""
    base = f"{_repository(name)}/_layers/"
    return base if algorithm is None else f"{base}{algorithm}/"


def tag_directory(name: str, tag: str) -> str:
    """The tag's directory as a key (no trailing ``/``): deleting it after its links removes
    what a file store may have left of it (object stores have no directories: a no-op)."""
    return f"{tags_dir(name)}{tag}"


def tag_index_dir(name: str, tag: str, algorithm: str | None = None) -> str:
    """Children: algorithms, then the hex digests the tag has pointed to (its history)."""
    base = f"{tags_dir(name)}{tag}/index/"
    return base if algorithm is None else f"{base}{algorithm}/"


def referrer_subjects_dir(name: str, algorithm: str | None = None) -> str:
    """Children: algorithms, then the hex digests of manifests that have referrers."""
    base = f"{REFERRER_REPOSITORIES_ROOT}{name}/_referrers/"
    return base if algorithm is None else f"{base}{algorithm}/"


def parse_referrer_entry(entry: str) -> Digest | None:
    """The referrer a child of ``referrers_dir`` names (``sha256-<hex>``), or None."""
    algorithm, dash, encoded = entry.partition("-")
    if not dash:
        return None
    try:
        return Digest.parse(f"{algorithm}:{encoded}")
    except RegistryError:
        return None


def _digest(algorithm: str, hex_part: str) -> Digest | None:
    try:
        return Digest.parse(f"{algorithm}:{hex_part}")
    except RegistryError:
        return None


def parse_repository_key(key: str) -> tuple[str, str, str, Digest | None] | None:
    """What a link under ``REPOSITORIES_ROOT`` is, as (name, kind, tag, digest): kind
    ``current`` (a tag's current link; digest None: it is the link's content), ``history`` (a
    tag's index entry), ``revision`` or ``layer``; None for any other key (uploads)."""
    if not key.startswith(REPOSITORIES_ROOT) or not key.endswith("/link"):
        return None
    parts = key[len(REPOSITORIES_ROOT):].split("/")[:-1]
    at = next((n for n, part in enumerate(parts) if part in ("_manifests", "_layers")), None)
    if not at:
        return None
    name, rest = "/".join(parts[:at]), parts[at:]
    if rest[0] == "_layers" and len(rest) == 3:
        return (name, "layer", "", digest) if (digest := _digest(rest[1], rest[2])) else None
    if rest[1:2] == ["revisions"] and len(rest) == 4:
        return (name, "revision", "", digest) if (digest := _digest(rest[2], rest[3])) else None
    if rest[1:2] == ["tags"] and len(rest) == 4 and rest[3] == "current":
        return name, "current", rest[2], None
    if rest[1:2] == ["tags"] and len(rest) == 6 and rest[3] == "index":
        return (name, "history", rest[2], digest) if (digest := _digest(rest[4], rest[5])) else None
    return None


def parse_blob_key(key: str) -> Digest | None:
    """The digest whose bytes ``key`` holds, if it is a blob's ``data``."""
    parts = key.removeprefix(blobs_dir()).split("/")
    if not key.startswith(blobs_dir()) or len(parts) != 4 or parts[3] != "data":
        return None
    digest = _digest(parts[0], parts[2])
    return digest if digest is not None and parts[1] == digest.hex[:2] else None


def parse_referrer_key(key: str) -> tuple[str, Digest, Digest] | None:
    """(name, subject, referrer) of a referrer entry, or None."""
    name, marker, rest = key.removeprefix(REFERRER_REPOSITORIES_ROOT).rpartition("/_referrers/")
    parts = rest.split("/")
    if not key.startswith(REFERRER_REPOSITORIES_ROOT) or not marker or len(parts) != 3:
        return None
    subject, referrer = _digest(parts[0], parts[1]), parse_referrer_entry(parts[2])
    return (name, subject, referrer) if subject and referrer else None


# -- garbage collection: its state, and the writers' claims (docs/retention.md) -----------------

GC_ROOT = f"{REGFRONT_ROOT}/gc"
CLAIMS_DIR = f"{GC_ROOT}/claims/"
DOOMED_DIR = f"{GC_ROOT}/doomed/"
_TAG_SUBJECT = "tag-"


def gc_state() -> str:
    """What the last collection saw: each deletion candidate and when it was first seen."""
    return f"{GC_ROOT}/state.json"


def gc_report() -> str:
    """The last collection's numbers (gateways export them as metrics), kept small."""
    return f"{GC_ROOT}/report.json"


def gc_lease() -> str:
    """Held by the one collection that may run at a time (conditional writes only)."""
    return f"{GC_ROOT}/lease"


def subject_key(subject: Digest | tuple[str, str]) -> str:
    """What a claim or an announced deletion is about: a digest (``sha256-<hex>``: its blob and
    every link to it) or a tag (``tag-<sha256 of name:tag>``: its current link)."""
    if isinstance(subject, Digest):
        return f"{subject.algorithm}-{subject.hex}"
    name, tag = subject
    return _TAG_SUBJECT + Digest.from_bytes(f"{name}:{tag}".encode()).hex


def claim(key: str, when: int) -> str:
    """A writer's claim on ``key`` (a ``subject_key``) made at unix time ``when``: its age is
    in its name, so collection judges claims from one listing."""
    return f"{CLAIMS_DIR}{when:010d}-{key}"


def parse_claim(entry: str) -> tuple[int, str] | None:
    """(when, subject key) of a child of ``CLAIMS_DIR``; None for anything else."""
    when, dash, key = entry.partition("-")
    if not dash or len(when) != 10 or not when.isdigit() or not _is_subject_key(key):
        return None
    return int(when), key


def _is_subject_key(key: str) -> bool:
    if key.startswith(_TAG_SUBJECT):
        hex_part = key[len(_TAG_SUBJECT):]
        return len(hex_part) == 64 and all(c in "0123456789abcdef" for c in hex_part)
    return parse_referrer_entry(key) is not None  # the same ``alg-hex`` form


def doomed_shard(key: str) -> str:
    """The announcement that lists ``key`` if the running collection will delete it: one of
    256 small objects, chosen by the key's first two hex digits."""
    return f"{DOOMED_DIR}{key.rpartition('-')[2][:2]}"


def doomed_shard_of(prefix: str) -> str:
    return f"{DOOMED_DIR}{prefix}"


# -- pull records (gateway/usage.py writes, retention and status read) --------------------------

USAGE_ROOT = f"{REGFRONT_ROOT}/usage/"
_USAGE_SUMMARY = "summary.json"


def usage_day_dir(day: str) -> str:
    """One UTC day's records (``YYYY-MM-DD``)."""
    return f"{USAGE_ROOT}{day}/"


def usage_record(day: str, when: int, gateway: str) -> str:
    """What gateway worker ``gateway`` served in the batch it wrote at unix time ``when``."""
    return f"{usage_day_dir(day)}{when:010d}-{gateway}.json"


def usage_summary(day: str) -> str:
    """A day's records merged by garbage collection (records then go)."""
    return f"{usage_day_dir(day)}{_USAGE_SUMMARY}"


def parse_usage_record(entry: str) -> tuple[int, str] | None:
    """(when, gateway) of a child of ``usage_day_dir`` that is a record; None otherwise (the
    summary)."""
    when, dash, rest = entry.partition("-")
    if not dash or len(when) != 10 or not when.isdigit() or not rest.endswith(".json"):
        return None
    return int(when), rest.removesuffix(".json")
