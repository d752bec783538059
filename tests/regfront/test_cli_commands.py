"""The ``regfront`` command line: errors are one line and exit 1; flags have env twins."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import pytest
from click.testing import CliRunner

from regfront.cli import main
from registry import layout
from registry.digest import Digest
from tests.images import sample_layout


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


def _one_line_error(output: str) -> str:
    lines = [line for line in output.splitlines() if line.strip()]
    assert len(lines) == 1, output
    assert lines[0].startswith("regfront: ")
    return lines[0]


def test_import_into_a_file_store(runner: CliRunner, tmp_path: Path) -> None:
    oci = sample_layout(tmp_path / "oci")
    store = tmp_path / "store"
    result = runner.invoke(main, ["import", f"oci:{oci.root}:multi",
                                  "Registry-1.Docker.io/library/demo:1", "--storage", str(store)])
    assert result.exit_code == 0, result.output
    digest = Digest.parse(json.loads(result.output)["digest"])
    link = store / layout.tag_current_link("docker.io/library/demo", "1")
    assert link.read_text() == str(digest)


@pytest.mark.parametrize(("args", "message"), [
    (["import", "docker://x", "a:b", "--storage", "{store}"], "expected oci:DIR[:REF]"),
    (["import", "oci:{oci}:single", "Bad Name:1", "--storage", "{store}"], "NAME_INVALID"),
    (["import", "oci:{oci}:single", "a:b", "--storage", "ftp://x"], "unsupported scheme"),
    (["import", "oci:{oci}:nope", "a:b", "--storage", "{store}"], "no image named 'nope'"),
])
def test_import_errors(runner: CliRunner, tmp_path: Path, args: list[str], message: str) -> None:
    oci = sample_layout(tmp_path / "oci")
    args = [a.format(oci=oci.root, store=tmp_path / "store") for a in args]
    result = runner.invoke(main, args)
    assert result.exit_code == 1
    assert message in _one_line_error(result.output)
    assert not (tmp_path / "store").exists()


def test_serve_refuses_a_bad_config_before_serving(runner: CliRunner, tmp_path: Path) -> None:
    config = tmp_path / "regfront.yaml"
    config.write_text("gateway:\n  listen: 127.0.0.1:1\n  cache: 5\n")
    result = runner.invoke(main, ["serve", "--config", str(config)])
    assert result.exit_code == 1
    assert _one_line_error(result.output) == f"regfront: {config}:3: gateway.cache: unknown key"


def test_serve_config_comes_from_the_environment_too(runner: CliRunner, tmp_path: Path) -> None:
    config = tmp_path / "regfront.yaml"
    config.write_text("storage:\n  - url: gopher://nowhere\n")
    result = runner.invoke(main, ["serve"], env={"REGFRONT_CONFIG": str(config)})
    assert result.exit_code == 1
    assert "unsupported scheme 'gopher'" in _one_line_error(result.output)


def test_serve_flag_values_are_validated(runner: CliRunner) -> None:
    result = runner.invoke(main, ["serve", "--listen", "nowhere"])
    assert result.exit_code == 1
    assert "invalid listen address 'nowhere'" in _one_line_error(result.output)
    result = runner.invoke(main, ["serve"], env={"REGFRONT_WORKERS": "0"})
    assert result.exit_code == 1
    assert "workers" in _one_line_error(result.output)


def test_containerd_config_puts_the_gateway_first(runner: CliRunner, tmp_path: Path) -> None:
    result = runner.invoke(main, [
        "containerd-config", "--gateway", "https://regfront.internal:5000/",
        "--registry", "docker.io", "--registry", "ghcr.io",
        "--registry", "reg.corp:5000=http://127.0.0.1:5001", "--registry", "_default",
        "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    hub = tomllib.loads((tmp_path / "docker.io" / "hosts.toml").read_text())
    assert hub["server"] == "https://registry-1.docker.io"
    assert hub["host"] == {"https://regfront.internal:5000": {
        "capabilities": ["pull", "resolve"], "dial_timeout": "3s"}}
    ghcr = tomllib.loads((tmp_path / "ghcr.io" / "hosts.toml").read_text())
    assert ghcr["server"] == "https://ghcr.io"
    corp = tomllib.loads((tmp_path / "reg.corp:5000" / "hosts.toml").read_text())
    assert corp["server"] == "http://127.0.0.1:5001"
    catch_all = tomllib.loads((tmp_path / "_default" / "hosts.toml").read_text())
    assert "server" not in catch_all
    assert list(catch_all["host"]) == ["https://regfront.internal:5000"]


def test_containerd_config_tls_options(runner: CliRunner, tmp_path: Path) -> None:
    result = runner.invoke(main, ["containerd-config", "--gateway", "https://gw", "--registry",
                                  "Registry-1.Docker.IO", "--out", str(tmp_path),
                                  "--skip-verify", "--ca-file", "/etc/ca.pem",
                                  "--dial-timeout", "1s"])
    assert result.exit_code == 0, result.output
    host = tomllib.loads((tmp_path / "docker.io" / "hosts.toml").read_text())["host"]["https://gw"]
    assert host == {"capabilities": ["pull", "resolve"], "dial_timeout": "1s",
                    "skip_verify": True, "ca": "/etc/ca.pem"}


@pytest.mark.parametrize(("args", "message"), [
    (["--gateway", "gw:5000", "--registry", "docker.io"], "expected an http:// or https:// URL"),
    (["--gateway", "http://gw", "--registry", "not a host"], "not a registry host name"),
])
def test_containerd_config_errors(runner: CliRunner, tmp_path: Path, args: list[str],
                                  message: str) -> None:
    result = runner.invoke(main, ["containerd-config", *args, "--out", str(tmp_path / "out")])
    assert result.exit_code == 1
    assert message in _one_line_error(result.output)
    assert not (tmp_path / "out").exists()


def test_containerd_config_client_certificates(runner: CliRunner, tmp_path: Path) -> None:
    result = runner.invoke(main, ["containerd-config", "--gateway", "https://gw", "--registry",
                                  "ghcr.io", "--out", str(tmp_path), "--client-cert",
                                  "/etc/node.pem", "--client-key", "/etc/node-key.pem"])
    assert result.exit_code == 0, result.output
    host = tomllib.loads((tmp_path / "ghcr.io" / "hosts.toml").read_text())["host"]["https://gw"]
    assert host["client"] == [["/etc/node.pem", "/etc/node-key.pem"]]
    half = runner.invoke(main, ["containerd-config", "--gateway", "https://gw", "--registry",
                                "ghcr.io", "--out", str(tmp_path), "--client-cert", "/x"])
    assert half.exit_code == 1
    assert "go together" in _one_line_error(half.output)


def test_serve_needs_both_tls_files(runner: CliRunner, tmp_path: Path) -> None:
    cert = tmp_path / "cert.pem"
    cert.write_text("x")
    result = runner.invoke(main, ["serve", "--tls-cert", str(cert)])
    assert result.exit_code == 1
    assert "tls_cert and tls_key go together" in _one_line_error(result.output)
    missing = runner.invoke(main, ["serve", "--tls-cert", str(cert), "--tls-key", "/nope.pem"])
    assert missing.exit_code == 1
    assert "/nope.pem: no such file" in _one_line_error(missing.output)


def test_sync_names_an_unknown_rule_in_one_line(tmp_path: Path) -> None:
    config = tmp_path / "regfront.yaml"
    config.write_text("upstreams: {ghcr.io: {urls: ['https://ghcr.io']}}\n"
                      "mirror: [{name: app, registry: ghcr.io, repositories: [team/app]}]\n")
    result = CliRunner().invoke(main, ["sync", "--config", str(config), "--rule", "apps"])
    assert result.exit_code == 1
    assert result.stderr.strip() == ("regfront: --rule apps: no mirror rule of that name "
                                     "(rules: app)")
