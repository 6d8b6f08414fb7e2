"""Slow tier: the retraining loop of the weekly monitor, whole, against the stack of `make stack`.

The champion (version 1 in the stack's MLflow) is served with its inference log shipped to the
stack's object store, and scores traffic from a shifted distribution: the breast-cancer
features half as large again, as a new scanner's calibration might make them. Most of its
answers are wrong. The true labels of those rows arrive as a label file in the store; the
project's params.yaml points `monitor.predictions`, `monitor.labels` and `drift.current` there.
Then the scheduled run of the generated monitor.yml, job by job in new runners' checkouts
(tests/rehearsal.py, with GitHub's API played by tests/github_script.js): `monitor` reports the
fall in accuracy and the drift, `alert` opens the issue, `retrain` adds the labelled rows to the
data, pushes them to the DVC bucket and opens the pull request, and train.yml, called for that
pull request as the monitor's `train` job calls it, trains the branch and writes its comment.

What that comment compares: the model trained on the refreshed data against the champion, both
measured on the branch's test split (production's rows among the original ones): the gate scores
the champion again on it. The gate's drift check reads the same `drift.current`, the shifted
traffic, against the new training split, where the original rows still outnumber production's:
it drifts, and the gate says so without blocking, since the challenger was trained on the
labelled production rows the champion was not.

Also counted in the same run: labels of ids no prediction has, and labels that came after
their prediction left the window; and a label set smaller than `monitor.min_labelled`, which
gives no verdict.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml

from .conftest import Bake, make, run, wait_for_http
from .rehearsal import Rehearsal, branch_from_state
from .stack import stack_of
from .test_cycle_slow import BUCKET, OWNER, Team, users
from .test_rehearsal import checkout, commit, failed_steps, git, monitor_calls_train, set_params

pytestmark = pytest.mark.slow

LOG_BUCKET = "inference-log"
LOG = f"s3://{LOG_BUCKET}/inference"
LABELS = f"s3://{LOG_BUCKET}/labels"
FEW_LABELS = f"s3://{LOG_BUCKET}/labels-few"
TARGET = "diagnosis"
SERVED = 300  # rows of shifted traffic, each labelled
SHIFT = 1.5  # every feature half as large again
UNKNOWN = 7  # labels of ids the service never returned
LATE = 5  # labels of predictions older than the window
FEW = 40  # a label set below monitor.min_labelled (100)
BRANCH = "retrain/production-data"
# A local file into the store, with the project's boto3, as a client of the stack.
PUT = """
import sys
import boto3
with open(sys.argv[3], "rb") as body:
    boto3.client("s3").put_object(Bucket=sys.argv[1], Key=sys.argv[2], Body=body.read())
