from __future__ import annotations

import httpx

from registry import writer
from registry.digest import Digest
from tests.gateway.conftest import DEMO, Seeded


async def _add_tags(seeded: Seeded, tags: list[str]) -> None:
    digest = Digest.parse(seeded.single["digest"])
    for tag in tags:
        await writer.put_tag(seeded.store, DEMO, tag, digest)


async def test_tags_in_ascii_order(client: httpx.AsyncClient, seeded: Seeded) -> None:
    await _add_tags(seeded, ["B", "a", "1.0", "_x"])
    response = await client.get(f"/v2/{DEMO}/tags/list")
    assert response.status_code == 200
    assert response.json() == {"name": DEMO,
                               "tags": ["1.0", "B", "_x", "a", "multi", "sig", "single"]}


async def test_pagination_follows_link_and_keeps_ns(client: httpx.AsyncClient,
                                                    seeded: Seeded) -> None:
    await _add_tags(seeded, [f"t{i}" for i in range(5)])
    url: str | None = "/v2/library/demo/tags/list?n=3&ns=docker.io"
    pages = []
    while url:
        response = await client.get(url)
        assert response.status_code == 200
        pages.append(response.json()["tags"])
        link = response.headers.get("link")
        if link:
            assert link.endswith('>; rel="next"')
            assert "ns=docker.io" in link
            url = link[1:link.index(">")]
        else:
            url = None
    assert pages == [["multi", "sig", "single"], ["t0", "t1", "t2"], ["t3", "t4"]]


async def test_last_without_n(client: httpx.AsyncClient) -> None:
    response = await client.get(f"/v2/{DEMO}/tags/list?last=multi")
    assert response.json()["tags"] == ["sig", "single"]
    assert "link" not in response.headers


async def test_n_zero_is_an_empty_page(client: httpx.AsyncClient) -> None:
    response = await client.get(f"/v2/{DEMO}/tags/list?n=0")
    assert response.status_code == 200
    assert response.json()["tags"] == []


async def test_bad_n_is_400(client: httpx.AsyncClient) -> None:
    for n in ("-1", "x", "99999999"):
        response = await client.get(f"/v2/{DEMO}/tags/list?n={n}")
        assert response.status_code == 400
        assert response.json()["errors"][0]["code"] == "PAGINATION_NUMBER_INVALID"


async def test_unknown_repository_is_name_unknown(client: httpx.AsyncClient) -> None:
    response = await client.get("/v2/no/such/repo/tags/list")
    assert response.status_code == 404
    assert response.json()["errors"][0]["code"] == "NAME_UNKNOWN"
