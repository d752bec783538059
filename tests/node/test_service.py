"""The agent's pod endpoints: /readyz follows the last round's proof, /metrics names the node."""

from __future__ import annotations

from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from node.agent import Agent
from node.service import create_app
from tests.node.test_agent import GATEWAY, LIST_CONFIG, FakeCRI


def _agent(tmp_path: Path, cri: FakeCRI) -> Agent:
    settings = tmp_path / "settings"
    settings.mkdir()
    (settings / "gateway").write_text(GATEWAY)
    config = tmp_path / "config.toml"
    config.write_text(LIST_CONFIG.format(a=tmp_path / "a", b=tmp_path / "b"))
    return Agent(settings, tmp_path / "secret", config, cri, node_name="node-1")


async def _get(agent: Agent, path: str) -> httpx.Response:
    transport = httpx.ASGITransport(app=create_app(agent, "node-1"))
    async with httpx.AsyncClient(transport=transport, base_url="http://agent") as client:
        return await client.get(path)


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


async def test_ready_and_its_metrics_follow_the_probe(tmp_path: Path) -> None:
    cri = FakeCRI()
    agent = _agent(tmp_path, cri)
    agent.reconcile()
    ready = await _get(agent, "/readyz")
    assert (ready.status_code, ready.json()["probes"]) == (200, {"docker.io": True})
    samples = _samples((await _get(agent, "/metrics")).text)
    assert samples[("regfront_node_ready", (("node", "node-1"),))] == 1.0
    assert samples[("regfront_node_probe_ok", (("node", "node-1"), ("registry", "docker.io")))] == 1
    info = next(labels for name, labels in samples if name == "regfront_node_containerd_info")
    assert dict(info)["pull_path"] == "transfer"
    cri.answer = None
    agent.clock = lambda: 1e9  # past probe_interval: the next round probes again
    agent.reconcile()
    unready = await _get(agent, "/readyz")
    assert unready.status_code == 503
    assert "did not reach the gateway" in unready.json()["problems"][0]
    samples = _samples((await _get(agent, "/metrics")).text)
    assert samples[("regfront_node_ready", (("node", "node-1"),))] == 0.0
    assert samples[("regfront_node_problems", (("node", "node-1"),))] == 1.0
