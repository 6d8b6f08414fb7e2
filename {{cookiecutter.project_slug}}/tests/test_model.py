{%- set classification = cookiecutter.task == "classification" -%}
"""The model: every estimator trains; the default one clears a floor and beats a baseline."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.dummy import Dummy{{ cookiecutter.__estimator_kind }}

from {{ cookiecutter.package_name }}.core.config import load_params
from {{ cookiecutter.package_name }}.core.errors import ModelError
from {{ cookiecutter.package_name }}.core.estimators import TrainParams, build_pipeline
from {{ cookiecutter.package_name }}.core.metrics import score
from {{ cookiecutter.package_name }}.core.model_file import load_model, save_model
from {{ cookiecutter.package_name }}.core.schema import Schema
from {{ cookiecutter.package_name }}.pipeline.prepare import split

from .conftest import ROOT, UNTRUSTED, malicious_model

# The sample data is easy: a model below these floors is broken, not merely weak.
{%- if classification %}
FLOORS = {"roc_auc": 0.95, "accuracy": 0.90}
BASELINE = DummyClassifier(strategy="most_frequent")
# The metric that must beat the baseline; higher is better.
COMPARED = "accuracy"
{%- else %}
FLOORS = {"r2": 0.30}
BASELINE = DummyRegressor(strategy="mean")
# The metric that must beat the baseline; lower is better, so it is negated below.
COMPARED = "rmse"
{%- endif %}
ESTIMATORS = ["{{ cookiecutter.__linear_estimator }}", "random_forest", "hist_gradient_boosting"]

Split = tuple[pd.DataFrame, pd.Series, pd.DataFrame, pd.Series]


@pytest.fixture(scope="module")
def data(raw_data: pd.DataFrame, schema: Schema) -> Split:
    train, test = split(raw_data, load_params(ROOT / "params.yaml").prepare, schema)
    features, target = schema.feature_names, schema.target.name
    return train[features], train[target], test[features], test[target]


@pytest.fixture(scope="module")
def params() -> TrainParams:
    return load_params(ROOT / "params.yaml").train


def test_default_model_clears_the_floors(data: Split, params: TrainParams) -> None:
    x_train, y_train, x_test, y_test = data
    metrics = score(build_pipeline(params).fit(x_train, y_train), x_test, y_test)
    for name, floor in FLOORS.items():
        assert metrics[name] >= floor, f"{name} {metrics[name]:.3f} is below {floor}"


def test_default_model_beats_the_baseline(data: Split, params: TrainParams) -> None:
    x_train, y_train, x_test, y_test = data
    model = score(build_pipeline(params).fit(x_train, y_train), x_test, y_test)[COMPARED]
    baseline = score(BASELINE.fit(x_train, y_train), x_test, y_test)[COMPARED]
{%- if classification %}
    assert model > baseline
{%- else %}
    assert model < baseline
{%- endif %}


@pytest.mark.parametrize("estimator", ESTIMATORS)
def test_every_estimator_trains_and_predicts(
    data: Split, params: TrainParams, estimator: str
) -> None:
    x_train, y_train, x_test, _ = data
    chosen = params.model_copy(update={"estimator": estimator})
    predictions = build_pipeline(chosen).fit(x_train, y_train).predict(x_test)
    assert predictions.shape == (len(x_test),)
    assert np.isfinite(predictions).all()


@pytest.mark.parametrize("estimator", ESTIMATORS)
def test_saved_model_predicts_the_same(
    tmp_path: Path, data: Split, params: TrainParams, estimator: str
) -> None:
    x_train, y_train, x_test, _ = data
    model = build_pipeline(params.model_copy(update={"estimator": estimator}))
    model.fit(x_train, y_train)
    save_model(model, tmp_path / "model.skops")
    loaded = load_model(tmp_path / "model.skops")
    np.testing.assert_array_equal(loaded.predict(x_test), model.predict(x_test))


def test_same_seed_same_model(data: Split, params: TrainParams) -> None:
    x_train, y_train, x_test, _ = data
    chosen = params.model_copy(update={"estimator": "random_forest"})
    first = build_pipeline(chosen).fit(x_train, y_train).predict(x_test)
    second = build_pipeline(chosen).fit(x_train, y_train).predict(x_test)
    np.testing.assert_array_equal(first, second)


def test_a_model_file_that_would_run_code_is_refused_and_nothing_runs(tmp_path: Path) -> None:
    """The service's BentoML model, models/model.skops and registry downloads all load here."""
    marker = tmp_path / "marker"
    malicious_model(tmp_path / "model.skops", marker)
    with pytest.raises(ModelError) as refused:
        load_model(tmp_path / "model.skops")
    assert str(refused.value) == (
        f"{tmp_path / 'model.skops'}: refused: it holds types this project does not trust "
        f"({', '.join(UNTRUSTED)}), which no model it trains contains; it was made elsewhere "
        "or altered"
    )
    assert not marker.exists()


def test_a_file_that_is_no_skops_model_is_refused(tmp_path: Path) -> None:
    (tmp_path / "model.skops").write_bytes(b"not a model")
    with pytest.raises(ModelError, match=r"model\.skops: refused: not a skops model file"):
        load_model(tmp_path / "model.skops")
