"""params.yaml: the shipped file is valid, and every kind of bad value stops with one clear line."""

from pathlib import Path
from typing import Any

import pytest
import yaml

from {{ cookiecutter.package_name }}.__main__ import main
from {{ cookiecutter.package_name }}.core.config import PARAMS_FILE, TRAIN_DATA, load_params
from {{ cookiecutter.package_name }}.core.errors import ParamsError

from .conftest import ROOT


def shipped_params() -> dict[str, Any]:
    params: dict[str, Any] = yaml.safe_load((ROOT / PARAMS_FILE).read_text(encoding="utf-8"))
    return params


def with_value(key: str, value: Any) -> dict[str, Any]:
    """The shipped params with one dotted key set to `value` (or removed when it is ...)."""
    params = shipped_params()
    *parents, last = key.split(".")
    section = params
    for part in parents:
        section = section[part]
    if value is ...:
        del section[last]
    else:
        section[last] = value
    return params


def test_shipped_params_are_valid() -> None:
    params = load_params(ROOT / PARAMS_FILE)
    assert 0 < params.prepare.test_size < 1
    assert params.train.hyperparameters()


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("train.estimator", "linear_svm", "train.estimator: Input should be"),
        ("train.estimator", 3, "train.estimator: Input should be"),
        ("prepare.test_size", 1.5, "prepare.test_size: Input should be less than 1"),
        ("prepare.test_size", 0, "prepare.test_size: Input should be greater than 0"),
        ("prepare.test_size", "0.2", "prepare.test_size: Input should be a valid number"),
        ("prepare.seed", -1, "prepare.seed: Input should be greater than or equal to 0"),
        ("prepare.seed", 4.5, "prepare.seed: Input should be a valid integer"),
        ("prepare.stratify", "yes", "prepare.stratify: Input should be a valid boolean"),
        ("train.random_forest.n_estimators", 0, "train.random_forest.n_estimators: Input"),
        ("train.random_forest.max_depth", "deep", "train.random_forest.max_depth: Input"),
        ("train.hist_gradient_boosting.learning_rate", 2.0, "learning_rate: Input should be"),
        ("prepare.shuffle", True, "prepare.shuffle: unknown key"),
        ("train.estimator", ..., "train.estimator: missing"),
        ("mlflow", ..., "mlflow: missing"),
        ("mlflow.model_name", "", "mlflow.model_name: String should have at least 1"),
        ("mlflow.model_name", "Churn Model", "mlflow.model_name: 'Churn Model': use lowercase"),
        ("gate.min_improvement", -0.01, "gate.min_improvement: Input should be greater than or"),
        ("mlflow.model_name", "x' or name='y", "mlflow.model_name: \"x' or name='y\": use"),
        ("monitor.floors", {"auc": 0.9}, "monitor.floors: unknown metric 'auc'; one of"),
        ("gate.floors", {"auc": 0.9}, "gate.floors: unknown metric 'auc'; one of"),
        ("monitor.window_days", 0, "monitor.window_days: Input should be greater than or"),
        ("monitor.min_labelled", 0, "monitor.min_labelled: Input should be greater than or"),
        ("monitor.labels", "", "monitor.labels: String should have at least 1"),
        ("refresh.max_rows", 0, "refresh.max_rows: Input should be greater than or"),
        ("refresh.seed", -1, "refresh.seed: Input should be greater than or equal to 0"),
    ],
    ids=lambda value: str(value),
)
def test_bad_value_names_the_key(tmp_path: Path, key: str, value: Any, expected: str) -> None:
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(with_value(key, value)), encoding="utf-8")
    with pytest.raises(ParamsError) as error:
        load_params(path)
    message = str(error.value)
    assert expected in message
    assert message.startswith(f"{path}: ")
    assert "\n" not in message


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("prepare: [unclosed\n", "line 2: not valid YAML"),
        ("- just\n- a list\n", "expected a mapping"),
        ("", "expected a mapping"),
    ],
    ids=["broken-yaml", "a-list", "empty"],
)
def test_unreadable_params_file(tmp_path: Path, text: str, expected: str) -> None:
    path = tmp_path / "params.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ParamsError, match=expected):
        load_params(path)


def test_missing_params_file(tmp_path: Path) -> None:
    with pytest.raises(ParamsError, match="not found"):
        load_params(tmp_path / "params.yaml")


@pytest.mark.parametrize("stage", ["prepare", "train", "register"])
def test_stage_stops_on_bad_params_and_writes_nothing(
    workdir: Path, capsys: pytest.CaptureFixture[str], stage: str
) -> None:
    (workdir / PARAMS_FILE).write_text(
        yaml.safe_dump(with_value("train.estimator", "linear_svm")), encoding="utf-8"
    )
    before = sorted(workdir.rglob("*"))
    assert main([stage]) == 1
    error_lines = capsys.readouterr().err.splitlines()
    assert len(error_lines) == 1
    assert error_lines[0].startswith("ERROR: params.yaml: train.estimator:")
    assert sorted(workdir.rglob("*")) == before
    assert not (workdir / TRAIN_DATA).exists()


def test_unknown_command(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["fly"]) == 2
    assert "unknown command 'fly'" in capsys.readouterr().err


def test_mlflow_ui_points_to_a_server_instead_of_starting_one(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(ROOT)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "https://mlflow.example.com")
    assert main(["mlflow-ui"]) == 1
    assert "open https://mlflow.example.com in a browser" in capsys.readouterr().err
