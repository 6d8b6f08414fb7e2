"""Write docs/options.md from cookiecutter.json and hooks/pre_gen_project.py, so it cannot drift.

`python docs/hooks/options.py` (run by `make docs`) rewrites the page. As a mkdocs hook
(`hooks:` in mkdocs.yml) it fails the build when the committed page differs from what this
module renders. Every default is rendered by cookiecutter itself, and every example answer is
checked by the real pre-generation hook while the page is rendered: an example the hook no
longer refuses (or no longer accepts) stops the rendering.
"""

from __future__ import annotations

import importlib.util
import json
import re
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
COOKIECUTTER_JSON = ROOT / "cookiecutter.json"
PRE_GEN_HOOK = ROOT / "hooks" / "pre_gen_project.py"
PAGE = ROOT / "docs" / "options.md"

# What each answer changes in the generated project: the one part a program cannot read off.
CHANGES = {
    "project_name": "README title; the slug, and through it the MLflow experiment and model name",
    "project_slug": (
        "folder, distribution name, console script, MLflow experiment and registered model "
        "name, bento and image name"
    ),
    "package_name": "`src/<package_name>/`, `python -m <package_name>`",
    "description": "`pyproject.toml` (read back unchanged by `tomllib`), README",
    "author_name": "`pyproject.toml`, `LICENSE`",
    "author_email": "`pyproject.toml`",
    "github_owner": (
        "the default of `code_owners`; the image goes to `ghcr.io/<owner>/<slug>`, read at run "
        "time from `GITHUB_REPOSITORY_OWNER`"
    ),
    "code_owners": (
        "`.github/CODEOWNERS`: who reviews changes to what the `production` environment runs "
        "(workflows, Makefile, `src/`, `scripts/`, pipeline, parameters, data pointers, lock "
        "file, deploy files, `.cookiecutter.json`). For an organisation, give a team "
        "(`@org/team`): GitHub ignores `@org` alone"
    ),
    "python_version": "`requires-python`, `.python-version`, ruff and mypy targets",
    "task": "sample data, schema, estimators, metrics, plots, model tests",
    "dvc_remote": (
        "`.dvc/config`, the `dvc[s3]` / `dvc[gs]` / `dvc[azure]` extra; for a cloud, an OIDC "
        "login step in the set-up action (`.github/actions/setup`) that the workflow jobs using "
        "the data run"
    ),
    "dvc_remote_url": "`.dvc/config` (never credentials)",
    "mlflow_tracking_uri": (
        "`params.yaml: mlflow.tracking_uri` (`MLFLOW_TRACKING_URI` wins at run time)"
    ),
    "license": "`LICENSE` (none for Proprietary), `pyproject.toml`",
}

# Answers the hook must refuse: (what the example shows, the answers it changes).
REFUSED: dict[str, list[dict[str, str]]] = {
    "project_name": [{"project_name": "   "}, {"project_name": "Two\nlines"}],
    "project_slug": [{"project_slug": "My Project"}, {"project_slug": "tumour_classifier"}],
    "package_name": [
        {"package_name": "_private"},
        {"package_name": "3d_model"},
        {"package_name": "match"},
        {"package_name": "tests"},
        {"package_name": "json"},
        {"package_name": "imp"},
        {"package_name": "mlflow"},
        {"package_name": "yaml"},
        {"package_name": "google"},
        {"package_name": "sitecustomize"},
    ],
    "description": [{"description": "nul\0byte"}, {"description": "Shows {{ x }}"}],
    "author_name": [{"author_name": "Ada\nLovelace"}],
    "author_email": [{"author_email": "ada.example.com"}],
    "github_owner": [{"github_owner": "-data-team"}, {"github_owner": "data_team"}],
    "code_owners": [{"code_owners": "data-team"}, {"code_owners": "@data-team/ml/reviewers"}],
    "dvc_remote_url": [
        {"dvc_remote": "local", "dvc_remote_url": "s3://my-bucket/dvc"},
        {"dvc_remote": "s3", "dvc_remote_url": "s3://My_Bucket/dvc"},
        {"dvc_remote": "gcs", "dvc_remote_url": "s3://my-bucket/dvc"},
        {"dvc_remote": "azure", "dvc_remote_url": "azure://ab/dvc"},
    ],
    "mlflow_tracking_uri": [
        {"mlflow_tracking_uri": "./mlruns"},
        {"mlflow_tracking_uri": "file:///srv/mlruns"},
        {"mlflow_tracking_uri": "ftp://mlflow.example.com"},
        {"mlflow_tracking_uri": "sqlite://"},
        {"mlflow_tracking_uri": "https://"},
    ],
}

