"""checkov over terraform/, deploy/kubernetes/ and the Dockerfile: nothing fails but what
checkov-skips.yaml lists with a reason, and every entry there still matches a finding.

checkov lives in a venv of its own (``make checkov-venv``): its pins clash with the dev extra's.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.conftest import ROOT

CHECKOV = ROOT / ".venv" / "checkov" / "bin" / "checkov"
SKIPS: dict[str, dict[str, Any]] = yaml.safe_load(
    (Path(__file__).parent / "checkov-skips.yaml").read_text())
TARGETS = [
    ["--directory", str(ROOT / "terraform"), "--framework", "terraform"],
    ["--directory", str(ROOT / "deploy" / "kubernetes"), "--framework", "kubernetes"],
    ["--file", str(ROOT / "Dockerfile"), "--framework", "dockerfile"],
]


@pytest.fixture(scope="module")
def findings() -> list[tuple[str, str]]:
    """(check id, "<file>:<resource>") of every failed check, all frameworks."""
    if not CHECKOV.is_file():
        pytest.fail(f"{CHECKOV} is missing: make checkov-venv")
    env = {**os.environ, "BC_SKIP_MAPPING": "TRUE", "CHECKOV_RUN_SCA_PACKAGE_SCAN_V2": "false"}
    failed = []
    for target in TARGETS:
        # --skip-download: no network for guidelines; exit status 1 just means findings.
        result = subprocess.run([str(CHECKOV), *target, "--output", "json", "--quiet",
                                 "--compact", "--skip-download"],
                                capture_output=True, text=True, check=False, env=env)
        assert result.returncode in (0, 1), result.stderr[-2000:]
        reports = json.loads(result.stdout) if result.stdout.strip() else []
        for report in reports if isinstance(reports, list) else [reports]:
            if "results" not in report:  # {"passed": 0, "failed": 0, ...} when nothing ran
                continue
            assert report["summary"]["parsing_errors"] == 0, report["summary"]
            assert report["summary"]["passed"] > 0
            failed += [(check["check_id"], f"{check['file_path']}:{check['resource']}")
                       for check in report["results"]["failed_checks"]]
    return failed


def _covered(check_id: str, where: str) -> bool:
    skip = SKIPS.get(check_id)
    return skip is not None and any(part in where for part in skip.get("where", [""]))


def test_every_skip_has_a_reason() -> None:
    for check_id, skip in SKIPS.items():
        assert len(str(skip.get("reason", "")).split()) >= 8, check_id
        assert set(skip) <= {"reason", "where"}, check_id


def test_nothing_fails_but_the_listed_skips(findings: list[tuple[str, str]]) -> None:
    unexpected = sorted({f"{check_id} {where}" for check_id, where in findings
                         if not _covered(check_id, where)})
    assert not unexpected, "\n".join(unexpected)


def test_every_listed_skip_still_matches_a_finding(findings: list[tuple[str, str]]) -> None:
    stale = [check_id for check_id, skip in SKIPS.items()
             if not any(found == check_id and _covered(found, where)
                        for found, where in findings)]
    assert not stale, f"no longer found, remove from checkov-skips.yaml: {stale}"
