"""The online service: the champion behind a typed, bounded JSON API, with BentoML.

`make serve` copies the registry's champion into BentoML's model store and serves it on
127.0.0.1:3000. POST /predict with `{"rows": [{<feature>: <number>, ...}, ...]}`; the answer is
one `{"prediction_id": ..., "prediction": ..., "probability": ...}` per row, with the model
version in the `X-Model-Version` header. The `prediction_id` is new for every row, and the
inference log records it with the row: the key that joins the prediction to its ground truth
later. POST /feedback with `{"labels": [{"prediction_id": ..., "label": <the true value>}, ...]}`
sends that truth: the feedback log keeps it for `make monitor`, and the answer is
`{"accepted": <labels>}`. /livez, /readyz and /metrics come with BentoML.
"""

import gc
import logging
import os
import sys
import warnings
from collections import Counter as ClassCount
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import bentoml
import numpy as np
from bentoml.validators import ContentType
from pydantic import BaseModel, Field

from ..core.errors import ProjectError
from ..core.model_file import BENTO_MODEL, FILE_NAME, load_model
from ..core.prediction_ids import PREDICTION_ID, new_ids
from ..core.schema import MAX_ROWS, load_schema
from ..core.scoring import PREDICTION, PROBABILITY, predict
from .api_schema import LABEL, Accepted, label_model, max_body_bytes, prediction_model, row_model
from .feedback_log import FeedbackLog, feedback_settings
from .inference_log import InferenceLog, LogSettings
from .middleware import (
    BodySizeLimit,
    JsonBody,
    ModelVersionHeader,
    OwnFilesOnly,
    RefusedRequestsInOneLine,
    Unavailable,
    ValidationErrors,
)


def _stop(error: ProjectError) -> NoReturn:
    print(f"ERROR: {error}", file=sys.stderr)
    raise SystemExit(1) from None


# BentoML reads the API's signature when this module loads, to validate requests and write the
# OpenAPI document: the row type is built here, from the data contract.
try:
    SCHEMA = load_schema()
except ProjectError as error:
    _stop(error)
if TYPE_CHECKING:  # the type checker cannot see models built at run time
    Row = BaseModel
    Prediction = BaseModel
    Label = BaseModel
else:
    Row = row_model(SCHEMA)
    Prediction = prediction_model(SCHEMA)
    Label = label_model(SCHEMA)
# A fixed answer media type: without it BentoML 1.4 rebuilds the answer's JSON schema for every
# response, about a quarter of the service's time (docs/benchmarks-serving.md).
JSON = ContentType("application/json")
# The logger BentoML 1.4 reports a refused request to, with its traceback.
BENTOML_REQUEST_LOG = "bentoml._internal.server.http_app"
# The version being served, for the response header; set once the model has loaded.
SERVING: dict[str, str] = {"version": "loading"}
# The model gets a float array with the columns in the order it was fitted on (checked when it
# loads), which scikit-learn checks 3-4x faster than a DataFrame of one row; the array's missing
# column names are what this warning is about.
warnings.filterwarnings("ignore", "X does not have valid feature names", UserWarning)


def _served_version() -> str:
    return SERVING["version"]


def _asked_for(setting: str) -> bool:
    return os.environ.get(setting, "").lower() in {"1", "true", "yes"}


def _whole_number(setting: str, default: int, unit: str) -> int:
    """A positive whole number from the environment, or `default` when it is not set."""
    text = os.environ.get(setting, "").strip()
    if not text:
        return default
    if not (text.isascii() and text.isdigit()) or int(text) < 1:
        raise ProjectError(f"{setting}={text!r}: expected a whole number of {unit}, at least 1")
    return int(text)


# Settings from the environment are read once, as the service loads: a bad one stops it with
# one line saying which, before any worker starts. The body limit is what MAX_ROWS rows of the
# schema need, or MAX_ROWS labels (api_schema); past the timeout a request gets a 504, past the
# concurrency limit (requests in flight in one worker) a 429. The feedback log follows the
# inference log's switch and sizes (feedback_log).
try:
    LOG_SETTINGS = LogSettings.from_environment()
    FEEDBACK_SETTINGS = feedback_settings(LOG_SETTINGS)
    MAX_BODY_BYTES = _whole_number("SERVICE_MAX_BODY_BYTES", max_body_bytes(SCHEMA), "bytes")
    TIMEOUT_SECONDS = _whole_number("SERVICE_TIMEOUT_SECONDS", 10, "seconds")
    MAX_CONCURRENCY = _whole_number("SERVICE_MAX_CONCURRENCY", 256, "requests")
