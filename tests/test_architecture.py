"""The dependency arrows: registry <- gateway, registry <- sync <- lifecycle, registry <- node,
and only the command package (regfront/, the composition root) imports them all. Read from the
source, so a new import that points the wrong way fails here rather than in a review."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# package -> the first-party packages it may import
ALLOWED = {
    "registry": {"registry"},
    "gateway": {"registry", "gateway"},
    "sync": {"registry", "sync"},
    "node": {"registry", "node"},
    # Garbage collection, verify and status: the sync side (it repairs through sync's copier).
    "lifecycle": {"registry", "sync", "lifecycle"},
    "regfront": {"registry", "gateway", "sync", "node", "lifecycle", "regfront"},
}


def _imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module.split(".")[0])
    return found & set(ALLOWED)


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_imports_point_one_way(package: str) -> None:
    files = sorted((ROOT / package).rglob("*.py"))
    assert files, f"{package}/ has no modules"
    wrong = {str(f.relative_to(ROOT)): sorted(_imports(f) - ALLOWED[package]) for f in files}
    assert {f: w for f, w in wrong.items() if w} == {}
