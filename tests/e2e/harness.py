"""The end-to-end harness: real regfront, containerd, skopeo and registry:2 processes.

conftest.py's fixtures start each server once per session on a free 127.0.0.1 port and stop it
whatever the tests did. Every wait and every subprocess is bounded, so a hung tool fails its
test with the tool's output and the running servers' logs instead of hanging the run. A missing
tool fails the test, never skips it: running these tools is the point of the suite.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from email.message import Message
from pathlib import Path
from typing import Any

import pytest
import yaml

from registry.mediatypes import DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, OCI_INDEX, OCI_MANIFEST

LOOPBACK = "127.0.0.1"
STARTUP_TIMEOUT = 20.0  # a server answering /v2/, or containerd its socket
COMMAND_TIMEOUT = 60.0  # one ctr, skopeo or regfront command
STOP_TIMEOUT = 10.0  # SIGTERM, then SIGKILL
NAMESPACE = "regfront-test"  # the containerd namespace every ctr call uses
MANIFEST_ACCEPT = ", ".join([OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_MANIFEST_LIST])
# The longest unix socket path Linux accepts (sun_path is 108 bytes, NUL included), less the
# ".ttrpc" containerd appends for its second socket.
MAX_SOCKET_PATH = 107 - len(".ttrpc")

# Servers running now: a failed command reports their logs, which usually say why.
_RUNNING: list[Service] = []
# Facts about this machine the run decided on, printed at the end of the session.
NOTES: list[str] = []


# -- processes ---------------------------------------------------------------------------------


def require_tool(name: str) -> str:
    """The path of ``name``; a missing tool fails the test with how to install it."""
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name!r} is not on PATH; the e2e suite needs containerd (with ctr), skopeo "
                    "and docker-registry: run `make system-deps`", pytrace=False)
    return path


def regfront_binary() -> str:
    """The ``regfront`` script of the environment running the tests (its venv), else PATH's."""
    beside = Path(sys.executable).with_name("regfront")
    return str(beside) if beside.is_file() else require_tool("regfront")


def free_port() -> int:
    """A TCP port nothing listens on now (the kernel's pick for an ephemeral bind)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        port: int = sock.getsockname()[1]
        return port


def clean_env(*drop_prefixes: str, **extra: str) -> dict[str, str]:
    """This environment without variables that would reconfigure the tool under test."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop_prefixes)}
    env.update(extra)
    return env


def _text(data: str | bytes | None) -> str:
    if data is None:
        return ""
    return data.decode(errors="replace") if isinstance(data, bytes) else data


def _report(stdout: str | bytes | None, stderr: str | bytes | None) -> str:
    parts = [f"--- stdout ---\n{_text(stdout)}", f"--- stderr ---\n{_text(stderr)}"]
    for service in _RUNNING:
        code = service.process.poll()
        state = "" if code is None else f" (it has EXITED with status {code})"
        parts.append(f"--- {service.name} log{state} ---\n{service.log_tail()}")
    return "\n".join(parts)


@dataclass(frozen=True)
class Finished:
    """A command that ran to completion; ``output`` is its stdout byte for byte."""

    returncode: int
    output: bytes
    stderr: str

    @property
    def stdout(self) -> str:
        return self.output.decode(errors="replace")


def run(argv: Sequence[str], *, timeout: float = COMMAND_TIMEOUT,
        env: Mapping[str, str] | None = None, check: bool = True) -> Finished:
    """Run ``argv`` to completion within ``timeout``; a failure shows its output and server logs."""
    command = shlex.join(argv)
    try:
        result = subprocess.run(list(argv), capture_output=True, timeout=timeout, env=env,
                                stdin=subprocess.DEVNULL, check=False)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"`{command}` timed out after {timeout:g} s\n{_report(exc.stdout, exc.stderr)}",
                    pytrace=False)
    if check and result.returncode != 0:
        pytest.fail(f"`{command}` exited {result.returncode}\n"
                    f"{_report(result.stdout, result.stderr)}", pytrace=False)
    return Finished(result.returncode, result.stdout, _text(result.stderr))


@dataclass
class Service:
    """A server process this session started; its stdout and stderr both go to ``log``."""

    name: str
    process: subprocess.Popen[bytes]
    log: Path

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def log_tail(self, chars: int = 4000) -> str:
        text = self.log_text()
        return text if len(text) <= chars else "[...]" + text[-chars:]

    def check_alive(self) -> None:
        code = self.process.poll()
        if code is not None:
            pytest.fail(f"{self.name} exited with status {code}; its output:\n{self.log_tail()}",
                        pytrace=False)

    def stop(self) -> None:
        """SIGTERM its process group (it leads one), then SIGKILL if it is still there."""
        for sig in (signal.SIGTERM, signal.SIGKILL):
            if self.process.poll() is not None:
                return
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, sig)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=STOP_TIMEOUT)