except ProjectError as error:
    _stop(error)


class Metrics:
    """What /metrics adds to BentoML's request counts and latencies: predictions, labels and
    the version."""

    def __init__(self, version: str) -> None:
        # prometheus_client is imported only now: BentoML sets its multiprocess folder first.
        from prometheus_client import Counter, Gauge, Histogram

        self.version = version
        self.model = Gauge(
            "model_version_info",
            "The registry version of the model being served",
            ["model_version"],
            multiprocess_mode="max",
        )
        self.model.labels(model_version=version).set(1)
        rows = Counter("model_rows_scored", "Rows scored by the model", ["model_version"])
        # The labelled series are looked up once: under BentoML each one is a value in a shared
        # memory-mapped file, and every update of one checks the process id first.
        self.rows = rows.labels(model_version=version)
        # Labels of predictions that may come from any version: no version label.
        self.labels = Counter("model_labels_received", "Labels accepted on /feedback")
        if SCHEMA.target_is_categorical:
            self.classes = Counter(
                "model_predictions", "Predicted classes", ["model_version", "prediction"]
            )
            self.per_class: dict[float, Any] = {}
        else:
            low, high = SCHEMA.target.min or 0.0, SCHEMA.target.max or 1.0
            buckets = [low + (high - low) * step / 10 for step in range(1, 11)]
            self.values = Histogram(
                "model_prediction_value", "Predicted values", ["model_version"], buckets=buckets
            ).labels(model_version=version)

    def observe(self, predictions: list[float]) -> None:
        """Count a batch's rows and, once per class (not per row), its predicted classes; or
        observe each predicted value."""
        self.rows.inc(len(predictions))
        if not SCHEMA.target_is_categorical:
            for value in predictions:
                self.values.observe(value)
            return
        for value, count in ClassCount(predictions).items():
            series = self.per_class.get(value)
            if series is None:
                label = str(int(value))
                series = self.classes.labels(model_version=self.version, prediction=label)
                self.per_class[value] = series
            series.inc(count)


