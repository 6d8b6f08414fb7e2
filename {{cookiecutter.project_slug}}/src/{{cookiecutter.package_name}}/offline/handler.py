"""A serverless scoring function: AWS Lambda behind API Gateway, scoring with the ONNX model.

POST a JSON body `{"rows": [{feature: value, ...}, ...]}`. The answer is the BentoML service's:
one `{"prediction_id": ..., "prediction": ..., "probability": ...}` per row (a new id for each
row, the key that joins its ground truth later; the probability of the positive class, for a
classifier), with the model version in the `X-Model-Version` header. Bad input gets a 400
answer that says what is wrong; the function never raises. It needs numpy, onnxruntime and
PyYAML only, no pandas, scikit-learn or MLflow, so a cold start stays short. The model loads on
the first request and stays loaded for the life of the process; with MODEL_ONNX_SHA256 set (the
`onnx_sha256` tag `make onnx` records), only a file with that sha256 is loaded.
"""

import base64
import binascii
import hashlib
import json
import logging
import math
import os
from collections import Counter
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

from ..core.prediction_ids import PREDICTION_ID, new_ids
from ..core.schema import MAX_ROWS, Column, load_schema

# `make onnx` writes the model here; the environment variable points elsewhere.
MODEL_PATH_VARIABLE = "MODEL_ONNX_PATH"
DEFAULT_MODEL_PATH = "models/model.onnx"
# The sha256 the model file must have, when set: the `onnx_sha256` tag of the model version.
MODEL_SHA256_VARIABLE = "MODEL_ONNX_SHA256"
# How many problems a 400 answer lists before it summarises the rest.
MAX_PROBLEMS = 10
HEADERS = {"Content-Type": "application/json"}

LOG = logging.getLogger(__name__)


class BadRequest(Exception):
    """The request cannot be scored; the message tells the caller why (a 400 answer)."""


class ModelUnavailable(Exception):
    """The model file is missing, not the expected file or does not fit the schema: a 500 answer,
    the detail logged."""


def problem(column: Column, value: object) -> str | None:
    """What is wrong with a JSON `value` for this column of the schema, or None."""
    # bool is a subclass of int in Python, but `true` is not a number in JSON.
    if isinstance(value, bool) or not isinstance(value, int | float):
        return f"must be a number (got {_show(value)})"
    try:
        number = float(value)
    except OverflowError:  # an integer literal with hundreds of digits
        return "must be a finite number (got an integer too large for a float)"
    if not math.isfinite(number):
        return f"must be a finite number (got {number})"
    if column.dtype == "int" and number % 1 != 0:
        return f"must be a whole number (got {number})"
    if column.allowed is not None:
        if number not in column.allowed:
            return f"must be one of {', '.join(map(str, column.allowed))} (got {number:g})"
    elif (column.min is not None and number < column.min) or (
        column.max is not None and number > column.max
    ):
        return f"must be between {column.min} and {column.max} (got {number:g})"
    return None


@dataclass(frozen=True)
class Model:
    """An onnxruntime session and what `make onnx` recorded about the model."""

    session: Any
    input_name: str
    input_dtype: type[np.floating[Any]]
    version: str

    def score(self, rows: list[list[float]]) -> list[dict[str, Any]]:
        """One answer per row, in the BentoML service's shape."""
        outputs = self.session.run(None, {self.input_name: np.array(rows, self.input_dtype)})
        predicted = np.ravel(outputs[0]).tolist()
        ids = new_ids(len(predicted))
        if len(outputs) == 1:
            return [
                {PREDICTION_ID: key, "prediction": value}
                for key, value in zip(ids, predicted, strict=True)
            ]
        # A classifier also gives one probability per class; the second is the positive one.
        positive = outputs[1][:, 1].tolist()
        return [
            {PREDICTION_ID: key, "prediction": value, "probability": probability}
            for key, value, probability in zip(ids, predicted, positive, strict=True)
        ]


@cache
def load_features() -> tuple[Column, ...]:
    """The features of schema.yaml, in the order the model takes them."""
    return load_schema().features


@cache
def load_model(path: str, expected_sha256: str | None = None) -> Model:
    """Open the ONNX model once per process (per path and hash); failures are not cached.

    With `expected_sha256`, the file's bytes must have that sha256 before onnxruntime sees them.
    """
    import onnxruntime as ort

    if not Path(path).is_file():
        raise ModelUnavailable(f"no model at {path}; run `make onnx` or set {MODEL_PATH_VARIABLE}")
    data = Path(path).read_bytes()
    if expected_sha256 is not None:
        actual = hashlib.sha256(data).hexdigest()
        if actual != expected_sha256.strip().lower():
            raise ModelUnavailable(
                f"{path} has sha256 {actual}, not the {expected_sha256} that "
                f"{MODEL_SHA256_VARIABLE} expects; refusing to load it"
            )
    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    metadata = {
        key: json.loads(value) for key, value in session.get_modelmeta().custom_metadata_map.items()
    }
    names = [feature.name for feature in load_features()]
    model_input = session.get_inputs()[0]
    if metadata.get("features", names) != names or model_input.shape[-1] != len(names):
        raise ModelUnavailable(
            f"{path} was exported for other features than schema.yaml's; run `make onnx` again"
        )
    return Model(
        session=session,
        input_name=model_input.name,
        input_dtype=np.float32 if model_input.type == "tensor(float)" else np.float64,
        version=str(metadata.get("model_version", "unknown")),
    )


