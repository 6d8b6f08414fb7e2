"""What the workflows call besides the pipeline: remotes, the pull request report, drift, image."""

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from {{ cookiecutter.package_name }}.__main__ import main
from {{ cookiecutter.package_name }}.ci import DRIFT_MARKDOWN, MAX_COLUMNS, PR_COMMENT
from {{ cookiecutter.package_name }}.config import (
    DRIFT_SUMMARY,
    METRICS_FILE,
    PARAMS_FILE,
    load_params,
)

from .conftest import ROOT

ESTIMATORS = ("random_forest", "hist_gradient_boosting")


def git(*args: str) -> None:
    subprocess.run(["git", *args], check=True, capture_output=True)


@pytest.fixture
def repository(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The scratch project as a git + DVC repository, with a job summary file as on GitHub."""
    for command in (["git", "init", "-q"], ["dvc", "init", "-q"]):
        subprocess.run(command, check=True, capture_output=True)
    git("config", "user.email", "ci@example.com")
    git("config", "user.name", "CI")
    subprocess.run(["dvc", "remote", "add", "-d", "storage", str(workdir / "remote")], check=True)
    summary = workdir / "summary.md"
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

    shared = workdir / "shared-remote"
    monkeypatch.setenv("DVC_REMOTE_URL", str(shared))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "https://user:secret@mlflow.example.com")
    assert main(["ci", "remotes"]) == 0
    listed = subprocess.run(["dvc", "remote", "list"], capture_output=True, text=True, check=True)
    assert str(shared) in listed.stdout
    told = repository.read_text(encoding="utf-8").split("### Remotes")[-1]
    assert "`https://mlflow.example.com`" in told
    assert "secret" not in told
    assert "Set the repository variables" not in told


def drift_summary(drifted: list[str], columns: int = 30) -> dict[str, object]:
    share = len(drifted) / columns
    return {
        "drift": share > 0.5,
        "drifted_share": share,
        "drifted_columns": len(drifted),
        "columns": columns,
        "max_drift_share": 0.5,
        "methods": {"K-S p_value": 0.05},
        "drifted": drifted,
        "scores": {name: 0.001 for name in drifted},
        "current": "logs/inference",
        "rows": {"reference": 1000, "current": 200_000},
        "compared": {"reference": 1000, "current": 100_000},
        "sampled": True,
    }


@pytest.mark.parametrize("count", [0, 20])
def test_the_drift_report_says_whether_to_act(
    repository: Path, capsys: pytest.CaptureFixture[str], count: int
) -> None:
    DRIFT_SUMMARY.parent.mkdir(parents=True, exist_ok=True)
    names = [f"column_{index}" for index in range(count)]
    DRIFT_SUMMARY.write_text(json.dumps(drift_summary(names)), encoding="utf-8")
    assert main(["ci", "drift"]) == 0
    assert capsys.readouterr().out == f"drift={'true' if count > 15 else 'false'}\n"
    report = DRIFT_MARKDOWN.read_text(encoding="utf-8")
    assert f"{count} of 30 columns drifted" in report
    assert "(both sampled)" in report
    assert report.count("| column_") == min(count, MAX_COLUMNS)
    assert report in repository.read_text(encoding="utf-8")


def test_the_drift_report_needs_the_drift_summary(
    repository: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["ci", "drift"]) == 1
    assert "run `make drift` first" in capsys.readouterr().err


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
