"""The README's "Try it" runs as written, so README and reality cannot drift.

Its ``sh`` blocks, in order, in one bash (``kill %1`` needs the shell that ran ``make run &``),
in a copy of this working tree that shares this test run's venv, within a time limit. As root
the copy runs in a network namespace of its own with only loopback: the README's fixed ports
(5000, 5001) cannot clash with anything else on the machine, and the demo provably needs no
internet. The gateway's access log must show the lines the README says to expect, in order;
``REGFRONT_LOG_FORMAT=text`` makes it print them as it does on a terminal.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.harness import clean_env, require_tool, unmount_below

ROOT = Path(__file__).resolve().parents[1]
SECTION = "## Try it"
TIMEOUT = 240.0  # set-up is done (this run's venv, make test's Debian packages): seconds, really
# What a working tree holds that the copy must not: the venv is linked instead; caches, the
# demo's own state and the gateway's store would make the run depend on what ran here before.
NOT_COPIED = shutil.ignore_patterns(".git", ".venv", "__pycache__", ".*_cache", ".hypothesis",
                                    ".schemathesis", "try", "regfront-data")
ACCESS = re.compile(r"INFO regfront\.access: (\S+ \S+ \d{3})$")


def fenced_blocks(readme: str, heading: str) -> list[tuple[str, str]]:
    """(info string, body) of each fenced block between ``heading`` and the next heading."""
    blocks: list[tuple[str, str]] = []
    inside, fence = False, None
    body: list[str] = []
    for line in readme.splitlines():
        if fence is not None:
            if line.strip() == "```":
                blocks.append((fence, "\n".join(body)))
                fence, body = None, []
            else:
                body.append(line)
        elif line.startswith("```"):
            if inside:
                fence = line[3:].strip()
        elif line.startswith("#"):
            if inside:
                break
            inside = line.strip() == heading
    return blocks


def expected_access(lines: str) -> list[tuple[str, str]]:
    """The README's example access-log lines as (prefix before any ``...``, status)."""
    expected = []
    for line in lines.splitlines():
        match = ACCESS.search(line.strip())
        assert match, f"not an access-log line: {line!r}"
        request, _, status = match.group(1).rpartition(" ")
        expected.append((request.partition("...")[0], status))
    return expected


def follows_in_order(expected: list[tuple[str, str]], seen: list[str]) -> bool:
    """Each expected (prefix, status) matches a seen line, in the README's order."""
    position = 0
    for prefix, status in expected:
        while position < len(seen):
            request, _, got = seen[position].rpartition(" ")
            position += 1
            if request.startswith(prefix) and got == status:
                break
        else:
            return False
    return True


def test_fenced_blocks_stop_at_the_next_heading_and_skip_comments_inside() -> None:
    readme = ("# t\n## Try it\n```sh\n# a comment, not a heading\necho 1\n```\ntext\n```\nout\n"
              "```\n### Next\n```sh\necho 2\n```\n")
    assert fenced_blocks(readme, "## Try it") == [("sh", "# a comment, not a heading\necho 1"),
                                                  ("", "out")]


def _in_own_network(argv: list[str]) -> list[str]:
    """``argv`` in a new network namespace with loopback up (root only), else as it is."""
    if os.geteuid() != 0:
        return argv
    unshare, ip = require_tool("unshare"), require_tool("ip")
    return [unshare, "--net", "--", "sh", "-c", f'"{ip}" link set lo up && exec "$@"', "sh",
            *argv]


@pytest.mark.e2e
def test_try_it_runs_as_written(tmp_path: Path) -> None:
    blocks = fenced_blocks((ROOT / "README.md").read_text(), SECTION)
    commands = [body for info, body in blocks if info == "sh"]
    (shown,) = [body for info, body in blocks if info == "" and "regfront.access" in body]
    assert len(commands) >= 2, "Try it: the demo and how to stop it"
    script = "\n".join(commands)
    # The demo leaves the machine's containerd configuration alone.
    assert "/etc/containerd" not in script
    for tool in ("make", "ctr", "containerd", "docker-registry"):
        require_tool(tool)

    work = tmp_path / "regfront"
    shutil.copytree(ROOT, work, ignore=NOT_COPIED, symlinks=True)
    venv = Path(sys.prefix)
    assert (venv / "bin" / "regfront").is_file(), f"{venv}: not regfront's venv (make install)"
    (work / ".venv").symlink_to(venv)
    # The venv is this run's: make must not find pyproject.toml newer and reinstall into it.
    os.utime(work / "pyproject.toml", (0, 0))
    (work / "try-it.sh").write_text("set -euo pipefail\n" + script + "\n")

    env = clean_env("REGFRONT_", "CONTAINERD_", "REGISTRY_", "MAKEFLAGS", "MFLAGS", "MAKELEVEL",
                    REGFRONT_LOG_FORMAT="text")
    log = tmp_path / "try-it.log"
    with log.open("wb") as out:
        process = subprocess.Popen(_in_own_network(["bash", "try-it.sh"]), cwd=work, env=env,
                                   stdin=subprocess.DEVNULL, stdout=out,
                                   stderr=subprocess.STDOUT, start_new_session=True)
    try:
        try:
            code = process.wait(timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            pytest.fail(f"Try it did not finish in {TIMEOUT:g} s:\n{_tail(log)}", pytrace=False)
    finally:
        # Whatever the script left running: its process group (make run), then what
        # .ci/try.sh started in sessions of their own, by their pid files.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)
        if (work / "try").exists():
            subprocess.run(["bash", ".ci/try.sh", "stop"], cwd=work, env=env, timeout=60,
                           capture_output=True, check=False)
        unmount_below(tmp_path)
    output = log.read_text(errors="replace")
    assert code == 0, f"Try it exited {code}:\n{_tail(log)}"
    seen = [match.group(1) for line in output.splitlines()
            if (match := ACCESS.search(line.rstrip()))]
    assert follows_in_order(expected_access(shown), seen), (
        f"the README shows\n{shown}\nthe gateway logged\n" + "\n".join(seen))
    assert not (work / "try").exists(), "make try-stop removes ./try"


def _tail(log: Path, chars: int = 6000) -> str:
    text = log.read_text(errors="replace")
    return text if len(text) <= chars else "[...]" + text[-chars:]
