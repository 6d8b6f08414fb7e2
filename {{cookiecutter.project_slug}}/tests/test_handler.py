"""The serverless handler: scores like scikit-learn, answers 400 to bad input, never raises."""

import base64
import dataclasses
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

import grimp
import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from sklearn.pipeline import Pipeline

from {{ cookiecutter.package_name }}.core.config import load_params
from {{ cookiecutter.package_name }}.core.estimators import build_pipeline
from {{ cookiecutter.package_name }}.core.prediction_ids import PREDICTION_ID
from {{ cookiecutter.package_name }}.core.schema import MAX_ROWS, SCHEMA_FILE, Column, Schema
from {{ cookiecutter.package_name }}.offline import handler
from {{ cookiecutter.package_name }}.offline import onnx as onnx_export
from {{ cookiecutter.package_name }}.pipeline.prepare import split

from .conftest import PREDICTION_ID_PATTERN, ROOT

VERSION = "7"
PACKAGE = "{{ cookiecutter.package_name }}"


def fit(raw_data: pd.DataFrame, schema: Schema, estimator: str | None = None) -> Pipeline:
    """A pipeline (the shipped params', or `estimator`) fitted on the training split."""
    params = load_params(ROOT / "params.yaml")
    train, _ = split(raw_data, params.prepare, schema)
    chosen = params.train.model_copy(update={"estimator": estimator or params.train.estimator})
    model = build_pipeline(chosen)
    model.fit(train[schema.feature_names], train[schema.target.name])
    return model


@pytest.fixture(scope="module")
def trained(raw_data: pd.DataFrame, schema: Schema) -> tuple[Pipeline, pd.DataFrame]:
    """The default pipeline fitted on the training split, and the test split's features."""
    _, test = split(raw_data, load_params(ROOT / "params.yaml").prepare, schema)
    return fit(raw_data, schema), test[schema.feature_names]


@pytest.fixture(scope="module", autouse=True)
def model_file(
    tmp_path_factory: pytest.TempPathFactory, trained: tuple[Pipeline, pd.DataFrame], schema: Schema
) -> Iterator[Path]:
    """The trained pipeline exported to ONNX, where the handler looks for it."""
    path = tmp_path_factory.mktemp("onnx") / "model.onnx"
    path.write_bytes(onnx_export.to_onnx(trained[0], schema, {"model_version": VERSION}))
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(handler.MODEL_PATH_VARIABLE, str(path))
        yield path


def event(body: object, **fields: Any) -> dict[str, Any]:
    """An API Gateway proxy event; a body that is not a string is sent as JSON."""
    text = body if body is None or isinstance(body, str) else json.dumps(body)
    return {"httpMethod": "POST", "path": "/predict", "body": text, **fields}


def rows_of(frame: pd.DataFrame) -> list[dict[str, Any]]:
    return [{str(key): value for key, value in row.items()} for row in frame.to_dict("records")]


@pytest.mark.parametrize("estimator", [None, "random_forest"], ids=["default", "random_forest"])
def test_sample_event_scores_like_scikit_learn(
    trained: tuple[Pipeline, pd.DataFrame],
    raw_data: pd.DataFrame,
    schema: Schema,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    estimator: str | None,
) -> None:
    model, features = trained
    if estimator is not None:  # a forest answers in float32, a linear model in float64
        model = fit(raw_data, schema, estimator)
        path = tmp_path / "model.onnx"
        path.write_bytes(onnx_export.to_onnx(model, schema, {"model_version": VERSION}))
        monkeypatch.setenv(handler.MODEL_PATH_VARIABLE, str(path))
    answer = handler.handler(event({"rows": rows_of(features)}), None)
    assert answer["statusCode"] == 200, answer["body"]
    assert answer["headers"] == {"Content-Type": "application/json", "X-Model-Version": VERSION}
    body = json.loads(answer["body"])
    assert len(body) == len(features)
    assert all(list(item)[:2] == [PREDICTION_ID, "prediction"] for item in body)
    ids = [item[PREDICTION_ID] for item in body]
    assert all(re.fullmatch(PREDICTION_ID_PATTERN, key) for key in ids)
    assert len(set(ids)) == len(ids)
    predicted = [item["prediction"] for item in body]
    if schema.target_is_categorical:
        assert predicted == model.predict(features).tolist()
        np.testing.assert_allclose(
            [item["probability"] for item in body],
            model.predict_proba(features)[:, 1],
            rtol=0,
            atol=onnx_export.PROBABILITY_TOLERANCE,
        )
    else:
        np.testing.assert_allclose(
            predicted, model.predict(features), rtol=onnx_export.VALUE_TOLERANCE
        )


