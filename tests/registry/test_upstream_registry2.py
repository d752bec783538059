"""The upstream client against real registry:2 servers: anonymous, htpasswd, token auth, TLS, and
the referrers tag scheme - what a registry really answers."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import httpx
import pytest

from registry.digest import Digest
from registry.mediatypes import OCI_INDEX, OCI_MANIFEST
from registry.mirrorconfig import Credentials, UpstreamConfig
from registry.upstream.client import (
    CHUNK_SIZE,
    ManifestRef,
    Upstream,
)
from registry.upstream.errors import (
    UpstreamAuthError,
    UpstreamError,
    UpstreamNotFound,
    UpstreamUnavailable,
)
from tests.e2e.harness import (
    free_port,
)
from tests.images import layout_blob, layout_digest
from tests.registry.conftest import (
    EXTRA_TAGS,
    PASSWORD,
    SERVICE,
    USER,
    TLSUpstream,
    TokenUpstream,
    Upstream2,
)
from tests.registry.upstreamkit import (
    NAME,
    Clock,
    Recording,
    Sleeps,
)

# -- registry:2, anonymous ---------------------------------------------------------------------


def real(server: Upstream2) -> Upstream:
    return Upstream("registry2.test", UpstreamConfig(urls=[server.url]), sleep=Sleeps())


@pytest.mark.parametrize(("ref", "media_type"), [("single", OCI_MANIFEST), ("multi", OCI_INDEX)])
async def test_head_and_get_manifest_by_tag_and_digest(registry2: Upstream2, ref: str,
                                                       media_type: str) -> None:
    expected = Digest.parse(layout_digest(registry2.layout.root, ref))
    data = layout_blob(registry2.layout.root, str(expected))
    async with real(registry2) as client:
        by_tag = await client.head_manifest(NAME, ref)
        assert by_tag == ManifestRef(expected, media_type, len(data))
        assert await client.head_manifest(NAME, str(expected)) == by_tag
        assert await client.head_manifest(NAME, expected) == by_tag
        assert await client.get_manifest(NAME, ref) == (by_tag, data)
        assert await client.get_manifest(NAME, str(expected)) == (by_tag, data)


async def test_list_tags_and_catalog_page_through_registry2(registry2: Upstream2) -> None:
    recording = Recording()
    async with Upstream("registry2.test", UpstreamConfig(urls=[registry2.url]),
                        transport=recording, page_size=2) as client:
        # registry:2 2.8 ignores n= on tags/list (and lists tags unsorted): one page, all tags.
        assert sorted(await client.list_tags(NAME)) == sorted(["single", "multi", *EXTRA_TAGS])
        catalog = await client.catalog()
    assert catalog == ["other/one", "team/app", "team/big", "team/multi"]
    pages = [r.url for r in recording.requests if r.url.path == "/v2/_catalog"]
    assert len(pages) == 2, pages  # n=2: a Link to the second page, whose last= is team/app
    assert pages[1].params["last"] == "team/app"


async def test_blob_streams_in_bounded_chunks_hashing_to_its_digest(registry2: Upstream2) -> None:
    manifest = json.loads(layout_blob(registry2.layout.root,
                                      layout_digest(registry2.layout.root, "big")))
    (layer,) = manifest["layers"]
    assert layer["size"] > 3 * CHUNK_SIZE
    digest = Digest.parse(layer["digest"])
    async with real(registry2) as client, client.blob("team/big", digest) as stream:
        assert stream.size == layer["size"]
        verifier, sizes = digest.verifier(), []
        async for chunk in stream:
            verifier.update(chunk)
            sizes.append(len(chunk))
    verifier.verify()  # the caller's job; here it shows the bytes arrived intact
    assert verifier.size == layer["size"]
    assert max(sizes) == CHUNK_SIZE
    assert len(sizes) == 4


async def test_404s_are_not_found_naming_registry_and_url(registry2: Upstream2) -> None:
    missing = Digest.from_bytes(b"not there")
    async with real(registry2) as client:
        with pytest.raises(UpstreamNotFound) as tag:
            await client.head_manifest(NAME, "nope")
        with pytest.raises(UpstreamNotFound):
            await client.get_manifest(NAME, missing)
        with pytest.raises(UpstreamNotFound):
            async with client.blob(NAME, missing):
                pass
        with pytest.raises(UpstreamNotFound) as repo:
            await client.list_tags("no/such/repo")
    assert "registry2.test" in str(tag.value)
    assert registry2.url in str(tag.value)
    assert "NAME_UNKNOWN" in str(repo.value)


async def test_a_dead_mirror_falls_through_to_the_next_url(registry2: Upstream2) -> None:
    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens: connection refused
    sleeps = Sleeps()
    async with Upstream("registry2.test", UpstreamConfig(urls=[dead, registry2.url], retries=2),
                        sleep=sleeps) as client:
        ref = await client.head_manifest(NAME, "single")
    assert ref.media_type == OCI_MANIFEST
    assert len(sleeps.calls) == 2  # two retries on the dead URL, none on the live one



# -- registry:2 with htpasswd ------------------------------------------------------------------


def htpasswd_client(server: Upstream2, credentials: Credentials | None) -> Upstream:
    return Upstream("htpasswd.test", UpstreamConfig(urls=[server.url], credentials=credentials),
                    sleep=Sleeps())


async def test_basic_credentials_from_env(registry2_htpasswd: Upstream2,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RF_TEST_PASSWORD", PASSWORD)
    credentials = Credentials(username=USER, password_env="RF_TEST_PASSWORD")
    async with htpasswd_client(registry2_htpasswd, credentials) as client:
        assert "single" in await client.list_tags(NAME)
        assert await client.catalog() == ["other/one", "team/app", "team/big", "team/multi"]
        ref, _ = await client.get_manifest(NAME, "multi")
    assert ref.media_type == OCI_INDEX


async def test_basic_credentials_from_a_password_file(registry2_htpasswd: Upstream2,
                                                      monkeypatch: pytest.MonkeyPatch,
                                                      tmp_path: Path) -> None:
    monkeypatch.setenv("RF_TEST_USER", USER)
    (tmp_path / "password").write_text(PASSWORD + "\n")  # as `echo` writes it
    credentials = Credentials(username_env="RF_TEST_USER",
                              password_file=str(tmp_path / "password"))
    async with htpasswd_client(registry2_htpasswd, credentials) as client:
        ref = await client.head_manifest(NAME, "single")
    assert str(ref.digest) == layout_digest(registry2_htpasswd.layout.root, "single")


@pytest.mark.parametrize("entry", ["auth", "fields"])
async def test_basic_credentials_from_a_docker_config(registry2_htpasswd: Upstream2,
                                                      tmp_path: Path, entry: str) -> None:
    host = registry2_htpasswd.server.host
    value = ({"auth": base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()}
             if entry == "auth" else {"username": USER, "password": PASSWORD})
    key = host if entry == "auth" else f"http://{host}/v2/"
    (tmp_path / "config.json").write_text(json.dumps({"auths": {"other.test": {}, key: value}}))
    credentials = Credentials(docker_config=str(tmp_path / "config.json"))
    async with htpasswd_client(registry2_htpasswd, credentials) as client:
        assert "multi" in await client.list_tags(NAME)


async def test_a_wrong_password_is_refused_without_printing_it(
        registry2_htpasswd: Upstream2, monkeypatch: pytest.MonkeyPatch) -> None:
    secret = "not-the-password-8d1f"
    monkeypatch.setenv("RF_TEST_PASSWORD", secret)
    credentials = Credentials(username=USER, password_env="RF_TEST_PASSWORD")
    async with htpasswd_client(registry2_htpasswd, credentials) as client:
        with pytest.raises(UpstreamAuthError) as refused:
            await client.head_manifest(NAME, "single")
        with pytest.raises(UpstreamAuthError):
            await client.list_tags(NAME)
        assert await client.catalog() is None  # a refused catalog is "no catalog"
    message = str(refused.value)
    assert "htpasswd.test" in message
    assert registry2_htpasswd.url in message
    assert f"credentials for user {USER!r} were refused" in message
    assert secret not in message
    assert base64.b64encode(secret.encode()).decode() not in message


async def test_missing_credentials_are_named(registry2_htpasswd: Upstream2,
                                             monkeypatch: pytest.MonkeyPatch,
                                             tmp_path: Path) -> None:
    monkeypatch.delenv("RF_TEST_UNSET", raising=False)
    unset = Credentials(username=USER, password_env="RF_TEST_UNSET")
    async with htpasswd_client(registry2_htpasswd, unset) as client:
        with pytest.raises(UpstreamAuthError, match="variable RF_TEST_UNSET is not set"):
            await client.head_manifest(NAME, "single")
        with pytest.raises(UpstreamAuthError, match="RF_TEST_UNSET"):
            await client.catalog()  # broken config is not "no catalog"
    no_file = Credentials(username=USER, password_file=str(tmp_path / "absent"))
    async with htpasswd_client(registry2_htpasswd, no_file) as client:
        absent = f"password_file: {tmp_path / 'absent'}: cannot read"
        with pytest.raises(UpstreamAuthError, match=absent):
            await client.head_manifest(NAME, "single")
    async with htpasswd_client(registry2_htpasswd, None) as client:
        with pytest.raises(UpstreamAuthError, match="needs credentials and none are configured"):
            await client.head_manifest(NAME, "single")


# -- registry:2 with token auth ----------------------------------------------------------------


async def test_token_flow_against_registry2_reuses_tokens_until_expiry(
        registry2_token: TokenUpstream, monkeypatch: pytest.MonkeyPatch) -> None:
    issuer = registry2_token.issuer
    issuer.reset()
    monkeypatch.setenv("RF_TEST_PASSWORD", PASSWORD)
    credentials = Credentials(username=USER, password_env="RF_TEST_PASSWORD")
    clock = Clock()
    async with Upstream("token.test", UpstreamConfig(urls=[registry2_token.url],
                                                     credentials=credentials),
                        sleep=Sleeps(), clock=clock) as client:
        ref = await client.head_manifest(NAME, "single")
        assert (await client.get_manifest(NAME, ref.digest))[0] == ref
        assert "multi" in await client.list_tags(NAME)
        assert len(issuer.requests) == 1  # one token for repository:team/app:pull, reused
        await client.head_manifest("other/one", "1")  # a new scope: no 401 round trip needed
        assert len(issuer.requests) == 2
        clock.now += issuer.expires_in - 5  # inside the renewal margin
        await client.head_manifest(NAME, "single")
    requests = issuer.reset()
    assert len(requests) == 3
    assert {r.user for r in requests} == {USER}
    assert {r.service for r in requests} == {SERVICE}
    assert [r.scopes for r in requests] == [[f"repository:{NAME}:pull"],
                                            ["repository:other/one:pull"],
                                            [f"repository:{NAME}:pull"]]


async def test_anonymous_token_flow_against_registry2(registry2_token: TokenUpstream) -> None:
    issuer = registry2_token.issuer
    issuer.reset()
    async with Upstream("token.test", UpstreamConfig(urls=[registry2_token.url]),
                        sleep=Sleeps()) as client:
        index = Digest.parse(layout_digest(registry2_token.layout.root, "multi"))
        ref, _ = await client.get_manifest("team/multi", index)
        # registry:2 grants the catalog to nobody our issuer serves: no access, no catalog.
        assert await client.catalog() is None
    assert ref.digest == index
    requests = issuer.reset()
    assert requests[0].user is None
    assert requests[0].scopes == ["repository:team/multi:pull"]


async def test_a_wrong_password_for_the_token_service(registry2_token: TokenUpstream,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RF_TEST_PASSWORD", "wrong-c0ffee")
    credentials = Credentials(username=USER, password_env="RF_TEST_PASSWORD")
    async with Upstream("token.test", UpstreamConfig(urls=[registry2_token.url],
                                                     credentials=credentials),
                        sleep=Sleeps()) as client:
        with pytest.raises(UpstreamAuthError) as refused:
            await client.head_manifest(NAME, "single")
    message = str(refused.value)
    assert f"token.test ({registry2_token.url})" in message
    assert "refused by the token service" in message
    assert "wrong-c0ffee" not in message



# -- TLS ---------------------------------------------------------------------------------------


async def test_tls_with_a_private_ca_file(registry2_tls: TLSUpstream, tmp_path: Path) -> None:
    url = f"https://{registry2_tls.server.host}"
    expected = layout_digest(registry2_tls.layout.root, "single")
    for options in ({"ca_file": str(registry2_tls.ca_file)}, {"tls_verify": False}):
        async with Upstream("tls.test", UpstreamConfig(urls=[url], **options),
                            sleep=Sleeps()) as client:
            assert str((await client.head_manifest(NAME, "single")).digest) == expected
    async with Upstream("tls.test", UpstreamConfig(urls=[url], retries=0),
                        sleep=Sleeps()) as client:
        with pytest.raises(UpstreamUnavailable, match="CERTIFICATE_VERIFY_FAILED"):
            await client.head_manifest(NAME, "single")
    with pytest.raises(UpstreamError, match=f"cannot load ca_file {tmp_path / 'absent.pem'}"):
        Upstream("tls.test", UpstreamConfig(urls=[url], ca_file=str(tmp_path / "absent.pem")))



# -- referrers ---------------------------------------------------------------------------------


async def test_referrers_fall_back_to_the_tag_scheme_on_registry2(registry2: Upstream2) -> None:
    root = registry2.layout.root
    subject = Digest.parse(layout_digest(root, "multi"))
    signature = {"mediaType": OCI_MANIFEST, "digest": layout_digest(root, "single"),
                 "size": len(layout_blob(root, layout_digest(root, "single"))),
                 "artifactType": "application/vnd.example.signature"}
    async with real(registry2) as client:
        assert await client.referrers("other/one", subject) == []  # 2.8: no referrers API
        index = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX,
                            "manifests": [signature]}).encode()
        async with httpx.AsyncClient() as plain:  # a push, as cosign and oras do without the API
            put = await plain.put(f"{registry2.url}/v2/other/one/manifests/sha256-{subject.hex}",
                                  content=index, headers={"Content-Type": OCI_INDEX})
        assert put.status_code == 201, put.text
        assert await client.referrers("other/one", subject) == [signature]
