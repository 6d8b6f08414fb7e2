"""The package's layout: every DVC stage depends on exactly the modules its command loads."""

from typing import Any

import grimp
import yaml

from {{ cookiecutter.package_name }}.__main__ import COMMANDS

from .conftest import ROOT

PACKAGE = "{{ cookiecutter.package_name }}"
# Files a module reads as code: core/schema.py loads the data contract beside it.
READS = {f"{PACKAGE}.core.schema": f"src/{PACKAGE}/core/schema.yaml"}


def module_file(module: str) -> str:
    return f"src/{module.replace('.', '/')}.py"


def loaded_files(graph: grimp.ImportGraph, command: str) -> set[str]:
    """The package's files that `python -m <package> <command>` imports, directly or not."""
    module = f"{PACKAGE}.{COMMANDS[command][0]}"
    modules = {module} | graph.find_upstream_modules(module)
    # A folder's __init__ is its one-line description; only modules hold code.
    files = {module_file(name) for name in modules if not graph.find_children(name)}
    return files | {READS[name] for name in modules if name in READS}


def test_each_stage_depends_on_the_modules_it_imports() -> None:
    stages: dict[str, Any] = yaml.safe_load((ROOT / "dvc.yaml").read_text(encoding="utf-8"))[
        "stages"
    ]
    graph = grimp.build_graph(PACKAGE)
    wrong = {}
    for name, stage in stages.items():
        command = stage["cmd"].removeprefix(f"python -m {PACKAGE} ")
        declared = {dep for dep in stage["deps"] if dep.startswith("src/")}
        expected = loaded_files(graph, command)
        if declared != expected:
            wrong[name] = {"missing": expected - declared, "not imported": declared - expected}
    assert not wrong, f"dvc.yaml: stage deps differ from the imports: {wrong}"
    assert set(stages) == {"prepare", "train", "evaluate", "register", "drift"}
