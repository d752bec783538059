"""The upstream client against scripted registries (httpx.MockTransport) for what no real one
does on cue: 429s and 503s, mirrors in order, schema 1, lying digests, pagination loops, limits.
No test waits: the client's ``sleep`` and ``clock`` are injected and recorded. Real registry:2
servers: test_upstream_registry2.py; the token flow and redirects: test_upstream_auth.py."""

from __future__ import annotations

import asyncio
import email.utils
import hashlib
import time

import httpx
import pytest

from registry.digest import Digest
from registry.mediatypes import DOCKER_MANIFEST_V1_SIGNED, OCI_INDEX, OCI_MANIFEST
from registry.upstream.client import (
    MANIFEST_ACCEPT,
    ManifestRef,
    Upstream,
)
from registry.upstream.errors import (
    UpstreamError,
    UpstreamNotFound,
    UpstreamUnavailable,
)
from registry.upstream.session import BACKOFF_BASE, BACKOFF_CAP, RETRY_AFTER_CAP, USER_AGENT
from tests.registry.upstreamkit import (
    MANIFEST,
    MANIFEST_DIGEST,
    MIRROR,
    NAME,
    REG,
    Clock,
    Fake,
    Sleeps,
    manifest_response,
    upstream,
)

# -- retries and mirrors -----------------------------------------------------------------------


async def test_429_honours_retry_after_then_succeeds() -> None:
    fake, sleeps = Fake(), Sleeps()
    fake.on(f"{REG}/v2/{NAME}/manifests/latest",
            httpx.Response(429, headers={"Retry-After": "2"}),
            manifest_response(digest=MANIFEST_DIGEST))
    async with upstream(fake, sleep=sleeps) as client:
        ref = await client.head_manifest(NAME, "latest")
    assert sleeps.calls == [2.0]
    assert ref == ManifestRef(MANIFEST_DIGEST, OCI_MANIFEST, len(MANIFEST))


async def test_retry_after_as_an_http_date_and_capped() -> None:
    fake, sleeps = Fake(), Sleeps()
    soon = email.utils.formatdate(time.time() + 30, usegmt=True)
    fake.on(f"{REG}/v2/{NAME}/tags/list",
            httpx.Response(503, headers={"Retry-After": soon}),
            httpx.Response(429, headers={"Retry-After": "86400"}),
            httpx.Response(200, json={"name": NAME, "tags": ["a"]}))
    async with upstream(fake, sleep=sleeps) as client:
        assert await client.list_tags(NAME) == ["a"]
    assert 25 < sleeps.calls[0] <= 30
    assert sleeps.calls[1] == RETRY_AFTER_CAP


async def test_other_failures_back_off_with_capped_full_jitter() -> None:
    fake, sleeps = Fake(), Sleeps()
    fake.on(f"{REG}/v2/{NAME}/tags/list", httpx.Response(502))
    async with upstream(fake, sleep=sleeps, retries=8) as client:
        with pytest.raises(UpstreamUnavailable):
            await client.list_tags(NAME)
    assert len(sleeps.calls) == 8
    for number, seconds in enumerate(sleeps.calls):
        assert 0 <= seconds <= min(BACKOFF_CAP, BACKOFF_BASE * 2 ** number)


async def test_503_past_retries_moves_to_the_next_url() -> None:
    fake, sleeps = Fake(), Sleeps()
    fake.on(f"{MIRROR}/v2/{NAME}/manifests/latest", httpx.Response(503))
    fake.on(f"{REG}/v2/{NAME}/manifests/latest", manifest_response())
    async with upstream(fake, MIRROR, REG, sleep=sleeps, retries=2) as client:
        ref, body = await client.get_manifest(NAME, "latest")
    assert body == MANIFEST
    assert ref.digest == MANIFEST_DIGEST
    assert len(fake.to(MIRROR)) == 3
    assert len(fake.to(REG)) == 1
    assert len(sleeps.calls) == 2
    # The mirror comes first for every request: a failure does not reorder config.urls.
    assert fake.requests[0].url.host == "mirror.test"


