"""The sync side of the config file: ``upstreams:`` (where images come from) and ``mirror:``
(which of them to copy, and when). Validated as strictly as the rest: see registry/config.py.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, field_validator, model_validator

from registry.configtypes import Duration, StrictModel
from registry.names import canonical_registry, validate_name

_DIGEST = re.compile(r"^sha256:[a-f0-9]{64}$|^sha512:[a-f0-9]{128}$")
RULE_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}$")
_SEMVER_COMPARATOR = re.compile(r"^(>=|<=|>|<|==|=|!=)?v?\d+(\.\d+){0,2}(-[0-9A-Za-z.-]+)?$")


class Credentials(StrictModel):
    """Where an upstream's username and password come from, never the secret itself; or the
    worker's own cloud identity (registry/upstream/cloud.py)."""

    username: str | None = None
    username_env: str | None = None
    password_env: str | None = None
    password_file: str | None = None
    # A docker config.json: its "auths" entry for the upstream's host.
    docker_config: str | None = None
    # The worker's identity in a private registry of its cloud, refreshed before it expires:
    # ecr (GetAuthorizationToken), gcp (an access token, for Artifact Registry and gcr.io) or
    # acr (an Entra ID token exchanged at the registry). ``region``: an ECR registry's, when no
    # upstream URL is an ECR host that names it.
    provider: Literal["ecr", "gcp", "acr"] | None = None
    region: str | None = Field(default=None, pattern=r"^[a-z]{2}(-[a-z]+)+-\d+$")

    @model_validator(mode="after")
    def _one_source(self) -> Credentials:
        if self.region is not None and self.provider != "ecr":
            raise ValueError("region is for provider: ecr")
        if self.provider is not None:
            if any((self.username, self.username_env, self.password_env, self.password_file,
                    self.docker_config)):
                raise ValueError(f"provider {self.provider} excludes username, password and "
                                 "docker_config settings")
            return self
        if self.docker_config is not None:
            if any((self.username, self.username_env, self.password_env, self.password_file)):
                raise ValueError("docker_config excludes username/password settings")
            return self
        if (self.username is None) == (self.username_env is None):
            raise ValueError("set exactly one of username, username_env")
        if (self.password_env is None) == (self.password_file is None):
            raise ValueError("set exactly one of password_env, password_file")
        return self


class UpstreamConfig(StrictModel):
    urls: list[str] = Field(min_length=1)
    credentials: Credentials | None = None
    tls_verify: bool = True
    ca_file: str | None = None
    # Bounds on what one sync worker asks of this upstream.
    concurrency: int = Field(default=8, ge=1, le=256)
    rate_limit: float | None = Field(default=None, gt=0)  # requests per second
    timeout: Duration = 60.0
    connect_timeout: Duration = 10.0
    retries: int = Field(default=4, ge=0, le=20)
    # What the gateway does when a client asks for content of this registry it does not have,
    # in a repository a mirror rule covers: "fallthrough" answers 404 at once (containerd goes
    # to the upstream itself) and queues the miss for the next sync run; "pull-through"
    # fetches it from the upstream, serves it and stores it (docs/operations.md).
    on_miss: Literal["fallthrough", "pull-through"] = "fallthrough"
    # With pull-through: gateways re-check this registry's tags upstream once older than this
    # (as a rule's tag_ttl does for the rule's tags).
    tag_ttl: Duration | None = Field(default=None, gt=0)

    @field_validator("urls")
    @classmethod
    def _urls(cls, urls: list[str]) -> list[str]:
        for url in urls:
            if not re.match(r"^https?://[^/\s]+/?$", url):
                raise ValueError(f"{url!r} is not an http(s)://host[:port] URL")
        return [url.rstrip("/") for url in urls]

    @model_validator(mode="after")
    def _ecr_region(self) -> UpstreamConfig:
        credentials = self.credentials
        if credentials is not None and credentials.provider == "ecr" and \
                ecr_region(credentials, self.urls) is None:
            raise ValueError("credentials.provider ecr: no url is an ECR host "
                             "(ACCOUNT.dkr.ecr.REGION.amazonaws.com); set credentials.region")
        return self


_ECR_HOST = re.compile(r"^\d{12}\.dkr\.ecr(?:-fips)?\.([a-z0-9-]+)\.amazonaws\.com(?:\.cn)?$")


