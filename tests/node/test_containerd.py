"""Where kubelet's pulls read hosts files, per containerd version and config: the rules of
containerd's CRI image plugin (v1.6 to v2.2), checked against real daemons in
tests/e2e/test_node_agent.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from node.containerd import (
    DEFAULT_LIST_2_2,
    ImageSettings,
    load_settings,
    parse_version,
    plan,
)
from registry.errors import ConfigError

LIST = "/etc/containerd/certs.d:/etc/docker/certs.d"
ONE = ImageSettings(config_path="/etc/containerd/certs.d")
AS_LIST = ImageSettings(config_path=LIST)
DISCARD = ImageSettings(config_path=LIST, discard_unpacked_layers=True)
UNSET = ImageSettings()


@pytest.mark.parametrize(("text", "version"), [
    ("v2.1.9", (2, 1)), ("1.6.20~ds1", (1, 6)), ("2.2.0-rc.1", (2, 2)), ("v1.7.27", (1, 7))])
def test_versions_as_the_cri_reports_them(text: str, version: tuple[int, int]) -> None:
    assert parse_version(text) == version


def test_a_version_that_is_not_one_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="containerd version 'dev'"):
        parse_version("dev")


@pytest.mark.parametrize(("version", "settings", "dirs", "path"), [
    # one directory: read there on every version
    ((1, 6), ONE, ("/etc/containerd/certs.d",), "local"),
    ((2, 1), ONE, ("/etc/containerd/certs.d",), "transfer"),
    ((2, 2), ONE, ("/etc/containerd/certs.d",), "transfer"),
    # EKS AL2023's list: split by the local pull, one literal path for the transfer service
    ((1, 6), AS_LIST, ("/etc/containerd/certs.d",), "local"),
    ((2, 0), AS_LIST, ("/etc/containerd/certs.d",), "local"),
    ((2, 1), AS_LIST, (LIST,), "transfer"),
    ((2, 2), AS_LIST, (LIST,), "transfer"),
    # ... unless a setting the transfer service lacks forces the local pull
    ((2, 1), DISCARD, ("/etc/containerd/certs.d",), "local"),
    ((2, 2), ImageSettings(config_path=LIST, use_local_image_pull=True),
     ("/etc/containerd/certs.d",), "local"),
    ((2, 2), ImageSettings(config_path=LIST, max_concurrent_downloads=5),
     ("/etc/containerd/certs.d",), "local"),
    ((2, 2), ImageSettings(config_path=LIST, disable_snapshot_annotations=False),
     ("/etc/containerd/certs.d",), "local"),
    # unset: nowhere before 2.2; 2.2's default list, read literally
    ((1, 6), UNSET, (), "local"),
    ((2, 1), UNSET, (), "transfer"),
    ((2, 2), UNSET, (DEFAULT_LIST_2_2,), "transfer"),
])
def test_where_the_cri_reads_hosts_files(version: tuple[int, int], settings: ImageSettings,
                                         dirs: tuple[str, ...], path: str) -> None:
    decided = plan(version, settings)
    assert (decided.dirs, decided.pull_path) == (dirs, path), decided.why
    assert (decided.change is None) == bool(dirs)


def test_unset_before_2_2_names_the_setting_in_the_files_own_format() -> None:
    v2 = plan((1, 6), ImageSettings(config_version=2)).change
    v3 = plan((2, 1), ImageSettings(config_version=3)).change
    assert v2 == ('[plugins."io.containerd.grpc.v1.cri".registry]\n'
                  '  config_path = "/etc/containerd/certs.d"')
    assert v3 == ("[plugins.'io.containerd.cri.v1.images'.registry]\n"
                  '  config_path = "/etc/containerd/certs.d"')


def test_settings_of_a_version_2_file(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text('version = 2\n[plugins."io.containerd.grpc.v1.cri".registry]\n'
                      f'config_path = "{LIST}"\n'
                      '[plugins."io.containerd.grpc.v1.cri".containerd]\n'
                      "discard_unpacked_layers = true\n")
    assert load_settings(config) == DISCARD


def test_settings_of_a_version_3_file_and_its_imports(tmp_path: Path) -> None:
    (tmp_path / "conf.d").mkdir()
    config = tmp_path / "config.toml"
    config.write_text('version = 3\nimports = ["conf.d/*.toml"]\n'
                      "[plugins.'io.containerd.cri.v1.images'.registry]\n"
                      'config_path = "/somewhere/else"\n')
    (tmp_path / "conf.d" / "10-local.toml").write_text(
        "version = 3\n[plugins.'io.containerd.cri.v1.images']\nuse_local_image_pull = true\n"
        "[plugins.'io.containerd.cri.v1.images'.registry]\n"
        f'config_path = "{LIST}"\n')
    assert load_settings(config) == ImageSettings(config_version=3, config_path=LIST,
                                                  use_local_image_pull=True)


def test_a_missing_file_is_containerds_defaults(tmp_path: Path) -> None:
    assert load_settings(tmp_path / "absent.toml") == ImageSettings()


def test_a_broken_file_names_itself(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text("version = [\n")
    with pytest.raises(ConfigError, match=r"config.toml: not valid TOML"):
        load_settings(config)
