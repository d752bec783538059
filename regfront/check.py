"""``regfront check``: is this config right, and does everything it names answer as needed?

One verdict per line: the config (every mistake at once, each with its file and line), then
each store (list, read; on each primary when something writes there, also write, read back and
delete a probe object under ``layout.check_probe``; and a pre-signed URL fetched back when the
store signs them), then each upstream (reachable, authenticated, its rate-limit headers).
Stores and upstreams are probed at once, each within ``budget`` seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import secrets
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Literal

import httpx

from regfront.failures import describe_store, store_fix, store_label, store_problem, upstream_fix
from registry import layout
from registry.config import Config
from registry.errors import ConfigError
from registry.mirrorconfig import UpstreamConfig
from registry.store import NotFound, ObjectStore, Presigner, open_store, presigner
from registry.store.errors import StoreError, StoreTimeout
from registry.upstream.client import Upstream
from registry.upstream.errors import UpstreamError, UpstreamNotFound

Outcome = Literal["ok", "warn", "FAIL"]
DEFAULT_BUDGET = 30.0
_PROBLEM_PLACE = re.compile(r"^(.*?:\d+): (.*)$")
_RATE_HEADERS = ("ratelimit-limit", "ratelimit-remaining", "x-ratelimit-limit",
                 "x-ratelimit-remaining")


@dataclass(frozen=True)
class Verdict:
    check: str  # config, store, upstream
    target: str
    outcome: Outcome
    detail: str
    fix: str = ""


def config_verdicts(source: str, error: ConfigError | None, config: Config | None) -> list[Verdict]:
    """One FAIL per mistake (its ``file:line`` as the target), or one ok with what was found."""
    if error is not None:
        verdicts = []
        for problem in error.problems:
            place = _PROBLEM_PLACE.match(problem)
            target, detail = (place[1], place[2]) if place else (source, problem)
            verdicts.append(Verdict("config", target, "FAIL", detail))
        return verdicts
    assert config is not None
    return [Verdict("config", source, "ok",
                    f"{len(config.storage)} store(s), {len(config.upstreams)} upstream(s), "
                    f"{len(config.mirror)} mirror rule(s)")]


def writes_primary(config: Config) -> bool:
    """Whether anything writes to the primary: sync (mirror rules), pull-through, the gateway's
    miss queue (mirror rules too)."""
    return bool(config.mirror) or any(u.on_miss == "pull-through"
                                      for u in config.upstreams.values())


async def run_checks(config: Config, *, budget: float = DEFAULT_BUDGET,
                     transport: httpx.AsyncBaseTransport | None = None) -> list[Verdict]:
    """Every store and upstream of ``config``, probed at once; verdicts in config order.
    ``transport`` carries the upstreams' requests (tests put a fake upstream there)."""
    write = writes_primary(config)
    primaries = {id(s) for s in config.primaries}  # sync writes to each
    async with httpx.AsyncClient(timeout=10.0) as http:  # signed URLs: as a node fetches them
        probes = [probe_store(s.url, role="primary" if id(s) in primaries else "replica",
                              write=write and id(s) in primaries, budget=budget, http=http)
                  for s in config.storage]
        probes += [probe_upstream(registry, upstream, config, budget=budget,
                                  transport=transport)
                   for registry, upstream in config.upstreams.items()]
        return list(await asyncio.gather(*probes))


async def probe_store(url: str, *, role: str, write: bool, budget: float,
                      http: httpx.AsyncClient) -> Verdict:
    """List, read, and (``write``) write, read back and delete a probe object; fetch a signed
    URL when the store signs them."""
    where = describe_store(url).removeprefix(f"store {store_label(url)}")
    target = f"{store_label(url)} ({role}{',' if where else ''}{where})"
    store = open_store(url)
    steps: list[str] = []
    doing = "list"
    key = layout.check_probe(secrets.token_hex(8)) if write else None
    written = False
    try:
        async with asyncio.timeout(budget):
            await store.children(layout.check_dir())
            steps.append("list")
            doing = "read"
            await _absent_ok(store, layout.WARM_UP)
            steps.append("read")
            payload = f"regfront check {key}".encode()
            if key is not None:
                doing = "write"
                await store.put(key, payload)
                written = True
                doing = "read back"
                if await store.get(key) != payload:
                    return Verdict("store", target, "FAIL", "read back other bytes than written",
                                   "check what rewrites objects under this prefix")
                steps.append("write")
            signer = presigner(store)
            if signer is not None:
                doing = "signed URL"
                problem = await _fetch_signed(signer, http, key, payload)
                if problem is not None:
                    return Verdict("store", target, "FAIL", f"signed URL: {problem}",
                                   "URLs are signed with the store's credentials for "
                                   "?signing_endpoint= (default ?endpoint=): clients must "
                                   "reach that host and it must accept the signature")
                steps.append("signed URL")
            if key is not None:
                doing = "delete"
                await store.delete(key)
                written = False
                steps.append("delete")
    except StoreError as error:
        return _failed(url, target, doing, error)
    except TimeoutError:
        return _failed(url, target, doing, StoreTimeout(f"no answer within {budget:g} s"))
    finally:
        if written and key is not None:
            # The check failed after writing: leave nothing behind if the store lets us.
            with contextlib.suppress(StoreError):
                await store.delete(key)
        await store.close()
    unchecked = "" if write or role != "primary" else (
        "; writing not checked: without mirror rules or pull-through nothing writes here")
    return Verdict("store", target, "ok", ", ".join(steps) + " ok" + unchecked)