def ecr_region(credentials: Credentials, hosts: Sequence[str]) -> str | None:
    """The ECR region: configured, or read from the first ECR host among ``hosts`` (names or
    URLs)."""
    if credentials.region is not None:
        return credentials.region
    for host in hosts:
        found = _ECR_HOST.match(host.partition("://")[2].split(":")[0] if "://" in host
                                else host.split(":")[0])
        if found:
            return found.group(1)
    return None


class TagFilter(StrictModel):
    """Kept: any ``include`` (default all), no ``exclude``, inside ``semver``, then the
    ``latest`` N; ``names`` are always added."""

    include: list[str] = Field(default_factory=list)
    exclude: list[str] = Field(default_factory=list)
    semver: str | None = None
    latest: int | None = Field(default=None, ge=1)
    names: list[str] = Field(default_factory=list)

    @field_validator("include", "exclude")
    @classmethod
    def _regexes(cls, patterns: list[str]) -> list[str]:
        for pattern in patterns:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"invalid regex {pattern!r}: {exc}") from None
        return patterns

    @field_validator("semver")
    @classmethod
    def _semver(cls, value: str | None) -> str | None:
        if value is not None:
            comparators = value.replace(",", " ").split()
            if not comparators or not all(_SEMVER_COMPARATOR.match(c) for c in comparators):
                raise ValueError(f"invalid semver range {value!r} (e.g. '>=1.25 <2')")
        return value


class Every(StrictModel):
    every: Duration = Field(gt=0)
    jitter: Duration = 0.0


def _cron(value: Any) -> Any:
    if isinstance(value, str):
        from croniter import croniter

        if len(value.split()) != 5 or not croniter.is_valid(value):
            raise ValueError(f"invalid cron schedule {value!r} (5 fields: m h dom mon dow)")
    return value


Schedule = Annotated[str, BeforeValidator(_cron)] | Every

WEEK = 7 * 86400.0


class Retention(StrictModel):
    """Which tags of a repository garbage collection keeps beyond what its rule selects now
    (docs/retention.md): tags pulled within ``pulled_within`` (digests pulled too), and the
    ``newest`` N tags by image creation time. Whatever a kept tag needs stays with it."""

    pulled_within: Duration | None = None
    newest: int = Field(default=0, ge=0)


class MirrorRule(StrictModel):
    name: str
    registry: str
    repositories: list[str] = Field(min_length=1)
    tags: TagFilter | list[str] = Field(default_factory=TagFilter)
    digests: list[str] = Field(default_factory=list)
    platforms: list[str] | None = None
    referrers: bool = False
    schedule: Schedule | None = None
    # Gateways re-check this rule's tags against the upstream once they are older than this
    # (off the request path; the stored tag is served meanwhile and whenever the upstream is
    # down); a moved tag is queued for sync. Unset: tags change only when sync runs.
    tag_ttl: Duration | None = Field(default=None, gt=0)
    # What garbage collection keeps in the rule's repositories besides the tags the rule
    # selects now: by default whatever was pulled in the last week, so narrowing a rule never
    # pulls an image from under running workloads.
    retention: Retention = Retention(pulled_within=WEEK)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not RULE_NAME.match(value):
            raise ValueError(f"invalid rule name {value!r} (lowercase letters, digits, . _ -)")
        return value

    @field_validator("repositories")
    @classmethod
    def _repositories(cls, values: list[str]) -> list[str]:
        for value in values:
            if not any(ch in value for ch in "*?["):
                validate_name(value)  # globs are checked against the upstream's catalog
        return values

    @field_validator("digests")
    @classmethod
    def _digests(cls, values: list[str]) -> list[str]:
        for value in values:
            if not _DIGEST.match(value):
                raise ValueError(f"invalid digest {value!r} (sha256:<64 hex>)")
        return values

    @field_validator("tags", mode="before")
    @classmethod
    def _tag_names(cls, value: Any) -> Any:
        if isinstance(value, list):
            for item in value:
                if not isinstance(item, str):
                    # YAML reads 1.10 as the number 1.1: a tag list must be quoted.
                    raise ValueError(f"tag {item!r} is not a string: quote it ('{item}')")
        return value

    @field_validator("platforms")
    @classmethod
    def _platforms(cls, values: list[str] | None) -> list[str] | None:
        for value in values or []:
            if not re.match(r"^[a-z0-9]+/[a-z0-9_]+(/[a-z0-9]+)?$", value):
                raise ValueError(f"invalid platform {value!r} (os/arch[/variant])")
        return values

    @property
    def tag_filter(self) -> TagFilter:
        if isinstance(self.tags, list):  # a plain list: exactly these tags
            return TagFilter(include=["(?!)"], names=self.tags)
        return self.tags


