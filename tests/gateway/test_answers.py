"""Warm answers (gateway/answers.py): a repeated manifest request is answered from its finished
response, and everything that depends on the request still happens for each one."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx

from gateway.answers import ENTRY_OVERHEAD, Answer, Answers, manifest_answer
from gateway.app import Gateway, create_app
from registry import writer
from registry.config import Config, GatewayConfig
from registry.digest import Digest
from tests.gateway.authkit import Files, auth_section, bearer, fetch_token, make_config, make_files
from tests.gateway.conftest import DEMO, Seeded

SINGLE = "/v2/library/demo/manifests/single?ns=docker.io"


def _app(seeded: Seeded, config: Config | None = None) -> Gateway:
    return create_app(config or Config(), [seeded.store])


def _client(app: Gateway) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gateway")


async def test_a_repeated_request_is_answered_whole_from_the_warm_answer(seeded: Seeded) -> None:
    app = _app(seeded)
    async with _client(app) as client:
        cold = await client.get(SINGLE)  # fills the caches
        warm = await client.get(SINGLE)  # from the caches: leaves its answer
        seeded.store.reset()
        hits = [await client.get(SINGLE) for _ in range(3)]
    assert seeded.store.reads == 0
    assert app.metrics.cache[("answers", "hit")] == 3
    for response in (warm, *hits):
        assert response.status_code == 200
        assert response.content == cold.content == seeded.blob(seeded.single)
        assert list(response.headers.items()) == list(cold.headers.items())
    assert cold.headers["oci-namespace"] == "docker.io"  # ns is echoed from the answer too


async def test_head_and_get_and_each_ns_are_answers_of_their_own(seeded: Seeded) -> None:
    app = _app(seeded)
    async with _client(app) as client:
        for _ in range(3):
            head = await client.head(SINGLE)
            get = await client.get(SINGLE)
            plain = await client.get("/v2/docker.io/library/demo/manifests/single")
    assert head.content == b""
    assert head.headers["content-length"] == get.headers["content-length"]
    assert get.headers["oci-namespace"] == "docker.io"
    assert "oci-namespace" not in plain.headers
    assert plain.content == get.content
    # The HEAD filled the caches; each request left its own answer when next asked from them:
    # the GETs from their second round on, the HEAD from its third.
    assert app.metrics.cache[("answers", "hit")] == 5


async def test_if_none_match_is_decided_per_request(seeded: Seeded) -> None:
    app = _app(seeded)
    async with _client(app) as client:
        etag = (await client.get(SINGLE)).headers["etag"]
        await client.get(SINGLE)
        matching = await client.get(SINGLE, headers={"If-None-Match": etag})
        other = await client.get(SINGLE, headers={"If-None-Match": '"sha256:' + "0" * 64 + '"'})
        plain = await client.get(SINGLE)
    assert app.metrics.cache[("answers", "hit")] == 3
    assert matching.status_code == 304
    assert matching.content == b""
    assert "content-length" not in matching.headers or matching.headers["content-length"] == "0"
    assert matching.headers["etag"] == etag
    assert other.status_code == plain.status_code == 200
    assert other.content == plain.content == seeded.blob(seeded.single)


async def test_an_answer_by_tag_ends_with_the_tags_ttl(seeded: Seeded) -> None:
    config = Config(gateway=GatewayConfig(tag_ttl=0.05))
    app = _app(seeded, config)
    async with _client(app) as client:
        before = [await client.get(SINGLE) for _ in range(3)]
        await writer.put_tag(seeded.store, DEMO, "single", Digest.parse(seeded.multi["digest"]))
        kept = await client.get(SINGLE)  # within the TTL: as the tag cache would answer
        await asyncio.sleep(0.1)
        seeded.store.reset()
        moved = await client.get(SINGLE)
    assert {r.headers["docker-content-digest"] for r in [*before, kept]} == {
        seeded.single["digest"]}
    assert moved.headers["docker-content-digest"] == seeded.multi["digest"]
    assert seeded.store.reads == 2  # the tag's link again, then the other manifest


async def test_an_answer_by_digest_holds(seeded: Seeded) -> None:
    app = _app(seeded, Config(gateway=GatewayConfig(tag_ttl=0.01)))
    url = f"/v2/library/demo/manifests/{seeded.single['digest']}?ns=docker.io"
    async with _client(app) as client:
        await client.get(url)
        await client.get(url)
        await asyncio.sleep(0.05)
        seeded.store.reset()
        response = await client.get(url)
    assert response.status_code == 200
    assert seeded.store.reads == 0
    assert app.metrics.cache[("answers", "hit")] == 1


async def test_errors_are_never_kept(seeded: Seeded) -> None:
    app = _app(seeded)
    async with _client(app) as client:
        for _ in range(3):
            assert (await client.get("/v2/library/demo/manifests/later?ns=docker.io")
                    ).status_code == 404
        await writer.put_tag(seeded.store, DEMO, "later", Digest.parse(seeded.single["digest"]))
        found = await client.get("/v2/library/demo/manifests/later?ns=docker.io")
    assert found.status_code == 200
    assert app.metrics.cache[("answers", "hit")] == 0
    assert not app.answers


async def test_every_warm_request_is_authorised(seeded: Seeded, tmp_path: Path) -> None:
    files: Files = make_files(tmp_path / "auth")
    app = _app(seeded, make_config(auth_section(files)))
    async with _client(app) as client:
        token = await fetch_token(client, "ci", DEMO)
        for _ in range(3):
            assert (await client.get(SINGLE, headers=bearer(token))).status_code == 200
        anonymous = await client.get(SINGLE)
        forged = await client.get(SINGLE, headers=bearer(token[:-4] + "AAAA"))
        again = await client.get(SINGLE, headers=bearer(token))
    assert app.metrics.cache[("answers", "hit")] == 2  # the third and the last
    assert anonymous.status_code == forged.status_code == 401
    assert again.status_code == 200
    assert dict(app.metrics.requests)[("manifests", "GET", "401")] == 2


async def test_every_warm_answer_is_recorded_as_a_pull(seeded: Seeded) -> None:
    app = _app(seeded, Config(gateway=GatewayConfig(usage_interval=60)))
    async with _client(app) as client:
        etag = (await client.get(SINGLE)).headers["etag"]
        for _ in range(3):
            assert (await client.get(SINGLE)).status_code == 200
        assert (await client.get(SINGLE, headers={"If-None-Match": etag})).status_code == 304
    assert app.metrics.cache[("answers", "hit")] == 3
    assert app.usage is not None
    assert {(k.name, k.tag): p.count for k, p in app.usage._pulls.items()} == {
        (DEMO, "single"): 5}


async def test_traced_requests_take_the_full_path(seeded: Seeded) -> None:
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from registry.config import TelemetryConfig

    exporter = InMemorySpanExporter()
    config = Config(telemetry=TelemetryConfig(trace_sample_ratio=1.0))
    app = create_app(config, [seeded.store], span_exporter=exporter)
    async with _client(app) as client:
        for _ in range(3):
            assert (await client.get(SINGLE)).status_code == 200
    assert app.metrics.cache[("answers", "hit")] == 0
    assert len([s for s in exporter.get_finished_spans() if s.parent is None]) == 3


def test_answers_stay_within_their_bounds() -> None:
    digest = Digest.parse("sha256:" + "a" * 64)

    def one(size: int) -> Answer:
        return manifest_answer("n", "t", digest, 1.0, b'"e"', [], b"x" * size, "GET")

    small = 100 + ENTRY_OVERHEAD
    answers = Answers(max_entries=3, max_bytes=5 * small)
    for i in range(5):
        answers.put(("GET", f"/{i}", b""), one(100))
    assert list(answers.entries) == [("GET", "/2", b""), ("GET", "/3", b""), ("GET", "/4", b"")]
    answers.put(("GET", "/big", b""), one(3 * small))  # the oldest make room
    assert list(answers.entries) == [("GET", "/4", b""), ("GET", "/big", b"")]
    answers.put(("GET", "/huge", b""), one(5 * small))
    assert ("GET", "/huge", b"") not in answers.entries  # larger than the whole budget
