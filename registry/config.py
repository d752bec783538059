"""The one YAML configuration file every regfront component reads, strictly validated.

Unknown keys and bad values are errors that name the key and its line, e.g.
``regfront.yaml:7: gateway.tag_ttl: invalid duration '10 parsecs'``; a file with several
mistakes gets them all at once (registry/configerrors.py).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml
from pydantic import ByteSize, Field, ValidationError, field_validator, model_validator

from registry import configerrors
from registry.authconfig import AuthConfig
from registry.configtypes import Duration, StrictModel
from registry.errors import ConfigError, RegistryError
from registry.gcconfig import GCConfig
from registry.logs import LogFormat
from registry.mirrorconfig import MirrorIndex, MirrorRule, SyncConfig, UpstreamConfig
from registry.names import DOCKER_HUB, canonical_registry
from registry.store import DEFAULT_STORAGE_URL, check_url

DEFAULT_LISTEN = "127.0.0.1:5000"


class StorageConfig(StrictModel):
    url: str = Field(min_length=1)
    # Sync writes every primary (one per cloud, say): each layer downloaded once, written to
    # each. Marked nowhere: the last entry is the primary (the others replicate it).
    primary: bool = False

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        try:
            return check_url(value)  # here, so a bad URL in the file gets its line
        except ConfigError as exc:
            raise ValueError(str(exc)) from None


class GatewayConfig(StrictModel):
    listen: str = DEFAULT_LISTEN
    workers: int = Field(default=1, ge=1, le=256)
    # How long a tag may keep pointing at its previous digest after sync moves it.
    tag_ttl: Duration = 10.0
    manifest_cache_bytes: ByteSize = ByteSize(64 * 1024 * 1024)
    link_cache_entries: int = Field(default=200_000, ge=0)
    blob_cache_entries: int = Field(default=200_000, ge=0)
    # How reads wait for stores (gateway/stores.py). A store call's first attempt gives up after
    # store_timeout and the next store is asked; a store with nobody to stand in for it is asked
    # again, each attempt's timeout doubling, until store_deadline: containerd waits for a slow
    # answer, while a 503 sends it to the upstream. A store is skipped for store_backoff
    # (doubling while it keeps failing, to 60 s) once another store answered in its place, or
    # after store_failures hard failures in a row (refused, reset, 5xx, denied) - twice as many
    # timeouts or throttles, which a busy but healthy store gives too.
    store_timeout: Duration = Field(default=2.0, gt=0)
    store_deadline: Duration = Field(default=20.0, gt=0)
    store_backoff: Duration = Field(default=5.0, gt=0)
    store_failures: int = Field(default=3, ge=1, le=100)
    # Blob GETs on a store that can pre-sign (S3) are 307s to the bucket; off = stream bytes.
    blob_redirect: bool = True
    # Lifetime of a pre-signed URL; each is reused for its first half (5 minutes at most), so
    # clients always get at least half of it (signing costs hundreds of microseconds).
    presign_expiry: Duration = Field(default=1200.0, ge=60, le=7 * 86400)
    # Pull records (gateway/usage.py): what was pulled is written to the primary store once
    # per usage_interval per worker, at most usage_entries distinct manifests per batch
    # (a fuller batch is written early); 0 entries: no records, and retention's pulled_within
    # keeps nothing.
    usage_interval: Duration = Field(default=60.0, ge=1, le=3600)
    usage_entries: int = Field(default=50_000, ge=0)

    # HTTPS: both or neither. Nodes then need the CA (regfront containerd-config --ca-file).
    tls_cert: str | None = None
    tls_key: str | None = None

    @field_validator("listen")
    @classmethod
    def _listen(cls, value: str) -> str:
        split_listen(value)
        return value

    @model_validator(mode="after")
    def _deadline(self) -> GatewayConfig:
        if self.store_deadline < self.store_timeout:
            raise ValueError("store_deadline is shorter than store_timeout")
        return self

    @model_validator(mode="after")
    def _tls_pair(self) -> GatewayConfig:
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("tls_cert and tls_key go together")
        for path in (self.tls_cert, self.tls_key):
            if path is not None and not Path(path).is_file():
                raise ValueError(f"{path}: no such file")
        return self


class TelemetryConfig(StrictModel):
    service_name: str = "regfront"
    # Metrics and traces also go to this OTLP/HTTP endpoint (default: the standard
    # OTEL_EXPORTER_OTLP_ENDPOINT variable, else nowhere but /metrics).
    otlp_endpoint: str | None = Field(
        default_factory=lambda: os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or None)
    # Requests without a sampled traceparent are traced at this ratio (low: the hot path).
    trace_sample_ratio: float = Field(default=0.01, ge=0, le=1)
    # Access log lines for this fraction of requests (off: tens of thousands a second).
    access_log_sample: float = Field(default=0.0, ge=0, le=1)
    log_format: LogFormat = "auto"


class Config(StrictModel):
    storage: list[StorageConfig] = Field(
        default_factory=lambda: [StorageConfig(url=DEFAULT_STORAGE_URL)], min_length=1)
    gateway: GatewayConfig = GatewayConfig()
    telemetry: TelemetryConfig = Field(default_factory=TelemetryConfig)
    upstreams: dict[str, UpstreamConfig] = Field(default_factory=dict)
    mirror: list[MirrorRule] = Field(default_factory=list)
    sync: SyncConfig = SyncConfig()
    gc: GCConfig = GCConfig()
    # Client authentication and access rules; absent: everyone may pull everything.
    auth: AuthConfig | None = None

    @property
    def primaries(self) -> list[StorageConfig]:
        """The stores sync writes to: those marked ``primary``, in order; else the last."""
        return [s for s in self.storage if s.primary] or [self.storage[-1]]

    @property
    def primary(self) -> StorageConfig:
        """The first primary: where sync's leases live (the last store when none is marked)."""
        return self.primaries[0]

    def mirror_index(self) -> MirrorIndex:
        """What the rules and upstreams say per repository: build it once, hand it around."""
        return MirrorIndex.of(self.upstreams, self.mirror)


