"""The Lambda handler: Function URL and ALB events in, the gateway's answers out (via Mangum)."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gateway.lambda_handler import LambdaGateway, config_from_environment
from registry import layout
from registry.errors import ConfigError
from registry.imports import import_image
from registry.store import open_store
from tests.images import sample_layout

NAME = "docker.io/library/demo"


@pytest.fixture
async def file_store(tmp_path: Path) -> dict[str, Any]:
    """A file store holding ``demo:single``; returns the descriptor index.json lists for it."""
    layout = sample_layout(tmp_path / "oci")
    store = open_store(str(tmp_path / "store"))
    try:
        await import_image(store, f"oci:{layout.root}:single", NAME, "single")
    finally:
        await store.close()
    refs = {r["annotations"]["org.opencontainers.image.ref.name"]: r for r in layout.refs}
    single: dict[str, Any] = refs["single"]
    manifest = json.loads((layout.root / "blobs" / "sha256" /
                           single["digest"].split(":")[1]).read_bytes())
    return {"descriptor": single, "manifest": manifest, "store": tmp_path / "store"}


@pytest.fixture
def handler(file_store: dict[str, Any], tmp_path: Path,
            monkeypatch: pytest.MonkeyPatch) -> Iterator[LambdaGateway]:
    config = tmp_path / "regfront.yaml"
    config.write_text(f"storage:\n  - url: {file_store['store']}\n")
    monkeypatch.delenv("REGFRONT_CONFIG_YAML", raising=False)
    monkeypatch.delenv("REGFRONT_STORAGE", raising=False)
    monkeypatch.setenv("REGFRONT_CONFIG", str(config))
    gateway = LambdaGateway()
    yield gateway
    if gateway._loop is not None:  # the handler's own loop: closed, and no longer current
        gateway._loop.close()
    asyncio.set_event_loop(None)


def function_url_event(method: str, path: str, query: str = "",
                       headers: dict[str, str] | None = None) -> dict[str, Any]:
    """A Lambda Function URL request (API Gateway HTTP API payload 2.0)."""
    return {
        "version": "2.0", "routeKey": "$default", "rawPath": path, "rawQueryString": query,
        "headers": {"host": "abc.lambda-url.eu-west-1.on.aws", **(headers or {})},
        "requestContext": {
            "accountId": "anonymous", "apiId": "abc", "domainName":
            "abc.lambda-url.eu-west-1.on.aws", "domainPrefix": "abc", "requestId": "r1",
            "routeKey": "$default", "stage": "$default", "time": "01/Jan/2026:00:00:00 +0000",
            "timeEpoch": 1767225600000,
            "http": {"method": method, "path": path, "protocol": "HTTP/1.1",
                     "sourceIp": "10.0.0.1", "userAgent": "containerd/2.1"},
        },
        "isBase64Encoded": False,
    }


def alb_event(method: str, path: str, query: dict[str, str]) -> dict[str, Any]:
    """An Application Load Balancer request to a Lambda target (multi-value headers off)."""
    return {
        "requestContext": {"elb": {"targetGroupArn": "arn:aws:elasticloadbalancing:eu-west-1:"
                                   "123456789012:targetgroup/regfront/0123456789abcdef"}},
        "httpMethod": method, "path": path, "queryStringParameters": query,
        "headers": {"host": "regfront.internal", "user-agent": "containerd/2.1"},
        "body": "", "isBase64Encoded": False,
    }


def _headers(response: dict[str, Any]) -> dict[str, str]:
    return {k.lower(): v for k, v in response["headers"].items()}


def test_api_version_check(handler: LambdaGateway) -> None:
    response = handler(function_url_event("GET", "/v2/"), None)
    assert response["statusCode"] == 200
    assert _headers(response)["docker-distribution-api-version"] == "registry/2.0"


def test_manifest_head_by_tag(handler: LambdaGateway, file_store: dict[str, Any]) -> None:
    descriptor = file_store["descriptor"]
    response = handler(function_url_event(
        "HEAD", "/v2/library/demo/manifests/single", "ns=docker.io",
        {"accept": descriptor["mediaType"]}), None)
    assert response["statusCode"] == 200, response
    headers = _headers(response)
    assert headers["docker-content-digest"] == descriptor["digest"]
    assert headers["content-length"] == str(descriptor["size"])
    assert headers["content-type"] == descriptor["mediaType"]
    assert not response.get("body")


def test_an_unknown_tag_is_a_404_with_an_oci_error(handler: LambdaGateway) -> None:
    response = handler(function_url_event("GET", "/v2/library/demo/manifests/nope",
                                          "ns=docker.io"), None)
    assert response["statusCode"] == 404
    assert json.loads(response["body"])["errors"][0]["code"] == "MANIFEST_UNKNOWN"


def test_alb_event_and_a_binary_blob(handler: LambdaGateway,
                                     file_store: dict[str, Any]) -> None:
    layer = file_store["manifest"]["layers"][0]
    response = handler(alb_event("GET", f"/v2/library/demo/blobs/{layer['digest']}",
                                 {"ns": "docker.io"}), None)
    # The file store cannot pre-sign: the bytes come back, base64 as Lambda wants binary.
    assert response["statusCode"] == 200
    assert response["isBase64Encoded"] is True
    body = base64.b64decode(response["body"])
    assert len(body) == layer["size"]
    assert _headers(response)["docker-content-digest"] == layer["digest"]


def test_the_app_is_built_once(handler: LambdaGateway) -> None:
    handler(function_url_event("GET", "/v2/"), None)
    adapter = handler._adapter
    handler(function_url_event("GET", "/v2/"), None)
    assert handler._adapter is adapter


def test_config_from_yaml_text_and_storage_override(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REGFRONT_CONFIG_YAML", "storage:\n  - url: memory://\n"
                                               "gateway:\n  tag_ttl: 1m\n")
    monkeypatch.delenv("REGFRONT_STORAGE", raising=False)
    config = config_from_environment()
    assert [s.url for s in config.storage] == ["memory://"]
    assert config.gateway.tag_ttl == 60
    monkeypatch.setenv("REGFRONT_STORAGE", "s3://replica/m s3://primary/m")
    assert [s.url for s in config_from_environment().storage] == ["s3://replica/m",
                                                                  "s3://primary/m"]


def test_a_bad_config_fails_the_init_naming_the_variable(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REGFRONT_CONFIG_YAML", "gateway:\n  cache: 5\n")
    with pytest.raises(ConfigError) as raised:
        config_from_environment()
    assert str(raised.value) == "REGFRONT_CONFIG_YAML:2: gateway.cache: unknown key"


def test_a_miss_is_recorded_before_the_handler_returns(file_store: dict[str, Any],
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    # Lambda freezes the process after the response: the miss record, written off the request
    # path, must be in the store by the time the handler returns.
    monkeypatch.setenv("REGFRONT_CONFIG_YAML", f"""
storage: [{{url: "{file_store['store']}"}}]
upstreams:
  docker.io: {{urls: ["https://registry-1.docker.io"]}}
mirror:
  - {{name: demo, registry: docker.io, repositories: [library/demo], schedule: "0 * * * *"}}
""")
    gateway = LambdaGateway()
    try:
        response = gateway(function_url_event("GET", "/v2/library/demo/manifests/2.0",
                                              "ns=docker.io"), None)
        assert response["statusCode"] == 404
        queued = file_store["store"] / layout.miss(NAME, "2.0")
        assert queued.is_file()
    finally:
        if gateway._loop is not None:
            gateway._loop.close()
        asyncio.set_event_loop(None)