def handler(event: Any, context: Any = None) -> dict[str, Any]:
    """Score the rows of an API Gateway proxy event: 200 with predictions, 400 for bad input."""
    try:
        rows = read_rows(event, load_features())
        model = load_model(
            os.environ.get(MODEL_PATH_VARIABLE) or DEFAULT_MODEL_PATH,
            os.environ.get(MODEL_SHA256_VARIABLE) or None,
        )
        return respond(200, model.score(rows), {"X-Model-Version": model.version})
    except BadRequest as error:
        return respond(400, {"error": str(error)})
    except ModelUnavailable as error:
        # The caller learns that the fault is ours; where the files are is for the log only.
        LOG.error("cannot load the model: %s", error)
        return respond(500, {"error": "the model is not available; see the function's log"})
    except Exception:  # the caller gets an answer whatever happens; the log gets the traceback
        LOG.exception("scoring failed")
        return respond(500, {"error": "the model could not score the rows; see the function's log"})


def respond(status: int, body: object, headers: dict[str, str] | None = None) -> dict[str, Any]:
    """An API Gateway proxy answer with a JSON body."""
    return {
        "statusCode": status,
        "headers": {**HEADERS, **(headers or {})},
        "body": json.dumps(body, allow_nan=False),
    }


def read_rows(event: Any, features: tuple[Column, ...]) -> list[list[float]]:
    """The rows of the request body as lists of numbers in schema order; BadRequest otherwise."""
    try:
        payload = json.loads(
            _body(event), parse_constant=_refuse_constant, object_pairs_hook=_unique_keys
        )
    except (ValueError, RecursionError) as error:  # json.JSONDecodeError is a ValueError
        raise BadRequest(f"the body is not valid JSON: {error}") from None
    if not isinstance(payload, dict) or set(payload) != {"rows"}:
        raise BadRequest('the body must be a JSON object with one key, "rows"')
    rows = payload["rows"]
    if not isinstance(rows, list) or not 1 <= len(rows) <= MAX_ROWS:
        given = f"{len(rows)} rows" if isinstance(rows, list) else _show(rows)
        raise BadRequest(f'"rows" must be a list of 1 to {MAX_ROWS} objects (got {given})')
    names = [feature.name for feature in features]
    known = set(names)
    problems = []
    for index, row in enumerate(rows):
        where = f"rows[{index}]"
        if not isinstance(row, dict):
            problems.append(f"{where}: must be an object of feature values (got {_show(row)})")
            continue
        missing = [name for name in names if name not in row]
        unknown = [key for key in row if key not in known]
        if missing:
            problems.append(f"{where}: missing fields: {', '.join(missing)}")
        if unknown:
            shown = ", ".join(map(_show, unknown[:MAX_PROBLEMS]))
            hidden = len(unknown) - MAX_PROBLEMS
            problems.append(
                f"{where}: unknown fields: {shown}" + (f" and {hidden} more" if hidden > 0 else "")
            )
        problems.extend(
            f"{where}.{feature.name}: {found}"
            for feature in features
            if feature.name in row and (found := problem(feature, row[feature.name])) is not None
        )
    if problems:
        more = len(problems) - MAX_PROBLEMS
        raise BadRequest(
            "; ".join(problems[:MAX_PROBLEMS]) + (f"; and {more} more" if more > 0 else "")
        )
    return [[float(row[name]) for name in names] for row in rows]


def _body(event: Any) -> str:
    if not isinstance(event, dict):
        raise BadRequest("the event must be an API Gateway proxy event (a JSON object)")
    body = event.get("body")
    if body is None or body == "":
        raise BadRequest('the body is empty; send {"rows": [{feature: value, ...}, ...]}')
    if not isinstance(body, str):
        raise BadRequest("the body must be a JSON document in a string")
    if event.get("isBase64Encoded") is True:
        try:
            return base64.b64decode(body, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            raise BadRequest("the body is not valid base64-encoded UTF-8") from None
    return body


def _refuse_constant(name: str) -> float:
    raise ValueError(f"{name} is not a JSON number")


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    counts = Counter(key for key, _ in pairs)
    repeated = sorted(key for key, count in counts.items() if count > 1)
    if repeated:
        raise ValueError(f"repeated keys: {', '.join(map(_show, repeated))}")
    return dict(pairs)


def _show(value: object) -> str:
    text = (
        json.dumps(value)
        if isinstance(value, str | int | float | bool | None)
        else type(value).__name__
    )
    return text if len(text) <= 40 else text[:37] + "..."
