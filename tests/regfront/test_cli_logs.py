"""Logs people can use: ISO-8601 times, ``--log-level``/``--log-format`` on the group with their
``REGFRONT_LOG_*`` twins (over the config's ``telemetry.log_format``), the libraries' INFO
chatter off unless the level is debug, and uvicorn's workers logging as the command line said."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from regfront.cli import app_from_environment, main
from registry.config import Config
from registry.logs import CHATTY, JsonFormatter, TextFormatter, configure

ISO_TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


@pytest.fixture
def serving(monkeypatch: pytest.MonkeyPatch) -> None:
    """``serve`` up to uvicorn, which is not started."""
    monkeypatch.setattr("uvicorn.run", lambda app, **options: None)
    monkeypatch.setattr("regfront.startup.check_listen", lambda host, port, set_by: None)
    monkeypatch.setattr("regfront.startup.report_stores", lambda urls, budget: None)
    for name in ("PORT", "REGFRONT_LOG_LEVEL", "REGFRONT_LOG_FORMAT", "REGFRONT_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("REGFRONT_RESOLVED_CONFIG_JSON", "")  # restored after the test
    monkeypatch.setenv("REGFRONT_RESOLVED_LOGGING", "")


def _serve(runner: CliRunner, tmp_path: Path, *group: str, **env: str) -> list[str]:
    result = runner.invoke(main, [*group, "serve", "--storage", str(tmp_path)], env=env)
    assert result.exit_code == 0, result.output
    return result.output.splitlines()


def test_text_lines_start_with_an_iso_time(runner: CliRunner, serving: None,
                                           tmp_path: Path) -> None:
    lines = _serve(runner, tmp_path, "--log-format", "text")
    assert lines[0].endswith(f"INFO regfront: serving {tmp_path} on http://127.0.0.1:5000")
    assert all(ISO_TIME.match(line.split(" ", 1)[0]) for line in lines), lines


def test_json_lines_by_the_env_twin_with_an_iso_time(runner: CliRunner, serving: None,
                                                     tmp_path: Path) -> None:
    lines = _serve(runner, tmp_path, REGFRONT_LOG_FORMAT="json")
    entries = [json.loads(line) for line in lines]
    assert entries[0]["message"].startswith("serving ")
    assert all(ISO_TIME.match(entry["time"]) for entry in entries)


@pytest.mark.parametrize(("group", "env"), [(["--log-level", "warning"], {}),
                                            ([], {"REGFRONT_LOG_LEVEL": "warning"})])
def test_log_level_and_its_env_twin(runner: CliRunner, serving: None, tmp_path: Path,
                                    group: list[str], env: dict[str, str]) -> None:
    assert _serve(runner, tmp_path, *group, **env) == []


def test_the_flag_wins_over_the_config_and_the_config_over_auto(
        runner: CliRunner, serving: None, tmp_path: Path) -> None:
    config = tmp_path / "regfront.yaml"
    config.write_text(f"storage: [{{url: '{tmp_path}'}}]\ntelemetry: {{log_format: text}}\n")
    text = runner.invoke(main, ["serve", "--config", str(config)])
    assert "INFO regfront: serving" in text.output  # the config's text (auto: JSON here)
    flagged = runner.invoke(main, ["--log-format", "json", "serve", "--config", str(config)])
    assert json.loads(flagged.output.splitlines()[0])["logger"] == "regfront"


def _emitted(name: str, level: int) -> bool:
    return logging.getLogger(name).isEnabledFor(level)


@pytest.mark.parametrize("library", CHATTY)
def test_library_chatter_is_off_unless_debugging(library: str) -> None:
    configure("text", "info")
    assert not _emitted(library, logging.INFO)
    assert _emitted(library, logging.WARNING)
    assert _emitted("regfront", logging.INFO)
    configure("text", "debug")
    assert _emitted(library, logging.DEBUG)
    configure("text", "error")
    assert not _emitted(library, logging.WARNING)


def test_a_credential_lookup_is_not_logged_at_info(runner: CliRunner, serving: None,
                                                   tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    def chatty(app: str, **options: Any) -> None:
        # What aiobotocore says on every start with keys in the environment.
        logging.getLogger("aiobotocore.credentials").info("Found credentials in environment "
                                                          "variables.")
        logging.getLogger("regfront").info("still ours")

    monkeypatch.setattr("uvicorn.run", chatty)
    lines = _serve(runner, tmp_path, "--log-format", "text")
    assert any(line.endswith("still ours") for line in lines)
    assert not any("Found credentials" in line for line in lines)


def test_workers_log_as_the_command_line_said(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REGFRONT_RESOLVED_CONFIG_JSON",
                       Config.model_validate({"storage": [{"url": "memory://"}]})
                       .model_dump_json())
    monkeypatch.setenv("REGFRONT_RESOLVED_LOGGING", "text,warning")
    app_from_environment()
    root = logging.getLogger()
    assert root.level == logging.WARNING
    assert isinstance(root.handlers[0].formatter, TextFormatter)
    monkeypatch.setenv("REGFRONT_RESOLVED_LOGGING", "")  # an older parent: the config's
    app_from_environment()
    assert root.level == logging.INFO
    assert isinstance(root.handlers[0].formatter, JsonFormatter | TextFormatter)