def wait_until(service: Service, ready: Callable[[], bool], what: str,
               timeout: float = STARTUP_TIMEOUT) -> None:
    """Poll ``ready`` until true; fail early (with its log) if the service dies meanwhile."""
    deadline = time.monotonic() + timeout
    while not ready():
        service.check_alive()
        if time.monotonic() > deadline:
            pytest.fail(f"{service.name}: {what} not ready after {timeout:g} s; its output:\n"
                        f"{service.log_tail()}", pytrace=False)
        time.sleep(0.1)


_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """Runs in the child before exec: SIGTERM it if pytest dies without running teardown."""
    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


@contextlib.contextmanager
def started(name: str, argv: Sequence[str], log: Path, ready: Callable[[], bool], what: str, *,
            env: Mapping[str, str] | None = None) -> Iterator[Service]:
    """Start ``argv`` in its own process group, wait for ``ready``, and always stop it after."""
    with log.open("wb") as out:
        process = subprocess.Popen(list(argv), stdin=subprocess.DEVNULL, stdout=out,
                                   stderr=subprocess.STDOUT, env=env, start_new_session=True,
                                   preexec_fn=_die_with_parent)
    service = Service(name, process, log)
    _RUNNING.append(service)
    try:
        wait_until(service, ready, what)
        yield service
    finally:
        _RUNNING.remove(service)
        service.stop()


# -- HTTP --------------------------------------------------------------------------------------

# Never through a proxy: every server here is on loopback.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@dataclass(frozen=True)
class HTTPResult:
    status: int
    headers: Message
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def http(method: str, url: str, headers: Mapping[str, str] | None = None,
         timeout: float = 5.0) -> HTTPResult:
    """One request; error statuses are results, not exceptions."""
    request = urllib.request.Request(url, headers=dict(headers or {}), method=method)
    try:
        with _OPENER.open(request, timeout=timeout) as response:
            return HTTPResult(response.status, response.headers, response.read())
    except urllib.error.HTTPError as exc:
        with exc:
            return HTTPResult(exc.code, exc.headers, exc.read())


def _api_ready(port: int) -> bool:
    try:
        return http("GET", f"http://{LOOPBACK}:{port}/v2/", timeout=2.0).status == 200
    except OSError:  # refused while starting, or a timeout
        return False


# -- registries --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Server:
    """A distribution API server this session runs on loopback: regfront or registry:2."""

    port: int
    root: Path | str  # the store it serves: the directory holding docker/registry/v2, or a URL
    service: Service

    @property
    def host(self) -> str:
        return f"{LOOPBACK}:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    def ref(self, image: str) -> str:
        """``image`` (NAME:TAG) here, as a skopeo ``docker://`` reference."""
        return f"docker://{self.host}/{image}"

    def manifest_digest(self, name: str, reference: str) -> str:
        """The ``Docker-Content-Digest`` this server reports for a manifest."""
        result = http("HEAD", f"{self.url}/v2/{name}/manifests/{reference}",
                      {"Accept": MANIFEST_ACCEPT})
        assert result.status == 200, f"HEAD {name}:{reference} on {self.url}: {result.status}"
        digest = result.headers.get("Docker-Content-Digest")
        assert digest, f"HEAD {name}:{reference} on {self.url}: no Docker-Content-Digest"
        return digest

    def tags(self, name: str) -> list[str]:
        result = http("GET", f"{self.url}/v2/{name}/tags/list")
        assert result.status == 200, f"{name} tags on {self.url}: {result.status} {result.body!r}"
        tags: list[str] = result.json()["tags"]
        return tags


@dataclass(frozen=True)
class Gateway(Server):
    """The session's regfront, holding ``sample_layout``'s refs as ``docker.io/library/demo``."""

    digests: dict[str, str]  # layout ref (single, multi) -> the digest `regfront import` printed

    @property
    def store(self) -> Path:
        assert isinstance(self.root, Path), "the session gateway serves a directory"
        return self.root


