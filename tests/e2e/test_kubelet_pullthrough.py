"""Pull-through as kubelet meets it: a CRI PullImage of a multi-platform tag the bucket lacks, on
containerd 1.6, 2.1.9 and 2.2.7, through a gateway with ``on_miss: pull-through`` in front of a
real registry:2. The tag is committed once the node's platform is whole in the bucket (never
the platform nobody pulled), and from then on a gateway whose upstream is gone serves it.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from registry import layout
from registry.digest import Digest
from tests.e2e.harness import Server, Skopeo, serving_regfront
from tests.e2e.nodes import ONE_DIR, NodePool, Version, cri_pull, unreachable_url, write_hosts
from tests.images import Layout, layout_blob, layout_children, layout_digest

pytestmark = pytest.mark.e2e


def _config(path: Path, store: Path, upstream: str, repository: str) -> Path:
    path.write_text(f"""
storage: [{{url: {store}}}]
upstreams:
  docker.io: {{urls: ["{upstream}"], on_miss: pull-through, retries: 0}}
mirror:
  - {{name: pt, registry: docker.io, repositories: ["{repository}"]}}
""")
    return path


def _wait_for(path: Path) -> bool:
    deadline = time.monotonic() + 15
    while not path.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    return path.exists()


@pytest.mark.parametrize("version", ["1.6", "2.1.9", "2.2.7"])
def test_kubelet_pull_through_commits_the_tag_once_the_platform_is_whole(
        tmp_path: Path, nodes: NodePool, registry2: Server, skopeo: Skopeo,
        oci_layout: Layout, version: Version) -> None:
    repository = f"library/pt-{version.replace('.', '-')}"
    name, ref = f"docker.io/{repository}", f"docker.io/{repository}:multi"
    skopeo("copy", "--multi-arch", "all", "--dest-tls-verify=false",
           f"oci:{oci_layout.root}:multi", registry2.ref(f"{repository}:multi"))
    index = Digest.parse(layout_digest(oci_layout.root, "multi"))
    children = layout_children(oci_layout.root, "multi")
    store = tmp_path / "store"
    node = nodes.node(version, ONE_DIR)

    with serving_regfront(store, tmp_path,
                          config=_config(tmp_path / "pt.yaml", store, registry2.url,
                                         repository)) as gateway:
        write_hosts(node, node.hosts_dirs[0], gateway.url, unreachable_url())
        with cri_pull(node, gateway, ref) as outcome:
            assert outcome.error is None, outcome.describe()
            assert outcome.image is not None, outcome.describe()
        tag = store / layout.tag_current_link(name, "multi")
        assert _wait_for(tag), "the tag was never committed"
    assert tag.read_text() == str(index)
    amd64 = Digest.parse(children["amd64"])
    assert (store / layout.revision_link(name, amd64)).exists()
    for blob in json.loads(layout_blob(oci_layout.root, str(amd64)))["layers"]:
        assert (store / layout.layer_link(name, Digest.parse(blob["digest"]))).exists()
    # arm64 was never pulled: not fetched, and not needed for the tag.
    assert not (store / layout.revision_link(name, Digest.parse(children["arm64"]))).exists()

    # The upstream gone (as far as this gateway knows): the bucket alone serves the pull.
    gone = _config(tmp_path / "gone.yaml", store, unreachable_url(), repository)
    with serving_regfront(store, tmp_path, config=gone) as gateway:
        write_hosts(node, node.hosts_dirs[0], gateway.url, unreachable_url())
        with cri_pull(node, gateway, ref) as outcome:
            assert outcome.error is None, outcome.describe()
            assert outcome.gateway_requests > 0, outcome.describe()
