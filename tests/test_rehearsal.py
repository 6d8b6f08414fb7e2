"""Slow tier: the generated workflows' jobs, rehearsed step by step in a baked project.

The project is baked, set up, run once and committed, as a team would before its first push;
each job then runs in a fresh clone (the runner's checkout) whose DVC remote is out of reach, as
the default remote, a folder on the author's machine, is from GitHub. See tests/rehearsal.py for
what replaces each `uses:` step.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml
from mlflow import MlflowClient

from .conftest import Bake, run
from .rehearsal import Job, Rehearsal, branch_from_state

pytestmark = pytest.mark.slow
MODEL = "tumour-classifier"
CURRENT = Path("data/current/breast_cancer.csv")
# The set-up action every job runs first (Python, uv, the caches), by its name in `uses:`.
SETUP = "$/.github/actions/setup"
# The steps that install dependencies and get the data, which the timing leaves out.
INSTALL = ("make setup", SETUP)


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


def propose(
    project: Path, env: dict[str, str], branch: str, message: str, **params: object
) -> None:
    """A pull request as a team member makes one: a branch off main, the parameters changed,
    the pipeline run again and its outputs committed (the pull request template's checklist)."""
    git(project, env, "checkout", "-q", "main")
    git(project, env, "checkout", "-q", "-b", branch)
    set_params(project, **params)
    run(["make", "evaluate"], project, env)
    commit(project, env, message)


def merge(project: Path, env: dict[str, str], branch: str) -> str:
    git(project, env, "checkout", "-q", "main")
    git(project, env, "merge", "-q", "--no-ff", "-m", f"Merge {branch}", branch)
    return git(project, env, "rev-parse", "HEAD")


def edit_readme(project: Path, env: dict[str, str], line: str) -> str:
    """A push to main that leaves the model alone."""
    git(project, env, "checkout", "-q", "main")
    with (project / "README.md").open("a", encoding="utf-8") as readme:
        readme.write(f"\n{line}\n")
    return commit(project, env, line)


def set_up(job: Job) -> list[tuple[str, str, str]]:
    """The set-up action's steps in `job`: what each is, its outcome, and its log."""
    (setup,) = [step for step in job.steps if step.name == SETUP]
    return [(step.name, step.outcome, step.output) for step in setup.steps]


def pushes_and_releases(calls: Path) -> list[str]:
    """What reached the image registry and GitHub's releases: docker and gh calls that publish."""
    if not calls.exists():
        return []
    lines = calls.read_text(encoding="utf-8").replace('"', "").splitlines()
    publishing = ("docker push", "docker buildx imagetools", "gh release create", "gh release edit")
    return [line for line in lines if line.startswith(publishing)]


def release_on_main(
    project: Path, env: dict[str, str], scratch: Path, caches: Path, **variables: str
) -> Job:
    """The release job of a push to main, in a new runner's checkout; it must succeed."""
    workspace = checkout(project, env, scratch / "runner")
    rehearsal = Rehearsal(workspace, "release.yml", scratch, env, caches)
    job = rehearsal.run_job("release", event_name="push", variables=variables)
    assert job.result == "success", failed_steps(job)
    return job


def test_two_pull_requests_and_two_merges_on_the_embedded_defaults(
    pushed: tuple[Path, str], bake_env: dict[str, str], tmp_path: Path
) -> None:
    """No shared registry configured: each pull request's gate beats the model committed on its
    base branch, and no release publishes a version number that the next run would forget."""
    project, base = pushed
    caches = tmp_path / "caches"  # actions/cache's store, shared by the runs
    calls = tmp_path / "calls.log"

    # Pull request 1: a better model, judged against main's committed metrics.
    propose(project, bake_env, "better", "Less regularisation", train__logistic_regression__C=10.0)
    workspace = checkout(project, bake_env, tmp_path / "runner", "better")
    rehearsal = Rehearsal(workspace, "train.yml", tmp_path / "pr-1", bake_env, caches)
    train = rehearsal.run_job("train", event=pull_request(base))
    assert train.result == "success", failed_steps(train)
    assert train.outputs == {"report": "success"}
    comment_job = rehearsal.run_job("comment", event=pull_request(base), needs={"train": train})
    assert comment_job.result == "success", failed_steps(comment_job)
    comment = (tmp_path / "pr-1" / "comment.md").read_text(encoding="utf-8")
    metrics = comment.split("### Metrics")[1].split("### Parameters")[0]
    assert "| reports/metrics.json | roc_auc" in metrics
    assert "train.logistic_regression.C" in comment
    assert f"against the base branch's model, by the metrics committed at `{base[:12]}`" in comment
    assert "**Decision: pass.**" in comment
    assert "### Remotes" in train.summary
    assert "Set the repository variables" in train.summary  # the embedded defaults, said so
    assert comment in train.summary
    # A first run: nothing to restore; the .venv and DVC's cache are saved for the next.
    assert [(name, outcome) for name, outcome, _ in set_up(train)] == [
        ("actions/setup-python", "success"),
        ("astral-sh/setup-uv", "success"),
        ("actions/cache", "success"),
        ("actions/cache", "success"),
    ]
    assert [log for name, _, log in set_up(train) if name == "actions/cache"] == [
        "cache missed"
    ] * 2
    cold = train.seconds(excluding=INSTALL)

    # Merge 1: the release job registers in a store that dies with it, so publishes nothing.
    merge(project, bake_env, "better")
    release = release_on_main(project, bake_env, tmp_path, caches)
    assert "### Release: nothing published" in release.summary
    assert "set the repository variable `MLFLOW_TRACKING_URI`" in release.summary
    assert pushes_and_releases(calls) == []
    skipped = [step.name for step in release.steps if step.outcome == "skipped"]
    assert "make promote" in skipped
    assert "make container" in skipped
    # What a release publishes is built from scratch: no cache restored.
    assert [outcome for _, outcome, _ in set_up(release)] == [
        "success",
        "success",
        "skipped",
        "skipped",
    ]

    # Pull request 2: back to the old setting, now worse than main's model: the margin over
    # the base branch's committed metrics blocks it, with no registry at all.
    main_now = git(project, bake_env, "rev-parse", "main")
    propose(project, bake_env, "back", "Old regularisation", train__logistic_regression__C=1.0)
    workspace = checkout(project, bake_env, tmp_path / "runner", "back")
    rehearsal = Rehearsal(workspace, "train.yml", tmp_path / "pr-2", bake_env, caches)
    train = rehearsal.run_job("train", event=pull_request(main_now))
    assert train.result == "failure"
    # The first pull request's .venv and DVC cache, by their restore-key prefixes.
    restored = [log for name, _, log in set_up(train) if name == "actions/cache"]
    assert [log.split(" from ")[0] for log in restored] == ["cache restored"] * 2, restored
    warm = train.seconds(excluding=INSTALL)
    print(
        "\ntrain job, edit params -> comment body ready, beyond installing: "
        f"{cold:.1f} s on a first run, {warm:.1f} s with the caches of an earlier run (the "
        "environment and DVC's); per step: "
        + ", ".join(f"{step.name} {step.seconds:.1f} s" for step in train.steps)
    )
    failures = [step.name for step in train.steps if step.outcome == "failure"]
    assert failures == ["make gate"]
    rehearsal.run_job("comment", event=pull_request(main_now), needs={"train": train})
    comment = (tmp_path / "pr-2" / "comment.md").read_text(encoding="utf-8")
    assert "**Decision: fail.**" in comment
    assert "does not beat the champion's" in comment
    assert "is worse than its floor" not in comment

    # Merge 2 (a documentation change): again nothing published, nothing claimed.
    edit_readme(project, bake_env, "Owned by the data team.")
    release = release_on_main(project, bake_env, tmp_path, caches)
    assert "### Release: nothing published" in release.summary
    assert pushes_and_releases(calls) == []


def champion_on(server: str) -> str:
    client = MlflowClient(tracking_uri=server)
    return str(client.get_model_version_by_alias(MODEL, "champion").version)


def test_releases_remember_and_a_rollback_sticks(
    pushed: tuple[Path, str], bake_env: dict[str, str], tmp_path: Path, mlflow_server: str
) -> None:
    """A shared MLflow server: merge twice, push a change that leaves the model alone, roll
    back, push again. Every image tag, release and alias tells the truth after each step."""
    project, _ = pushed
    shared = {"MLFLOW_TRACKING_URI": mlflow_server}
    calls = tmp_path / "calls.log"
    image = f"ghcr.io/data-team/{MODEL}"

    def release(step: str) -> tuple[Job, list[str]]:
        """The release job of a push to main (`step`); what it published."""
        before = len(pushes_and_releases(calls))
        job = release_on_main(project, bake_env, tmp_path, tmp_path / "caches", **shared)
        return job, pushes_and_releases(calls)[before:]

    first = git(project, bake_env, "rev-parse", "HEAD")
    job, published = release("merge 1")
    assert published == [
        f"docker push --quiet {image}:v1",
        f"docker push --quiet {image}:{first[:12]}",
        f"docker push {image}:v1",
        f"docker buildx imagetools create --tag {image}:champion {image}:v1",
        f"gh release create model-v1 --title Model version 1 --notes-file reports/gate.md "
        f"--target {first}",
    ]
    assert champion_on(mlflow_server) == "1"
    assert "### Release: tumour-classifier version 1" in job.summary

    # Merge 2: a new model, as good: version 2 is published and becomes the champion.
    set_params(project, train__seed=7)
    run(["make", "evaluate"], project, bake_env)
    second = commit(project, bake_env, "Another seed")
    job, published = release("merge 2")
    assert f"docker push --quiet {image}:v2" in published
    assert f"docker push --quiet {image}:{second[:12]}" in published
    assert f"docker buildx imagetools create --tag {image}:champion {image}:v2" in published
    assert champion_on(mlflow_server) == "2"

    # A push that leaves the model alone: the same version again, nothing new published.
    edit_readme(project, bake_env, "How to call the service.")
    job, published = release("unchanged model")
    assert published == []
    assert "version 2, already the champion" in job.summary

    # Roll back: version 1 is the champion, and the image's champion tag follows it.
    before = len(pushes_and_releases(calls))
    workspace = checkout(project, bake_env, tmp_path / "runner")
    rollback = Rehearsal(workspace, "rollback.yml", tmp_path, bake_env, tmp_path / "caches")
    reason = 'AUC fell on "cohort B" $(shell id) `id` $$(id)'
    done = rollback.run_job(
        "rollback", event_name="workflow_dispatch", inputs={"reason": reason}, variables=shared
    )
    assert done.result == "success", failed_steps(done)
    assert champion_on(mlflow_server) == "1"
    assert pushes_and_releases(calls)[before:] == [
        f"docker buildx imagetools create --tag {image}:champion {image}:v1"
    ]

    # The next push trains the rolled-back model again: it stays out, and nothing moves.
    edit_readme(project, bake_env, "On call: the data team.")
    job, published = release("after the rollback")
    assert published == []
    assert f"version 2, which was rolled back ({reason})" in job.summary
    assert champion_on(mlflow_server) == "1"
    client = MlflowClient(tracking_uri=mlflow_server)
    versions = client.search_model_versions(f"name='{MODEL}'")
    assert sorted(str(version.version) for version in versions) == ["1", "2"]
    assert client.get_model_version(MODEL, "2").tags["rollback_reason"] == reason


def test_drift_on_shifted_data_writes_the_issue(
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
    rehearsal = Rehearsal(workspace, "monitor.yml", tmp_path, bake_env, tmp_path / "caches")
    monitor = rehearsal.run_job("monitor", event_name="schedule")
    assert monitor.result == "success", failed_steps(monitor)
    # No production log in the checkout: drift alone raises the alert, and quality says why.
    # Nothing labelled to learn from: no retraining pull request.
    assert monitor.outputs == {"drift": "true", "quality": "false", "retrain": "false"}
    assert "**Drift detected.**" in monitor.summary
    assert "no prediction was logged in the window" in monitor.summary
    for _ in range(2):  # next week's run updates the issue rather than opening another
        alert = rehearsal.run_job("alert", event_name="schedule", needs={"monitor": monitor})
        assert alert.result == "success", failed_steps(alert)
    issues = json.loads((tmp_path / "github.json").read_text(encoding="utf-8"))["issues"]
    assert [(issue["title"], issue["labels"]) for issue in issues] == [
        ("The production model needs attention", ["monitor"])
    ]
    issue = issues[0]["body"]
    assert issue.startswith("## Production quality")
    assert "**Drift detected.**" in issue
    assert "| column | score |" in issue


# Run in the author's project: a week of production as the service logs it (a model wrong on
# every row), and the labels that arrived for it, in a folder that stands for the bucket.
PRODUCTION = """\
import sys
import time
from pathlib import Path

import pandas as pd

from tumour_classifier.core.config import RAW_DATA
from tumour_classifier.core.prediction_ids import new_ids
from tumour_classifier.core.schema import load_schema
from tumour_classifier.serving.inference_log import InferenceLog

bucket = Path(sys.argv[1])
schema = load_schema()
rows = pd.read_csv(RAW_DATA).sample(n=200, random_state=int(sys.argv[2]))
truth = rows[schema.target.name].to_numpy(dtype=float)
wrong = 1 - truth
log = InferenceLog(bucket / "inference", clock=lambda: time.time() - 3600)
ids = new_ids(len(rows))
names = schema.feature_names
features = [dict(zip(names, values)) for values in rows[names].to_numpy().tolist()]
log.append(features, ids, wrong.tolist(), "1", (wrong * 0.8 + 0.1).tolist())
log.close()
(bucket / "labels").mkdir(parents=True, exist_ok=True)
labels = {"prediction_id": ids, "label": truth.astype(int), "time": time.time()}
pd.DataFrame(labels).to_csv(bucket / "labels" / f"{ids[0]}.csv", index=False)
"""


def test_retraining_on_production_labels_is_one_pull_request_trained_by_the_monitor(
    pushed: tuple[Path, str], bake_env: dict[str, str], tmp_path: Path
) -> None:
    """Quality falls: the weekly run adds the labelled rows to the data on one branch, opens one
    pull request (updated the next week, not duplicated) and trains it with the train workflow."""
    project, _ = pushed
    bucket, team_remote = tmp_path / "bucket", tmp_path / "team-remote"
    # The team's remote, where the runners read and write the data.
    dvc = ["uv", "run", "--locked", "dvc"]
    name = run([*dvc, "remote", "default"], project, bake_env).stdout.strip()
    run([*dvc, "remote", "modify", name, "url", str(team_remote)], project, bake_env)
    run([*dvc, "push", "-q"], project, bake_env)
    script = tmp_path / "production.py"
    script.write_text(PRODUCTION, encoding="utf-8")
    run(["uv", "run", "--locked", "python", str(script), str(bucket), "1"], project, bake_env)
    set_params(
        project,
        monitor__predictions=str(bucket / "inference"),
        monitor__labels=str(bucket / "labels"),
    )
    main = commit(project, bake_env, "Monitor production")
    caches = tmp_path / "caches"

    workspace = checkout(project, bake_env, tmp_path / "monitor")
    rehearsal = Rehearsal(workspace, "monitor.yml", tmp_path, bake_env, caches)
    monitor = rehearsal.run_job("monitor", event_name="schedule")
    assert monitor.result == "success", failed_steps(monitor)
    assert (monitor.outputs["quality"], monitor.outputs["retrain"]) == ("true", "true")

    def propose() -> dict[str, Any]:
        """The retrain job in a new runner; the repository's state after it."""
        workspace = checkout(project, bake_env, tmp_path / "retrain")
        rehearsal = Rehearsal(workspace, "monitor.yml", tmp_path, bake_env, caches)
        retrain = rehearsal.run_job("retrain", event_name="schedule", needs={"monitor": monitor})
        assert retrain.result == "success", failed_steps(retrain)
        assert retrain.outputs == {"pull-request": "1"}
        state: dict[str, Any] = json.loads((tmp_path / "github.json").read_text("utf-8"))
        state["workspace"] = workspace
        return state

    first = propose()
    ((pull),) = first["pulls"]
    assert (pull["head"], pull["base"], pull["state"]) == (
        "retrain/production-data",
        "main",
        "open",
    )
    assert "200 labelled production rows added" in pull["body"]
    assert "**Production quality fell below its floor.**" in pull["body"]
    commit_sha = first["refs"]["refs/heads/retrain/production-data"]
    proposed = first["commits"][commit_sha]
    assert proposed["parents"] == [main]
    files = {
        entry["path"]: first["blobs"][entry["sha"]]["content"]
        for entry in first["trees"][proposed["tree"]["sha"]]["tree"]
    }
    raw_pointer = "data/raw/breast_cancer.csv.dvc"
    assert set(files) == {raw_pointer, "data/raw/production_ids.txt.dvc", "data/raw/.gitignore"}
    assert files[raw_pointer] == (first["workspace"] / raw_pointer).read_text(encoding="utf-8")
    # The data is on the team's remote before any pointer to it is proposed.
    md5 = yaml.safe_load(files[raw_pointer])["outs"][0]["md5"]
    assert (team_remote / "files" / "md5" / md5[:2] / md5[2:]).is_file()

    # The next week, more labels: the same branch moves, the same pull request is updated.
    run(["uv", "run", "--locked", "python", str(script), str(bucket), "2"], project, bake_env)
    second = propose()
    assert len(second["pulls"]) == 1
    assert "400 labelled production rows added" in second["pulls"][0]["body"]
    assert second["refs"]["refs/heads/retrain/production-data"] != commit_sha

    # GitHub starts no workflow for that pull request: the monitor calls train.yml for it.
    branch_from_state(project, bake_env, second, "retrain/production-data", tmp_path / "branch")
    call = monitor_calls_train(project)
    workspace = checkout(project, bake_env, tmp_path / "train", "retrain/production-data")
    rehearsal = Rehearsal(workspace, "train.yml", tmp_path / "train", bake_env, caches)
    inputs = {"ref": call["ref"], "base": main, "pull-request": "1"}
    train = rehearsal.run_job("train", event_name="schedule", inputs=inputs)
    # The model trained on the new rows is judged; the report is written either way.
    assert train.outputs == {"report": "success"}, failed_steps(train)
    raw = pd.read_csv(workspace / "data" / "raw" / "breast_cancer.csv")
    assert len(raw) == 569 + 400
    comment = rehearsal.run_job(
        "comment", event_name="schedule", inputs=inputs, needs={"train": train}
    )
    assert comment.result == "success", failed_steps(comment)
    assert "on pull request 1" in comment.steps[-1].output
    assert "challenger" in (tmp_path / "train" / "comment.md").read_text(encoding="utf-8")


def monitor_calls_train(project: Path) -> dict[str, Any]:
    """What the monitor's `train` job passes to train.yml."""
    workflow = yaml.safe_load(
        (project / ".github" / "workflows" / "monitor.yml").read_text(encoding="utf-8")
    )
    job = workflow["jobs"]["train"]
    assert job["uses"] == "$/.github/workflows/train.yml"
    called: dict[str, Any] = job["with"]
    return called