async def test_every_url_failing_is_unavailable_naming_them_all() -> None:
    fake = Fake()

    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("Connection refused", request=request)

    fake.on(f"{MIRROR}/v2/{NAME}/manifests/latest", refuse)
    fake.on(f"{REG}/v2/{NAME}/manifests/latest", httpx.Response(503))
    async with upstream(fake, MIRROR, REG, retries=1) as client:
        with pytest.raises(UpstreamUnavailable) as unavailable:
            await client.head_manifest(NAME, "latest")
    message = str(unavailable.value)
    assert message.startswith(f"reg.test ({MIRROR}, {REG}): unavailable")
    assert "ConnectError: Connection refused" in message
    assert "503" in message
    assert "2 attempts" in message


async def test_a_404_is_final_and_the_next_url_is_not_asked() -> None:
    fake = Fake()
    fake.on(f"{REG}/v2/{NAME}/manifests/latest", manifest_response())
    async with upstream(fake, MIRROR, REG) as client:
        with pytest.raises(UpstreamNotFound, match=r"reg.test \(https://mirror.test\)"):
            await client.head_manifest(NAME, "latest")
    assert fake.to(REG) == []



# -- manifests ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("media_type", "body"), [
    (DOCKER_MANIFEST_V1_SIGNED, b'{"schemaVersion": 1, "signatures": []}'),
    ("application/vnd.docker.distribution.manifest.v1+json", b'{"schemaVersion": 1}'),
    ("application/json", b'{"schemaVersion": 1, "name": "team/app", "fsLayers": []}'),
])
async def test_schema1_is_refused_clearly(media_type: str, body: bytes) -> None:
    fake = Fake()
    fake.on(f"{REG}/v2/{NAME}/manifests/old", manifest_response(body, media_type))
    async with upstream(fake) as client:
        with pytest.raises(UpstreamError, match="schema 1 manifests are not supported"):
            await client.get_manifest(NAME, "old")
        with pytest.raises(UpstreamError, match="schema 1 manifests are not supported"):
            await client.head_manifest(NAME, "old")  # HEAD without a digest falls back to GET


async def test_digest_mismatch_by_digest_and_by_tag() -> None:
    fake = Fake()
    other = Digest.from_bytes(b"something else")
    fake.on(f"{REG}/v2/{NAME}/manifests/{other}", manifest_response())
    fake.on(f"{REG}/v2/{NAME}/manifests/lying",
            manifest_response(digest=other))
    async with upstream(fake) as client:
        with pytest.raises(UpstreamError, match="digest mismatch") as by_digest:
            await client.get_manifest(NAME, other)
        with pytest.raises(UpstreamError, match="digest mismatch"):
            await client.get_manifest(NAME, "lying")
    assert type(by_digest.value) is UpstreamError
    assert str(MANIFEST_DIGEST) in str(by_digest.value)


async def test_manifest_requests_accept_every_supported_type_and_get_bytes_verbatim() -> None:
    fake = Fake()
    body = b'{\n  "schemaVersion": 2,  "manifests": []\n}\n'  # odd spacing: must survive
    fake.on(f"{REG}/v2/{NAME}/manifests/idx", manifest_response(body, "application/json"))
    async with upstream(fake) as client:
        ref, data = await client.get_manifest(NAME, "idx")
    assert data == body
    assert ref == ManifestRef(Digest.from_bytes(body), OCI_INDEX, len(body))
    request = fake.requests[0]
    assert request.headers["accept"] == MANIFEST_ACCEPT
    assert request.headers["user-agent"] == USER_AGENT
    assert USER_AGENT.startswith("regfront-sync/")


async def test_an_oversized_manifest_is_refused() -> None:
    fake = Fake()
    fake.on(f"{REG}/v2/{NAME}/manifests/big",
            manifest_response(b"{" + b" " * (4 * 1024 * 1024) + b"}"))
    async with upstream(fake) as client:
        with pytest.raises(UpstreamError, match="byte limit"):
            await client.get_manifest(NAME, "big")



# -- pagination --------------------------------------------------------------------------------


def pages(fake: Fake, path: str, key: str, items: list[str], absolute: bool) -> None:
    """Serve ``items`` ``n`` at a time after ``last``, linking each page to the next."""
    def answer(request: httpx.Request) -> httpx.Response:
        n, last = int(request.url.params["n"]), request.url.params.get("last")
        rest = [i for i in items if last is None or i > last]
        page, headers = rest[:n], {}
        if len(rest) > n:
            link = f"{path}?n={n}&last={page[-1]}"
            headers["Link"] = f'<{REG + link if absolute else link}>; rel="next"'
        return httpx.Response(200, json={key: page}, headers=headers)

    fake.on(f"{REG}{path}", answer)


