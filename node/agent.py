"""The node agent: hosts files where THIS node's kubelet pulls read them, and the proof.

Each round it re-reads its settings (a mounted ConfigMap: kubelet refreshes it in place),
asks containerd its version over the CRI, reads containerd's config, works out where the CRI
pull reads hosts files (node/containerd.py), writes them there, and then pulls the probe image
(registry/probe.py) through the CRI exactly as kubelet pulls. The node is ready only when that
pull was answered by the gateway. No containerd restart is needed wherever one can be avoided;
where none can (config_path unset before containerd 2.2) the agent names the setting and stays
not ready.

A hosts.toml the agent did not write is kept as ``hosts.toml.regfront-backup`` and put back by
``mode: cleanup`` or when its registry leaves the list - never when the agent stops, so nodes go
on pulling through the gateway while the agent restarts.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Protocol

from node.containerd import DEFAULT_HOSTS_DIR, Plan, load_settings, parse_version, plan
from node.cri import CRIClient, CRIError
from node.hosts import CATCH_ALL, MirroredRegistry, hosts_toml, parse_headers, parse_registry
from registry import probe
from registry.errors import ConfigError

logger = logging.getLogger("regfront.node")

MARKER = "# managed-by: regfront-node-agent"
BACKUP = "hosts.toml.regfront-backup"
CA_FILE = "regfront-ca.crt"
_DURATION = re.compile(r"^\d+(ms|s|m)$")
_TAG_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")


class ImageService(Protocol):
    """What the agent needs of containerd's CRI (node/cri.py speaks it over the socket)."""

    def version(self) -> str:
        """containerd's version, as the CRI reports it (``v2.1.9``)."""
        ...

    def pull(self, image: str) -> None:
        ...

    def repo_digests(self, image: str) -> list[str]:
        """``name@digest`` entries of the image containerd recorded; [] if none."""
        ...

    def remove(self, image: str) -> None:
        ...


@dataclass(frozen=True)
class Settings:
    mode: Literal["apply", "cleanup"]
    gateway: str
    registries: tuple[MirroredRegistry, ...]
    dial_timeout: str = "3s"
    skip_verify: bool = False
    probe: bool = True
    interval: float = 60.0
    probe_interval: float = 300.0
    ca: bytes | None = None
    authorization: str | None = None


def read_settings(config_dir: Path, secret_dir: Path) -> Settings:
    """The ConfigMap's keys (files) and the optional credential; ConfigError names the key."""

    def setting(key: str, default: str) -> str:
        path = config_dir / key
        text = path.read_text().strip() if path.is_file() else ""
        return text or default

    mode = setting("mode", "apply")
    if mode not in ("apply", "cleanup"):
        raise ConfigError(f"{config_dir}/mode: {mode!r}: expected apply or cleanup")
    gateway = setting("gateway", "").rstrip("/")
    dial_timeout = setting("dial_timeout", "3s")
    flags = {key: setting(key, default).lower() for key, default in
             (("skip_verify", "false"), ("probe", "true"))}
    for key, value in flags.items():
        if value not in ("true", "false"):
            raise ConfigError(f"{config_dir}/{key}: {value!r}: expected true or false")
    interval = setting("interval", "60")
    probe_interval = setting("probe_interval", "300")
    if mode == "apply":
        if not gateway.startswith(("http://", "https://")):
            raise ConfigError(f"{config_dir}/gateway: {gateway!r}: expected an http(s) URL")
        if not _DURATION.match(dial_timeout):
            raise ConfigError(f"{config_dir}/dial_timeout: {dial_timeout!r}: expected e.g. 3s")
        for key, value in (("interval", interval), ("probe_interval", probe_interval)):
            if not value.isdigit() or int(value) < 1:
                raise ConfigError(f"{config_dir}/{key}: {value!r}: expected seconds")
    ca_path = config_dir / "ca.crt"
    headers = parse_headers([], [f"Authorization={secret_dir / 'authorization'}"]) \
        if (secret_dir / "authorization").is_file() else {}
    return Settings(
        mode="cleanup" if mode == "cleanup" else "apply",
        gateway=gateway,
        registries=tuple(parse_registry(r) for r in setting("registries", "docker.io").split()),
        dial_timeout=dial_timeout,
        skip_verify=flags["skip_verify"] == "true",
        probe=flags["probe"] == "true",
        interval=float(interval) if interval.isdigit() else 60.0,
        probe_interval=float(probe_interval) if probe_interval.isdigit() else 300.0,
        ca=ca_path.read_bytes() if ca_path.is_file() and ca_path.stat().st_size else None,
        authorization=headers.get("Authorization"),
    )


