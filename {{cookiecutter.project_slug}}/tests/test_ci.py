"""What the workflows call besides the pipeline: remotes, the pull request report, drift, image."""

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from {{ cookiecutter.package_name }}.__main__ import main
from {{ cookiecutter.package_name }}.core.config import (
    DRIFT_SUMMARY,
    GATE_REPORT,
    METRICS,
    METRICS_FILE,
    PARAMS_FILE,
    load_params,
)
from {{ cookiecutter.package_name }}.core.drift_summary import (
    MAX_COLUMNS,
    ColumnTest,
    DriftSummary,
    Rows,
)
from {{ cookiecutter.package_name }}.core.errors import ProjectError
from {{ cookiecutter.package_name }}.ops.ci import (
    DRIFT_MARKDOWN,
    PR_COMMENT,
    not_new,
    registry_version,
)

from .conftest import ROOT

ESTIMATORS = ("random_forest", "hist_gradient_boosting")


def git(*args: str) -> None:
    subprocess.run(["git", *args], check=True, capture_output=True)


@pytest.fixture
def repository(storeless: Path, dvc_repo: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The scratch project as a git + DVC repository without an MLflow store (a pull request
    has none), with a job summary file as on GitHub."""
    git("config", "user.email", "ci@example.com")
    git("config", "user.name", "CI")
    summary = storeless / "summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    return summary


def test_remotes_use_the_repository_variable_and_say_so(
    repository: Path, workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    assert main(["ci", "remotes"]) == 0
    told = repository.read_text(encoding="utf-8")
    assert "params.yaml's default" in told
    assert "Set the repository variables" in told

    monkeypatch.setenv("DVC_REMOTE_URL", "https://user:dvc-secret@dvc.example.com/store")
    assert main(["ci", "remotes"]) == 0
    told = repository.read_text(encoding="utf-8").split("### Remotes")[-1]
    assert "`https://dvc.example.com/store`" in told
    assert "dvc-secret" not in told

    # Longer than a terminal line: `dvc remote list` would wrap it.
    shared = workdir / "a-shared-remote-whose-path-is-longer-than-any-terminal-is-wide" / "storage"
    monkeypatch.setenv("DVC_REMOTE_URL", str(shared))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "https://user:secret@mlflow.example.com")
    assert main(["ci", "remotes"]) == 0
    command = ["dvc", "config", "remote.storage.url"]
    configured = subprocess.run(command, capture_output=True, text=True, check=True)
    assert configured.stdout.strip() == str(shared)
    told = repository.read_text(encoding="utf-8").split("### Remotes")[-1]
    assert f"- DVC storage: `{shared}`" in told
    assert "`https://mlflow.example.com`" in told
    assert "secret" not in told
    assert "Set the repository variables" not in told


def test_the_read_only_check_and_the_users_need_a_shared_server(
    repository: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The embedded store has nothing to protect; users live only on a server with basic auth
    # (tests/test_server_slow.py of the template checks both against one).
    assert main(["ci", "remotes", "--read-only"]) == 0
    assert "as the embedded store" in repository.read_text(encoding="utf-8")
    assert main(["mlflow-users"]) == 1
    error = capsys.readouterr().err.strip()
    assert error.startswith("ERROR: sqlite:///")
    assert error.endswith(
        "users live on a shared MLflow server with basic auth; set MLFLOW_TRACKING_URI to it "
        "(see `make mlflow-server`)"
    )


def drift_summary(drifted: int, columns: int = 30) -> DriftSummary:
    """What the drift stage writes when `drifted` of `columns` columns drift in a sampled log."""
    tests = [
        ColumnTest(
            f"column_{index}",
            "K-S p_value",
            0.05,
            0.001 if index < drifted else 0.5,
            index < drifted,
        )
        for index in range(columns)
    ]
    share = load_params().gate.max_drift_share
    return DriftSummary.of(tests, share, "logs/inference", Rows(1000, 200_000), Rows(1000, 100_000))


@pytest.mark.parametrize("count", [0, 20])
def test_the_drift_report_says_whether_to_act(
    repository: Path, capsys: pytest.CaptureFixture[str], count: int
) -> None:
    DRIFT_SUMMARY.parent.mkdir(parents=True, exist_ok=True)
    summary = drift_summary(count)
    DRIFT_SUMMARY.write_text(summary.to_json(), encoding="utf-8")
    assert main(["ci", "drift"]) == 0
    assert capsys.readouterr().out == f"drift={str(summary.drift).lower()}\n"
    report = DRIFT_MARKDOWN.read_text(encoding="utf-8")
    assert report.startswith(summary.markdown())
    assert f"{count} of 30 columns drifted" in report
    assert "a sample of 100,000 of 200,000 rows of `logs/inference`" in report
    assert report.count("| column_") == min(count, MAX_COLUMNS)
    assert "`monitor-report` artifact" in report
    assert report in repository.read_text(encoding="utf-8")


def test_the_drift_report_needs_the_drift_summary(
    repository: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["ci", "drift"]) == 1
    assert capsys.readouterr().err == f"ERROR: {DRIFT_SUMMARY}: not found; run `make drift` first\n"


def test_the_gate_and_the_drift_report_word_drift_alike(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """One sentence says whether the data drifted: in the gate's report and in the drift issue."""
    summary = drift_summary(20)
    assert summary.drift
    DRIFT_SUMMARY.parent.mkdir(parents=True, exist_ok=True)
    DRIFT_SUMMARY.write_text(summary.to_json(), encoding="utf-8")
    metrics = workdir / "metrics.json"
    metrics.write_text(json.dumps(dict.fromkeys(METRICS, 0.5)), encoding="utf-8")
    assert main(["gate", "--metrics", str(metrics)]) == 1
    assert main(["ci", "drift"]) == 0
    capsys.readouterr()
    gate = GATE_REPORT.read_text(encoding="utf-8").splitlines()
    drift = DRIFT_MARKDOWN.read_text(encoding="utf-8").splitlines()
    headline = summary.headline()
    assert f"Drift: {headline} ❌" in gate
    assert f"- {headline}" in gate  # the reason the gate failed
    assert drift[2] == headline


def test_the_pull_request_report_compares_with_the_base(
    repository: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The train workflow's steps: the base's outputs committed, a params change, the report."""
    shutil.copy(ROOT / "dvc.yaml", "dvc.yaml")  # where DVC finds the metrics, params and plots
    for stage in ("prepare", "train", "evaluate", "drift"):
        assert main([stage]) == 0
    git("add", "-A")
    git("commit", "-q", "-m", "base")
    params = yaml.safe_load(PARAMS_FILE.read_text(encoding="utf-8"))
    other = next(name for name in ESTIMATORS if name != params["train"]["estimator"])
    params["train"]["estimator"] = other  # another model: the metrics change
    PARAMS_FILE.write_text(yaml.safe_dump(params), encoding="utf-8")
    for stage in ("train", "evaluate"):
        assert main([stage]) == 0
    main(["gate", "--metrics", str(METRICS_FILE)])  # what the train workflow runs
    capsys.readouterr()

    assert main(["ci", "report", "--base", "HEAD"]) == 0
    comment = PR_COMMENT.read_text(encoding="utf-8")
    assert comment == capsys.readouterr().out
    metrics = comment.split("### Metrics")[1].split("### Parameters")[0]
    assert "reports/metrics.json" in metrics
    assert "| Path " in metrics
    parameters = comment.split("### Parameters")[1]
    assert "train.estimator" in parameters
    assert other in parameters
    assert "### Release gate" in comment
    assert "the model of this branch (evaluated, not registered)" in comment
    assert not Path("mlflow.db").exists()  # a pull request leaves the registry alone
    assert comment in repository.read_text(encoding="utf-8")

    # A pull request that changes no parameter (new data only) says so, without an empty table.
    git("add", "-A")
    git("commit", "-q", "-m", "the estimator changed")
    assert main(["ci", "report", "--base", "HEAD"]) == 0
    comment = PR_COMMENT.read_text(encoding="utf-8")
    parameters = comment.split("### Parameters")[1].split("### Release gate")[0]
    assert parameters.strip() == "No parameter changed."


def test_the_image_is_named_after_the_owner_and_tagged_with_the_champion(
    workdir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("GITHUB_REPOSITORY_OWNER", "Data-Team")
    monkeypatch.setenv("GITHUB_SHA", "0123456789abcdef0123456789abcdef01234567")
    assert main(["ci", "image"]) == 1
    assert "no champion to ship" in capsys.readouterr().err
    for stage in ("prepare", "train", "evaluate", "register", "drift", "promote"):
        assert main([stage]) == 0
    capsys.readouterr()

    assert main(["ci", "image"]) == 0
    lines = dict(line.split("=", 1) for line in capsys.readouterr().out.splitlines())
    name = f"ghcr.io/data-team/{load_params().mlflow.model_name}"
    assert lines == {
        "image": name,
        "version": "1",
        "tags": f"{name}:v1,{name}:0123456789ab,{name}:champion",
    }


def commit_base() -> None:
    """The base branch: the pipeline run and its outputs committed, as a team's main is."""
    shutil.copy(ROOT / "dvc.yaml", "dvc.yaml")
    for stage in ("prepare", "train", "evaluate", "drift"):
        assert main([stage]) == 0
    git("add", "-A")
    git("commit", "-q", "-m", "base")


def test_without_a_registry_champion_the_gate_beats_the_base_branch(
    repository: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """What the train workflow runs on a pull request when the registry has no champion."""
    commit_base()
    ours = json.loads(METRICS_FILE.read_text(encoding="utf-8"))
    params = yaml.safe_load(PARAMS_FILE.read_text(encoding="utf-8"))
    params["gate"]["min_improvement"] = 0.001
    PARAMS_FILE.write_text(yaml.safe_dump(params), encoding="utf-8")
    capsys.readouterr()

    assert main(["gate", "--metrics", str(METRICS_FILE), "--base", "HEAD"]) == 1
    report = capsys.readouterr().out
    assert "against the base branch's model, by the metrics committed at `" in report
    assert "does not beat the champion's" in report
    assert not Path("mlflow.db").exists()

    # A base branch without committed metrics (the first pull request): floors only.
    git("rm", "-q", "--cached", str(METRICS_FILE))
    git("commit", "-q", "-m", "no metrics")
    METRICS_FILE.write_text(json.dumps(ours), encoding="utf-8")
    assert main(["gate", "--metrics", str(METRICS_FILE), "--base", "HEAD"]) == 0
    assert "no champion yet (floors only)" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--base", "HEAD"], "--base needs --metrics"),
        (["--metrics", str(METRICS_FILE), "--base=--output=/tmp/x"], "is not a git revision"),
        (["--metrics", str(METRICS_FILE), "--base="], "is not a git revision"),
    ],
)
def test_a_bad_base_is_refused(
    workdir: Path, args: list[str], expected: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["gate", *args])
    assert exit_.value.code == 2
    assert expected in capsys.readouterr().err


def test_a_broken_metrics_file_on_the_base_is_one_clear_error(
    repository: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    commit_base()
    ours = METRICS_FILE.read_text(encoding="utf-8")
    METRICS_FILE.write_text("{not json", encoding="utf-8")
    git("commit", "-q", "-am", "broken metrics")
    METRICS_FILE.write_text(ours, encoding="utf-8")
    assert main(["gate", "--metrics", str(METRICS_FILE), "--base", "HEAD"]) == 1
    error = capsys.readouterr().err
    assert error.startswith(f"ERROR: HEAD:{METRICS_FILE}: not valid JSON (line 1: ")


def test_the_release_plan_publishes_nothing_a_run_will_forget(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The embedded store is a file on the runner: its version numbers die with the job."""
    summary = workdir / "summary.md"
    with pytest.MonkeyPatch.context() as env:
        env.setenv("GITHUB_STEP_SUMMARY", str(summary))
        assert main(["ci", "plan"]) == 0
    assert capsys.readouterr().out == "publish=false\n"
    told = summary.read_text(encoding="utf-8")
    assert "### Release: nothing published" in told
    assert "set the repository variable `MLFLOW_TRACKING_URI` to a shared MLflow server" in told


@pytest.mark.parametrize(
    ("champion", "tags", "expected"),
    [
        ("1", {}, None),
        (None, {}, None),
        ("2", {}, "already the champion: the model is unchanged"),
        ("1", {"rolled_back": "true", "rollback_reason": "AUC fell"}, "rolled back (AUC fell)"),
        ("1", {"rolled_back": "true"}, "which was rolled back; it stays out"),
        ("3", {"replaced_champion": "1"}, "released before and has since been replaced"),
        ("3", {"replaced_champion": ""}, "released before and has since been replaced"),
    ],
)
def test_only_a_model_never_released_is_published(
    champion: str | None, tags: dict[str, str], expected: str | None
) -> None:
    why_not = not_new("2", champion, tags)
    if expected is None:
        assert why_not is None
    else:
        assert why_not is not None
        assert expected in why_not


@pytest.mark.parametrize("given", ["3", "12"])
def test_a_registry_version_is_a_number(given: str) -> None:
    assert registry_version(given) == given


@pytest.mark.parametrize("given", ["", "3\ntags=x", "v3", "$(id)", "٣"])
def test_anything_else_never_names_an_image(given: str) -> None:
    with pytest.raises(ProjectError, match="as a version number"):
        registry_version(given)
