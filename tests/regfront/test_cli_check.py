"""``regfront check``: every config mistake at once, then a verdict per store and upstream;
exit status 0 or 1; ``--json``."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from regfront.check import Verdict, run_checks
from regfront.cli import main
from registry import layout
from registry.config import parse_config
from registry.store import ObjectStore, open_store, presigner
from tests.conftest import CountingPresigner, CountingStore, MotoS3

HUB = "https://registry-1.docker.io"
DIGEST = "sha256:" + "ab" * 32
BAD = """\
storage:
  - url: s3://images/mirror?endpont=http://minio:9000
gateway:
  tag_tll: 10s
  workers: 0
upstreams:
  docker.io: {urls: ["https://registry-1.docker.io"]}
mirror:
  - name: python
    registry: docker.oi
    repositories: [library/python]
    tags: {includ: ['^3']}
"""


def test_every_config_mistake_at_once_with_its_line_and_a_guess(runner: CliRunner,
                                                                 tmp_path: Path) -> None:
    config = tmp_path / "regfront.yaml"
    config.write_text(BAD)
    result = runner.invoke(main, ["check", "--config", str(config)])
    assert result.exit_code == 1
    rows = [line.split(None, 3) for line in result.output.splitlines()[1:]]
    assert [(r[0], r[1], r[2]) for r in rows] == [
        ("config", f"{config}:{line}", "FAIL") for line in (2, 4, 5, 10, 12)]
    details = [r[3] for r in rows]
    assert "unknown option 'endpont' (did you mean endpoint?)" in details[0]
    assert details[1] == "gateway.tag_tll: unknown key (did you mean tag_ttl?)"
    assert details[2].startswith("gateway.workers: ")
    assert details[3] == ("mirror.0.registry: 'docker.oi' is not a key of upstreams "
                          "(did you mean docker.io?)")
    assert details[4] == "mirror.0.tags.includ: unknown key (did you mean include?)"
    as_json = runner.invoke(main, ["check", "--config", str(config), "--json"])
    assert as_json.exit_code == 1
    document = json.loads(as_json.output)
    assert document["ok"] is False
    assert len(document["checks"]) == 5


def test_serve_and_sync_stop_on_every_mistake_too(runner: CliRunner, tmp_path: Path) -> None:
    config = tmp_path / "regfront.yaml"
    config.write_text(BAD)
    for command in ("serve", "sync"):
        result = runner.invoke(main, [command, "--config", str(config)])
        assert result.exit_code == 1
        lines = result.output.splitlines()
        assert len(lines) == 5
        assert all(line.startswith(f"regfront: {config}:") for line in lines)


def test_a_file_store_and_an_unreachable_upstream(runner: CliRunner, tmp_path: Path,
                                                  refused_port: int) -> None:
    config = tmp_path / "regfront.yaml"
    config.write_text(f"storage: [{{url: {tmp_path / 'store'}}}]\n"
                      f"upstreams:\n  docker.io: {{urls: ['http://127.0.0.1:{refused_port}']}}\n")
    result = runner.invoke(main, ["check", "--config", str(config), "--timeout", "10"])
    assert result.exit_code == 1
    lines = result.output.splitlines()
    assert lines[0].split() == ["CHECK", "TARGET", "RESULT", "DETAIL"]
    assert lines[1].split()[:3] == ["config", str(config), "ok"]
    assert lines[2].split()[:4] == ["store", str(tmp_path / "store"), "(primary)", "ok"]
    assert "writing not checked" in lines[2]
    assert lines[3].split()[:3] == ["upstream", "docker.io", "FAIL"]
    assert "ConnectError" in lines[3]
    assert "fix: check that this machine reaches it" in lines[3]


def test_a_good_config_exits_0_and_json_says_ok(runner: CliRunner, tmp_path: Path) -> None:
    result = runner.invoke(main, ["check", "--storage", str(tmp_path / "store"), "--json"])
    assert result.exit_code == 0, result.output
    document = json.loads(result.output)
    assert document["ok"] is True
    assert [(c["check"], c["outcome"]) for c in document["checks"]] == [
        ("config", "ok"), ("store", "ok")]


# -- stores ---------------------------------------------------------------------------------------


def _config(*urls: str, mirror: bool = True) -> str:
    storage = "".join(f"\n  - url: '{url}'" for url in urls)
    rules = ("mirror: [{name: py, registry: docker.io, repositories: [library/python], "
             "tags: ['3.12']}]\n") if mirror else ""
    return f"storage:{storage}\nupstreams:\n  docker.io: {{urls: ['{HUB}']}}\n{rules}"


def _counting(monkeypatch: pytest.MonkeyPatch) -> list[CountingStore]:
    """The stores the check opens, counting their calls: proof each probe really ran."""
    opened: list[CountingStore] = []

    def counted(url: str) -> ObjectStore:
        inner = open_store(url)
        store = (CountingPresigner if presigner(inner) else CountingStore)(inner)
        opened.append(store)
        return store

    monkeypatch.setattr("regfront.check.open_store", counted)
    return opened


async def test_s3_stores_write_read_back_sign_and_delete_on_the_primary_only(
        moto_s3: MotoS3, monkeypatch: pytest.MonkeyPatch) -> None:
    replica, primary = moto_s3.new_bucket(), moto_s3.new_bucket()
    opened = _counting(monkeypatch)
    config = parse_config(_config(moto_s3.url(replica, "m"), moto_s3.url(primary, "m")))
    verdicts = await run_checks(config, transport=_hub())
    stores = [v for v in verdicts if v.check == "store"]
    assert [v.outcome for v in stores] == ["ok", "ok"], stores
    assert stores[0].detail == "list, read, signed URL ok"
    assert stores[1].detail == "list, read, write, signed URL, delete ok"
    assert stores[0].target == f"s3://{replica}/m (replica, at {moto_s3.endpoint})"
    assert [s.calls["put"] for s in opened] == [0, 1]
    assert [s.calls["presign_get"] for s in opened] == [1, 1]
    assert [s.calls["delete"] for s in opened] == [0, 1]
    for bucket in (replica, primary):  # nothing left behind
        assert "Contents" not in moto_s3.admin.list_objects_v2(Bucket=bucket)


async def test_every_primary_is_written(moto_s3: MotoS3,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """Sync writes each store marked primary (one per cloud): each gets the write probe."""
    first, replica, second = (moto_s3.new_bucket() for _ in range(3))
    opened = _counting(monkeypatch)
    source = _config(moto_s3.url(first, "m"), moto_s3.url(replica, "m"),
                     moto_s3.url(second, "m"))
    for bucket in (first, second):
        url = f"url: '{moto_s3.url(bucket, 'm')}'"
        source = source.replace(url, f"{{{url}, primary: true}}")
    verdicts = await run_checks(parse_config(source), transport=_hub())
    stores = [v for v in verdicts if v.check == "store"]
    assert [v.outcome for v in stores] == ["ok", "ok", "ok"], stores
    assert ["(primary" in v.target for v in stores] == [True, False, True]
    assert [s.calls["put"] for s in opened] == [1, 0, 1]


async def test_a_missing_bucket_and_a_refused_endpoint_fail_with_their_fix(
        moto_s3: MotoS3, refused_port: int) -> None:
    refused = f"s3://b?endpoint=http://127.0.0.1:{refused_port}&region=us-east-1&max_attempts=1"
    config = parse_config(_config(refused, moto_s3.url("no-such-bucket-here")))
    verdicts = await run_checks(config, transport=_hub())
    assert [v.outcome for v in verdicts if v.check == "store"] == ["FAIL", "FAIL"]
    assert verdicts[0].detail == "list: connection refused"
    assert "?endpoint=URL" in verdicts[0].fix
    assert "NoSuchBucket" in verdicts[1].detail
    assert verdicts[1].fix.startswith("create bucket no-such-bucket-here")


async def test_a_failed_write_leaves_nothing_and_says_which_step(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from registry.store.errors import StoreAccessDenied

    opened = _counting(monkeypatch)

    async def denied(key: str) -> bytes:
        raise StoreAccessDenied("403 AccessDenied")

    config = parse_config(_config(str(tmp_path / "store")))
    monkeypatch.setattr(CountingStore, "get", lambda self, key: denied(key))
    (verdict, _) = await run_checks(config, transport=_hub())
    assert (verdict.outcome, verdict.detail) == ("FAIL", "read back: 403 AccessDenied")
    assert "read and write" in verdict.fix
    assert opened[0].calls["delete"] == 1  # the probe object, removed although the check failed
    # Nothing left: not the probe, nor (the file store prunes them) its empty directory.
    assert not (tmp_path / "store" / layout.check_dir()).exists()


# -- upstreams ------------------------------------------------------------------------------------


def _hub(*, remaining: str = "76;w=21600", token_status: int = 200,
         seen: list[httpx.Request] | None = None) -> httpx.MockTransport:
    """Docker Hub as the check meets it: a Bearer challenge, a token, a HEAD with rate limits."""
    def handle(request: httpx.Request) -> httpx.Response:
        if seen is not None:
            seen.append(request)
        if request.url.host == "auth.docker.io":
            return httpx.Response(token_status, json={"token": "t"} if token_status == 200
                                  else {"details": "incorrect username or password"})
        if request.headers.get("authorization") != "Bearer t":
            return httpx.Response(401, headers={"www-authenticate": (
                'Bearer realm="https://auth.docker.io/token",service="registry.docker.io"')})
        if request.url.path == "/v2/_catalog":
            return httpx.Response(200, json={"repositories": []})
        return httpx.Response(200, headers={
            "docker-content-digest": DIGEST, "content-length": "1234",
            "content-type": "application/vnd.oci.image.index.v1+json",
            "ratelimit-limit": "100;w=21600", "ratelimit-remaining": remaining})

    return httpx.MockTransport(handle)


async def _upstream(text: str, transport: httpx.MockTransport) -> Verdict:
    verdicts = await run_checks(parse_config(text), transport=transport)
    return next(v for v in verdicts if v.check == "upstream")


async def test_an_upstream_is_asked_one_head_and_its_rate_limit_reported() -> None:
    seen: list[httpx.Request] = []
    verdict = await _upstream(_config("memory://"), _hub(seen=seen))
    assert verdict == Verdict("upstream", "docker.io", "ok",
                              "reachable, anonymous, library/python:3.12 is "
                              f"{DIGEST[:19]}; rate limit 100 per 21600 s, 76 left")
    assert {r.method for r in seen if r.url.host == "registry-1.docker.io"} == {"HEAD"}


async def test_credentials_refused_and_a_spent_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HUB_USER", "bot")
    monkeypatch.setenv("HUB_TOKEN", "secret")
    text = _config("memory://").replace(
        f"urls: ['{HUB}']", f"urls: ['{HUB}'], credentials: {{username_env: HUB_USER, "
                            "password_env: HUB_TOKEN}")
    refused = await _upstream(text, _hub(token_status=401))
    assert refused.outcome == "FAIL"
    assert "'bot'" in refused.detail
    assert "credentials" in refused.fix
    spent = await _upstream(text, _hub(remaining="0;w=21600"))
    assert spent.outcome == "warn"
    assert "as $HUB_USER" in spent.detail
    assert spent.detail.endswith("rate limit 100 per 21600 s, 0 left")


async def test_an_upstream_no_rule_mirrors_is_asked_for_its_catalog() -> None:
    verdict = await _upstream(_config("memory://", mirror=False), _hub())
    assert (verdict.outcome, verdict.detail) == ("ok", "reachable, anonymous, catalog asked")


async def test_an_unreachable_upstream_fails_without_retrying() -> None:
    calls: list[httpx.Request] = []

    def handle(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        raise httpx.ConnectError("refused")

    verdict = await _upstream(_config("memory://"), httpx.MockTransport(handle))
    assert verdict.outcome == "FAIL"
    assert "(1 attempts)" in verdict.detail
    assert len(calls) == 1
