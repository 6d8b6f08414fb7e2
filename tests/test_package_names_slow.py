"""Slow tier: the package names the pre-generation hook refuses, against real project environments.

The hook carries its lists of taken names (written by `make taken-names`); these tests install
baked projects for real and check the lists against what Python finds in them.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType

import pytest

from .conftest import CHOICES, ROOT, Bake, has_python, run

pytestmark = pytest.mark.slow

# Every top-level name the environment's Python can import, listed another way than
# scripts/taken_names.py does: pkgutil (modules and packages on sys.path, standard library
# included) and the installed distributions' own records (namespace packages such as `google`).
# Run with -I, so neither the current folder nor user site-packages is on sys.path.
LIST_IMPORTABLE = """
import importlib.metadata, json, pkgutil, sys
names = {module.name for module in pkgutil.iter_modules()}
names |= set(importlib.metadata.packages_distributions())
print(json.dumps(sorted(names)))
"""

FIND_SPEC = "import importlib.util, sys; print(importlib.util.find_spec(sys.argv[1]).origin)"


def pre_gen_hook() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "pre_gen_project", ROOT / "hooks/pre_gen_project.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("version", CHOICES["python_version"])
def test_hook_lists_every_name_the_project_environment_takes(
    bake: Bake, bake_env: dict[str, str], tmp_path: Path, version: str
) -> None:
    if not has_python(version):
        pytest.skip(f"no Python {version} on this machine, and uv must not download one")
    project = bake(python_version=version)
    run(["uv", "lock"], project, bake_env)
    run(["uv", "sync", "--locked", "--all-groups"], project, bake_env)
    python = project / ".venv" / "bin" / "python"
    listed = run([str(python), "-I", "-c", LIST_IMPORTABLE], tmp_path, bake_env).stdout
    hook = pre_gen_hook()

    candidates = {
        name
        for name in json.loads(listed)
        if hook.PACKAGE_NAME.fullmatch(name) and not name.startswith("_")
    } - {"tumour_classifier"}  # the project's own package, through its .pth file
    assert {"yaml", "mlflow", "google", "test"} <= candidates, "the listing misses known names"
    known = hook.RESERVED.keys() | hook.STANDARD_LIBRARY.keys() | hook.ENVIRONMENT.keys()
    missing = sorted(candidates - known)
    assert not missing, f"the hook does not know {missing}: run `make taken-names` and commit"
    for name in candidates:
        assert hook.check_package_name(name) is not None, name


@pytest.mark.parametrize(
    ("slug", "package"),
    [
        ("tumour-classifier", "tumour_classifier"),
        # Folders of the project root without an __init__.py, which Python passes by.
        ("data", "data"),
        ("src", "src"),
    ],
)
def test_an_accepted_name_runs_the_project_package(
    bake: Bake, bake_env: dict[str, str], slug: str, package: str
) -> None:
    project = bake(project_slug=slug)
    assert (project / "src" / package / "__init__.py").is_file()
    run(["uv", "lock"], project, bake_env)
    run(["uv", "sync", "--locked"], project, bake_env)
    for folder in ("data", "models", "reports"):  # what the pipeline makes in the root
        (project / folder).mkdir(exist_ok=True)

    command = ["uv", "run", "--locked", "python", "-c", FIND_SPEC, package]
    origin = run(command, project, bake_env).stdout.strip()
    usage = run(["uv", "run", "--locked", "python", "-m", package], project, bake_env).stdout

    assert Path(origin) == project / "src" / package / "__init__.py"
    assert usage.startswith(f"usage: python -m {package} <command>")
