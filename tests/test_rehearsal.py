"""Slow tier: the generated workflows' jobs, rehearsed step by step in a baked project.

The project is baked, set up, run once and committed, as a team would before its first push;
each job then runs in a fresh clone (the runner's checkout) whose DVC remote is out of reach, as
the default remote, a folder on the author's machine, is from GitHub. See tests/rehearsal.py for
what replaces each `uses:` step.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest
import yaml
from mlflow import MlflowClient

from .conftest import Bake, run
from .rehearsal import Job, Rehearsal

pytestmark = pytest.mark.slow
MODEL = "tumour-classifier"
CURRENT = Path("data/current/breast_cancer.csv")
# The steps that install dependencies and get the data, which the timing leaves out.
INSTALL = ("make setup", "actions/setup-python", "astral-sh/setup-uv", "actions/cache")


def git(project: Path, env: dict[str, str], *args: str) -> str:
    return run(["git", *args], project, env).stdout.strip()


def commit(project: Path, env: dict[str, str], message: str) -> str:
    git(project, env, "add", "-A")
    git(project, env, "commit", "-q", "-m", message)
    return git(project, env, "rev-parse", "HEAD")


def set_params(project: Path, **changes: object) -> None:
    """Set dotted keys of params.yaml, keeping its comments out of the way (a rewrite)."""
    path = project / "params.yaml"
    params = yaml.safe_load(path.read_text(encoding="utf-8"))
    for key, value in changes.items():
        *parents, last = key.split("__")
        section = params
        for part in parents:
            section = section[part]
        section[last] = value
    path.write_text(yaml.safe_dump(params, sort_keys=False), encoding="utf-8")


def pull_request(base: str) -> dict[str, object]:
    return {
        "pull_request": {
            "base": {"sha": base},
            "head": {"repo": {"full_name": "data-team/project"}},
        }
    }


def champion(workspace: Path) -> str:
    client = MlflowClient(tracking_uri=f"sqlite:///{workspace / 'mlflow.db'}")
    return str(client.get_model_version_by_alias(MODEL, "champion").version)


def failed_steps(job: Job) -> list[str]:
    return [
        f"{step.name}:\n{step.output[-2000:]}" for step in job.steps if step.outcome == "failure"
    ]


@pytest.fixture
def pushed(bake: Bake, bake_env: dict[str, str], tmp_path: Path) -> tuple[Path, str]:
    """The team's repository after its first commit: set up, reproduced, committed."""
    remote = tmp_path / "laptop-remote"
    project = bake(github_owner="data-team", dvc_remote_url=str(remote))
    git(project, bake_env, "config", "user.email", "team@example.com")
    git(project, bake_env, "config", "user.name", "Team")
    run(["make", "setup"], project, bake_env)
    run(["make", "repro"], project, bake_env)
    base = commit(project, bake_env, "First model")
    shutil.rmtree(remote)  # a GitHub runner cannot reach a folder on the author's machine
    return project, base


def checkout(project: Path, env: dict[str, str], scratch: Path, branch: str = "main") -> Path:
    """What actions/checkout gives a job: a clone at the branch, nothing else, in a workspace
    folder that, as on GitHub, is the same for every run (a restored .venv refers to it)."""
    workspace = scratch / "workspace"
    shutil.rmtree(workspace, ignore_errors=True)  # a new runner
    scratch.mkdir(parents=True, exist_ok=True)
    run(["git", "clone", "-q", "--branch", branch, str(project), str(workspace)], scratch, env)
    git(workspace, env, "config", "user.email", "ci@example.com")
    git(workspace, env, "config", "user.name", "CI")
    return workspace


