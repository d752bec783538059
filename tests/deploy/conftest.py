"""Static checks of what deploys regfront: the Dockerfile, Terraform, Kubernetes manifests.

No Docker engine, cloud or provider download is available where they run; each check uses a
tool installed by ``make install`` (the dev extra) or ``make checkov-venv``, and fails - never
skips - when that tool is missing.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def tool(name: str, hint: str) -> str:
    """The path of ``name`` in this venv or on PATH; a test failure saying how to get it."""
    local = Path(sys.executable).parent / name
    found = str(local) if local.is_file() else shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is not installed: {hint}")
    return found