# Answers the hook must accept, beside the defaults.
ACCEPTED: dict[str, list[dict[str, str]]] = {
    "dvc_remote_url": [
        {"dvc_remote": "local", "dvc_remote_url": "/mnt/shared/dvc-remotes/tumours"},
        {"dvc_remote": "s3", "dvc_remote_url": "s3://my-bucket/dvc"},
        {"dvc_remote": "gcs", "dvc_remote_url": "gs://my_bucket/dvc"},
        {"dvc_remote": "azure", "dvc_remote_url": "azure://my-container/dvc"},
    ],
    "mlflow_tracking_uri": [
        {"mlflow_tracking_uri": "sqlite:///mlflow.db"},
        {"mlflow_tracking_uri": "https://mlflow.example.com"},
        {"mlflow_tracking_uri": "postgresql+psycopg2://mlflow@db.example.com/mlflow"},
        {"mlflow_tracking_uri": "databricks"},
    ],
}

AFTER_GENERATION = """
## Why the local remote lives outside the project

A DVC remote is where data goes to survive: a folder inside the checkout would vanish with it and
could not serve a fresh clone. `~/dvc-remotes/<slug>` works for every clone on the same machine;
teams switch to object storage with one `dvc remote modify` (see
[DVC on S3, GCS or Azure](dvc-cloud.md)).

## After generation

A file the answers may not need has a conditional name, which cookiecutter skips when it renders
empty: `{% if cookiecutter.license != "Proprietary" %}LICENSE{% endif %}`. So
`hooks/post_gen_project.py` deletes nothing: it records the answers in `.cookiecutter.json`
(never a local template path) with the template commit (`_commit`, for [updates](updating.md)),
and runs `git init -b main` when git is installed. It uses the standard library only.
"""

VARIABLE = re.compile(r"cookiecutter\.(\w+)")


def load_hook() -> ModuleType:
    """The pre-generation hook as a module: its checks without running its main()."""
    spec = importlib.util.spec_from_file_location("pre_gen_project", PRE_GEN_HOOK)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {PRE_GEN_HOOK}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def answers(**overrides: str) -> dict[str, Any]:
    """What cookiecutter --no-input would pass the hook, with the given answers."""
    from cookiecutter.generate import generate_context
    from cookiecutter.prompt import prompt_for_config

    context = generate_context(context_file=str(COOKIECUTTER_JSON), extra_context=overrides)
    return dict(prompt_for_config(context, no_input=True))


def code(text: str) -> str:
    """Text as an inline code span, with a longer fence when it holds backticks."""
    fence = "``" if "`" in text else "`"
    return f"{fence}{text}{fence}"


def shown(value: str) -> str:
    """An answer as a reader types it; repr where whitespace or control characters matter."""
    return code(value if value.isprintable() and value.strip() == value and value else repr(value))


def example(name: str, change: dict[str, str]) -> str:
    """The answer to `name`, and the other answers it goes with."""
    others = "".join(f" (with {key} {code(value)})" for key, value in change.items() if key != name)
    return shown(change[name]) + others


def problem(hook: ModuleType, defaults: dict[str, Any], change: dict[str, str]) -> str | None:
    """The hook's complaint about the default answers with `change` applied, or None."""
    found: str | None = hook.first_problem({**defaults, **change})
    return found


def default_lines(
    name: str,
    template: object,
    config: dict[str, Any],
    defaults: dict[str, Any],
    label: str = "Default",
) -> list[str]:
    if isinstance(template, list):
        return [f"- {label}: {code(template[0])}"]
    assert isinstance(template, str)
    if "{{" not in template:
        return [f"- {label}: {code(template)}"]
    # A default computed from other answers: cookiecutter renders it for each choice it uses.
    choices = [
        variable
        for variable in dict.fromkeys(VARIABLE.findall(template))
        if isinstance(config.get(variable), list)
    ]
    lines = [f"- {label}: computed as {code(template)}"]
    if not choices:
        lines.append(f"  (with the other defaults: {code(defaults[name])})")
        return lines
    for variable in choices:
        for value in config[variable]:
            rendered = answers(**{variable: value})[name]
            lines.append(
                f"    - {variable} {code(value)}: {code(rendered) if rendered else '(empty)'}"
            )
    return lines


def choice_lines(name: str, choices: list[str], prompts: dict[str, Any]) -> list[str]:
    labels = prompts.get(name) if isinstance(prompts.get(name), dict) else {}
    lines = ["- Choices (cookiecutter refuses any other value before the hook runs):"]
    for choice in choices:
        label = labels.get(choice, "") if labels else ""
        label = label.removeprefix(f"{choice}:").strip()
        lines.append(f"    - {code(choice)}" + (f": {label}" if label else ""))
    return lines


def rule_lines(name: str, hook: ModuleType, defaults: dict[str, Any]) -> list[str]:
    lines = []
    for change in REFUSED.get(name, []):
        found = problem(hook, defaults, change)
        if not found or not found.startswith(f"{name}: "):
            raise ValueError(f"the hook no longer refuses {change!r} for {name}: {found!r}")
        lines.append(f"    - {example(name, change)}: {code('ERROR: ' + found)}")
    if lines:
        lines.insert(0, "- Refused, with the hook's message:")
    accepted = []
    for change in ACCEPTED.get(name, []):
        found = problem(hook, defaults, change)
        if found:
            raise ValueError(f"the hook refuses {change!r}: {found}")
        accepted.append(example(name, change))
    if accepted:
        lines.append("- Accepted, for example: " + "; ".join(accepted))
    return lines


