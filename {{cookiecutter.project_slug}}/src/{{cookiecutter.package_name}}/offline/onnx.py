"""`onnx`: export the champion to ONNX, check it predicts like scikit-learn, record its hash."""

import argparse
import hashlib
import json
from importlib.metadata import version
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..core.checks import read_table
from ..core.config import CHAMPION, TEST_DATA, load_params
from ..core.errors import ProjectError
from ..core.files import write_atomic
from ..core.schema import Schema, load_schema
from ..release.registry import client, load_registered, registry_errors

if TYPE_CHECKING:
    import pandas as pd
    from sklearn.pipeline import Pipeline

ONNX_FILE = Path("models/model.onnx")
# The model version tag that holds the sha256 of the exported file.
SHA256_TAG = "onnx_sha256"
# One float64 tensor of shape [rows, features], the columns in schema.yaml's order.
INPUT_NAME = "features"
# ONNX operator set 21: onnxruntime 1.18 and later run it. (skl2onnx 1.20 writes trees with
# ai.onnx.ml set 1 whatever is asked, so their thresholds are float32.)
TARGET_OPSET = 21
# Probabilities come out of float32 trees: they agree to ~1e-7, and a changed split moves them more.
PROBABILITY_TOLERANCE = 1e-5
# Trees add their leaves in float32 (~1e-7 relative); relative to the value, absolute below 1.
VALUE_TOLERANCE = 1e-4


class ExportError(ProjectError):
    """The model cannot be exported to ONNX faithfully; no file was written."""


def convert(estimator: "Pipeline", feature_names: list[str]) -> Any:
    """The fitted pipeline as an ONNX model (an `onnx.ModelProto`) with one float64 input.

    Linear models compute in float64 throughout. Tree models compare in float32, as
    scikit-learn's forests do, so the scaled features are rounded to float32 once, right after
    the scaling: where scikit-learn rounds them.
    """
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import DoubleTensorType
    from skl2onnx.sklapi import CastTransformer
    from sklearn.base import is_classifier
    from sklearn.pipeline import Pipeline

    *preprocessing, (name, model) = estimator.steps
    # A fitted linear model has coefficients; everything else here is a tree ensemble.
    cast = [] if hasattr(model, "coef_") else [("float32", CastTransformer(dtype=np.float32))]
    graph = Pipeline([*preprocessing, *cast, (name, model)])
    # Probabilities as one [rows, classes] tensor rather than a list of dictionaries.
    options = {id(model): {"zipmap": False}} if is_classifier(model) else None
    try:
        onnx_model = convert_sklearn(
            graph,
            initial_types=[(INPUT_NAME, DoubleTensorType([None, len(feature_names)]))],
            target_opset=TARGET_OPSET,
            options=options,
            # skl2onnx names the graph with a random UUID otherwise: the same model, another hash.
            name=type(model).__name__,
        )
    except Exception as error:  # skl2onnx raises many types; each means "cannot convert".
        raise ExportError(
            f"skl2onnx {version('skl2onnx')} cannot convert {type(model).__name__}: "
            f"{_root_cause(error)}; export another estimator (see params.yaml: train.estimator)"
        ) from None
    return onnx_model


def _root_cause(error: BaseException) -> str:
    """The first line of the innermost error: skl2onnx wraps the useful one in a long dump."""
    while error.__cause__ is not None:
        error = error.__cause__
    line = (str(error).strip().splitlines() or [type(error).__name__])[0].rstrip(".")
    return line if len(line) <= 200 else line[:197] + "..."


def serialize(onnx_model: Any, metadata: dict[str, Any]) -> bytes:
    """The model's bytes, with `metadata` as JSON strings in its metadata_props."""
    import onnx

    onnx.helper.set_model_props(
        onnx_model, {key: json.dumps(value) for key, value in metadata.items()}
    )
    data: bytes = onnx_model.SerializeToString()
    return data


def parity_gap(data: bytes, estimator: "Pipeline", features: "pd.DataFrame") -> float:
    """Score `features` with the ONNX model and with scikit-learn; return the largest difference.

    Raise ExportError when a class differs, or a probability or a value is out of tolerance.
    """
    import onnxruntime as ort

    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    outputs = session.run(None, {INPUT_NAME: features.to_numpy(dtype=np.float64)})
    if len(outputs) == 2:  # a classifier: labels, then probabilities
        labels, probabilities = outputs
        wrong = int(np.count_nonzero(labels != estimator.predict(features)))
        difference = np.abs(probabilities - estimator.predict_proba(features)).max(axis=1)
        allowed = np.full(len(features), PROBABILITY_TOLERANCE)
        tolerance = f"{PROBABILITY_TOLERANCE:g}"
    else:
        expected = estimator.predict(features)
        wrong = 0
        difference = np.abs(np.ravel(outputs[0]) - expected)
        allowed = VALUE_TOLERANCE * np.maximum(1.0, np.abs(expected))
        tolerance = f"{VALUE_TOLERANCE:g} relative"
    gap = float(difference.max())
    off = int(np.count_nonzero(difference > allowed))
    if wrong or off:
        what = f"predicts another class for {wrong}" if wrong else f"differs on {off}"
        raise ExportError(
            f"the ONNX model {what} of {len(features)} rows of {TEST_DATA} "
            f"(max difference {gap:.3g}, tolerance {tolerance}); {ONNX_FILE} not written"
        )
    return gap


def to_onnx(estimator: "Pipeline", schema: Schema, about: dict[str, str]) -> bytes:
    """The pipeline as ONNX bytes; its metadata holds the features, the classes and `about`."""
    metadata: dict[str, Any] = {**about, "features": schema.feature_names}
    if schema.target_is_categorical:
        metadata["classes"] = estimator.classes_.tolist()
    return serialize(convert(estimator, schema.feature_names), metadata)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="onnx", description=__doc__)
    parser.add_argument("--alias", default=CHAMPION, help="the model version to export")
    args = parser.parse_args(argv)
    settings = load_params().mlflow
    registered = load_registered(settings, args.alias)
    schema = load_schema()
    features = read_table(TEST_DATA, schema)[schema.feature_names]
    label = f"{registered.name} version {registered.version}"
    try:
        data = to_onnx(
            registered.estimator,
            schema,
            {"model_name": registered.name, "model_version": registered.version},
        )
    except ExportError as error:
        raise ExportError(f"{label}: {error}") from None
    estimator = type(registered.estimator[-1]).__name__
    try:
        gap = parity_gap(data, registered.estimator, features)
    except ExportError as error:
        raise ExportError(f"{label} ({estimator}): {error}") from None
    digest = hashlib.sha256(data).hexdigest()

    def write_and_tag(tmp: Path) -> None:
        # The file takes its place only once the registry holds its hash.
        tmp.write_bytes(data)
        with registry_errors(settings):
            client(settings).set_model_version_tag(
                registered.name, registered.version, SHA256_TAG, digest
            )

    write_atomic(ONNX_FILE, write_and_tag)
    print(
        f"onnx: {label} ({estimator}) -> {ONNX_FILE}: same predictions on {len(features)} "
        f"test rows (max difference {gap:.1e}); {SHA256_TAG} {digest[:12]}..."
    )
    return 0