def test_base64_body_is_decoded(trained: tuple[Pipeline, pd.DataFrame]) -> None:
    body = json.dumps({"rows": rows_of(trained[1].head(2))}).encode()
    answer = handler.handler(event(base64.b64encode(body).decode(), isBase64Encoded=True), None)
    assert answer["statusCode"] == 200
    assert len(json.loads(answer["body"])) == 2


def with_first(raw: str) -> Callable[[dict[str, Any]], str]:
    """A body whose first row has the raw JSON text `raw` as its first feature's value."""

    def body(row: dict[str, Any]) -> str:
        first = next(iter(row))
        return json.dumps({"rows": [{**row, first: "RAW"}]}).replace('"RAW"', raw)

    return body


BAD_BODIES: dict[str, tuple[Callable[[dict[str, Any]], object], str]] = {
    "malformed-json": (lambda row: '{"rows": [', "the body is not valid JSON"),
    "empty-body": (lambda row: None, "the body is empty"),
    "not-an-object": (lambda row: [row], 'a JSON object with one key, "rows"'),
    "extra-key": (lambda row: {"rows": [row], "debug": True}, 'one key, "rows"'),
    "repeated-key": (
        lambda row: '{"rows": [], "rows": []}',
        'not valid JSON: repeated keys: "rows"',
    ),
    "rows-not-a-list": (lambda row: {"rows": row}, '"rows" must be a list of 1 to'),
    "no-rows": (lambda row: {"rows": []}, "(got 0 rows)"),
    "too-many-rows": (
        lambda row: {"rows": [row] * (MAX_ROWS + 1)},
        f"(got {MAX_ROWS + 1} rows)",
    ),
    "row-not-an-object": (lambda row: {"rows": [list(row.values())]}, "rows[0]: must be an"),
    "missing-field": (
        lambda row: {"rows": [dict(list(row.items())[1:])]},
        "rows[0]: missing fields: ",
    ),
    "unknown-field": (
        lambda row: {"rows": [{**row, "surprise": 1}]},
        'rows[0]: unknown fields: "surprise"',
    ),
    "string": (with_first('"12"'), 'must be a number (got "12")'),
    "boolean": (with_first("true"), "must be a number (got true)"),
    "null": (with_first("null"), "must be a number (got null)"),
    "nan": (with_first("NaN"), "NaN is not a JSON number"),
    "infinity": (with_first("-Infinity"), "-Infinity is not a JSON number"),
    "overflow": (with_first("1e999"), "must be a finite number (got inf)"),
    "huge-integer": (with_first("9" * 400), "an integer too large for a float"),
    "out-of-range": (with_first("-1e6"), "must be between"),
    "second-row": (lambda row: {"rows": [row, {**row, "surprise": 1}]}, "rows[1]: unknown"),
    "many-problems": (
        lambda row: {"rows": [{}] * (handler.MAX_PROBLEMS + 3)},
        "; and 3 more",
    ),
}


@pytest.mark.parametrize("case", BAD_BODIES, ids=str)
def test_bad_input_gets_400_with_a_message(
    trained: tuple[Pipeline, pd.DataFrame], case: str
) -> None:
    make_body, expected = BAD_BODIES[case]
    answer = handler.handler(event(make_body(rows_of(trained[1].head(1))[0])), None)
    assert answer["statusCode"] == 400
    assert expected in json.loads(answer["body"])["error"]