@dataclass
class Status:
    """The last round's outcome: what /readyz and /metrics report."""

    version: str = ""
    plan: Plan | None = None
    written: list[str] = field(default_factory=list)  # directories holding the agent's files
    problems: list[str] = field(default_factory=list)
    probes: dict[str, bool] = field(default_factory=dict)  # registry -> answered by the gateway
    probe_problems: list[str] = field(default_factory=list)
    probe_seconds: dict[str, float] = field(default_factory=dict)
    mode: str = "apply"
    interval: float = 60.0  # until the next round

    @property
    def ready(self) -> bool:
        return (self.mode == "apply" and not self.problems and not self.probe_problems
                and bool(self.written) and all(self.probes.values()))

    def all_problems(self) -> list[str]:
        return [*self.problems, *self.probe_problems]


class Agent:
    def __init__(self, config_dir: Path, secret_dir: Path, containerd_config: Path,
                 cri: ImageService, *, node_name: str = "",
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.config_dir, self.secret_dir = config_dir, secret_dir
        self.containerd_config = containerd_config
        self.cri = cri
        self.probe_tag = _TAG_UNSAFE.sub("-", node_name)[:128] or "latest"
        self.clock = clock
        self.status = Status()
        # The probe runs when what it proves may have changed, else every probe_interval.
        self._probed: tuple[object, float] | None = None

    def reconcile(self) -> Status:
        """One round; never raises for what a node can get wrong, reports it instead."""
        status = Status()
        try:
            settings = read_settings(self.config_dir, self.secret_dir)
            status.mode, status.interval = settings.mode, settings.interval
            status.version = self.cri.version()
            decided = plan(parse_version(status.version), load_settings(self.containerd_config))
        except (ConfigError, CRIError, OSError) as exc:
            status.problems.append(str(exc))
            return self._report(status)
        status.plan = decided
        if settings.mode == "cleanup":
            self._release(_every_dir(decided), keep=set())
            return self._report(status)
        if decided.change is not None:
            status.problems.append(
                f"containerd {status.version}: {decided.why}; kubelet's pulls bypass the gateway "
                f"until config_path is set - add to {self.containerd_config} and restart "
                f"containerd:\n{decided.change}")
        for directory in decided.dirs:
            try:
                self._apply(Path(directory), settings)
                status.written.append(directory)
            except OSError as exc:
                status.problems.append(f"cannot write hosts files into {directory} ({exc}): "
                                       "mount it into the agent's pod")
        listed = {r.name for r in settings.registries}
        self._release([d for d in _every_dir(decided) if d not in status.written], keep=set())
        self._release(status.written, keep=listed)
        if settings.probe and status.written:
            self._probe_all(settings, status)
        return self._report(status)

    def _probe_all(self, settings: Settings, status: Status) -> None:
        key = (settings, status.version, status.plan, status.written)
        now = self.clock()
        previous = self.status
        if (self._probed is not None and self._probed[0] == key
                and now - self._probed[1] < settings.probe_interval):
            status.probes, status.probe_seconds = previous.probes, previous.probe_seconds
            status.probe_problems = previous.probe_problems
            return
        for registry in settings.registries:
            if registry.name != CATCH_ALL:
                self._probe(registry.name, status)
        self._probed = (key, now)

    def _report(self, status: Status) -> Status:
        previous, self.status = self.status, status
        if status.all_problems() != previous.all_problems() or status.ready != previous.ready:
            for problem in status.all_problems():
                logger.error("%s", problem)
            if status.ready:
                logger.info("kubelet's pulls on this node go through the gateway (containerd "
                            "%s, %s, hosts files in %s)", status.version,
                            status.plan.pull_path if status.plan else "?",
                            ", ".join(status.written))
        return status

    # -- files ---------------------------------------------------------------------------------

    def _apply(self, directory: Path, settings: Settings) -> None:
        for registry in settings.registries:
            folder = directory / registry.name
            folder.mkdir(parents=True, exist_ok=True)
            file = folder / "hosts.toml"
            if file.is_file() and not _managed(file):
                backup = folder / BACKUP
                kept = backup if not backup.exists() else folder / f"{BACKUP}.{int(time.time())}"
                shutil.copy2(file, kept)  # the first original is never overwritten
                logger.info("kept %s as %s", file, kept)
            ca_file = None
            if settings.ca is not None:
                ca_file = str(folder / CA_FILE)
                _replace(folder / CA_FILE, settings.ca, 0o644)
            else:
                (folder / CA_FILE).unlink(missing_ok=True)
            headers = {"Authorization": settings.authorization} if settings.authorization else None
            text = f"{MARKER} (the gateway first, then the registry; edits are overwritten)\n"
            text += hosts_toml(settings.gateway, registry, dial_timeout=settings.dial_timeout,
                               skip_verify=settings.skip_verify, ca_file=ca_file,
                               headers=headers)
            # A credential in the file: readable by root (containerd) only.
            if _replace(file, text.encode(), 0o600 if headers else 0o644):
                logger.info("wrote %s", file)

    def _release(self, directories: list[str], keep: set[str]) -> None:
        """Give back each registry directory the agent manages and ``keep`` does not name."""
        for directory in directories:
            root = Path(directory)
            if not root.is_dir():
                continue
            for folder in sorted(p for p in root.iterdir() if p.is_dir()):
                file = folder / "hosts.toml"
                if folder.name in keep or not _managed(file):
                    continue
                if (folder / BACKUP).is_file():
                    os.replace(folder / BACKUP, file)
                    logger.info("restored %s", file)
                else:
                    file.unlink()
                    logger.info("removed %s", file)
                (folder / CA_FILE).unlink(missing_ok=True)
                if not any(folder.iterdir()):
                    folder.rmdir()

    # -- the proof -----------------------------------------------------------------------------

    def _probe(self, registry: str, status: Status) -> None:
        image = probe.reference(registry, self.probe_tag)
        started = self.clock()
        try:
            self.cri.pull(image)
            digests = self.cri.repo_digests(image)
            answered = any(d.endswith(f"@{probe.INDEX_DIGEST}") for d in digests)
            if not answered:
                status.probe_problems.append(f"{image}: pulled, but not the gateway's probe "
                                       f"({digests}): something else answers for {registry}")
        except CRIError as exc:
            answered = False
            status.probe_problems.append(
                f"{image}: kubelet's pull path did not reach the gateway ({exc}); containerd "
                f"{status.version} reads hosts files in "
                f"{', '.join(status.plan.dirs) if status.plan else '?'}")
        finally:
            status.probe_seconds[registry] = self.clock() - started
        status.probes[registry] = answered
        try:
            self.cri.remove(image)
        except CRIError as exc:
            logger.warning("%s: could not remove the probe image: %s", image, exc)


class ContainerdCRI:
    """``ImageService`` over containerd's CRI socket (node/cri.py)."""

    def __init__(self, client: CRIClient) -> None:
        self.client = client

    def version(self) -> str:
        return self.client.version().runtime_version

    def pull(self, image: str) -> None:
        self.client.pull_image(image)

    def repo_digests(self, image: str) -> list[str]:
        found = self.client.image_status(image)
        return list(found.repo_digests) if found is not None else []

    def remove(self, image: str) -> None:
        self.client.remove_image(image)


def _every_dir(decided: Plan) -> list[str]:
    """Every directory the agent may have written on this node, under any earlier plan."""
    found = [*decided.dirs, DEFAULT_HOSTS_DIR]
    if decided.config_path:
        found += [decided.config_path, *decided.config_path.split(":")]
    return list(dict.fromkeys(d for d in found if d))


def _managed(file: Path) -> bool:
    try:
        with file.open() as handle:
            return handle.readline().startswith(MARKER)
    except (FileNotFoundError, NotADirectoryError):
        return False


def _replace(path: Path, data: bytes, mode: int) -> bool:
    """Write ``path`` atomically unless it already holds ``data``; True if it changed."""
    if path.is_file() and path.read_bytes() == data:
        if path.stat().st_mode & 0o777 != mode:
            path.chmod(mode)
        return False
    new = path.with_name(f".{path.name}.new")
    new.write_bytes(data)
    new.chmod(mode)
    os.replace(new, path)
    return True
