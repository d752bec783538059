"""The node preflight of docs/deploy.md: ``containerd config dump`` on a node (read-only: the
config as containerd merged it, imports included), then ``regfront containerd-config --dry-run``
on that dump anywhere gives the answer regfront gives on the node itself - the same directories
and the same setting - for every node config of the kubelet-path matrix, on containerd 1.6,
2.1.9 and 2.2.7, and writes nothing.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e.harness import clean_env, regfront_binary, run
from tests.e2e.nodes import (
    LIST,
    LIST_DISCARD,
    LIST_LOCAL_PULL,
    ONE_DIR,
    UNSET,
    VERSIONS,
    NodeConfig,
    Version,
    config_toml,
    containerd_binary,
)

pytestmark = pytest.mark.e2e

CONFIGS = [ONE_DIR, LIST, LIST_DISCARD, LIST_LOCAL_PULL, UNSET]
FULL_VERSION = {"1.6": "1.6.20", "2.1.9": "2.1.9", "2.2.7": "2.2.7"}


def _dry_run(version: Version, config: Path) -> tuple[str, str]:
    """What regfront would write for ``config`` and why: (stdout, stderr without file names)."""
    result = run([regfront_binary(), "containerd-config", "--dry-run",
                  "--containerd-version", FULL_VERSION[version], "--containerd-config",
                  str(config), "--gateway", "http://regfront.internal", "--registry", "docker.io",
                  "--registry", "ghcr.io"], env=clean_env("REGFRONT_"))
    return result.stdout, result.stderr.replace(str(config), "CONFIG")


# Every node config of the matrix that the version has (1.6 has no use_local_image_pull).
CASES = [(version, node) for version in VERSIONS for node in CONFIGS
         if not (version == "1.6" and node.use_local_image_pull)]


@pytest.fixture(scope="module")
def binaries(tmp_path_factory: pytest.TempPathFactory) -> dict[Version, Path]:
    work = tmp_path_factory.mktemp("containerd")
    return {version: containerd_binary(version, work) for version in VERSIONS}


@pytest.mark.parametrize(("version", "node"), CASES, ids=[f"{v}-{n}" for v, n in CASES])
def test_a_dump_of_the_node_config_gives_the_same_answer(
        tmp_path: Path, binaries: dict[Version, Path], version: Version,
        node: NodeConfig) -> None:
    binary = binaries[version]
    base = tmp_path / "node"
    # The node's settings in an imported file, as nodeadm and other bootstrappers write them.
    own = config_toml(version, node, base, tmp_path / "c.sock", "native")
    main_version = own.partition("\n")[0]
    imported = tmp_path / "registry.toml"
    imported.write_text(own)
    config = tmp_path / "config.toml"
    config.write_text(f"{main_version}\nimports = [{str(imported)!r}]\n")
    dump = tmp_path / "dump.toml"
    dump.write_text(run([str(binary), "--config", str(config), "config", "dump"]).stdout)

    on_node, why = _dry_run(version, config)
    from_dump, why_from_dump = _dry_run(version, dump)
    assert on_node.split(), "it names the files it would write"
    assert (from_dump, why_from_dump) == (on_node, why)
    assert "nothing written" in why
    assert not base.exists()
    assert {p.name for p in tmp_path.iterdir()} == {"registry.toml", "config.toml", "dump.toml"}
