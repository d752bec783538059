"""Golden keys: byte-for-byte the paths CNCF distribution (registry:2) uses (its paths.go)."""

from __future__ import annotations

import pytest

from registry import layout
from registry.digest import Digest

HEX = "4c40ef82b2235913c4be914f08dfc3aa07287c9e090d0ddcff3614437361a515"
DIGEST = Digest("sha256", HEX)
REPO = "docker/registry/v2/repositories/docker.io/library/nginx"


def test_blob_data_is_shared_and_sharded_by_two_hex_digits() -> None:
    assert layout.blob_data(DIGEST) == f"docker/registry/v2/blobs/sha256/4c/{HEX}/data"


def test_tag_links() -> None:
    assert (layout.tag_current_link("docker.io/library/nginx", "1.27")
            == f"{REPO}/_manifests/tags/1.27/current/link")
    assert (layout.tag_index_link("docker.io/library/nginx", "1.27", DIGEST)
            == f"{REPO}/_manifests/tags/1.27/index/sha256/{HEX}/link")
    assert layout.tags_dir("docker.io/library/nginx") == f"{REPO}/_manifests/tags/"


def test_repository_links() -> None:
    assert (layout.revision_link("docker.io/library/nginx", DIGEST)
            == f"{REPO}/_manifests/revisions/sha256/{HEX}/link")
    assert (layout.layer_link("docker.io/library/nginx", DIGEST)
            == f"{REPO}/_layers/sha256/{HEX}/link")


def test_link_content_has_no_trailing_newline() -> None:
    assert layout.link_content(DIGEST) == f"sha256:{HEX}".encode()


def test_regfront_keys_live_outside_distributions_tree() -> None:
    key = layout.referrer_entry("team/app", DIGEST, Digest("sha256", "0" * 64))
    assert key == f"regfront/v1/repositories/team/app/_referrers/sha256/{HEX}/sha256-{'0' * 64}"
    assert not key.startswith(layout.DISTRIBUTION_ROOT)
    assert layout.referrers_tag(DIGEST) == f"sha256-{HEX}"


def test_check_probe_keys() -> None:
    """What regfront check writes, reads back and deletes; it lists the directory."""
    assert layout.check_dir() == "regfront/v1/check/"
    assert layout.check_probe("0a1b2c3d4e5f6a7b") == "regfront/v1/check/0a1b2c3d4e5f6a7b"


def test_miss_keys_and_their_parse() -> None:
    """What gateway/misses.py writes and the sync worker reads back, byte for byte."""
    name = "docker.io/library/nginx"
    tag_key = layout.miss(name, "1.27")
    digest_key = layout.miss(name, DIGEST)
    assert tag_key == "regfront/v1/misses/docker.io/library/nginx/_tags/1.27"
    assert digest_key == f"regfront/v1/misses/docker.io/library/nginx/_digests/sha256-{HEX}"
    assert layout.misses_dir(name) == "regfront/v1/misses/docker.io/library/nginx/"
    assert layout.parse_miss(tag_key) == (name, "1.27")
    assert layout.parse_miss(digest_key) == (name, DIGEST)
    assert layout.parse_miss(layout.miss("reg.corp_5000/a", "v1")) == ("reg.corp_5000/a", "v1")


@pytest.mark.parametrize("key", [
    "regfront/v1/misses/docker.io",  # directories on the way down to a miss
    "regfront/v1/misses/docker.io/library/nginx",
    "regfront/v1/misses/docker.io/library/nginx/_tags",
    "regfront/v1/misses/docker.io/library/nginx/_digests",
    "regfront/v1/misses/_tags/1.0",  # no name
    "regfront/v1/misses/docker.io/library/nginx/_tags/-bad",  # not a tag
    "regfront/v1/misses/docker.io/library/nginx/_digests/sha256-abc",  # not a digest
    f"regfront/v1/misses/docker.io/library/nginx/_digests/sha256:{HEX}",
    f"regfront/v1/misses/docker.io/library/nginx/_other/sha256-{HEX}",
    "regfront/v1/misses/Docker.io/x/_tags/1.0",  # not a repository name
    f"{REPO}/_manifests/tags/1.27/current/link",  # not under the misses root
])
def test_parse_miss_refuses_every_other_key(key: str) -> None:
    assert layout.parse_miss(key) is None


