"""Every answer that sends containerd to the upstream is counted by reason and logged at most
once per reason every 10 s; a bug is a 500 with its traceback logged once, never a 503."""

from __future__ import annotations

import logging

import httpx
import pytest
from starlette.types import Scope

from gateway.app import create_app
from gateway.fallbacks import LOG_EVERY, Fallbacks
from gateway.metrics import GatewayMetrics
from registry.config import parse_config
from registry.errors import ErrorCode, RegistryError
from registry.mirrorconfig import MirrorIndex
from registry.store.memory import MemoryStore

CONFIG = parse_config("""
upstreams:
  docker.io: {urls: ["https://registry-1.docker.io"]}
mirror:
  - {name: hub, registry: docker.io, repositories: [library/nginx]}
""")
SCOPE: Scope = {"method": "GET", "path": "/v2/library/nginx/manifests/1"}


class Clock:
    now = 100.0

    def __call__(self) -> float:
        return self.now


def _fallbacks(clock: Clock) -> tuple[Fallbacks, GatewayMetrics]:
    metrics = GatewayMetrics()
    return Fallbacks(metrics, MirrorIndex.of(CONFIG.upstreams, CONFIG.mirror),
                     clock=clock), metrics


def test_5xx_and_covered_404s_are_fallbacks_other_answers_are_not() -> None:
    fallbacks, metrics = _fallbacks(Clock())
    unknown = RegistryError(ErrorCode.MANIFEST_UNKNOWN)
    fallbacks.answered(SCOPE, unknown, "docker.io/library/nginx")  # mirrored: a fallback
    fallbacks.answered(SCOPE, unknown, "docker.io/library/redis")  # not mirrored: by design
    fallbacks.answered(SCOPE, unknown)  # a framework route (tags, referrers)
    fallbacks.answered(SCOPE, RegistryError(ErrorCode.DENIED), "docker.io/library/nginx")
    fallbacks.answered(SCOPE, RegistryError(ErrorCode.UNAVAILABLE,
                                            {"reason": "store_timeout"}))
    fallbacks.answered(SCOPE, RegistryError(ErrorCode.UNAVAILABLE, {"reason": "Free text!"}))
    assert dict(metrics.fallbacks) == {("manifest_unknown",): 1, ("store_timeout",): 1,
                                       ("unavailable",): 1}


def test_one_log_line_per_reason_every_ten_seconds_with_the_count_left_out(
        caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    fallbacks, metrics = _fallbacks(clock)
    timeout = RegistryError(ErrorCode.UNAVAILABLE, {"reason": "store_timeout"})
    with caplog.at_level(logging.WARNING, "regfront.gateway"):
        for _ in range(50):
            fallbacks.answered(SCOPE, timeout)
        fallbacks.answered(SCOPE, RegistryError(ErrorCode.UNKNOWN, {"reason": "internal_error"}))
        clock.now += LOG_EVERY
        fallbacks.answered(SCOPE, timeout)
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 3
    assert lines[0].startswith("fallback (store_timeout): GET /v2/library/nginx/manifests/1 "
                               "answered 503")
    assert lines[1].startswith("fallback (internal_error)")
    assert lines[2].endswith("; 49 more since the last such line")
    assert metrics.fallbacks[("store_timeout",)] == 51


class Buggy(MemoryStore):
    async def get(self, key: str) -> bytes:
        raise KeyError("a bug, not a bucket")

    async def children(self, prefix: str) -> list[str]:
        raise KeyError("a bug, not a bucket")


@pytest.mark.parametrize(("path", "operation"), [
    ("/v2/library/nginx/manifests/1?ns=docker.io", "read"),
    ("/v2/library/nginx/tags/list?ns=docker.io", "list")])
async def test_a_bug_is_a_500_logged_once_with_its_traceback(
        path: str, operation: str, caplog: pytest.LogCaptureFixture) -> None:
    """The hot path and the framework's routes alike; never a 503 "store failure"."""
    app = create_app(CONFIG, [Buggy()])
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://gw") as client:
        with caplog.at_level(logging.INFO):
            response = await client.get(path)
        metrics = (await client.get("/metrics")).text
    assert response.status_code == 500
    assert response.json()["errors"][0] == {"code": "UNKNOWN", "message": "unknown error",
                                            "detail": {"reason": "internal_error"}}
    tracebacks = [r for r in caplog.records if r.exc_info is not None]
    assert len(tracebacks) == 1
    assert tracebacks[0].exc_info is not None
    assert isinstance(tracebacks[0].exc_info[1], KeyError)
    assert 'regfront_fallbacks_total{reason="internal_error"} 1.0' in metrics
    assert (f'regfront_store_calls_total{{operation="{operation}",outcome="bug",'
            f'store="memory://"}} 1.0') in metrics
