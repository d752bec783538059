"""The upstream as fallback, as kubelet pulls: a CRI PullImage on containerd 1.6, 2.1.9 and
2.2.7 moves on to hosts.toml's ``server`` (a real registry:2) when the gateway answers 404
(``on_miss: fallthrough``), when it answers 503 (no store answered), and when nothing listens
on its port. From 2.1 the transfer service resolves and fetches: these are its rules too.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.harness import Gateway, Server, Skopeo, http, serving_regfront
from tests.e2e.nodes import ONE_DIR, NodePool, Version, cri_pull, unreachable_url, write_hosts
from tests.images import Layout

pytestmark = pytest.mark.e2e

VERSIONS: list[Version] = ["1.6", "2.1.9", "2.2.7"]
NAME = "library/upstream-for-cri"
REF = f"docker.io/{NAME}:1"


@pytest.fixture(scope="module")
def upstream_only(skopeo: Skopeo, oci_layout: Layout, registry2: Server) -> str:
    """The ``single`` image pushed to registry:2 only."""
    skopeo("copy", "--dest-tls-verify=false", f"oci:{oci_layout.root}:single",
           registry2.ref(f"{NAME}:1"))
    return REF


@pytest.fixture(scope="module")
def failing_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A gateway whose only store is an S3 endpoint where nothing listens (and, in this clean
    environment, no credentials for it): every manifest and blob lookup ends in a 503."""
    work = tmp_path_factory.mktemp("failing-gateway")
    config = work / "regfront.yaml"
    store = f"s3://bucket/prefix?endpoint={unreachable_url()}&region=us-east-1"
    config.write_text(f"""
storage: [{{url: "{store}"}}]
gateway: {{store_timeout: 0.2s, store_deadline: 1s}}
""")
    with serving_regfront(store, work, config=config) as server:
        yield server


def _fallbacks(server: Server) -> dict[str, int]:
    """The gateway's own count of answers that sent a node on to the upstream, by reason."""
    body = http("GET", f"{server.url}/metrics").body.decode()
    return {sample.labels["reason"]: int(sample.value)
            for family in text_string_to_metric_families(body)
            if family.name == "regfront_fallbacks" for sample in family.samples
            if sample.name.endswith("_total")}


def _served_by_registry2(registry2: Server, before: int) -> list[str]:
    """The requests registry:2 logged for NAME since line ``before``."""
    return [line for line in registry2.service.log_text().splitlines()[before:]
            if f"/v2/{NAME}/" in line]


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("answer", ["404", "503", "refused"])
def test_kubelet_falls_back_to_the_upstream(
        nodes: NodePool, gateway: Gateway, failing_gateway: Server, registry2: Server,
        upstream_only: str, version: Version, answer: str) -> None:
    node = nodes.node(version, ONE_DIR)
    url = {"404": gateway.url, "503": failing_gateway.url, "refused": unreachable_url()}[answer]
    write_hosts(node, node.hosts_dirs[0], url, registry2.url)
    before = len(registry2.service.log_text().splitlines())
    answering = failing_gateway if answer == "503" else gateway
    failed_before = sum(_fallbacks(failing_gateway).values())
    with cri_pull(node, answering, upstream_only) as outcome:
        assert outcome.error is None, outcome.describe()
        assert outcome.image is not None, outcome.describe()
        assert outcome.image.id == outcome.image_ref
        if answer != "refused":
            assert outcome.gateway_requests > 0, outcome.describe()  # asked first
    if answer == "503":  # the gateway's 503s (no store answered) are what sent it on
        assert sum(_fallbacks(failing_gateway).values()) > failed_before
        assert all(reason.startswith("store_") for reason in _fallbacks(failing_gateway))
    served = _served_by_registry2(registry2, before)
    assert any("/manifests/1" in line for line in served), served
    assert any("/blobs/sha256:" in line for line in served), served