def regfront_import(layout: Path, ref: str, image: str, store: Path | str) -> str:
    """``regfront import oci:LAYOUT:REF IMAGE --storage STORE``; returns the digest it printed."""
    result = run([regfront_binary(), "import", f"oci:{layout}:{ref}", image, "--storage",
                  str(store)], env=clean_env("REGFRONT_"))
    digest: str = json.loads(result.stdout.strip().splitlines()[-1])["digest"]
    return digest


@contextlib.contextmanager
def serving_regfront(store: Path | str, workdir: Path,
                     config: Path | None = None) -> Iterator[Server]:
    """``regfront serve --storage STORE`` (or ``--config CONFIG``) on a free port."""
    port = free_port()
    where = ["--config", str(config)] if config is not None else ["--storage", str(store)]
    argv = [regfront_binary(), "serve", *where, "--listen", f"{LOOPBACK}:{port}"]
    with started(f"regfront :{port}", argv, workdir / f"regfront-{port}.log",
                 lambda: _api_ready(port), "GET /v2/", env=clean_env("REGFRONT_")) as service:
        yield Server(port, store, service)


@contextlib.contextmanager
def serving_registry2(root: Path, workdir: Path,
                      s3: dict[str, Any] | None = None) -> Iterator[Server]:
    """Debian's ``docker-registry`` (registry:2) over filesystem ``root``, until the block ends.

    With ``s3`` (the s3 driver's parameters), it serves that bucket instead of ``root``.
    """
    binary = require_tool("docker-registry")
    port = free_port()
    storage: dict[str, Any] = ({"s3": s3, "redirect": {"disable": True}} if s3 is not None else
                               {"filesystem": {"rootdirectory": str(root)}})
    config = {
        "version": "0.1",
        "log": {"level": "warn"},  # access log lines are still written: tests read them
        "storage": {**storage, "delete": {"enabled": True}},
        "http": {"addr": f"{LOOPBACK}:{port}", "secret": "regfront-e2e"},
    }
    config_path = workdir / f"registry2-{port}.yml"
    config_path.write_text(yaml.safe_dump(config))
    root.mkdir(parents=True, exist_ok=True)
    # REGISTRY_* variables override the config file; none may leak in. Its S3 driver fails with
    # AWS_CA_BUNDLE set, so that goes too.
    env = clean_env("REGISTRY_", "AWS_CA_BUNDLE")
    with started(f"registry:2 :{port}", [binary, "serve", str(config_path)],
                 workdir / f"registry2-{port}.log", lambda: _api_ready(port), "GET /v2/",
                 env=env) as service:
        yield Server(port, root, service)


# -- skopeo ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Skopeo:
    """Runs ``skopeo`` isolated from the machine's registries.conf and signature policy."""

    binary: str
    empty_registries_conf: Path

    def __call__(self, *args: str, registries_conf: Path | None = None,
                 timeout: float = COMMAND_TIMEOUT) -> Finished:
        # --registries-conf is a global option (hidden from --help in skopeo 1.9); drop-ins in
        # registries.conf.d are still read, but only add short-name aliases on Debian.
        # --insecure-policy: no /etc/containers/policy.json needed, none consulted.
        conf = registries_conf or self.empty_registries_conf
        argv = [self.binary, "--insecure-policy", "--registries-conf", str(conf), *args]
        return run(argv, timeout=timeout, env=clean_env("CONTAINERS_", "REGISTRY_AUTH_FILE"))


# -- containerd --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Containerd:
    """A private containerd (its own root, state and socket) driven with ``ctr``."""

    address: Path
    snapshotter: str
    snapshotter_reason: str
    service: Service

    def ctr(self, *args: str, timeout: float = COMMAND_TIMEOUT,
            check: bool = True) -> Finished:
        """``ctr --address SOCK -n regfront-test ARGS``, with the session's snapshotter.

        ``CONTAINERD_SNAPSHOTTER`` is the env twin of every ctr ``--snapshotter`` flag (pull,
        images check/mount, snapshots), so no call can forget it.
        """
        argv = [require_tool("ctr"), "--address", str(self.address), "-n", NAMESPACE, *args]
        env = clean_env("CONTAINERD_", CONTAINERD_SNAPSHOTTER=self.snapshotter)
        return run(argv, timeout=timeout, env=env, check=check)

    def images(self) -> dict[str, str]:
        """``ctr images ls``: ref -> target digest."""
        lines = self.ctr("images", "ls").stdout.splitlines()[1:]
        # REF TYPE DIGEST SIZE(number unit) PLATFORMS LABELS
        return {fields[0]: fields[2] for fields in (line.split() for line in lines) if fields}

    def content(self) -> set[str]:
        """Digests in the namespace's content store."""
        return set(self.ctr("content", "ls", "--quiet").stdout.split())

    def remove_all_images(self) -> None:
        """Remove every image and garbage-collect synchronously: the content store empties."""
        refs = sorted(self.images())
        if refs:
            self.ctr("images", "rm", "--sync", *refs)

    @contextlib.contextmanager
    def mounted(self, ref: str, target: Path, platform: str) -> Iterator[Path]:
        """The image's unpacked rootfs mounted read-only at ``target``; always unmounted."""
        target.mkdir(parents=True, exist_ok=True)
        self.ctr("images", "mount", "--platform", platform, ref, str(target))
        try:
            yield target
        finally:
            self.ctr("images", "unmount", "--rm", str(target))


