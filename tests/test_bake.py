"""Fast tier: bake every option value, check the file set, and lint and type check the result."""

from __future__ import annotations

import json
import os
import re
import tomllib
from pathlib import Path

import pytest
import yaml

from .conftest import CHOICES, MATRIX, ROOT, Bake, run

# What `make lint` runs in a generated project besides ruff; the package is found on PYTHONPATH.
LINT_IMPORTS = ["lint-imports", "--no-logo", "--no-cache"]
JINJA_LEFTOVER = re.compile(r"\{\{|\{%|%\}")
# GitHub's own expressions, in the workflows (copied without rendering) and the set-up action.
GITHUB_EXPRESSION = re.compile(r"\$\{\{.*?\}\}")
# Copied without rendering, and names Jinja's delimiters to refuse them in the recorded answers.
NAMES_JINJA = {"scripts/update_template.py"}


def expected_files(answers: dict[str, str], package: str, dataset: str) -> set[str]:
    files = {
        ".cookiecutter.json",
        ".dvc/.gitignore",
        ".dvc/config",
        ".dvcignore",
        ".github/CODEOWNERS",
        ".github/actions/setup/action.yml",
        ".github/dependabot.yml",
        ".github/pull_request_template.md",
        ".github/workflows/ci.yml",
        ".github/workflows/monitor.yml",
        ".github/workflows/release.yml",
        ".github/workflows/rollback.yml",
        ".github/workflows/train.yml",
        ".gitignore",
        ".pre-commit-config.yaml",
        ".python-version",
        "Makefile",
        "bentofile.yaml",
        "deploy/kubernetes/deployment.yaml",
        "deploy/kubernetes/hpa.yaml",
        "deploy/kubernetes/ingress.yaml",
        "deploy/kubernetes/kustomization.yaml",
        "deploy/kubernetes/networkpolicy.yaml",
        "deploy/kubernetes/pdb.yaml",
        "deploy/kubernetes/service.yaml",
        "deploy/monitoring/alerts.yaml",
        "deploy/monitoring/dashboard.json",
        "deploy/monitoring/servicemonitor.yaml",
        "deploy/.env.example",
        "deploy/compose.yaml",
        "deploy/mlflow.Dockerfile",
        "deploy/mlflow.Dockerfile.dockerignore",
        "README.md",
        "dvc.yaml",
        "params.yaml",
        "pyproject.toml",
        "scripts/batch_spark.py",
        "scripts/update_template.py",
        "tests/__init__.py",
        "tests/conftest.py",
        "tests/test_ci.py",
        "tests/test_config.py",
        "tests/test_data.py",
        "tests/test_drift.py",
        "tests/test_drift_summary.py",
        "tests/test_gate.py",
        "tests/test_model.py",
        "tests/test_monitor.py",
        "tests/test_pipeline.py",
        "tests/test_refresh.py",
        "tests/production.py",
        "tests/test_prediction_ids.py",
        "tests/test_registry_errors.py",
        "tests/test_batch.py",
        "tests/test_batch_spark.py",
        "tests/test_export.py",
        "tests/test_feedback_log.py",
        "tests/test_handler.py",
        "tests/test_images.py",
        "tests/test_inference_log.py",
        "tests/test_layout.py",
        "tests/test_log_shipping.py",
        "tests/test_service.py",
        "tests/test_server.py",
        "tests/test_stack.py",
        "tests/test_tables.py",
    }
    # The package by lifecycle: a folder per stage of a model's life, each with its __init__.
    folders = {
        "core": [
            "checks",
            "config",
            "drift_summary",
            "errors",
            "estimators",
            "files",
            "metrics",
            "model_file",
            "monitor_summary",
            "prediction_ids",
            "problems",
            "schema",
            "scoring",
            "stores",
            "tables",
        ],
        "pipeline": [
            "data",
            "drift",
            "evaluate",
            "labels",
            "monitor",
            "prepare",
            "refresh",
            "register",
            "shipped_log",
            "train",
        ],
        "release": [
            "bento",
            "champion",
            "gate",
            "lineage",
            "promote",
            "registry",
            "rescore",
            "rollback",
            "verdict",
        ],
        "serving": [
            "api_schema",
            "feedback_log",
            "inference_log",
            "log_shipping",
            "middleware",
            "service",
        ],
        "offline": ["batch", "handler", "onnx", "spark_batch", "spark_model", "spark_store"],
        "ops": [
            "ci",
            "mlflow_server",
            "mlflow_ui",
            "mlflow_users",
            "object_store",
            "oci_registry",
            "processes",
            "prometheus",
            "stack",
        ],
    }
    files |= {f"src/{package}/__init__.py", f"src/{package}/__main__.py"}
    for folder, modules in folders.items():
        files |= {f"src/{package}/{folder}/{module}.py" for module in ["__init__", *modules]}
    files.add(f"src/{package}/core/schema.yaml")
    files.add(f"src/{package}/offline/spark-log4j2.properties")
    if answers.get("license", "MIT") != "Proprietary":
        files.add("LICENSE")
    return files