@pytest.mark.parametrize("absolute", [False, True])
async def test_list_tags_follows_relative_and_absolute_links(absolute: bool) -> None:
    fake = Fake()
    tags = [f"v{i:02}" for i in range(7)]
    pages(fake, f"/v2/{NAME}/tags/list", "tags", tags, absolute)
    async with upstream(fake, page_size=3) as client:
        assert await client.list_tags(NAME) == tags
    assert [r.url.params.get("last") for r in fake.requests] == [None, "v02", "v05"]


async def test_catalog_pages_and_its_absence() -> None:
    fake = Fake()
    pages(fake, "/v2/_catalog", "repositories", ["a/b", "c/d", "e/f"], absolute=False)
    async with upstream(fake, page_size=2) as client:
        assert await client.catalog() == ["a/b", "c/d", "e/f"]
    for answer in (httpx.Response(404), httpx.Response(405), httpx.Response(
            401, headers={"WWW-Authenticate": 'Basic realm="x"'})):
        absent = Fake()
        absent.on(f"{REG}/v2/_catalog", answer)
        async with upstream(absent) as client:
            assert await client.catalog() is None


async def test_a_looping_link_is_an_error() -> None:
    fake = Fake()
    fake.on(f"{REG}/v2/{NAME}/tags/list", httpx.Response(
        200, json={"tags": ["a"]}, headers={"Link": f'</v2/{NAME}/tags/list?n=1000>; rel="next"'}))
    async with upstream(fake) as client:
        with pytest.raises(UpstreamError, match="pagination loops"):
            await client.list_tags(NAME)



# -- limits ------------------------------------------------------------------------------------


async def test_concurrency_bounds_open_blob_streams() -> None:
    fake = Fake()
    digests = [Digest.from_bytes(bytes([i])) for i in range(6)]
    for digest in digests:
        fake.on(f"{REG}/v2/{NAME}/blobs/{digest}", httpx.Response(200, content=b"z"))
    active, peak = 0, 0

    async def pull(client: Upstream, digest: Digest) -> None:
        nonlocal active, peak
        async with client.blob(NAME, digest) as stream:
            active += 1
            peak = max(peak, active)
            await asyncio.sleep(0.01)
            assert [chunk async for chunk in stream] == [b"z"]
            active -= 1

    async with upstream(fake, concurrency=2) as client:
        await asyncio.gather(*(pull(client, d) for d in digests))
    assert peak == 2
    assert len(fake.requests) == 6


async def test_rate_limit_spaces_requests() -> None:
    fake, clock = Fake(), Clock()
    sleeps = Sleeps(clock)
    fake.on(f"{REG}/v2/{NAME}/manifests/latest",
            manifest_response(digest=MANIFEST_DIGEST))
    async with upstream(fake, sleep=sleeps, clock=clock, rate_limit=4) as client:
        for _ in range(4):
            await client.head_manifest(NAME, "latest")
    assert sleeps.calls == [0.25, 0.25, 0.25]


async def test_blob_bytes_are_passed_through_raw() -> None:
    """A Content-Encoding from a bucket must not be undone: the digest is over stored bytes."""
    data = b"\x1f\x8b pretend gzip"
    digest = Digest.from_bytes(data)
    fake = Fake()
    fake.on(f"{REG}/v2/{NAME}/blobs/{digest}", lambda _: httpx.Response(
        200, stream=httpx.ByteStream(data),
        headers={"Content-Encoding": "gzip", "Content-Length": str(len(data))}))
    async with upstream(fake) as client, client.blob(NAME, digest) as stream:
        got = b"".join([chunk async for chunk in stream])
    assert hashlib.sha256(got).hexdigest() == digest.hex
    assert fake.requests[0].headers["accept-encoding"] == "identity"



async def test_referrers_from_the_api() -> None:
    fake = Fake()
    descriptor = {"mediaType": OCI_MANIFEST, "digest": str(MANIFEST_DIGEST), "size": 1}
    fake.on(f"{REG}/v2/{NAME}/referrers/{MANIFEST_DIGEST}", httpx.Response(
        200, json={"schemaVersion": 2, "mediaType": OCI_INDEX,
                   "manifests": [descriptor, {"no": "digest"}]}))
    async with upstream(fake) as client:
        assert await client.referrers(NAME, MANIFEST_DIGEST) == [descriptor]
    assert len(fake.requests) == 1