def test_train_comments_with_the_metrics_and_fails_a_worse_model(
    pushed: tuple[Path, str], bake_env: dict[str, str], tmp_path: Path
) -> None:
    project, base = pushed
    caches = tmp_path / "caches"  # actions/cache's store, shared by the two runs

    # A pull request that changes a hyperparameter: the report and one comment.
    git(project, bake_env, "checkout", "-q", "-b", "better")
    set_params(project, train__logistic_regression__C=0.5)
    commit(project, bake_env, "Less regularisation")
    workspace = checkout(project, bake_env, tmp_path / "runner", "better")
    rehearsal = Rehearsal(workspace, "train.yml", tmp_path / "better", bake_env, caches)
    train = rehearsal.run_job("train", event=pull_request(base))
    assert train.result == "success", failed_steps(train)
    assert train.outputs == {"report": "success"}
    comment_job = rehearsal.run_job("comment", event=pull_request(base), needs={"train": train})
    assert comment_job.result == "success", failed_steps(comment_job)
    comment = (tmp_path / "better" / "comment.md").read_text(encoding="utf-8")
    metrics = comment.split("### Metrics")[1].split("### Parameters")[0]
    assert "| reports/metrics.json | roc_auc" in metrics
    assert "train.logistic_regression.C" in comment
    assert "**Decision: pass.**" in comment
    assert "### Remotes" in train.summary
    assert "Set the repository variables" in train.summary  # the embedded defaults, said so
    assert comment in train.summary
    cold = train.seconds(excluding=INSTALL)

    # A pull request that makes the model worse than the floors: the gate fails the job, and
    # the comment still says why.
    git(project, bake_env, "checkout", "-q", "main")
    git(project, bake_env, "checkout", "-q", "-b", "worse")
    set_params(project, train__logistic_regression__C=0.00001)
    commit(project, bake_env, "Far too much regularisation")
    workspace = checkout(project, bake_env, tmp_path / "runner", "worse")
    rehearsal = Rehearsal(workspace, "train.yml", tmp_path / "worse", bake_env, caches)
    train = rehearsal.run_job("train", event=pull_request(base))  # the caches restored
    assert train.result == "failure"
    warm = train.seconds(excluding=INSTALL)
    print(
        "\ntrain job, edit params -> comment body ready, beyond installing: "
        f"{cold:.1f} s on a first run, {warm:.1f} s with the caches of an earlier run (the "
        "environment and DVC's); per step: "
        + ", ".join(f"{step.name} {step.seconds:.1f} s" for step in train.steps)
    )
    failures = [step.name for step in train.steps if step.outcome == "failure"]
    assert failures == ["make gate METRICS=reports/metrics.json"]
    rehearsal.run_job("comment", event=pull_request(base), needs={"train": train})
    comment = (tmp_path / "worse" / "comment.md").read_text(encoding="utf-8")
    assert "**Decision: fail.**" in comment
    assert "is worse than its floor" in comment


def test_release_promotes_and_ships_then_rollback_moves_back(
    pushed: tuple[Path, str], bake_env: dict[str, str], tmp_path: Path
) -> None:
    project, _ = pushed
    workspace = checkout(project, bake_env, tmp_path)
    rehearsal = Rehearsal(workspace, "release.yml", tmp_path, bake_env, tmp_path / "caches")
    release = rehearsal.run_job("release", event_name="push")
    assert release.result == "success", failed_steps(release)
    assert champion(workspace) == "1"
    assert next((workspace / ".bentoml" / "bentos").glob("*/*/bento.yaml")).is_file()
    calls = (tmp_path / "calls.log").read_text(encoding="utf-8")
    image = f"ghcr.io/data-team/{MODEL}"
    assert f"docker push --quiet {image}:v1" in calls
    assert f"docker push --quiet {image}:champion" in calls
    assert "gh release create model-v1 --title Model version 1 --notes-file reports/gate.md" in (
        calls.replace('"', "")
    )

    # The next merge registers version 2, as good as version 1: it is released too.
    set_params(workspace, train__seed=7)
    commit(workspace, bake_env, "Another seed")
    release = rehearsal.run_job("release", event_name="push")
    assert release.result == "success", failed_steps(release)
    assert champion(workspace) == "2"

    rollback = Rehearsal(
        workspace, "rollback.yml", tmp_path, bake_env, tmp_path / "caches"
    ).run_job("rollback", event_name="workflow_dispatch", inputs={"reason": "latency regression"})
    assert rollback.result == "success", failed_steps(rollback)
    assert champion(workspace) == "1"
    calls = (tmp_path / "calls.log").read_text(encoding="utf-8")
    assert f"docker buildx imagetools create --tag {image}:champion {image}:v1" in calls
    client = MlflowClient(tracking_uri=f"sqlite:///{workspace / 'mlflow.db'}")
    assert client.get_model_version(MODEL, "2").tags["rollback_reason"] == "latency regression"


def test_drift_on_shifted_data_writes_the_issue_and_retrains(
    pushed: tuple[Path, str], bake_env: dict[str, str], tmp_path: Path
) -> None:
    project, _ = pushed
    current = pd.read_csv(project / CURRENT)
    shifted = current * 1.5  # every feature half as large again: drift in every column
    shifted.to_csv(project / CURRENT, index=False)
    run(["uv", "run", "--locked", "dvc", "add", str(CURRENT)], project, bake_env)
    commit(project, bake_env, "This week's production data")

    workspace = checkout(project, bake_env, tmp_path)
    # The runner's DVC cache restore: the new current data is only in the author's cache.
    shutil.copytree(project / ".dvc" / "cache", workspace / ".dvc" / "cache")
    rehearsal = Rehearsal(workspace, "drift.yml", tmp_path, bake_env, tmp_path / "caches")
    drift = rehearsal.run_job("drift", event_name="schedule")
    assert drift.result == "success", failed_steps(drift)
    assert drift.outputs == {"drift": "true"}
    assert "**Drift detected.**" in drift.summary
    alert = rehearsal.run_job("alert", event_name="schedule", needs={"drift": drift})
    assert alert.result == "success", failed_steps(alert)
    issue = (tmp_path / "issue.md").read_text(encoding="utf-8")
    assert "**Drift detected.**" in issue
    assert "| column | score |" in issue
