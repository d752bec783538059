"""``regfront serve`` at start: a busy address fails in one line before anything claims to
serve (one worker or several); each store's first read is reported, a refused endpoint as
refused; ``--access-log`` logs every request, so a newcomer sees a pull go through."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner

from regfront.cli import main
from tests.conftest import MotoS3
from tests.regfront.conftest import one_line_error

ISO_TIME = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z"


@pytest.fixture
def busy() -> Iterator[int]:
    """A port something else listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


@pytest.fixture
def started(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """uvicorn.run, recorded; it waits for the store report the command started, as the real
    server would run beside it."""
    calls: list[dict[str, Any]] = []

    def run(app: str, **options: Any) -> None:
        calls.append(options)
        for thread in threading.enumerate():
            if thread.name == "store-report":
                thread.join(30)

    monkeypatch.setattr("uvicorn.run", run)
    for name in ("PORT", "REGFRONT_LISTEN", "REGFRONT_CONFIG", "REGFRONT_STORAGE",
                 "REGFRONT_ACCESS_LOG"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("REGFRONT_RESOLVED_CONFIG_JSON", "")  # restored after the test
    monkeypatch.setenv("REGFRONT_RESOLVED_LOGGING", "")
    return calls


@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_busy_port_fails_before_serving_naming_the_flag(
        runner: CliRunner, busy: int, started: list[dict[str, Any]], tmp_path: Path,
        workers: str) -> None:
    result = runner.invoke(main, ["--log-format", "text", "serve", "--storage", str(tmp_path),
                                  "--listen", f"127.0.0.1:{busy}", "--workers", workers])
    assert result.exit_code == 1
    assert one_line_error(result.output) == (
        f"regfront: cannot listen on 127.0.0.1:{busy}: address already in use (another "
        "regfront, or another program) - fix: choose another with --listen HOST:PORT or "
        "REGFRONT_LISTEN")
    assert started == []


def test_a_busy_port_from_port_or_the_config_names_that(
        runner: CliRunner, busy: int, started: list[dict[str, Any]], tmp_path: Path) -> None:
    # 0.0.0.0 includes the loopback address the other program holds.
    result = runner.invoke(main, ["serve", "--storage", str(tmp_path)], env={"PORT": str(busy)})
    assert "the address comes from PORT=" in one_line_error(result.output)
    config = tmp_path / "regfront.yaml"
    config.write_text(f"gateway: {{listen: '127.0.0.1:{busy}'}}\n")
    result = runner.invoke(main, ["serve", "--config", str(config)])
    assert f"or gateway.listen in {config}" in one_line_error(result.output)
    assert started == []


def test_a_refused_store_is_reported_as_refused_naming_its_endpoint(
        runner: CliRunner, started: list[dict[str, Any]], tmp_path: Path, moto_s3: MotoS3,
        refused_port: int) -> None:
    endpoint = f"http://127.0.0.1:{refused_port}"
    result = runner.invoke(main, [
        "--log-format", "text", "serve", "--listen", f"127.0.0.1:{refused_port}",
        "--storage", f"s3://near/mirror?endpoint={endpoint}&region=us-east-1",
        "--storage", str(tmp_path / "primary")])
    assert result.exit_code == 0, result.output
    assert len(started) == 1
    lines = result.output.splitlines()
    refused = [line for line in lines if "s3://near" in line and "WARNING" in line]
    assert len(refused) == 1, result.output
    assert refused[0].split(" ", 1)[1] == (
        f"WARNING regfront: store s3://near/mirror at {endpoint}: read: connection refused - "
        "fix: check that the store runs there and the host and port are right: set them with "
        "?endpoint=URL in the storage URL (or AWS_ENDPOINT_URL_S3)")
    assert f"INFO regfront: store {tmp_path / 'primary'} answers" in result.output
    assert "timeout" not in result.output.lower()


def test_access_log_flag_and_its_env_twin(runner: CliRunner, started: list[dict[str, Any]],
                                          tmp_path: Path, refused_port: int) -> None:
    def sample(args: list[str], **env: str) -> float:
        result = runner.invoke(main, ["serve", "--listen", f"127.0.0.1:{refused_port}",
                                      "--storage",
                                      str(tmp_path), *args], env=env)
        assert result.exit_code == 0, result.output
        config = json.loads(os.environ["REGFRONT_RESOLVED_CONFIG_JSON"])
        return float(config["telemetry"]["access_log_sample"])

    assert sample([]) == 0.0
    assert sample(["--access-log"]) == 1.0
    assert sample([], REGFRONT_ACCESS_LOG="1") == 1.0
    assert sample(["--no-access-log"], REGFRONT_ACCESS_LOG="1") == 0.0


def _serve(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "regfront", "--log-format", "text", "serve",
                             *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={k: v for k, v in os.environ.items()
                                 if not k.startswith(("REGFRONT_", "PORT"))})


def test_a_newcomer_sees_each_pull_and_a_second_server_fails_fast(
        tmp_path: Path, refused_port: int) -> None:
    listen = f"127.0.0.1:{refused_port}"
    server = _serve("--listen", listen, "--storage", str(tmp_path), "--access-log")
    try:
        seen: list[str] = []
        assert server.stdout is not None
        deadline = time.monotonic() + 30
        while not any("Uvicorn running" in line for line in seen):
            assert server.poll() is None, seen
            assert time.monotonic() < deadline, seen
            seen.append(server.stdout.readline())
        response = httpx.get(f"http://{listen}/v2/library/alpine/manifests/3.20?ns=docker.io")
        assert response.status_code == 404
        second = _serve("--listen", listen, "--storage", str(tmp_path), "--workers", "2")
        output, _ = second.communicate(timeout=30)
        assert second.returncode == 1
        assert output.strip() == (f"regfront: cannot listen on {listen}: address already in "
                                  "use (another regfront, or another program) - fix: choose "
                                  "another with --listen HOST:PORT or REGFRONT_LISTEN")
    finally:
        server.terminate()
        rest, _ = server.communicate(timeout=30)
    lines = "".join(seen).splitlines() + rest.splitlines()
    access = [line for line in lines if " INFO regfront.access: " in line]
    assert len(access) == 1, lines
    assert access[0].endswith("INFO regfront.access: GET /v2/library/alpine/manifests/3.20 404")
    assert re.match(ISO_TIME + " INFO regfront.access", access[0])
    assert any("access log on" in line for line in lines)


def test_a_bad_certificate_pair_is_one_line_before_serving(
        runner: CliRunner, started: list[dict[str, Any]], tmp_path: Path) -> None:
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")
    result = runner.invoke(main, ["serve", "--storage", str(tmp_path), "--tls-cert", str(junk),
                                  "--tls-key", str(junk)])
    assert result.exit_code == 1
    assert "cannot be loaded as a PEM certificate chain" in one_line_error(result.output)
    assert started == []
