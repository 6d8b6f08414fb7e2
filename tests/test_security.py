"""Fast tier: the controls of docs/security.md that are facts about the files, and the page itself.

Each row of the page's checklist names the test that proves it; the last test here checks that
every test it names exists, so the page cannot outlive its proofs.
"""

from __future__ import annotations

import ast
import re
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from .conftest import ROOT, Bake

SECURITY_PAGE = ROOT / "docs" / "security.md"
# Modules that turn bytes into arbitrary objects, code included.
UNSAFE_LOADERS = {
    "pickle",
    "cPickle",
    "_pickle",
    "joblib",
    "cloudpickle",
    "dill",
    "shelve",
    "marshal",
}
# A version just below the floor the checklist asks for (bentoml >= 1.4.36, skops >= 0.13,
# mlflow 3): none of them may be installable.
BELOW_FLOORS = {"bentoml": "1.4.35", "skops": "0.12.9", "mlflow": "2.22.1"}
SKOPS_LOADS = {"skops.io.load", "skops.io.loads", "sio.load", "sio.loads"}
TEST_REFERENCE = re.compile(r"`((?:\{\{cookiecutter\.project_slug\}\}/)?tests/[\w/]+\.py)::(\w+)`")


def python_files(project: Path) -> list[Path]:
    folders = [
        (project / "src", "**/*.py"),
        (project / "scripts", "*.py"),
        (ROOT / "hooks", "*.py"),
    ]
    return sorted(path for folder, pattern in folders for path in folder.glob(pattern))


def test_nothing_loads_a_pickle(bake: Bake) -> None:
    """Checklist 16 and 17: no module imports a pickle-based loader, and every skops load
    passes the allow-list by name (never `trusted=True`)."""
    project = bake()
    skops_loads = 0
    for path in python_files(project):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom):
                names = {(node.module or "").split(".")[0]}
            else:
                names = set()
            assert not names & UNSAFE_LOADERS, f"{path}:{getattr(node, 'lineno', 0)}"
            if isinstance(node, ast.Call) and ast.unparse(node.func) in SKOPS_LOADS:
                trusted = {keyword.arg: keyword.value for keyword in node.keywords}.get("trusted")
                assert isinstance(trusted, ast.Name), f"{path}:{node.lineno}: trusted=<allow-list>"
                skops_loads += 1
    assert skops_loads >= 1


def test_the_security_floors_hold(bake: Bake) -> None:
    """Checklist 18: no version below the fixed ones can be installed, in any group."""
    pyproject = tomllib.loads((bake() / "pyproject.toml").read_text(encoding="utf-8"))
    groups = [pyproject["project"]["dependencies"], *pyproject["dependency-groups"].values()]
    found = set()
    for line in (line for group in groups for line in group if isinstance(line, str)):
        requirement = Requirement(line)
        if requirement.name in BELOW_FLOORS:
            assert not requirement.specifier.contains(BELOW_FLOORS[requirement.name]), line
            found.add(requirement.name)
    assert found == set(BELOW_FLOORS)


def test_every_test_the_security_page_names_exists() -> None:
    page = SECURITY_PAGE.read_text(encoding="utf-8")
    references = TEST_REFERENCE.findall(page)
    assert len(references) >= 30
    for file, name in references:
        source = (ROOT / file).read_text(encoding="utf-8")
        assert re.search(rf"^(async )?def {name}\(", source, re.MULTILINE), f"{file}::{name}"


def test_the_security_checklist_reads_30_of_30() -> None:
    page = SECURITY_PAGE.read_text(encoding="utf-8")
    rows = re.findall(r"^\| (\d+) \| (\w+) \|", page, re.MULTILINE)
    assert [int(number) for number, _ in rows] == list(range(1, 31))
    assert {verdict for _, verdict in rows} == {"Pass"}


FINDINGS = [f"H{n}" for n in range(1, 5)] + [f"M{n}" for n in range(1, 7)]
FINDINGS += [f"L{n}" for n in range(1, 8)]


@pytest.mark.parametrize("finding", FINDINGS)
def test_every_finding_has_its_section(finding: str) -> None:
    assert re.search(rf"^### {finding}\. ", SECURITY_PAGE.read_text(encoding="utf-8"), re.M)
