"""Fast tier: what a person or a workflow hands the generated Makefile is data, never code.

Every variable a target reads (`make rollback REASON=...`, or the same name in the environment,
as the workflows pass it) must reach the command as exactly the text given: make must not expand
`$(shell ...)` in it, and the shell must not run backquotes, `$(...)` or `;` in it. The commands
the targets run (uv, docker, gh) are stand-ins that record their arguments.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

HOSTILE = (
    'AUC fell on "cohort B": it\'s $(shell touch pwned-make) `touch pwned-backquote` '
    "$$(touch pwned-dollar) $(touch pwned-shell); touch pwned-semicolon \\ end"
)
STAND_IN = """#!/usr/bin/env python3
import json, os, sys
with open(os.environ["CALLS"], "a", encoding="utf-8") as calls:
    calls.write(json.dumps([os.path.basename(sys.argv[0]), *sys.argv[1:]]) + "\\n")
if sys.argv[1:3] == ["release", "view"]:
    sys.exit(1)  # gh: no such release yet
"""
PACKAGE = ["python", "-m", "tumour_classifier"]
UV = ["uv", "run", "--locked"]
# target, the values given, and the last command it must run.
CASES = [
    ("rollback", {"REASON": HOSTILE}, [*UV, *PACKAGE, "rollback", "--reason", HOSTILE]),
    (
        "promote",
        {"VERSION": HOSTILE, "REASON": HOSTILE},
        [*UV, *PACKAGE, "promote", "--version", HOSTILE, "--force", "--reason", HOSTILE],
    ),
    (
        "gate",
        {"METRICS": HOSTILE, "BASE": HOSTILE},
        [*UV, *PACKAGE, "gate", "--metrics", HOSTILE, "--base", HOSTILE],
    ),
    (
        "batch",
        {
            "INPUT": HOSTILE,
            "OUTPUT": HOSTILE + ".csv",
            "CHUNK_SIZE": HOSTILE,
            "ALIAS": HOSTILE,
            "OVERWRITE": HOSTILE,
        },
        [
            *UV,
            *PACKAGE,
            "batch",
            HOSTILE,
            HOSTILE + ".csv",
            "--chunk-size",
            HOSTILE,
            "--alias",
            HOSTILE,
            "--overwrite",
        ],
    ),
    ("onnx", {"ALIAS": HOSTILE}, [*UV, *PACKAGE, "onnx", "--alias", HOSTILE]),
    ("bento", {"ALIAS": HOSTILE}, [*UV, *PACKAGE, "bento", "--alias", HOSTILE]),
    (
        "serve",
        {"HOST": HOSTILE, "PORT": HOSTILE},
        [
            *UV,
            "bentoml",
            "serve",
            "tumour_classifier.serving.service:Champion",
            "--host",
            HOSTILE,
            "--port",
            HOSTILE,
        ],
    ),
    (
        "container",
        {"TAGS": f"{HOSTILE},second", "BACKEND": HOSTILE},
        [
            *UV,
            "bentoml",
            "containerize",
            "tumour-classifier:latest",
            "--backend",
            HOSTILE,
            f"--image-tag={HOSTILE}",
            "--image-tag=second",
        ],
    ),
    (
        "mlflow-ui",
        {"ARGS": "--port 5001 $(shell touch pwned-make) `touch pwned-backquote`"},
        [
            *UV,
            *PACKAGE,
            "mlflow-ui",
            "--port",
            "5001",
            "$(shell",
            "touch",
            "pwned-make)",
            "`touch",
            "pwned-backquote`",
        ],
    ),
    ("report", {"BASE": HOSTILE}, [*UV, *PACKAGE, "ci", "report", "--base", HOSTILE]),
    ("remotes", {"READ_ONLY": HOSTILE}, [*UV, *PACKAGE, "ci", "remotes", "--read-only"]),
    ("push-image", {"TAGS": f"{HOSTILE},second"}, ["docker", "push", HOSTILE]),
    (
        "retag-champion",
        {"IMAGE": HOSTILE, "VERSION": "7"},
        [
            "docker",
            "buildx",
            "imagetools",
            "create",
            "--tag",
            f"{HOSTILE}:champion",
            f"{HOSTILE}:v7",
        ],
    ),
    (
        "update-template",
        {"TEMPLATE": HOSTILE, "CHECKOUT": HOSTILE, "FROM": HOSTILE, "YES": HOSTILE},
        [
            "uv",
            "run",
            "--no-project",
            "--with",
            "cookiecutter==2.7.1",
            "python",
            "scripts/update_template.py",
            "--template",
            HOSTILE,
            "--checkout",
            HOSTILE,
            "--from",
            HOSTILE,
            "--yes",
        ],
    ),
]


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from cookiecutter.main import cookiecutter

    from .conftest import ROOT

    output = tmp_path_factory.mktemp("bake")
    return Path(cookiecutter(str(ROOT), no_input=True, output_dir=str(output)))


def run_target(
    project: Path, tmp_path: Path, target: str, values: dict[str, str], *, environment: bool
) -> list[list[str]]:
    """`make target` with the values on its command line or in its environment; the commands
    it ran."""
    stand_ins = tmp_path / "bin"
    stand_ins.mkdir()
    for name in ("uv", "docker", "gh"):
        (stand_ins / name).write_text(STAND_IN, encoding="utf-8")
        (stand_ins / name).chmod(0o755)
    calls = tmp_path / "calls.jsonl"
    env = {**os.environ, "PATH": f"{stand_ins}{os.pathsep}{os.environ['PATH']}"}
    env["CALLS"] = str(calls)
    command = ["make", target]
    if environment:
        env.update(values)
    else:
        command += [f"{name}={value}" for name, value in values.items()]
    result = subprocess.run(
        command, cwd=project, env=env, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in calls.read_text(encoding="utf-8").splitlines()]


@pytest.mark.parametrize("environment", [False, True], ids=["command-line", "environment"])
@pytest.mark.parametrize(("target", "values", "expected"), CASES, ids=[c[0] for c in CASES])
def test_values_reach_the_command_as_given(
    project: Path,
    tmp_path: Path,
    target: str,
    values: dict[str, str],
    expected: list[str],
    environment: bool,
) -> None:
    calls = run_target(project, tmp_path, target, values, environment=environment)
    assert calls[-1] == expected
    assert not list(project.glob("pwned-*")), "a value ran as code"


def test_a_release_is_named_after_the_version_as_given(project: Path, tmp_path: Path) -> None:
    calls = run_target(project, tmp_path, "github-release", {"VERSION": HOSTILE}, environment=True)
    assert calls[0] == ["gh", "release", "view", f"model-v{HOSTILE}"]
    assert calls[1][:5] == ["gh", "release", "create", f"model-v{HOSTILE}", "--title"]
    assert calls[1][5] == f"Model version {HOSTILE}"
    assert not list(project.glob("pwned-*"))


def test_every_tag_is_pushed_and_the_first_gives_the_digest(project: Path, tmp_path: Path) -> None:
    calls = run_target(project, tmp_path, "push-image", {"TAGS": "a:v1,a:abc"}, environment=False)
    assert calls == [
        ["docker", "push", "--quiet", "a:v1"],
        ["docker", "push", "--quiet", "a:abc"],
        ["docker", "push", "a:v1"],
    ]


@pytest.mark.parametrize(
    ("target", "usage"),
    [
        ("batch", "usage: make batch INPUT="),
        ("report", "usage: make report BASE="),
        ("push-image", "usage: make push-image TAGS="),
        ("retag-champion", "usage: make retag-champion IMAGE="),
        ("github-release", "usage: make github-release VERSION="),
    ],
)
def test_a_missing_value_is_a_usage_line(project: Path, target: str, usage: str) -> None:
    result = subprocess.run(["make", target], cwd=project, capture_output=True, text=True)
    assert result.returncode != 0
    assert usage in result.stderr