def project_files(project: Path) -> set[str]:
    return {
        path.relative_to(project).as_posix()
        for path in project.rglob("*")
        if path.is_file() and ".git" not in path.relative_to(project).parts
    }


def test_matrix_covers_every_option_value() -> None:
    for option, values in CHOICES.items():
        chosen = {answers.get(option, values[0]) for answers in MATRIX.values()}
        assert chosen == set(values), option


@pytest.mark.parametrize("case", MATRIX)
def test_bake(bake: Bake, bake_env: dict[str, str], case: str) -> None:
    answers = MATRIX[case]
    project = bake(**answers)
    recorded = json.loads((project / ".cookiecutter.json").read_text(encoding="utf-8"))
    package = recorded["package_name"]
    dataset = "breast_cancer" if recorded["task"] == "classification" else "diabetes"

    assert project_files(project) == expected_files(answers, package, dataset)
    for path in project.rglob("*"):
        relative = path.relative_to(project).as_posix()
        if path.is_file() and ".git" not in path.parts and relative not in NAMES_JINJA:
            text = path.read_text(encoding="utf-8")
            if relative.startswith(".github/"):
                text = GITHUB_EXPRESSION.sub("", text)
            assert not JINJA_LEFTOVER.search(text), f"Jinja left in {path}"

    pyproject = tomllib.loads((project / "pyproject.toml").read_text(encoding="utf-8"))
    assert pyproject["project"]["name"] == recorded["project_slug"]
    assert pyproject["project"]["requires-python"] == f">={recorded['python_version']}"
    extra = {"local": "", "s3": "[s3]", "gcs": "[gs]", "azure": "[azure]"}[recorded["dvc_remote"]]
    assert f"dvc{extra}>=3.67,<4" in pyproject["project"]["dependencies"]

    dvc_config = (project / ".dvc/config").read_text(encoding="utf-8")
    assert f"url = {recorded['dvc_remote_url']}" in dvc_config
    params = yaml.safe_load((project / "params.yaml").read_text(encoding="utf-8"))
    assert params["mlflow"]["tracking_uri"] == recorded["mlflow_tracking_uri"]
    assert f"data/raw/{dataset}.csv" in (project / "dvc.yaml").read_text(encoding="utf-8")

    run(["ruff", "check", "--no-cache", "."], project, bake_env)
    run(["ruff", "format", "--check", "--no-cache", "."], project, bake_env)
    # At the oldest Python offered, in one mypy cache that every bake of a test worker shares (a
    # cold cache per Python version costs about 18 s each; two workers writing one cache at once
    # crashed mypy once): the slow tier type-checks the 3.12 and 3.13 bakes at their own version,
    # in their own environment (`make check` in test_pipeline_slow.py).
    oldest = min(CHOICES["python_version"], key=lambda version: tuple(map(int, version.split("."))))
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    cache = str(ROOT / "build" / "mypy-cache" / worker)
    run(["mypy", "--python-version", oldest, "--cache-dir", cache], project, bake_env)
    run(LINT_IMPORTS, project, {**bake_env, "PYTHONPATH": "src"})


def lint_imports_with(project: Path, env: dict[str, str], module: str, line: str) -> str:
    """What `make lint`'s import check prints once `line` is added to the package's `module`:
    it must fail. Its report, with the lines it wraps joined."""
    assert "\t$(RUN) lint-imports --no-logo\n" in (project / "Makefile").read_text()
    env = {**env, "PYTHONPATH": "src"}
    run(LINT_IMPORTS, project, env)
    path = project / "src" / "tumour_classifier" / module
    path.write_text(f"{path.read_text()}\n{line}  # noqa\n")
    broken = run(LINT_IMPORTS, project, env, check=False)
    assert broken.returncode != 0
    return " ".join(broken.stdout.split())


def test_the_import_contract_stops_the_service_reaching_mlflow(
    bake: Bake, bake_env: dict[str, str]
) -> None:
    """The service's image has no MLflow: an import path to it, however indirect, fails lint."""
    report = lint_imports_with(
        bake(), bake_env, "serving/middleware.py", "from ..release.champion import store"
    )
    assert "tumour_classifier.serving is not allowed to import mlflow" in report
    assert "tumour_classifier.release.champion -> tumour_classifier.release.registry" in report
    # The folders' layers refuse it first: the service imports core and nothing else.
    assert "tumour_classifier.serving is not allowed to import tumour_classifier.release" in report


def test_the_layers_stop_core_importing_the_pipeline(bake: Bake, bake_env: dict[str, str]) -> None:
    """Core is the bottom layer: importing a stage from it, even one module, fails lint."""
    report = lint_imports_with(
        bake(), bake_env, "core/files.py", "from ..pipeline.train import main"
    )
    assert "The lifecycle folders import downwards only BROKEN" in report
    assert "tumour_classifier.core is not allowed to import tumour_classifier.pipeline" in report
    assert "tumour_classifier.core.files -> tumour_classifier.pipeline.train" in report


