"""``regfront serve`` and ``$PORT``: platforms that name the port (Cloud Run) get 0.0.0.0:$PORT."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from regfront.cli import main


@pytest.fixture
def served(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, int]]:
    """Where ``serve`` would listen: uvicorn.run is replaced by a recorder."""
    calls: list[tuple[str, int]] = []

    def run(app: str, *, host: str, port: int, **options: Any) -> None:
        calls.append((host, port))

    monkeypatch.setattr("uvicorn.run", run)
    # Where, not whether: the bind test and the store report have tests of their own.
    monkeypatch.setattr("regfront.startup.check_listen", lambda host, port, set_by: None)
    monkeypatch.setattr("regfront.startup.report_stores", lambda urls, budget: None)
    for name in ("PORT", "REGFRONT_LISTEN", "REGFRONT_CONFIG", "REGFRONT_STORAGE"):
        monkeypatch.delenv(name, raising=False)
    # serve hands the config to its workers through this variable: restored after the test.
    monkeypatch.setenv("REGFRONT_RESOLVED_CONFIG_JSON", "")
    return calls


def _serve(monkeypatch: pytest.MonkeyPatch, args: list[str], **env: str) -> int:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    result = CliRunner().invoke(main, ["serve", *args])
    return result.exit_code


def test_port_sets_the_default_address(monkeypatch: pytest.MonkeyPatch,
                                       served: list[tuple[str, int]]) -> None:
    assert _serve(monkeypatch, [], PORT="8080") == 0
    assert served == [("0.0.0.0", 8080)]


def test_without_port_the_default_is_loopback(monkeypatch: pytest.MonkeyPatch,
                                              served: list[tuple[str, int]]) -> None:
    assert _serve(monkeypatch, []) == 0
    assert served == [("127.0.0.1", 5000)]


def test_listen_flag_wins_over_port(monkeypatch: pytest.MonkeyPatch,
                                    served: list[tuple[str, int]]) -> None:
    assert _serve(monkeypatch, ["--listen", "127.0.0.1:9000"], PORT="8080") == 0
    assert served == [("127.0.0.1", 9000)]


def test_listen_env_twin_wins_over_port(monkeypatch: pytest.MonkeyPatch,
                                        served: list[tuple[str, int]]) -> None:
    assert _serve(monkeypatch, [], PORT="8080", REGFRONT_LISTEN="[::1]:9001") == 0
    assert served == [("::1", 9001)]


def test_config_file_listen_wins_over_port(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                           served: list[tuple[str, int]]) -> None:
    config = tmp_path / "regfront.yaml"
    config.write_text("gateway:\n  listen: 127.0.0.1:7000\n")
    assert _serve(monkeypatch, ["--config", str(config)], PORT="8080") == 0
    assert served == [("127.0.0.1", 7000)]


def test_a_bad_port_is_one_line_and_exit_1(monkeypatch: pytest.MonkeyPatch,
                                           served: list[tuple[str, int]]) -> None:
    monkeypatch.setenv("PORT", "http")
    result = CliRunner().invoke(main, ["serve"])
    assert result.exit_code == 1
    assert result.output.strip() == "regfront: PORT='http': expected a port number"
    assert served == []