def containerd_config(base: Path, address: Path) -> str:
    def q(path: Path) -> str:
        return json.dumps(str(path))  # a JSON string is a valid TOML basic string

    return "\n".join([
        "version = 2",
        f"root = {q(base / 'root')}",
        f"state = {q(base / 'state')}",
        # CRI wants CNI and a sandbox image, and the tests drive containerd with ctr only.
        'disabled_plugins = ["io.containerd.grpc.v1.cri"]',
        "",
        "[debug]",
        '  level = "warn"  # its info log is one line per plugin loaded',
        "",
        "[grpc]",
        f"  address = {q(address)}",
        "",
        # The opt plugin would otherwise create /opt/containerd.
        '[plugins."io.containerd.internal.v1.opt"]',
        f"  path = {q(base / 'opt')}",
        "",
    ])


def overlay_mount_works(directory: Path) -> str | None:
    """None if an overlay mount with two lower dirs works on ``directory``'s filesystem, else why.

    That is the mount containerd's overlayfs snapshotter makes to unpack a second layer. Its
    plugin can load ("ok" in ``ctr plugins ls``) where such mounts still fail, e.g. with an
    overlay filesystem beneath on an older kernel, or without CAP_SYS_ADMIN.
    """
    mount, umount = shutil.which("mount"), shutil.which("umount")
    if mount is None or umount is None:
        return "no mount(8)/umount(8) to probe overlayfs with"
    probe = Path(tempfile.mkdtemp(prefix="overlay-probe-", dir=directory))
    try:
        dirs = {name: probe / name for name in ("lower1", "lower2", "upper", "work", "merged")}
        for path in dirs.values():
            path.mkdir()
        (dirs["lower1"] / "file").write_text("lower\n")
        options = (f"lowerdir={dirs['lower2']}:{dirs['lower1']},upperdir={dirs['upper']},"
                   f"workdir={dirs['work']}")
        mounted = subprocess.run([mount, "-t", "overlay", "overlay", "-o", options,
                                  str(dirs["merged"])], capture_output=True, text=True,
                                 timeout=10, check=False)
        if mounted.returncode != 0:
            return f"overlay mount failed: {mounted.stderr.strip()}"
        try:
            if (dirs["merged"] / "file").read_text() != "lower\n":
                return "overlay mount does not show its lower layer"
        finally:
            subprocess.run([umount, str(dirs["merged"])], capture_output=True, timeout=10,
                           check=False)
        return None
    finally:
        shutil.rmtree(probe, ignore_errors=True)


def choose_snapshotter(plugins: str, root: Path) -> tuple[str, str]:
    """overlayfs (containerd's default) when it really works here, else native (plain copies)."""
    status = next((line.split()[-1] for line in plugins.splitlines()
                   if line.split()[:2] == ["io.containerd.snapshotter.v1", "overlayfs"]), None)
    if status != "ok":
        return "native", f"the overlayfs snapshotter plugin is {status or 'absent'}"
    problem = overlay_mount_works(root)
    if problem is not None:
        return "native", problem
    return "overlayfs", "overlayfs plugin loaded and an overlay mount works under its root"


def unmount_below(directory: Path) -> None:
    """Unmount whatever a failed test left mounted below ``directory`` (deepest first)."""
    umount = shutil.which("umount")
    if umount is None:
        return
    prefix = str(directory) + os.sep
    with open("/proc/self/mountinfo") as mountinfo:
        points = [line.split()[4] for line in mountinfo]
    for point in sorted((p for p in points if p.startswith(prefix)), reverse=True):
        subprocess.run([umount, "--lazy", point], capture_output=True, timeout=10, check=False)