def test_the_import_contract_refuses_a_cycle_inside_a_folder(
    bake: Bake, bake_env: dict[str, str]
) -> None:
    """The cycle the flat package had (gate and registry importing each other) fails lint."""
    report = lint_imports_with(
        bake(), bake_env, "release/registry.py", "from .gate import run_gate"
    )
    assert "The lifecycle folders import downwards only KEPT" in report
    assert "No cycles are allowed in tumour_classifier.release" in report
    assert "- .registry -> .gate (1 import)" in report


def test_the_import_contract_keeps_pandas_out_of_the_serverless_handler(
    bake: Bake, bake_env: dict[str, str]
) -> None:
    """A function ships the handler with core's schema and PyYAML: pandas there fails lint."""
    report = lint_imports_with(bake(), bake_env, "core/schema.py", "from .checks import read_table")
    assert "The serverless handler loads with numpy, onnxruntime and PyYAML only BROKEN" in report
    assert "tumour_classifier.offline.handler is not allowed to import pandas" in report


def test_default_local_remote_is_outside_the_project(bake: Bake) -> None:
    project = bake()
    assert "url = ~/dvc-remotes/tumour-classifier" in (project / ".dvc/config").read_text()


HOSTILE = {
    "project_name": "Données ML 数据",
    "description": 'Say "hi", \'bye\', """triple""", {x} {a: 1},\nC:\\path\\ and a trailing \\',
    "author_name": 'Zoë "Ace" O\'Brien \\ 数据',
}


def test_hostile_answers_give_a_valid_project(bake: Bake, bake_env: dict[str, str]) -> None:
    project = bake(**HOSTILE)
    assert project.name == "donnees-ml-shu-ju"
    pyproject = tomllib.loads((project / "pyproject.toml").read_text(encoding="utf-8"))
    assert pyproject["project"]["description"] == HOSTILE["description"]
    assert pyproject["project"]["authors"][0]["name"] == HOSTILE["author_name"]
    assert "Données ML 数据" in (project / "README.md").read_text(encoding="utf-8")
    assert "Zoë" in (project / "LICENSE").read_text(encoding="utf-8")
    yaml.safe_load((project / "params.yaml").read_text(encoding="utf-8"))
    run(["python", "-m", "compileall", "-q", "src", "tests"], project, bake_env)
    run(["ruff", "check", "--no-cache", "."], project, bake_env)


# Files of a bake that no job of the `production` environment reads. Every other file must match
# a line of CODEOWNERS, so that a new file is placed on one side or the other, not forgotten.
OUTSIDE_PRODUCTION = ("README.md", "LICENSE", ".gitignore", ".pre-commit-config.yaml", "tests/")
# What `make setup` and `make repro` add, which the production job reads too.
WRITTEN_LATER = ["uv.lock", "dvc.lock", "data/raw/breast_cancer.csv.dvc"]


def code_owner_rules(project: Path) -> dict[str, list[str]]:
    """CODEOWNERS as {pattern: owners}, in the file's order."""
    text = (project / ".github" / "CODEOWNERS").read_text(encoding="utf-8")
    rules = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            pattern, *owners = line.split()
            rules[pattern] = owners
    return rules


def is_owned(path: str, patterns: list[str]) -> bool:
    """Whether one of these root-anchored patterns (`/file` or `/folder/`) covers the path."""
    return any(
        path.startswith(pattern[1:]) if pattern.endswith("/") else path == pattern[1:]
        for pattern in patterns
    )


def test_code_owners_review_everything_production_runs(bake: Bake) -> None:
    project = bake()
    rules = code_owner_rules(project)

    assert all(pattern.startswith("/") for pattern in rules)
    assert set(map(tuple, rules.values())) == {("@your-github-user",)}
    files = sorted(project_files(project)) + WRITTEN_LATER
    production = [path for path in files if not path.startswith(OUTSIDE_PRODUCTION)]
    assert [path for path in production if not is_owned(path, list(rules))] == []
    assert {".cookiecutter.json", "Makefile", "params.yaml", "uv.lock"} <= set(production)
    assert [pattern for pattern in rules if not is_owned(pattern[1:], list(rules))] == []


def test_code_owners_can_be_teams_and_users(bake: Bake) -> None:
    project = bake(github_owner="data-team", code_owners="@data-team/ml-reviewers @ada")
    rules = code_owner_rules(project)

    assert set(map(tuple, rules.values())) == {("@data-team/ml-reviewers", "@ada")}
    text = (project / ".github" / "CODEOWNERS").read_text(encoding="utf-8")
    assert "(@org) is not a valid\n# owner" in text