def _failed(url: str, target: str, doing: str, error: StoreError) -> Verdict:
    return Verdict("store", target, "FAIL", f"{doing}: {store_problem(url, error)}",
                   store_fix(url, error))


async def _absent_ok(store: ObjectStore, key: str) -> None:
    with contextlib.suppress(NotFound):  # an answer: reading works
        await store.size(key)


async def _fetch_signed(signer: Presigner, http: httpx.AsyncClient, key: str | None,
                        payload: bytes) -> str | None:
    """GET a signed URL: the probe object's bytes back, or (nothing written) the store's
    404 for an absent key - listing works, so a valid signature gets 404, a bad one 403.
    None when it worked."""
    url = await signer.presign_get(key or layout.WARM_UP, 300)
    try:
        response = await http.get(url)
    except httpx.HTTPError as error:
        host = httpx.URL(url).host
        return f"GET {host}: {type(error).__name__}: {error}"
    expected = 200 if key is not None else 404
    if response.status_code != expected:
        code = re.search(r"<Code>([^<]+)</Code>", response.text)
        return (f"GET answered {response.status_code}"
                f"{' ' + code[1] if code else ''}, expected {expected}")
    if key is not None and response.content != payload:
        return "GET answered other bytes than written"
    return None


async def probe_upstream(registry: str, upstream: UpstreamConfig, config: Config, *,
                         budget: float,
                         transport: httpx.AsyncBaseTransport | None = None) -> Verdict:
    """One HEAD of a mirrored repository's tag (no pull is counted), authenticated as sync
    would be; without a mirrored repository, the catalog. Reports rate-limit headers."""
    seen: dict[str, str] = {}

    async def record(response: httpx.Response) -> None:
        seen.update({h: response.headers[h] for h in _RATE_HEADERS if h in response.headers})

    once = upstream.model_copy(update={"retries": 0})  # a verdict now, not after backoffs
    client = Upstream(registry, once, transport=transport, on_response=record)
    repository, tag = _sample(registry, config)
    try:
        async with asyncio.timeout(budget):
            if repository is None:
                await client.catalog()
                did = "catalog asked"
            else:
                try:
                    ref = await client.head_manifest(repository, tag)
                    did = f"{repository}:{tag} is {str(ref.digest)[:19]}"
                except UpstreamNotFound:
                    did = f"{repository}:{tag} absent (answered 404)"
    except UpstreamError as error:
        return Verdict("upstream", registry, "FAIL", str(error), upstream_fix(error))
    except TimeoutError:
        return Verdict("upstream", registry, "FAIL", f"no answer within {budget:g} s",
                       "check that this machine reaches it (proxy: HTTPS_PROXY; firewall)")
    finally:
        await client.aclose()
    outcome: Outcome = "ok"
    limits = _rate_limits(seen)
    if limits and seen.get("ratelimit-remaining", seen.get("x-ratelimit-remaining", "1")
                           ).split(";")[0].strip() == "0":
        outcome = "warn"
    detail = f"reachable, {_identity(upstream)}, {did}"
    if limits:
        detail += f"; rate limit {limits}"
    return Verdict("upstream", registry, outcome, detail,
                   "wait for the window to pass, or authenticate" if outcome == "warn" else "")


def _identity(upstream: UpstreamConfig) -> str:
    credentials = upstream.credentials
    if credentials is None:
        return "anonymous"
    if credentials.docker_config is not None:
        return f"credentials from {credentials.docker_config}"
    return f"as {credentials.username or '$' + str(credentials.username_env)}"


def _sample(registry: str, config: Config) -> tuple[str | None, str]:
    """A repository a rule mirrors from ``registry`` (no glob) and a tag to ask about."""
    for rule in config.mirror:
        if rule.registry != registry:
            continue
        for repository in rule.repositories:
            if not any(ch in repository for ch in "*?["):
                names = rule.tag_filter.names
                return repository, names[0] if names else "latest"
    return None, "latest"


def _rate_limits(seen: dict[str, str]) -> str:
    """``100 per 21600 s, 76 left`` from Docker Hub's (or the X- variant's) headers."""
    def value(name: str) -> str | None:
        raw = seen.get(name) or seen.get(f"x-{name}")
        if raw is None:
            return None
        count, _, window = raw.partition(";w=")
        return f"{count.strip()} per {window.strip()} s" if window else count.strip()

    limit, remaining = value("ratelimit-limit"), value("ratelimit-remaining")
    if limit is None and remaining is None:
        return ""
    left = remaining.split(" per ")[0] if remaining else "?"
    return f"{limit or '?'}, {left} left"


def render_table(verdicts: Sequence[Verdict]) -> str:
    """Aligned columns, one verdict per line; a fix follows its detail after `` - fix: ``."""
    rows = [("CHECK", "TARGET", "RESULT", "DETAIL")] + [
        (v.check, v.target, v.outcome, v.detail + (f" - fix: {v.fix}" if v.fix else ""))
        for v in verdicts]
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    return "\n".join(f"{r[0]:<{widths[0]}}  {r[1]:<{widths[1]}}  {r[2]:<{widths[2]}}  {r[3]}"
                     for r in rows)


def render_json(verdicts: Sequence[Verdict]) -> str:
    return json.dumps({"ok": passed(verdicts), "checks": [asdict(v) for v in verdicts]},
                      indent=2)


def passed(verdicts: Sequence[Verdict]) -> bool:
    """Exit status 0 or 1: warnings pass, failures do not."""
    return all(v.outcome != "FAIL" for v in verdicts)