"""


@pytest.fixture
def team(bake: Bake, bake_env: dict[str, str], tmp_path: Path) -> Iterator[Team]:
    """The team's repository on the stack: the sample data in the DVC bucket, the workflows'
    MLflow users, and version 1 trained, registered and promoted by the author as the admin."""
    started = time.monotonic()
    project = bake(github_owner=OWNER, dvc_remote="s3")
    git(project, bake_env, "config", "user.email", "team@example.com")
    git(project, bake_env, "config", "user.name", "Team")
    make(project, bake_env, "setup")
    with stack_of(project, bake_env) as stack:
        stack.start()
        variables = stack.variables()
        admin = stack.client_env()
        make(project, admin, "push")
        secrets_ = users(make(project, admin, "mlflow-users"))
        make(project, admin, "repro")
        assert "version 1 is now 'champion'" in make(project, admin, "promote")
        commit(project, bake_env, "First model")
        runner_env = {**bake_env, "AWS_ENDPOINT_URL_S3": variables["AWS_ENDPOINT_URL_S3"]}
        for name in ("MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_USERNAME", "AWS_ACCESS_KEY_ID"):
            runner_env.pop(name, None)
        team = Team(
            stack=stack,
            runner_env=runner_env,
            variables={
                "MLFLOW_TRACKING_URI": variables["MLFLOW_TRACKING_URI"],
                "DVC_REMOTE_URL": f"s3://{BUCKET}/storage",
                "AWS_ROLE_ARN": "arn:aws:iam::123456789012:role/tumour-classifier-dvc",
                "AWS_REGION": "us-east-1",
            },
            secrets=secrets_,
            cloud_login={
                "AWS_ACCESS_KEY_ID": variables["AWS_ACCESS_KEY_ID"],
                "AWS_SECRET_ACCESS_KEY": variables["AWS_SECRET_ACCESS_KEY"],
            },
            scratch=tmp_path,
        )
        team.timed("bake, set up, start the stack, push, version 1 promoted, first commit", started)
        yield team
        print("\n".join(f"{s:7.1f} s  {step}" for step, s in team.timings.items()))


def runner(
    team: Team, workflow: str, run_folder: Path, job: str, branch: str = "main"
) -> Rehearsal:
    """A new runner for `job` of one workflow run: its own checkout of `branch`, the run's
    artifacts and GitHub state (issues, pull requests, git objects) shared through `run_folder`."""
    workspace = checkout(team.project, team.stack.env, run_folder / job, branch)
    return Rehearsal(
        workspace,
        workflow,
        run_folder,
        team.runner_env,
        team.scratch / "caches",
        cloud_login=team.cloud_login,
    )


def s3_put(team: Team, bucket: str, key: str, path: Path) -> None:
    team.stack.python(PUT, bucket, key, str(path))


def serve_shifted_traffic(team: Team) -> tuple[pd.DataFrame, list[dict[str, Any]]]:
    """Serve the champion with its log shipped to the store; score SERVED rows of the raw data
    with every feature moved by SHIFT; stop the service as Kubernetes does (SIGTERM), which
    ships the last file. The rows with their true label, and the answers."""
    project, admin = team.project, team.stack.client_env()
    assert admin["STACK_INFERENCE_LOG_URL"] == LOG
    raw = pd.read_csv(project / "data" / "raw" / "breast_cancer.csv")
    rows = raw.sample(n=SERVED, random_state=7).reset_index(drop=True)
    features = [name for name in rows.columns if name != TARGET]
    rows[features] = rows[features] * SHIFT
    port = team.stack.service_port
    log = team.scratch / "service.log"
    env = {**admin, "INFERENCE_LOG_URL": LOG, "INFERENCE_LOG_DIR": str(team.scratch / "log")}
    with log.open("w", encoding="utf-8") as output:
        service = subprocess.Popen(
            ["make", "serve", f"PORT={port}"],
            cwd=project,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    answers: list[dict[str, Any]] = []
    try:
        wait_for_http(f"http://127.0.0.1:{port}/readyz", service, 180, log)
        records = rows[features].to_dict("records")
        for start in range(0, SERVED, 100):
            body = json.dumps({"rows": records[start : start + 100]}).encode()
            request = urllib.request.Request(
                f"http://127.0.0.1:{port}/predict", body, {"Content-Type": "application/json"}
            )
            with urllib.request.urlopen(request, timeout=60) as response:
                assert response.headers["x-model-version"] == "1"
                answers += json.load(response)
    finally:
        os.killpg(service.pid, signal.SIGTERM)
        service.wait(timeout=60)
    assert "not copied" not in log.read_text(encoding="utf-8")
    assert len(answers) == SERVED
    return rows, answers


def drop_labels(team: Team, rows: pd.DataFrame, answers: list[dict[str, Any]]) -> None:
    """The true labels of the served rows, as another system sends them: one CSV file under
    LABELS, with UNKNOWN labels of ids no prediction has and LATE labels of predictions older
    than the window (their log is in the store, in a partition of 10 days ago); FEW of the
    served rows' labels alone under FEW_LABELS."""
    now = datetime.now(UTC)
    names = [name for name in rows.columns if name != TARGET]
    late_ids = [secrets.token_hex(16) for _ in range(LATE)]
    then = now - timedelta(days=10)
    old_lines = [
        json.dumps(
            {
                "prediction_id": key,
                **features,
                "prediction": 1.0,
                "probability": 0.9,
                "model_version": "1",
                "time": then.timestamp(),
            },
            separators=(",", ":"),
        )
        for key, features in zip(late_ids, rows[names].head(LATE).to_dict("records"), strict=True)
    ]
    old_log = team.scratch / "old.jsonl"
    old_log.write_text("\n".join(old_lines) + "\n", encoding="utf-8")
    s3_put(team, LOG_BUCKET, f"inference/date={then:%Y-%m-%d}/old.jsonl", old_log)

    ids = [str(answer["prediction_id"]) for answer in answers]
    truth = rows[TARGET].astype(int).tolist()
    unknown = [secrets.token_hex(16) for _ in range(UNKNOWN)]
    labels = pd.DataFrame(
        {
            "prediction_id": ids + unknown + late_ids,
            "label": truth + [1] * (UNKNOWN + LATE),
            "time": now.isoformat(),
        }
    )
    path = team.scratch / "labels.csv"
    labels.to_csv(path, index=False)
    s3_put(team, LOG_BUCKET, f"labels/{now:%Y%m%d}.csv", path)
    few = team.scratch / "few.csv"
    labels.head(FEW).to_csv(few, index=False)
    s3_put(team, LOG_BUCKET, f"labels-few/{now:%Y%m%d}.csv", few)