class SyncConfig(StrictModel):
    # Blobs copied at once per run, across upstreams; each streams in bounded chunks.
    blob_concurrency: int = Field(default=4, ge=1, le=64)
    # A rule's lease outlives a dead holder by at most this; a live holder renews it.
    lease_ttl: Duration = Field(default=300.0, ge=10)
    # With several primaries, one that takes no bytes of a blob for this long while the others
    # wait is out of the run (the next run completes it); kept below the minute an upstream
    # usually waits for a reader that stopped.
    target_stall: Duration = Field(default=30.0, gt=0, le=600)


def covers(rule: MirrorRule, repository: str) -> bool:
    """Whether ``repository`` (without its registry) is one of the rule's, globs included."""
    return any(fnmatch.fnmatchcase(repository, pattern) for pattern in rule.repositories)


@dataclass(frozen=True)
class MirrorIndex:
    """What the mirror rules and upstreams say about a stored repository name, derived once
    from the config and handed to everything that asks: the miss queue, pull-through, tag
    freshness, auth and fallback accounting."""

    rules: Mapping[str, tuple[MirrorRule, ...]]  # canonical registry -> its rules
    # canonical registry -> (its key in the config's upstreams:, its settings)
    upstreams: Mapping[str, tuple[str, UpstreamConfig]]

    @classmethod
    def of(cls, upstreams: Mapping[str, UpstreamConfig],
           mirror: Sequence[MirrorRule]) -> MirrorIndex:
        return cls({canonical_registry(registry): tuple(m for m in mirror if m.registry == registry)
                    for registry in upstreams},
                   {canonical_registry(registry): (registry, upstream)
                    for registry, upstream in upstreams.items()})

    def upstream(self, name: str) -> UpstreamConfig | None:
        """The settings of the upstream a stored name comes from, if one is configured."""
        found = self.upstreams.get(name.partition("/")[0])
        return found[1] if found is not None else None

    def pulled_through(self, name: str) -> bool:
        """Content a store lacks is fetched from the upstream: a pull-through upstream, and a
        repository some rule covers (else any client could make the fleet mirror anything)."""
        upstream = self.upstream(name)
        return upstream is not None and upstream.on_miss == "pull-through" and self.covers(name)

    def credentialed(self, name: str) -> bool:
        """Mirrored from an upstream that needs credentials (auth never serves it anonymously
        unless a rule names it)."""
        upstream = self.upstream(name)
        return upstream is not None and upstream.credentials is not None and self.covers(name)

    def tag_ttl(self, name: str) -> float | None:
        """How long a tag of ``name`` is served before the upstream is asked whether it moved:
        the shortest of its rules' ``tag_ttl`` and a pull-through upstream's; None: never."""
        registry = name.partition("/")[0]
        from_upstream = self._upstream_ttl(registry) if registry in self.upstreams else None
        ttls = [t for rule in self.rules_for(name) for t in (rule.tag_ttl, from_upstream)
                if t is not None]
        return min(ttls) if ttls else None

    @property
    def checks_tags(self) -> bool:
        """Whether any repository has a tag TTL at all (else freshness stays off the hot path)."""
        return any(self._upstream_ttl(registry) is not None or rule.tag_ttl is not None
                   for registry, rules in self.rules.items() for rule in rules)

    def _upstream_ttl(self, registry: str) -> float | None:
        upstream = self.upstreams[registry][1]
        return upstream.tag_ttl if upstream.on_miss == "pull-through" else None

    def covers(self, name: str) -> bool:
        """Whether a stored name (``docker.io/library/nginx``) is one some rule mirrors."""
        return bool(self.rules_for(name))

    def rules_for(self, name: str) -> tuple[MirrorRule, ...]:
        """The rules that mirror a stored name, in config order."""
        registry, _, repository = name.partition("/")
        return tuple(rule for rule in self.rules.get(registry, ()) if covers(rule, repository))
