"""schemathesis against the live gateway, driven by docs/openapi.yaml: no 5xx, every status
and content type as documented. Bounded: a fixed number of examples per operation."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.harness import Gateway, clean_env

pytestmark = pytest.mark.e2e

SPEC = Path(__file__).resolve().parents[2] / "docs" / "openapi.yaml"


def test_the_live_gateway_conforms_to_its_openapi_description(gateway: Gateway,
                                                              tmp_path: Path) -> None:
    binary = shutil.which("schemathesis", path=str(Path(sys.executable).parent))
    if binary is None:
        pytest.fail("schemathesis is not installed (make install puts it in .venv)")
    done = subprocess.run(
        [binary, "run", str(SPEC), "--url", gateway.url, "--max-examples", "25",
         "--checks", "not_a_server_error,status_code_conformance,content_type_conformance,"
         "response_schema_conformance", "--seed", "1", "--workers", "1",
         "--request-timeout", "5", "--phases", "examples,coverage,fuzzing"],
        capture_output=True, text=True, timeout=300, cwd=tmp_path, env=clean_env("SCHEMATHESIS_"),
        check=False)
    report = done.stdout[-6000:] + done.stderr[-2000:]
    assert done.returncode == 0, report
    assert "passed" in done.stdout.lower() or "no issues found" in done.stdout.lower(), report
