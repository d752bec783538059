"""Simulated nodes: private containerd instances (own root, state and socket) driven with ctr,
and skopeo isolated from the machine's registries.conf and policy.

A node's containerd and its ``ctr`` clients run on the load core. Pulls are timed from the
``ctr images pull`` launch to its exit; ``remove_all`` empties the content store between runs
(``ctr images rm --sync`` garbage-collects synchronously), so every pull fetches every byte.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from bench.common import LOAD_CPU, pinned
from tests.e2e.harness import (
    Service,
    choose_snapshotter,
    clean_env,
    containerd_config,
    started,
    unmount_below,
)

NAMESPACE = "regfront-bench"
PULL_TIMEOUT = 1800.0


class PullError(RuntimeError):
    """A ctr or skopeo command failed; the message carries its output."""


@dataclass(frozen=True)
class Node:
    """One containerd instance and the ``ctr`` calls a benchmark makes on it."""

    name: str
    address: Path
    snapshotter: str
    service: Service

    def _argv(self, *args: str) -> list[str]:
        ctr = shutil.which("ctr") or "ctr"
        return pinned(LOAD_CPU, [ctr, "--address", str(self.address), "-n", NAMESPACE, *args])

    def _env(self) -> dict[str, str]:
        return clean_env("CONTAINERD_", CONTAINERD_SNAPSHOTTER=self.snapshotter)

    def ctr(self, *args: str, timeout: float = 120.0) -> str:
        result = subprocess.run(self._argv(*args), capture_output=True, text=True,
                                timeout=timeout, env=self._env(), check=False)
        if result.returncode != 0:
            raise PullError(f"{self.name}: ctr {' '.join(args)} exited {result.returncode}:\n"
                            f"{result.stdout[-2000:]}{result.stderr[-2000:]}")
        return result.stdout

    def start_pull(self, ref: str, hosts_dir: Path) -> subprocess.Popen[bytes]:
        """``ctr images pull --hosts-dir`` for linux/amd64, started and not waited for."""
        argv = self._argv("images", "pull", "--hosts-dir", str(hosts_dir), "--platform",
                          "linux/amd64", ref)
        return subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, env=self._env())

    def pull(self, ref: str, hosts_dir: Path) -> float:
        """One full pull; its wall time in seconds."""
        started_at = time.perf_counter()
        process = self.start_pull(ref, hosts_dir)
        finish(process, f"{self.name}: pull {ref}")
        return time.perf_counter() - started_at

    def remove_all(self) -> None:
        refs = [line.split()[0] for line in self.ctr("images", "ls", "--quiet").splitlines()
                if line.strip()]
        if refs:
            self.ctr("images", "rm", "--sync", *refs, timeout=600)
        left = self.ctr("content", "ls", "--quiet").split()
        if left:
            raise PullError(f"{self.name}: content left after removing every image: {left[:5]}")


def finish(process: subprocess.Popen[bytes], what: str, timeout: float = PULL_TIMEOUT) -> None:
    """Wait for a started ctr; a failure raises with its stderr, a hang is killed."""
    try:
        _, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.communicate()
        raise PullError(f"{what}: timed out after {timeout:g} s") from None
    if process.returncode != 0:
        raise PullError(f"{what}: exited {process.returncode}:\n{stderr.decode()[-3000:]}")


@contextlib.contextmanager
def containerd_nodes(count: int, work: Path) -> Iterator[list[Node]]:
    """``count`` containerd instances under a short temp dir (socket paths are limited)."""
    binary = shutil.which("containerd")
    if binary is None:
        raise SystemExit("containerd is not installed (`make bench` installs it)")
    short = Path(tempfile.mkdtemp(prefix="rfb-", dir="/tmp"))
    try:
        with contextlib.ExitStack() as stack:
            nodes = []
            for i in range(count):
                base = work / f"node{i}"
                base.mkdir(parents=True)
                address = short / f"n{i}.sock"
                config = base / "config.toml"
                config.write_text(containerd_config(base, address))
                service = stack.enter_context(started(
                    f"containerd node{i}", pinned(LOAD_CPU, [binary, "--config", str(config)]),
                    base / "containerd.log", _ready(address), f"{address}"))
                nodes.append((f"node{i}", address, base, service))
            plugins = subprocess.run(
                [shutil.which("ctr") or "ctr", "--address", str(nodes[0][1]), "plugins", "ls"],
                capture_output=True, text=True, timeout=60, check=True).stdout
            snapshotter, _ = choose_snapshotter(plugins, nodes[0][2] / "root")
            yield [Node(name, address, snapshotter, service)
                   for name, address, _, service in nodes]
    finally:
        unmount_below(work)
        shutil.rmtree(short, ignore_errors=True)


def _ready(address: Path) -> Callable[[], bool]:
    def ready() -> bool:
        if not address.exists():
            return False
        probe = [shutil.which("ctr") or "ctr", "--address", str(address), "--connect-timeout",
                 "1s", "version"]
        try:
            return subprocess.run(probe, capture_output=True, timeout=5, check=False,
                                  env=clean_env("CONTAINERD_")).returncode == 0
        except subprocess.TimeoutExpired:
            return False

    return ready


def direct_hosts(hosts_dir: Path, registry: str, server_url: str) -> Path:
    """A hosts.toml sending ``registry``'s pulls straight to ``server_url``."""
    directory = hosts_dir / registry
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "hosts.toml").write_text(
        f'server = "{server_url}"\n\n[host."{server_url}"]\n'
        '  capabilities = ["pull", "resolve"]\n')
    return hosts_dir


def skopeo_copy(source: str, destination: Path, registries_conf: Path) -> float:
    """``skopeo copy docker://... dir:DEST`` on the load core; its wall time in seconds."""
    skopeo = shutil.which("skopeo") or "skopeo"
    argv = pinned(LOAD_CPU, [skopeo, "--insecure-policy", "--registries-conf",
                             str(registries_conf), "copy", "--src-tls-verify=false", source,
                             f"dir:{destination}"])
    started_at = time.perf_counter()
    result = subprocess.run(argv, capture_output=True, text=True, timeout=PULL_TIMEOUT,
                            env=clean_env("CONTAINERS_", "REGISTRY_AUTH_FILE"), check=False)
    elapsed = time.perf_counter() - started_at
    shutil.rmtree(destination, ignore_errors=True)
    if result.returncode != 0:
        raise PullError(f"skopeo copy {source} exited {result.returncode}:\n"
                        f"{result.stderr[-3000:]}")
    return elapsed
