"""``regfront containerd-config --containerd-version``: the files go where that containerd's CRI
pulls read them, and a node that needs a setting is told which, in its config's own format."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from regfront.cli import main


def _run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, ["containerd-config", "--gateway", "http://gw:5000",
                                       "--registry", "docker.io", *args])
    return result.exit_code, result.stdout, result.stderr


def test_a_2_1_node_with_a_list_gets_the_literal_directory(tmp_path: Path) -> None:
    listed = f"{tmp_path / 'certs.d'}:{tmp_path / 'docker'}"
    config = tmp_path / "config.toml"
    config.write_text(f"version = 3\n[plugins.'io.containerd.cri.v1.images'.registry]\n"
                      f'config_path = "{listed}"\n')
    code, out, err = _run("--containerd-version", "v2.1.9", "--containerd-config", str(config))
    assert code == 0, err
    assert out.split() == [f"{listed}/docker.io/hosts.toml"]
    assert "transfer service" in err
    assert Path(listed, "docker.io", "hosts.toml").is_file()


def test_a_1_6_node_without_config_path_is_told_the_setting(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text("version = 2\n")
    code, out, err = _run("--containerd-version", "1.6.20", "--containerd-config", str(config),
                          "--out", str(tmp_path / "certs.d"))
    assert code == 0, err
    assert '[plugins."io.containerd.grpc.v1.cri".registry]' in err
    assert 'config_path = "/etc/containerd/certs.d"' in err
    assert out.split() == [str(tmp_path / "certs.d" / "docker.io" / "hosts.toml")]


def test_without_out_or_version_it_says_what_is_missing() -> None:
    code, _, err = _run()
    assert code == 1
    assert err.strip() == ("regfront: --out DIR or --containerd-version VERSION: "
                           "where to write")


def test_a_dry_run_names_the_files_and_the_setting_and_writes_nothing(tmp_path: Path) -> None:
    listed = f"{tmp_path / 'certs.d'}:{tmp_path / 'docker'}"
    config = tmp_path / "config.toml"
    config.write_text(f"version = 3\n[plugins.'io.containerd.cri.v1.images'.registry]\n"
                      f'config_path = "{listed}"\n')
    code, out, err = _run("--containerd-version", "2.1.9", "--containerd-config", str(config),
                          "--dry-run")
    assert code == 0, err
    assert out.split() == [f"{listed}/docker.io/hosts.toml"]
    assert "transfer service" in err
    assert "nothing written" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.toml"]
    # A node that needs a setting is told which, still without a file written.
    config.write_text("version = 2\n")
    code, out, err = _run("--containerd-version", "1.6.20", "--containerd-config", str(config),
                          "--out", str(tmp_path / "out"), "--dry-run")
    assert code == 0, err
    assert 'config_path = "/etc/containerd/certs.d"' in err
    assert out.split() == [str(tmp_path / "out" / "docker.io" / "hosts.toml")]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.toml"]