def gate_row(comment: str, metric: str) -> list[str]:
    """The cells of `metric`'s row in the comment's gate table."""
    starts = (f"| {metric} ", f"| **{metric}** ")
    (row,) = [line for line in comment.splitlines() if line.startswith(starts)]
    return [cell.strip() for cell in row.strip("|").split("|")]


def test_production_quality_falls_and_the_weekly_run_proposes_a_retrained_model(
    team: Team,
) -> None:
    project, env = team.project, team.stack.env

    # The champion scores shifted traffic; most of its answers are wrong.
    started = time.monotonic()
    rows, answers = serve_shifted_traffic(team)
    predictions = [int(answer["prediction"]) for answer in answers]
    right = sum(p == t for p, t in zip(predictions, rows[TARGET], strict=True))
    assert right / SERVED < 0.6, right
    today = f"inference/date={datetime.now(UTC):%Y-%m-%d}/"
    shipped = [key for key in team.stack.objects()[LOG_BUCKET] if key.startswith(today)]
    assert shipped, "the service shipped no log file"
    team.timed(f"the champion served ({SERVED} shifted rows), stopped, its log shipped", started)

    # Their true labels arrive in the store; the project watches the store, and commits that.
    started = time.monotonic()
    drop_labels(team, rows, answers)
    set_params(project, monitor__predictions=LOG, monitor__labels=LABELS, drift__current=LOG)
    main = commit(project, env, "Watch production: the shipped log and its labels")

    # The scheduled run. monitor: the fall in accuracy, the drift, the skipped labels.
    run_folder = team.scratch / "monitor-run"
    monitor_runner = runner(team, "monitor.yml", run_folder, "monitor")
    monitor = team.job(monitor_runner, "monitor", None, event_name="schedule")
    assert monitor.outputs == {"drift": "true", "quality": "true", "retrain": "true"}
    summary = json.loads(
        (monitor_runner.project / "reports" / "monitor.json").read_text(encoding="utf-8")
    )
    judged = summary["versions"][0]
    assert (summary["verdict"], summary["version"], judged["labelled"]) == (
        "below_floor",
        "1",
        SERVED,
    )
    assert judged["metrics"]["accuracy"] == pytest.approx(right / SERVED)
    assert summary["predictions"] == SERVED  # the window's log; the old partition is not read
    assert summary["labels"] == SERVED + UNKNOWN + LATE
    assert summary["skipped"] == {"unknown_ids": UNKNOWN + LATE}
    assert summary["lateness_hours"] is not None
    accuracy = f"accuracy {right / SERVED:.4f} is worse than its floor 0.9"
    assert "**Production quality fell below its floor.**" in monitor.summary
    assert accuracy in monitor.summary
    assert f"Labels skipped: unknown ids {UNKNOWN + LATE}." in monitor.summary
    assert "**Drift detected.**" in monitor.summary
    assert f"rows of `{LOG}`" in monitor.summary  # drift measured on the production traffic
    team.timed("labels in the store, params.yaml committed, monitor job", started)

    # alert: the issue, with both.
    started = time.monotonic()
    needs = {"monitor": monitor}
    alert = team.job(monitor_runner, "alert", None, event_name="schedule", needs=needs)
    assert "opened issue #1" in alert.steps[-1].output
    state = json.loads((run_folder / "github.json").read_text(encoding="utf-8"))
    ((issue),) = state["issues"]
    assert (issue["title"], issue["labels"]) == (
        "The production model needs attention",
        ["monitor"],
    )
    assert accuracy in issue["body"]
    assert "**Drift detected.**" in issue["body"]
    team.timed("alert job: the issue", started)

    # retrain: the labelled rows added to the data, pushed, proposed in one pull request.
    started = time.monotonic()
    retrain_runner = runner(team, "monitor.yml", run_folder, "retrain")
    retrain = team.job(retrain_runner, "retrain", None, event_name="schedule", needs=needs)
    # Issues and pull requests share GitHub's numbers: the issue is #1.
    assert retrain.outputs == {"pull-request": "2"}
    state = json.loads((run_folder / "github.json").read_text(encoding="utf-8"))
    ((pull),) = state["pulls"]
    assert (pull["head"], pull["base"], pull["state"]) == (BRANCH, "main", "open")
    assert f"{SERVED} labelled production rows added" in pull["body"]
    assert accuracy in pull["body"]
    proposed = state["commits"][state["refs"][f"refs/heads/{BRANCH}"]]
    assert proposed["parents"] == [main]
    files = {
        entry["path"]: state["blobs"][entry["sha"]]["content"]
        for entry in state["trees"][proposed["tree"]["sha"]]["tree"]
    }
    raw_pointer = "data/raw/breast_cancer.csv.dvc"
    assert set(files) == {raw_pointer, "data/raw/production_ids.txt.dvc", "data/raw/.gitignore"}
    md5 = yaml.safe_load(files[raw_pointer])["outs"][0]["md5"]
    assert f"storage/files/md5/{md5[:2]}/{md5[2:]}" in team.stack.objects()[BUCKET]
    team.timed("retrain job: the data refreshed and pushed, the pull request opened", started)

    # train: the monitor's `train` job calls train.yml for the pull request (GitHub starts no
    # workflow for a pull request a workflow's token opened), on the branch the API built.
    started = time.monotonic()
    branch_from_state(project, env, state, BRANCH, team.scratch / "branch")
    call = monitor_calls_train(project)
    train_folder = team.scratch / "train-run"
    train_runner = runner(team, "train.yml", train_folder, "train", call["ref"])
    inputs = {"ref": call["ref"], "base": main, "pull-request": retrain.outputs["pull-request"]}
    train = train_runner.run_job(
        "train",
        event_name="schedule",
        inputs=inputs,
        variables=team.variables,
        secrets=team.secrets["mlflow-read"],
    )
    # The report is written whether or not the gate passes.
    assert train.outputs == {"report": "success"}, failed_steps(train)
    raw = pd.read_csv(train_runner.project / "data" / "raw" / "breast_cancer.csv")
    assert len(raw) == 569 + SERVED
    comment_job = train_runner.run_job(
        "comment", event_name="schedule", inputs=inputs, needs={"train": train}
    )
    assert comment_job.result == "success", failed_steps(comment_job)
    assert "on pull request 2" in comment_job.steps[-1].output
    comment = (train_folder / "comment.md").read_text(encoding="utf-8")
    team.timed("train and comment jobs of the pull request", started)
    print(f"\nThe champion on the shifted traffic: accuracy {right / SERVED:.4f} (monitor)")
    print(f"The retraining pull request's comment:\n{comment}")

    # What the comment compares: the model trained on the refreshed data and the champion, both
    # measured on the branch's test split (a fifth of the rows, production's among them).
    assert (
        "Challenger: the model of this branch (evaluated, not registered); "
        "against champion version 1." in comment
    )
    assert "Both models are measured on the same rows, this checkout's test split" in comment
    _, champion, challenger, _, floor, status = gate_row(comment, "accuracy")
    assert (floor, status) == ("≥ 0.9", "✅ pass")
    assert float(challenger) >= 0.9
    # The champion fails the shifted rows of the split as it fails production's.
    assert float(champion) < float(challenger)
    metric, champion, challenger, delta, floor, status = gate_row(comment, "roc_auc")
    assert metric == "**roc_auc**"  # the primary metric, which must beat the champion's
    assert status == "✅ pass", comment
    assert float(delta) > 0
    # The drift check reads the same drift.current, the shifted production traffic, against the
    # new training split, in which the original rows are still most: it drifts, and the report
    # says so; the challenger learned from those rows, so the metrics decide, and it passes.
    assert "**Decision: pass.** The model of this branch may become the champion." in comment
    (drift_line,) = [line for line in comment.splitlines() if line.startswith("Drift: ")]
    assert "**Drift detected.**" in drift_line
    assert f"rows of `{LOG}`" in drift_line
    assert "⚠️ Not blocking: this model was trained on labelled production rows" in drift_line
    assert train.result == "success", failed_steps(train)

    # A label set smaller than monitor.min_labelled: no verdict, nothing raised.
    started = time.monotonic()
    set_params(project, monitor__labels=FEW_LABELS)
    admin = team.stack.client_env()
    make(project, admin, "monitor")
    report = make(project, admin, "monitor-report")
    assert "alert=false" in report
    assert "retrain=false" in report
    few = json.loads((project / "reports" / "monitor.json").read_text(encoding="utf-8"))
    assert (few["verdict"], few["labelled"]) == ("too_few_labels", FEW)
    assert few["reasons"] == [
        f"{FEW} labelled predictions of version 1; monitor.min_labelled asks for 100 before judging"
    ]
    run(["git", "checkout", "--", "params.yaml"], project, env)
    team.timed("too few labels: no verdict", started)