@pytest.mark.parametrize(
    ("bad_event", "expected"),
    [
        (["not", "a", "dict"], "must be an API Gateway proxy event"),
        ({"body": {"rows": []}}, "the body must be a JSON document in a string"),
        ({"body": "%%%", "isBase64Encoded": True}, "not valid base64-encoded UTF-8"),
    ],
    ids=["not-an-event", "body-not-a-string", "bad-base64"],
)
def test_bad_event_gets_400(bad_event: object, expected: str) -> None:
    answer = handler.handler(bad_event, None)
    assert answer["statusCode"] == 400
    assert expected in json.loads(answer["body"])["error"]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (2, None),
        (1.0, None),
        (3, "must be one of 1, 2 (got 3)"),
        (1.5, "must be a whole number (got 1.5)"),
    ],
)
def test_whole_numbers_and_allowed_values(value: float, expected: str | None) -> None:
    column = Column("sex", "int", allowed=(1, 2))
    assert handler.problem(column, value) == expected


def test_a_missing_model_gets_500_and_a_log_line_not_an_exception(
    trained: tuple[Pipeline, pd.DataFrame],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    body = {"rows": rows_of(trained[1].head(1))}
    missing = tmp_path / "missing.onnx"
    monkeypatch.setenv(handler.MODEL_PATH_VARIABLE, str(missing))
    answer = handler.handler(event(body), None)
    assert answer["statusCode"] == 500
    assert json.loads(answer["body"])["error"].startswith("the model is not available")
    assert f"no model at {missing}; run `make onnx`" in caplog.text
    (tmp_path / "broken.onnx").write_bytes(b"not a model")
    monkeypatch.setenv(handler.MODEL_PATH_VARIABLE, str(tmp_path / "broken.onnx"))
    assert handler.handler(event(body), None)["statusCode"] == 500
    assert "scoring failed" in caplog.text


def test_a_model_for_other_features_gets_500(
    trained: tuple[Pipeline, pd.DataFrame],
    raw_data: pd.DataFrame,
    schema: Schema,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    fewer = dataclasses.replace(schema, features=schema.features[1:])
    model = build_pipeline(load_params(ROOT / "params.yaml").train)
    model.fit(raw_data[fewer.feature_names], raw_data[schema.target.name])
    (tmp_path / "other.onnx").write_bytes(onnx_export.to_onnx(model, fewer, {}))
    monkeypatch.setenv(handler.MODEL_PATH_VARIABLE, str(tmp_path / "other.onnx"))
    answer = handler.handler(event({"rows": rows_of(trained[1].head(1))}), None)
    assert answer["statusCode"] == 500
    assert "exported for other features than schema.yaml's" in caplog.text


def test_the_model_loads_only_with_the_sha256_it_is_given(
    trained: tuple[Pipeline, pd.DataFrame],
    model_file: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """MODEL_ONNX_SHA256, the `onnx_sha256` tag of the version, is checked before onnxruntime."""
    body = {"rows": rows_of(trained[1].head(1))}
    digest = hashlib.sha256(model_file.read_bytes()).hexdigest()
    monkeypatch.setenv(handler.MODEL_SHA256_VARIABLE, digest)
    assert handler.handler(event(body), None)["statusCode"] == 200

    other = "0" * 64
    monkeypatch.setenv(handler.MODEL_SHA256_VARIABLE, other)
    answer = handler.handler(event(body), None)
    assert answer["statusCode"] == 500
    assert json.loads(answer["body"])["error"].startswith("the model is not available")
    refusal = f"{model_file} has sha256 {digest}, not the {other} that MODEL_ONNX_SHA256 expects"
    assert refusal in caplog.text

    # A file onnxruntime cannot read is refused by its hash, before onnxruntime opens it.
    (tmp_path / "broken.onnx").write_bytes(b"not a model")
    monkeypatch.setenv(handler.MODEL_PATH_VARIABLE, str(tmp_path / "broken.onnx"))
    caplog.clear()
    assert handler.handler(event(body), None)["statusCode"] == 500
    assert "broken.onnx has sha256 " in caplog.text
    assert "scoring failed" not in caplog.text


def test_the_model_loads_once_per_path(model_file: Path) -> None:
    assert handler.load_model(str(model_file)) is handler.load_model(str(model_file))


ANYTHING = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=4)
JSON_VALUES = st.recursive(
    ANYTHING,
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=4), children, max_size=3)
    ),
    max_leaves=10,
)


def valid_values(column: Any) -> st.SearchStrategy[Any]:
    if column.allowed is not None:
        return st.sampled_from(column.allowed)
    return st.floats(column.min, column.max)


