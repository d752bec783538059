"""Session fixtures for the end-to-end suite (the machinery lives in harness.py).

Each server starts once per session on a free 127.0.0.1 port and is stopped by its fixture's
teardown whatever the tests did. A missing tool fails the test, never skips it.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.harness import (
    MAX_SOCKET_PATH,
    NOTES,
    Containerd,
    Gateway,
    Server,
    Skopeo,
    choose_snapshotter,
    clean_env,
    containerd_config,
    regfront_import,
    require_tool,
    run,
    serving_regfront,
    serving_registry2,
    started,
    unmount_below,
)
from tests.e2e.nodes import NodePool
from tests.images import Layout, sample_layout

# -- fixtures ----------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def oci_layout(tmp_path_factory: pytest.TempPathFactory) -> Layout:
    """The sample images (refs ``single`` and ``multi``) as an OCI image layout."""
    return sample_layout(tmp_path_factory.mktemp("oci"))


@pytest.fixture(scope="session")
def gateway(tmp_path_factory: pytest.TempPathFactory, oci_layout: Layout) -> Iterator[Gateway]:
    """regfront serving a store into which ``regfront import`` loaded demo:single and demo:multi.

    Stored as ``docker.io/library/demo``: what containerd's ``?ns=docker.io`` requests read.
    """
    work = tmp_path_factory.mktemp("gateway")
    store = work / "store"
    digests = {ref: regfront_import(oci_layout.root, ref, f"docker.io/library/demo:{ref}", store)
               for ref in ("single", "multi")}
    with serving_regfront(store, work) as server:
        yield Gateway(server.port, server.root, server.service, digests)


@pytest.fixture(scope="session")
def registry2(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """An empty registry:2: the upstream containerd falls back to, and the interop peer."""
    work = tmp_path_factory.mktemp("registry2")
    with serving_registry2(work / "root", work) as server:
        yield server


@pytest.fixture(scope="session")
def skopeo(tmp_path_factory: pytest.TempPathFactory) -> Skopeo:
    conf = tmp_path_factory.mktemp("skopeo") / "registries.conf"
    conf.write_text("# nothing: no mirrors, no search registries\n")
    return Skopeo(require_tool("skopeo"), conf)


@pytest.fixture(scope="session")
def containerd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Containerd]:
    """containerd with root, state and socket in a temp dir; CRI off; ready for ``ctr``."""
    binary, ctr = require_tool("containerd"), require_tool("ctr")
    base = tmp_path_factory.mktemp("containerd")
    short: Path | None = None
    address = base / "containerd.sock"
    if len(str(address)) > MAX_SOCKET_PATH:  # a deep basetemp: put the sockets somewhere short
        short = Path(tempfile.mkdtemp(prefix="rf-ctd-"))
        address = short / "containerd.sock"
    config = base / "config.toml"
    config.write_text(containerd_config(base, address))

    def ready() -> bool:
        if not address.exists():
            return False
        probe = [ctr, "--address", str(address), "--connect-timeout", "1s", "version"]
        try:
            return subprocess.run(probe, capture_output=True, timeout=5, check=False,
                                  env=clean_env("CONTAINERD_")).returncode == 0
        except subprocess.TimeoutExpired:
            return False

    try:
        with started("containerd", [binary, "--config", str(config)], base / "containerd.log",
                     ready, f"{address} (ctr version)") as service:
            plugins = run([ctr, "--address", str(address), "plugins", "ls"]).stdout
            snapshotter, reason = choose_snapshotter(plugins, base / "root")
            NOTES.append(f"containerd snapshotter: {snapshotter} ({reason})")
            yield Containerd(address, snapshotter, reason, service)
    finally:
        unmount_below(tmp_path_factory.getbasetemp())
        if short is not None:
            shutil.rmtree(short, ignore_errors=True)


@pytest.fixture(scope="session")
def nodes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodePool]:
    """containerd 1.6, 2.1.9 and 2.2.7 with the CRI on, each in its own mount namespace, started
    on demand by ``nodes.node(version, config)`` (tests/e2e/nodes.py); all stopped after."""
    pool = NodePool(tmp_path_factory.mktemp("nodes"))
    try:
        yield pool
    finally:
        pool.close()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Say which snapshotter containerd used: native means overlayfs does not work here."""
    for note in NOTES:
        terminalreporter.write_line(f"e2e: {note}")
