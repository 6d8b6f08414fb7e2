"""The stages end to end against a real MLflow store: registration, lineage and promotion."""

import json
from pathlib import Path

import numpy as np
import pytest
from mlflow import MlflowClient

from {{ cookiecutter.package_name }}.__main__ import main
from {{ cookiecutter.package_name }}.config import (
    METRICS_FILE,
    MODEL_FILE,
    MODEL_VERSION_FILE,
    TEST_DATA,
    load_params,
)
from {{ cookiecutter.package_name }}.errors import RegistryError
from {{ cookiecutter.package_name }}.registry import (
    CHALLENGER,
    CHAMPION,
    PREVIOUS,
    load_registered,
)
from {{ cookiecutter.package_name }}.schema import load_schema, read_table
from {{ cookiecutter.package_name }}.train import load_model

LINEAGE_TAGS = {"git_commit", "git_dirty", "data_md5", "params_sha256", "run_id"}


def aliases(client: MlflowClient, name: str) -> dict[str, str]:
    return {
        alias: str(client.get_model_version_by_alias(name, alias).version)
        for alias in client.get_registered_model(name).aliases
    }


@pytest.fixture
def pipeline_run(workdir: Path) -> tuple[MlflowClient, str]:
    """Run prepare, train and evaluate once in the scratch project."""
    for stage in ("prepare", "train", "evaluate"):
        assert main([stage]) == 0, stage
    return MlflowClient(), load_params().mlflow.model_name


def test_evaluate_writes_metrics_and_registers_a_challenger(
    workdir: Path, pipeline_run: tuple[MlflowClient, str]
) -> None:
    client, name = pipeline_run
    metrics = json.loads((workdir / METRICS_FILE).read_text(encoding="utf-8"))
    record = json.loads((workdir / MODEL_VERSION_FILE).read_text(encoding="utf-8"))
    assert record == {"name": name, "version": 1, "alias": CHALLENGER, "run_id": record["run_id"]}
    version = client.get_model_version(name, "1")
    assert set(version.tags) >= LINEAGE_TAGS
    assert aliases(client, name) == {CHALLENGER: "1"}
    run = client.get_run(record["run_id"])
    assert run.data.metrics == pytest.approx(metrics)
    assert run.data.params["train.estimator"] == load_params().train.estimator


def test_promote_keeps_the_previous_champion(pipeline_run: tuple[MlflowClient, str]) -> None:
    client, name = pipeline_run
    assert main(["promote"]) == 0
    assert aliases(client, name) == {CHALLENGER: "1", CHAMPION: "1"}
    assert main(["evaluate"]) == 0
    assert main(["promote"]) == 0
    assert aliases(client, name) == {CHALLENGER: "2", CHAMPION: "2", PREVIOUS: "1"}
    assert main(["promote", "--version", "1"]) == 0
    assert aliases(client, name) == {CHALLENGER: "2", CHAMPION: "1", PREVIOUS: "2"}


def test_promote_refuses_an_unknown_version(
    pipeline_run: tuple[MlflowClient, str], capsys: pytest.CaptureFixture[str]
) -> None:
    client, name = pipeline_run
    assert main(["promote", "--version", "7"]) == 1
    assert capsys.readouterr().err.startswith("ERROR: MLflow at sqlite:///")
    assert aliases(client, name) == {CHALLENGER: "1"}


def test_the_champion_loads_and_predicts_like_the_trained_model(
    workdir: Path, pipeline_run: tuple[MlflowClient, str]
) -> None:
    settings = load_params().mlflow
    with pytest.raises(RegistryError, match="no version is 'champion' yet"):
        load_registered(settings)
    assert main(["promote"]) == 0
    champion = load_registered(settings)
    assert (champion.name, champion.version, champion.alias) == (settings.model_name, "1", CHAMPION)
    schema = load_schema()
    features = read_table(workdir / TEST_DATA, schema)[schema.feature_names]
    trained = load_model(workdir / MODEL_FILE)
    np.testing.assert_array_equal(champion.estimator.predict(features), trained.predict(features))