def test_walking_keys_are_the_parents_of_the_keys_above() -> None:
    name = "docker.io/library/nginx"
    assert layout.blobs_dir() == "docker/registry/v2/blobs/"
    assert layout.blob_shard_dir("sha256", "4c") + f"{HEX}/data" == layout.blob_data(DIGEST)
    assert layout.revisions_dir(name) == f"{REPO}/_manifests/revisions/"
    assert layout.revisions_dir(name, "sha256") + f"{HEX}/link" == layout.revision_link(
        name, DIGEST)
    assert layout.layers_dir(name, "sha256") + f"{HEX}/link" == layout.layer_link(name, DIGEST)
    assert layout.tag_index_dir(name, "1", "sha256") + f"{HEX}/link" == layout.tag_index_link(
        name, "1", DIGEST)
    subject = layout.referrer_subjects_dir(name, "sha256") + f"{HEX}/"
    assert subject == layout.referrers_dir(name, DIGEST)
    assert layout.parse_referrer_entry(f"sha256-{HEX}") == DIGEST
    assert layout.parse_referrer_entry("sha256-xyz") is None


def test_garbage_collection_keys_live_under_regfront() -> None:
    """The GC state, its lease, writers' claims and the doomed shards (docs/retention.md)."""
    assert layout.gc_state() == "regfront/v1/gc/state.json"
    assert layout.gc_report() == "regfront/v1/gc/report.json"
    assert layout.gc_lease() == "regfront/v1/gc/lease"
    assert layout.subject_key(DIGEST) == f"sha256-{HEX}"
    tag_key = layout.subject_key(("docker.io/library/nginx", "1.27"))
    assert tag_key == "tag-" + Digest.from_bytes(b"docker.io/library/nginx:1.27").hex
    claim = layout.claim(f"sha256-{HEX}", 1_800_000_000)
    assert claim == f"regfront/v1/gc/claims/1800000000-sha256-{HEX}"
    assert layout.parse_claim(claim.rpartition("/")[2]) == (1_800_000_000, f"sha256-{HEX}")
    assert layout.parse_claim(layout.claim(tag_key, 7).rpartition("/")[2]) == (7, tag_key)
    assert layout.parse_claim("1800000000-sha256-nothex") is None
    assert layout.doomed_shard(f"sha256-{HEX}") == "regfront/v1/gc/doomed/4c"
    assert layout.doomed_shard(tag_key) == f"regfront/v1/gc/doomed/{tag_key[4:6]}"
    assert layout.sync_selection("app") == "regfront/v1/sync/selected/app.json"


def test_usage_keys_and_their_parse() -> None:
    assert layout.usage_record("2027-01-15", 1_800_000_000, "host-12-ab") == (
        "regfront/v1/usage/2027-01-15/1800000000-host-12-ab.json")
    assert layout.usage_summary("2027-01-15") == "regfront/v1/usage/2027-01-15/summary.json"
    assert layout.parse_usage_record("1800000000-host-12-ab.json") == (1_800_000_000,
                                                                       "host-12-ab")
    assert layout.parse_usage_record("summary.json") is None


def test_a_whole_listing_parses_back_to_what_each_key_is() -> None:
    """Garbage collection lists whole prefixes and reads each key back (registry/layout.py
    builds and parses every key)."""
    name = "docker.io/library/nginx"
    assert layout.parse_repository_key(layout.tag_current_link(name, "1.27")) == (
        name, "current", "1.27", None)
    assert layout.parse_repository_key(layout.tag_index_link(name, "1.27", DIGEST)) == (
        name, "history", "1.27", DIGEST)
    assert layout.parse_repository_key(layout.revision_link(name, DIGEST)) == (
        name, "revision", "", DIGEST)
    assert layout.parse_repository_key(layout.layer_link(name, DIGEST)) == (
        name, "layer", "", DIGEST)
    for other in (f"{REPO}/_uploads/abc/data", f"{REPO}/_layers/sha256/nothex/link",
                  layout.blob_data(DIGEST), "docker/registry/v2/repositories/_layers/x/link"):
        assert layout.parse_repository_key(other) is None
    assert layout.parse_blob_key(layout.blob_data(DIGEST)) == DIGEST
    assert layout.parse_blob_key(f"docker/registry/v2/blobs/sha256/ff/{HEX}/data") is None
    referrer = Digest("sha256", "0" * 64)
    assert layout.parse_referrer_key(layout.referrer_entry(name, DIGEST, referrer)) == (
        name, DIGEST, referrer)
    assert layout.parse_referrer_key(layout.referrers_dir(name, DIGEST) + "junk") is None