@settings(max_examples=150, deadline=None, database=None)
@given(data=st.data())
def test_the_handler_never_raises(data: st.DataObject, schema: Schema) -> None:
    valid_row = st.fixed_dictionaries({c.name: valid_values(c) for c in schema.features})
    rows = []
    for _ in range(data.draw(st.integers(0, 3), label="rows")):
        # A valid row, or one spoiled in one way: the edge a real client is likely to hit.
        row = data.draw(valid_row)
        name = data.draw(st.sampled_from(schema.feature_names))
        change = data.draw(st.sampled_from(["none", "value", "drop", "add"]), label="change")
        if change == "value":
            row[name] = data.draw(ANYTHING)
        elif change == "drop":
            del row[name]
        elif change == "add":
            row["surprise"] = data.draw(ANYTHING)
        rows.append(row)
    body = data.draw(st.just({"rows": rows}) | JSON_VALUES | st.text(max_size=20))
    answer = handler.handler(event(body), None)
    assert answer["statusCode"] in (200, 400)
    assert isinstance(json.loads(answer["body"]), list | dict)


def function_folder(folder: Path) -> Path:
    """A deployment package as a function ships: the handler, the package modules it imports
    (found in the import graph, as import-linter sees it), schema.yaml, and numpy, onnxruntime
    and PyYAML with what they require, copied file by file from this environment."""
    graph = grimp.build_graph(PACKAGE)
    source = ROOT / "src"
    for module in {handler.__name__} | graph.find_upstream_modules(handler.__name__):
        relative = Path(*module.split("."))
        is_folder = (source / relative).is_dir()
        target = folder / relative / "__init__.py" if is_folder else folder / f"{relative}.py"
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source / target.relative_to(folder), target)
    shutil.copyfile(SCHEMA_FILE, folder / SCHEMA_FILE.relative_to(source))
    for distribution in with_requirements(["numpy", "onnxruntime", "PyYAML"]):
        for file in distribution.files or []:
            installed = Path(str(distribution.locate_file(file)))
            if installed.is_file() and ".." not in file.parts:
                (folder / file).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(installed, folder / file)
    return folder


def with_requirements(names: list[str]) -> list[metadata.Distribution]:
    """These installed distributions and, recursively, what they require (extras left out)."""
    found: dict[str, metadata.Distribution] = {}
    pending = list(names)
    while pending:
        requirement = Requirement(pending.pop())
        name = canonicalize_name(requirement.name)
        wanted = requirement.marker is None or requirement.marker.evaluate({"extra": ""})
        if wanted and name not in found:
            found[name] = metadata.distribution(name)
            pending.extend(found[name].requires or [])
    return list(found.values())


def test_the_handler_runs_with_only_what_its_function_ships(
    trained: tuple[Pipeline, pd.DataFrame], tmp_path: Path
) -> None:
    folder = function_folder(tmp_path / "function")
    script = f"""
import json, sys
import {handler.__name__} as handler
loaded_on_import = "onnxruntime" in sys.modules
answer = handler.handler(dict(body=sys.stdin.read()), None)
print(json.dumps([answer["statusCode"], loaded_on_import, json.loads(answer["body"])]))
"""
    result = subprocess.run(
        # -S: not even the test environment's site-packages; only the function's folder.
        [sys.executable, "-S", "-c", script],
        input=json.dumps({"rows": rows_of(trained[1].head(3))}),
        env={
            "PYTHONPATH": str(folder),
            handler.MODEL_PATH_VARIABLE: os.environ[handler.MODEL_PATH_VARIABLE],
        },
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    )
    status, loaded_on_import, body = json.loads(result.stdout)
    assert (status, loaded_on_import) == (200, False), result.stderr
    expected = trained[0].predict(trained[1].head(3))
    assert [row["prediction"] for row in body] == pytest.approx(expected.tolist())
    assert all(re.fullmatch(PREDICTION_ID_PATTERN, row[PREDICTION_ID]) for row in body)
    # The pipeline's libraries are not in the folder: the handler ran without them.
    assert not [name for name in ("pandas", "sklearn", "mlflow") if (folder / name).exists()]