# BentoML logs a line and opens an OpenTelemetry span for every request. /metrics and the
# inference log already record each one, and the spans are dropped unless a tracing exporter and
# sample rate are configured; the spans cost a third to a half of the throughput, the log up to a
# fifth, so both are off for /predict unless SERVICE_ACCESS_LOG=1 or SERVICE_TRACING=1.
@bentoml.service(
    name="{{ cookiecutter.project_slug }}",
    traffic={"timeout": TIMEOUT_SECONDS, "max_concurrency": MAX_CONCURRENCY},
    logging={"access": {"enabled": _asked_for("SERVICE_ACCESS_LOG")}},
    tracing={"excluded_urls": [] if _asked_for("SERVICE_TRACING") else ["/predict"]},
)
class Champion:
    """Scores rows with the registry's champion, called as the raw scikit-learn estimator."""

    model = bentoml.models.BentoModel(f"{BENTO_MODEL}:latest")

    def __init__(self) -> None:
        stored: Any = self.model
        self.version = str(stored.info.labels["mlflow_version"])
        self.estimator = load_model(Path(stored.path) / FILE_NAME)
        self.features = SCHEMA.feature_names
        fitted_on = list(getattr(self.estimator, "feature_names_in_", self.features))
        if fitted_on != self.features:
            raise RuntimeError(
                f"model version {self.version} was fitted on the columns {fitted_on}, "
                f"not on schema.yaml's features {self.features}"
            )
        # BentoML numbers its workers from 1; each writes its own log files.
        worker = bentoml.server_context.worker_index or 1
        self.log = InferenceLog.from_settings(LOG_SETTINGS, worker)
        self.feedback_log = FeedbackLog.from_settings(FEEDBACK_SETTINGS, worker)
        logging.getLogger(BENTOML_REQUEST_LOG).addFilter(RefusedRequestsInOneLine())
        self.metrics = Metrics(self.version)
        SERVING["version"] = self.version
        # What is loaded by now lives as long as the worker. Left to the garbage collector, its
        # full passes walk all of it again (about 300,000 objects) every few seconds under load
        # and stall every request in flight for up to a fifth of a second each time.
        gc.collect()
        gc.freeze()

    # `async`, so BentoML calls it on its event loop instead of handing each batch to its thread
    # pool and back: as a plain `def` it served 12-20% fewer requests/s in three benchmark runs
    # (docs/benchmarks-serving.md); the model holds the GIL for most of its work either way.
    @bentoml.api(batchable=True, max_batch_size=256, max_latency_ms=1000)  # type: ignore[untyped-decorator]
    async def predict(
        self, rows: Annotated[list[Row], Field(min_length=1, max_length=MAX_ROWS)]
    ) -> Annotated[list[Prediction], JSON]:
        # A validated row's fields, in the schema's order, are its `__dict__` (no extra fields are
        # allowed): read as they are, 15x faster than `model_dump()`, and not changed.
        records: list[dict[str, Any]] = [row.__dict__ for row in rows]
        values = [[record[name] for name in self.features] for record in records]
        scores = predict(self.estimator, np.array(values, dtype=np.float64))
        predicted = scores[PREDICTION].tolist()
        ids = new_ids(len(records))
        positive = None
        # The answers are made of values of the right types already (new ids, the model's
        # classes or values and probabilities as Python numbers): built without validating them
        # again, they serialise to the same JSON.
        if SCHEMA.target_is_categorical:
            positive = scores[PROBABILITY].tolist()
            answers = [
                Prediction.model_construct(
                    prediction_id=key, prediction=value, probability=probability
                )
                for key, value, probability in zip(ids, predicted, positive, strict=True)
            ]
        else:
            answers = [
                Prediction.model_construct(prediction_id=key, prediction=value)
                for key, value in zip(ids, predicted, strict=True)
            ]
        self.metrics.observe(predicted)
        if self.log is not None:
            self.log.append(records, ids, predicted, self.version, positive)
        return answers

    # Labels of earlier predictions, each appended to this worker's feedback log with the time it
    # arrived; one sent again with the same value adds no line. With the log off, the
    # `Unavailable` middleware answers 503 before this is called.
    @bentoml.api  # type: ignore[untyped-decorator]
    async def feedback(
        self, labels: Annotated[list[Label], Field(min_length=1, max_length=MAX_ROWS)]
    ) -> Annotated[Accepted, JSON]:
        if self.feedback_log is None:
            raise RuntimeError("the feedback log is off: no label can be kept")
        records = [label.model_dump() for label in labels]
        self.feedback_log.append([(record[PREDICTION_ID], record[LABEL]) for record in records])
        self.metrics.labels.inc(len(labels))
        return Accepted(accepted=len(labels))

    # When the worker stops: each log's last file is closed and, with INFERENCE_LOG_URL or
    # FEEDBACK_LOG_URL, copied to the store before the pod goes.
    @bentoml.on_shutdown  # type: ignore[untyped-decorator]
    def close_log(self) -> None:
        for log in (self.log, self.feedback_log):
            if log is not None:
                log.close()


# mypy does not apply class decorators, so it cannot see BentoML's Service methods.
service: Any = Champion
# Outermost first: every answer names the version; the API page at / loads nothing from elsewhere;
# a 400 reads as the OpenAPI document says; a body that is not JSON, or too large, is refused
# before BentoML parses it; with the logs off, /feedback refuses labels it could not keep.
service.add_asgi_middleware(ModelVersionHeader, version=_served_version)
service.add_asgi_middleware(OwnFilesOnly)
service.add_asgi_middleware(ValidationErrors)
service.add_asgi_middleware(JsonBody)
service.add_asgi_middleware(BodySizeLimit, max_bytes=MAX_BODY_BYTES)
if not FEEDBACK_SETTINGS.enabled:
    service.add_asgi_middleware(
        Unavailable,
        path="/feedback",
        error="labels are not kept while INFERENCE_LOG=off: a label needs its logged prediction",
    )