def with_overrides(config: Config, storage: Sequence[str] = (),
                   gateway: dict[str, Any] | None = None) -> Config:
    """``config`` with command-line values on top; a bad value names its flag."""
    data = config.model_dump()
    if storage:
        data["storage"] = [{"url": url} for url in storage]
    data["gateway"].update({k: v for k, v in (gateway or {}).items() if v is not None})
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        error = exc.errors()[0]
        flag = "--storage" if error["loc"][0] == "storage" else f"--{error['loc'][-1]}"
        message = error["msg"].removeprefix("Value error, ")
        raise ConfigError(f"{flag.replace('_', '-')}: {message}") from None


def split_listen(value: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:5000`` for IPv6) -> (host, port)."""
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"invalid listen address {value!r} (expected HOST:PORT)")
    return host.strip("[]"), int(port)


def load_config(path: str | Path | None) -> Config:
    """Read and validate ``path``; ``None`` gives the defaults."""
    if path is None:
        return Config()
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config: {exc.strerror}") from None
    return parse_config(text, str(path))


def parse_config(text: str, source: str = "<config>") -> Config:
    """Validate ``text``; every mistake in it at once, as one ``ConfigError``."""
    data, lines = _load_yaml(text, source)
    problems = _reference_problems(data, lines, source)
    try:
        config = Config.model_validate(data if data is not None else {})
    except ValidationError as exc:
        problems += configerrors.describe(exc, lines, source, Config)
    if problems:
        raise ConfigError(*(text for _, text in sorted(problems, key=lambda p: p[0])))
    return config


def _reference_problems(data: Any, lines: dict[tuple[Any, ...], int],
                        source: str) -> list[configerrors.Problem]:
    """What one key's validator cannot see: names across sections. Read from the raw data, so
    they are reported together with the schema's errors; a part of the wrong shape is skipped
    (the schema reports it)."""
    found: list[configerrors.Problem] = []

    def fail(loc: tuple[Any, ...], message: str) -> None:
        found.append(configerrors.problem(source, lines, loc, message))

    data = data if isinstance(data, dict) else {}
    upstreams = data.get("upstreams") if isinstance(data.get("upstreams"), dict) else {}
    for registry in upstreams:
        try:
            canonical_registry(str(registry))
        except RegistryError:
            fail(("upstreams", registry), f"{registry!r} is not a registry host name")
    rules = data.get("mirror") if isinstance(data.get("mirror"), list) else []
    seen: set[str] = set()
    for index, rule in enumerate(rules):
        if not isinstance(rule, dict):
            continue
        name, registry = rule.get("name"), rule.get("registry")
        if isinstance(name, str) and name in seen:
            fail(("mirror", index, "name"), f"duplicate rule name {name!r}")
        seen.add(str(name))
        if not isinstance(registry, str):
            continue
        if registry not in upstreams:
            known = configerrors.did_you_mean(registry, map(str, upstreams)) or (
                f" ({', '.join(sorted(map(str, upstreams))) or 'none configured'})")
            fail(("mirror", index, "registry"), f"{registry!r} is not a key of upstreams{known}")
            continue
        repositories = rule.get("repositories")
        globs = [r for r in repositories if isinstance(r, str) and any(c in r for c in "*?[")
                 ] if isinstance(repositories, list) else []
        try:
            hub = canonical_registry(registry) == DOCKER_HUB
        except RegistryError:
            continue  # reported above, as an upstreams key
        if globs and hub:
            fail(("mirror", index, "repositories"),
                 f"{globs[0]!r}: Docker Hub has no catalog to expand a glob; list repositories")
    return found


def _load_yaml(text: str, source: str) -> tuple[Any, dict[tuple[Any, ...], int]]:
    """Parse YAML, also returning the line of every key path (for error messages)."""
    loader = yaml.SafeLoader(text)
    lines: dict[tuple[Any, ...], int] = {}
    try:
        node = loader.get_single_node()
        return (_build(loader, node, (), lines) if node is not None else None), lines
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else 1
        raise ConfigError(f"{source}:{line}: invalid YAML: {exc.problem or exc}") from None
    finally:
        loader.dispose()


def _build(loader: yaml.SafeLoader, node: yaml.Node, path: tuple[Any, ...],
           lines: dict[tuple[Any, ...], int]) -> Any:
    if isinstance(node, yaml.MappingNode):
        out: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = loader.construct_object(key_node, deep=True)
            if key in out:
                raise yaml.MarkedYAMLError(problem=f"duplicate key {key!r}",
                                           problem_mark=key_node.start_mark)
            lines[(*path, key)] = key_node.start_mark.line + 1
            out[key] = _build(loader, value_node, (*path, key), lines)
        return out
    if isinstance(node, yaml.SequenceNode):
        items = []
        for index, item in enumerate(node.value):
            lines[(*path, index)] = item.start_mark.line + 1
            items.append(_build(loader, item, (*path, index), lines))
        return items
    return loader.construct_object(node, deep=True)
