"""The node agent as a pod: a round every ``interval``, /readyz and /metrics on one port.

/readyz is 200 only while kubelet's pulls on this node reach the gateway (the probe pulled
through the CRI) - so ``kubectl get ds`` counts the nodes that do not use the mirror, and the
per-node metrics below let an alert name them.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Iterable

from anyio import to_thread
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from node.agent import Agent, Status

PREFIX = "regfront_node_"


class StatusCollector:
    """The last round as gauges, each labelled with the node (Prometheus may scrape through a
    Service whose own labels do not say which node a pod runs on)."""

    def __init__(self, status: Callable[[], Status], node: str) -> None:
        self.status, self.node = status, node

    def collect(self) -> Iterable[Metric]:
        status = self.status()
        ready = GaugeMetricFamily(PREFIX + "ready", "1 while kubelet's pulls on this node "
                                  "reach the gateway (hosts files where the CRI reads them, "
                                  "probe answered by the gateway)", labels=["node"])
        ready.add_metric([self.node], 1.0 if status.ready else 0.0)
        probe = GaugeMetricFamily(PREFIX + "probe_ok", "1 if the last probe pull through the "
                                  "CRI was answered by the gateway, by registry",
                                  labels=["node", "registry"])
        seconds = GaugeMetricFamily(PREFIX + "probe_seconds", "How long the last probe pull "
                                    "took, by registry", labels=["node", "registry"])
        for registry, answered in status.probes.items():
            probe.add_metric([self.node, registry], 1.0 if answered else 0.0)
            seconds.add_metric([self.node, registry], status.probe_seconds.get(registry, 0.0))
        info = GaugeMetricFamily(PREFIX + "containerd_info", "containerd's version, its CRI "
                                 "pull path and where it reads hosts files",
                                 labels=["node", "version", "pull_path", "hosts_dirs"])
        if status.plan is not None:
            info.add_metric([self.node, status.version, status.plan.pull_path,
                             ",".join(status.plan.dirs)], 1.0)
        problems = GaugeMetricFamily(PREFIX + "problems", "Problems the last round found "
                                     "(the agent's log names each)", labels=["node"])
        problems.add_metric([self.node], float(len(status.all_problems())))
        return [ready, probe, seconds, info, problems]


def status_json(status: Status) -> dict[str, object]:
    plan = status.plan
    return {"ready": status.ready, "mode": status.mode, "containerd": status.version,
            "pull_path": plan.pull_path if plan else None,
            "hosts_dirs": list(plan.dirs) if plan else [], "written": status.written,
            "probes": status.probes, "problems": status.all_problems()}


async def run_rounds(agent: Agent) -> None:
    """Reconcile forever, every ``interval`` seconds as the settings say at each round."""
    while True:
        status = await to_thread.run_sync(agent.reconcile)
        await asyncio.sleep(status.interval)


def create_app(agent: Agent, node: str) -> Starlette:
    metrics = CollectorRegistry(auto_describe=False)
    metrics.register(StatusCollector(lambda: agent.status, node))

    async def readyz(request: Request) -> Response:
        status = agent.status
        return JSONResponse(status_json(status), status_code=200 if status.ready else 503)

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def metrics_endpoint(request: Request) -> Response:
        return Response(generate_latest(metrics), media_type=CONTENT_TYPE_LATEST)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        rounds = asyncio.create_task(run_rounds(agent))
        yield
        rounds.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await rounds

    return Starlette(routes=[Route("/readyz", readyz), Route("/healthz", healthz),
                             Route("/metrics", metrics_endpoint)], lifespan=lifespan)