def extra_rule(name: str, hook: ModuleType) -> list[str]:
    """Rules the examples alone do not spell out, read from the hook's own tables."""
    if name == "package_name":
        reserved = ", ".join(code(module) for module in hook.RESERVED)
        return [
            "- Rule: a lowercase identifier, not private (`_x`), not a keyword (soft keywords "
            "included), and no name that Python already takes when `python -m <package_name>` "
            "runs from the project root in the project's environment: a module of the standard "
            f"library of Python {', '.join(hook.PYTHON_VERSIONS)} "
            f"({len(hook.STANDARD_LIBRARY)} names), a top-level name installed in the "
            "environment by any dependency group on any platform "
            f"({len(hook.ENVIRONMENT)} names, from a freshly locked project), or one of "
            f"{reserved}. The hook carries both lists; `make taken-names` rewrites them"
        ]
    if name == "mlflow_tracking_uri":
        schemes = ", ".join(code(scheme) for scheme in hook.MLFLOW_SCHEMES)
        return [
            f"- Rule: a URI with one of the schemes {schemes} (SQLAlchemy drivers such as "
            "`postgresql+psycopg2://` included), or just `databricks`; `file:` stores and plain "
            "paths are refused, since MLflow 3 deprecates them"
        ]
    return []


def render() -> str:
    """The whole of docs/options.md."""
    config = json.loads(COOKIECUTTER_JSON.read_text(encoding="utf-8"))
    prompts: dict[str, Any] = config["__prompts__"]
    questions = [name for name in config if not name.startswith("_")]
    if set(questions) != set(CHANGES):
        raise ValueError(
            "docs/hooks/options.py: CHANGES must describe exactly the questions of "
            f"cookiecutter.json; missing {sorted(set(questions) - set(CHANGES))}, "
            f"unknown {sorted(set(CHANGES) - set(questions))}"
        )
    hook = load_hook()
    defaults = answers()
    for name in questions:
        for choice in config[name] if isinstance(config[name], list) else []:
            found = problem(hook, answers(**{name: choice}), {})
            if found:
                raise ValueError(f"the hook refuses the choice {choice!r} of {name}: {found}")

    out = [
        "# Options",
        "",
        "<!-- Generated by docs/hooks/options.py from cookiecutter.json and "
        "hooks/pre_gen_project.py. Do not edit: run `make docs`. -->",
        "",
        "Every question `cookiecutter` asks, in the order it asks them: the prompt, the "
        "default, what the answer changes in the generated project, and what "
        "`hooks/pre_gen_project.py` refuses. A refused answer stops generation before any "
        "file is written, with one line on stderr, `ERROR: <field>: <what is wrong>`, and exit "
        "code 1. The messages below are the hook's own, produced while this page was written.",
        "",
        "Answer on the command line to skip a prompt, e.g. "
        "`cookiecutter --no-input <template> task=regression dvc_remote=s3`.",
        "",
        "| option | prompt | default |",
        "|---|---|---|",
    ]
    for name in questions:
        prompt = prompts.get(name, name)
        if isinstance(prompt, dict):
            prompt = prompt["__prompt__"]
        out.append(
            f"| [`{name}`](#{name}) | {prompt.replace('|', '&#124;')} | "
            f"{code(str(defaults[name]))} |"
        )
    for name in questions:
        prompt = prompts.get(name, name)
        out += ["", f"## `{name}`", ""]
        out.append(f"*{prompt['__prompt__'] if isinstance(prompt, dict) else prompt}*")
        out.append("")
        template = config[name]
        if isinstance(template, list):
            out += choice_lines(name, template, prompts)
        out += default_lines(name, template, config, defaults)
        out.append(f"- Changes: {CHANGES[name]}")
        out += extra_rule(name, hook)
        out += rule_lines(name, hook, defaults)
    private = [name for name in config if name.startswith("__") and name != "__prompts__"]
    out += [
        "",
        "## Derived values",
        "",
        "Computed once in `cookiecutter.json`, never asked (cookiecutter's private `__` "
        "variables):",
        "",
    ]
    for name in private:
        out += default_lines(name, config[name], config, defaults, label=code(name))
    out += ["", AFTER_GENERATION.strip()]
    return "\n".join(out) + "\n"


def on_pre_build(config: Any) -> None:
    """mkdocs hook: stop the build when docs/options.md is not what render() writes."""
    from mkdocs.exceptions import PluginError

    if PAGE.read_text(encoding="utf-8") != render():
        raise PluginError("docs/options.md is out of date: run `make docs` and commit it")


if __name__ == "__main__":
    PAGE.write_text(render(), encoding="utf-8")
    sys.exit(0)
