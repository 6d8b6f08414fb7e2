"""Serve the same champion several ways and load each with the same requests, interleaved.

One run bakes the default project into build/bench-serving/ and runs `make setup` in it; then, for
each estimator the template offers (params.yaml's `train.estimator`: logistic regression, random
forest, gradient boosting), it retrains (`make repro`), promotes the new version (`make promote`
with a REASON) and stores it for BentoML (`python -m <package> champion`), and serves that
champion several ways at once, each on 127.0.0.1 and a free port, with one worker and with as
many workers as the machine has cores:

- the generated BentoML service, as `make serve` starts it (`bentoml serve`; its `workers`
  setting edited in this bake's copy of service.py for more than one worker);
- a competent hand-written FastAPI app, written here: an `async` endpoint, the package's own
  request row type (`row_model`), a float array of the rows and one `predict_proba` through the
  package's `scoring.predict`, answers built as plain JSON, uvicorn's access log off;
- the same app doing the service's extra work: every row appended to the package's own
  inference log (`InferenceLog`) and prediction counters for /metrics (prometheus_client);
- `mlflow models serve` on `models:/<name>@champion`, as a user runs it;
- LitServe with batching, when it installs (into its own virtualenv beside the bake);
- the old plain FastAPI app (`def` endpoint, a DataFrame per request, `predict` and
  `predict_proba`, access log on), labelled "naive".

Then a second bake, with the cookiecutter answer `task=regression`, in
build/bench-serving/regression/, goes through the same steps for its cheap linear model (`ridge`)
only, served the same ways with one worker from 8 connections: for a regressor the apps, like the
service, call `predict` once (the package's `scoring.predict`) and answer the value alone, and
the same-work app observes each predicted value in a histogram as the service does.

Each server gets a warm-up, then rounds of a fixed number of POSTs from a fixed number of
concurrent keep-alive connections (8 and 32), with 1-row and 16-row bodies; one load's round
after another's (round 1 of each, then round 2, and so on: the other jobs on a shared machine
slow them alike), sent by a small asyncio client in this process (raw streams, no HTTP library).
The number of requests in a round is set once per load from its warm-up's speed, so that a round
takes about ROUND_SECONDS whatever the model costs. Every request is timed, every status counted,
and the CPU time of each server's processes is read from /proc around every round. BentoML's
worker is profiled with py-spy (through `uv run --with py-spy`) during one more round of 16-row
requests, and, for the first estimator, tried with other settings in this bake's copy of
service.py, each beside the service as generated. Every server's process group, and the
processes it started, is stopped at the end, on errors and on SIGTERM too.

Run it from the template repository's root, with `uv` on PATH:
`uv run --locked python benchmarks/serving.py` (the full run; it rewrites
docs/benchmarks-serving.md), or with `--smoke` for a short run that checks the machinery: one
estimator of each bake, one worker, 8 connections, one short round, no variants; it writes
build/bench-serving/smoke.md and leaves the docs alone. `--keep-bake` reuses the bakes that an
earlier run left in build/bench-serving/ and build/bench-serving/regression/ (set up, with a
champion) instead of baking again; a new classification bake empties build/bench-serving/, so the
regression bake is made again with it.
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import json
import math
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass, field, replace
from pathlib import Path

from _bake import (
    QUIET_LOAD,
    QUIET_WAIT,
    ROOT,
    Project,
    bake,
    load_average,
    machine,
    make,
    quiet_env,
    run,
    wait_for_quiet,
)

BENCH = ROOT / "build" / "bench-serving"
REPORT = ROOT / "docs" / "benchmarks-serving.md"
SMOKE_REPORT = BENCH / "smoke.md"
HOST = "127.0.0.1"
CORES = os.cpu_count() or 1
REQUEST_TIMEOUT = 15.0  # longer than the service's own 10 s traffic timeout
RUN_TIMEOUT = 300.0
START_TIMEOUT = 180.0
STOP_TIMEOUT = 20.0
PROFILE_RATE = 250
PROFILE_ATTACH = 1.0
# Goals (docs/benchmarks-serving.md), each at one worker and 8 connections.
GOAL_CHEAP = 1.2  # BentoML / FastAPI doing the same work, rows/s, the cheap model
GOAL_EXPENSIVE = 5.0  # the same, the expensive models (batching pays)
GOAL_VS_MLFLOW = 10.0
GOAL_P99_MS = 10.0  # BentoML, the cheap model
CHEAP = "logistic_regression"
ESTIMATORS = (CHEAP, "random_forest", "hist_gradient_boosting")
# The second bake, cookiecutter answer `task=regression`: its linear model is its cheap one.
CLASSIFICATION = "classification"
REGRESSION = "regression"
RIDGE = "ridge"
CHEAP_MODELS = (CHEAP, RIDGE)
REGRESSION_BENCH = BENCH / REGRESSION
# LitServe's batching: up to this many requests in one call, waiting at most this long for them.
LIT_MAX_BATCH = 64
LIT_BATCH_TIMEOUT = 0.005
# How much faster the TCP_NODELAY listener must be for the note to call the delayed ACK the cause.
NODELAY_GAIN = 1.2
# The slowest answer without gc.freeze() must be this many times the generated service's to count.
FREEZE_GAIN = 2.0
SETUP_TARGETS = ("setup",)


@dataclass(frozen=True)
class Plan:
    """What one run measures, and how long each part takes."""

    estimators: tuple[str, ...]
    concurrencies: tuple[int, ...]
    bodies: tuple[int, ...]  # rows per request
    workers: tuple[int, ...]
    rounds: int
    warm_up: int
    round_seconds: float  # a round's length, roughly: its requests are counted from the warm-up
    min_requests: int
    variants: bool
    report: Path
    task: str = CLASSIFICATION  # the bake's cookiecutter answer `task`
    regression: tuple[str, ...] = ()  # a regression bake's estimators, measured after these

    def models(self) -> list[tuple[str, str]]:
        """(task, estimator) of every model measured, in order."""
        return [(self.task, name) for name in self.estimators] + [
            (REGRESSION, name) for name in self.regression
        ]


def regression_plan(plan: Plan) -> Plan:
    """What the regression bake measures: `plan`'s regression estimators, bodies and rounds, at
    one worker and 8 connections, no variants."""
    return replace(
        plan,
        task=REGRESSION,
        estimators=plan.regression,
        concurrencies=(8,),
        workers=(1,),
        variants=False,
        regression=(),
    )


FULL = Plan(
    estimators=ESTIMATORS,
    concurrencies=(8, 32),
    bodies=(1, 16),
    workers=tuple(sorted({1, CORES})),
    rounds=3,
    warm_up=200,
    round_seconds=4.0,
    min_requests=200,
    variants=True,
    report=REPORT,
    regression=(RIDGE,),
)
SMOKE = Plan(
    estimators=(CHEAP,),
    concurrencies=(8,),
    bodies=(1, 16),
    workers=(1,),
    rounds=1,
    warm_up=40,
    round_seconds=0.5,
    min_requests=40,
    variants=False,
    report=SMOKE_REPORT,
    regression=(RIDGE,),
)
# Other settings tried in this bake's copy of service.py: label -> [(generated text, new text)].
GENERATED_API = "@bentoml.api(batchable=True, max_batch_size=256, max_latency_ms=1000)"
GENERATED_TRAFFIC = 'traffic={"timeout": TIMEOUT_SECONDS, "max_concurrency": MAX_CONCURRENCY},'
GENERATED_ANSWER = ") -> Annotated[list[Prediction], JSON]:"
GENERATED_FEATURES = "np.array(values, dtype=np.float64)"
GENERATED_PREDICT = "    async def predict(\n"
GENERATED_FREEZE = "        gc.collect()\n        gc.freeze()\n"
NO_BATCHING = "BentoML, no adaptive batching (plain `@bentoml.api`)"
NO_MEDIA_TYPE = "BentoML, answer media type not declared (`-> list[Prediction]`)"
ACCESS_LOG = "BentoML, access log on (`SERVICE_ACCESS_LOG=1`)"
TRACED = "BentoML, /predict traced (`SERVICE_TRACING=1`, no exporter)"
THREAD_POOL = "BentoML, `predict` a plain `def` (run on BentoML's thread pool)"
DATAFRAME = "BentoML, a DataFrame of the rows for the model (`DataFrame.from_records`)"
NO_FREEZE = "BentoML, no `gc.freeze()` once the model is loaded"


@dataclass(frozen=True)
class Variant:
    """A change to the generated service: text replaced in its service.py, settings in its env."""

    edits: tuple[tuple[str, str], ...] = ()
    env: tuple[tuple[str, str], ...] = ()


VARIANTS: dict[str, Variant] = {
    ACCESS_LOG: Variant(env=(("SERVICE_ACCESS_LOG", "1"),)),
    TRACED: Variant(env=(("SERVICE_TRACING", "1"),)),
    THREAD_POOL: Variant(edits=((GENERATED_PREDICT, "    def predict(\n"),)),
    NO_FREEZE: Variant(edits=((GENERATED_FREEZE, ""),)),
    DATAFRAME: Variant(
        edits=(
            ("import numpy as np\n", "import numpy as np\nimport pandas as pd\n"),
            (GENERATED_FEATURES, "pd.DataFrame.from_records(records, columns=self.features)"),
        )
    ),
    NO_BATCHING: Variant(edits=((GENERATED_API, "@bentoml.api"),)),
    NO_MEDIA_TYPE: Variant(edits=((GENERATED_ANSWER, ") -> list[Prediction]:"),)),
    "BentoML, `workers=2`": Variant(
        edits=((GENERATED_TRAFFIC, f"{GENERATED_TRAFFIC} workers=2,"),),
    ),
}

# Where a sampled stack's time goes: the innermost frame that matches a pattern names the part.
SCHEMA_PART = "JSON schema rebuilt for each answer's media type (BentoML)"
MODEL_PART = "the model (`scoring.predict`: scikit-learn's `predict_proba`)"
HTTP_PART = "HTTP, ASGI, routing, middleware (uvicorn, h11, Starlette, BentoML's app)"
LOOP_PART = "event loop, sockets, worker threads (asyncio, anyio)"
PROFILE_PARTS: dict[str, tuple[str, ...]] = {
    SCHEMA_PART: ("IOMixin.mime_type",),
    MODEL_PART: ("Pipeline.predict",),
    "the service's prediction metrics (`Metrics.observe`)": ("Metrics.observe",),
    "inference log (`InferenceLog.append`)": ("InferenceLog.append",),
    "rest of `Champion.predict` (row dumps, feature array, answer models)": ("Champion.predict",),
    "request parsing and validation (pydantic)": ("from_http_request", "parse_request"),
    "answer serialisation": ("to_http_response", ".serialize_model", "IterableResponse"),
    "adaptive batching (dispatcher, batch containers)": (
        *("CorkDispatcher", "batch_infer", "marshal/", "runner/container"),
    ),
    "tracing spans (OpenTelemetry, no exporter)": ("OpenTelemetry", "Tracer.", "Span."),
    "access log": ("AccessLogMiddleware", "_internal/log.py"),
    "request metrics (BentoML's middleware)": ("RunnerTrafficMetrics", "metrics/prometheus"),
    HTTP_PART: (
        *("uvicorn/protocols", "uvicorn/middleware", "h11/", "starlette/", "/middleware.py"),
        *("_bentoml_impl/server/app.py", "http/traffic.py", "_bentoml_sdk/method.py"),
        *("simple_di/", "bentoml/_internal/context.py"),
    ),
    LOOP_PART: (*("asyncio/", "selectors", "anyio/", "threading.py", "queue.py"),),
}

# The competent baseline, and with SAME_WORK=1 the same app doing the service's extra work.
FASTAPI_APP = '''\
"""A competent FastAPI app serving the registry's champion with the service's own row type.

An async endpoint (no thread-pool hop), the package's `row_model`, a float array of the rows in
the order the model was fitted on, one model call through `scoring.predict` (`predict_proba` for
a classifier, `predict` for a regressor), answers as plain JSON. With SAME_WORK=1 it also does
what the service does besides scoring: every row appended to the package's inference log, and
the service's prediction metrics served on /metrics (predicted classes counted, or predicted
values observed in a histogram).
"""

import json
import os
import warnings
from typing import Annotated

import numpy as np
from fastapi import FastAPI, Response
from pydantic import BaseModel, Field

from PACKAGE.core.config import load_params
from PACKAGE.core.prediction_ids import PREDICTION_ID, new_ids
from PACKAGE.core.schema import MAX_ROWS, load_schema
from PACKAGE.core.scoring import PREDICTION, PROBABILITY, predict
from PACKAGE.release.registry import load_registered
from PACKAGE.serving.api_schema import row_model

warnings.filterwarnings("ignore", "X does not have valid feature names", UserWarning)
SCHEMA = load_schema()
Row = row_model(SCHEMA)
FEATURES = SCHEMA.feature_names
REGISTERED = load_registered(load_params().mlflow)
ESTIMATOR, VERSION = REGISTERED.estimator, REGISTERED.version
CATEGORICAL = SCHEMA.target_is_categorical
SAME_WORK = os.environ.get("SAME_WORK") == "1"


class Rows(BaseModel):
    rows: Annotated[list[Row], Field(min_length=1, max_length=MAX_ROWS)]


app = FastAPI()


@app.get("/readyz")
async def ready() -> str:
    return "ready"


if SAME_WORK:
    from collections import Counter as Tally

    from prometheus_client import Counter, Histogram, make_asgi_app

    from PACKAGE.serving.inference_log import InferenceLog, LogSettings

    LOG = InferenceLog.from_settings(LogSettings.from_environment(), worker=os.getpid())
    ROWS = Counter("model_rows_scored", "Rows scored by the model", ["model_version"])
    SCORED = ROWS.labels(model_version=VERSION)
    if CATEGORICAL:
        CLASSES = Counter(
            "model_predictions", "Predicted classes", ["model_version", "prediction"]
        )
    else:
        LOW, HIGH = SCHEMA.target.min or 0.0, SCHEMA.target.max or 1.0
        BUCKETS = [LOW + (HIGH - LOW) * step / 10 for step in range(1, 11)]
        VALUES = Histogram(
            "model_prediction_value", "Predicted values", ["model_version"], buckets=BUCKETS
        ).labels(model_version=VERSION)
    app.mount("/metrics", make_asgi_app())


@app.post("/predict")
async def predict_rows(request: Rows) -> Response:
    values = [[getattr(row, name) for name in FEATURES] for row in request.rows]
    scores = predict(ESTIMATOR, np.array(values, dtype=np.float64))
    predicted = scores[PREDICTION].tolist()
    ids = new_ids(len(values))
    positive = scores[PROBABILITY].tolist() if CATEGORICAL else None
    if positive is None:
        answers = [
            {PREDICTION_ID: key, PREDICTION: value} for key, value in zip(ids, predicted)
        ]
    else:
        answers = [
            {PREDICTION_ID: key, PREDICTION: value, PROBABILITY: probability}
            for key, value, probability in zip(ids, predicted, positive)
        ]
    if SAME_WORK:
        SCORED.inc(len(predicted))
        if CATEGORICAL:
            for label, count in Tally(predicted).items():
                CLASSES.labels(model_version=VERSION, prediction=str(int(label))).inc(count)
        else:
            for value in predicted:
                VALUES.observe(value)
        if LOG is not None:
            records = [row.model_dump() for row in request.rows]
            LOG.append(records, ids, predicted, VERSION, positive)
    return Response(json.dumps(answers), media_type="application/json")
'''
# LitServe with batching: each request's rows decoded to an array, the arrays of a batch of
# requests scored in one call, the scores split back per request.
LITSERVE_APP = '''\
"""LitServe serving the registry's champion, requests batched. Arguments: host, port, workers."""

import sys
import warnings

import litserve as ls
import numpy as np

from PACKAGE.core.config import load_params
from PACKAGE.core.prediction_ids import PREDICTION_ID, new_ids
from PACKAGE.core.scoring import PREDICTION, PROBABILITY, predict
from PACKAGE.core.schema import MAX_ROWS, load_schema
from PACKAGE.release.registry import load_registered
from PACKAGE.serving.api_schema import row_model

warnings.filterwarnings("ignore", "X does not have valid feature names", UserWarning)
SCHEMA = load_schema()
Row = row_model(SCHEMA)
FEATURES = SCHEMA.feature_names


class Champion(ls.LitAPI):
    def setup(self, device):
        self.estimator = load_registered(load_params().mlflow).estimator

    def decode_request(self, request):
        rows = request["rows"]
        if not 1 <= len(rows) <= MAX_ROWS:
            raise ValueError(f"1 to {MAX_ROWS} rows")
        checked = [Row.model_validate(row) for row in rows]
        return np.array([[getattr(row, name) for name in FEATURES] for row in checked])

    def batch(self, inputs):
        return inputs

    def predict(self, inputs):
        scores = predict(self.estimator, np.concatenate(inputs))
        predicted = scores[PREDICTION].tolist()
        positive = scores.get(PROBABILITY)
        positive = positive.tolist() if positive is not None else [None] * len(predicted)
        answers, start = [], 0
        for rows in inputs:
            end = start + len(rows)
            answers.append(list(zip(predicted[start:end], positive[start:end])))
            start = end
        return answers

    def unbatch(self, output):
        return output

    def encode_response(self, output):
        ids = new_ids(len(output))
        return [
            {PREDICTION_ID: key, PREDICTION: value}
            | ({} if probability is None else {PROBABILITY: probability})
            for key, (value, probability) in zip(ids, output)
        ]


if __name__ == "__main__":
    host, port, workers = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    api = Champion(max_batch_size=MAX_BATCH, batch_timeout=BATCH_TIMEOUT)
    server = ls.LitServer(api, accelerator="cpu", workers_per_device=workers)
    server.run(
        host=host, port=port, num_api_servers=workers, log_level="warning",
        generate_client_file=False,
    )
'''
# The naive baseline (the old one): a plain `def`, a DataFrame per request, two model calls.
NAIVE_APP = '''\
"""A naive FastAPI app serving the registry's champion with the service's own row type."""

from typing import Annotated

import pandas as pd
from fastapi import FastAPI
from pydantic import BaseModel, Field

from PACKAGE.core.config import load_params
from PACKAGE.core.prediction_ids import new_ids
from PACKAGE.core.schema import MAX_ROWS, load_schema
from PACKAGE.release.registry import load_registered
from PACKAGE.serving.api_schema import prediction_model, row_model

SCHEMA = load_schema()
Row = row_model(SCHEMA)
Prediction = prediction_model(SCHEMA)
FEATURES = SCHEMA.feature_names
ESTIMATOR = load_registered(load_params().mlflow).estimator


class Rows(BaseModel):
    rows: Annotated[list[Row], Field(min_length=1, max_length=MAX_ROWS)]


app = FastAPI()


@app.get("/readyz")
def ready() -> str:
    return "ready"


@app.post("/predict")
def predict(request: Rows) -> list[Prediction]:
    records = [row.model_dump() for row in request.rows]
    frame = pd.DataFrame.from_records(records, columns=FEATURES)
    predicted = ESTIMATOR.predict(frame).tolist()
    ids = new_ids(len(records))
    if not SCHEMA.target_is_categorical:
        return [
            Prediction(prediction_id=key, prediction=value)
            for key, value in zip(ids, predicted, strict=True)
        ]
    positive = ESTIMATOR.predict_proba(frame)[:, 1].tolist()
    return [
        Prediction(prediction_id=key, prediction=value, probability=probability)
        for key, value, probability in zip(ids, predicted, positive, strict=True)
    ]
'''
# uvicorn's own supervisor, with a listener that keeps TCP_NODELAY on the accepted sockets.
FASTAPI_WORKERS = '''\
"""uvicorn's multi-worker supervisor on a listener made with proto IPPROTO_TCP.

`uvicorn --workers N` binds its listener with proto 0, so asyncio leaves TCP_NODELAY off on the
accepted sockets and each keep-alive answer waits for the client's delayed ACK, about 40 ms
(Kludex/uvicorn#3149). Arguments: host, port, workers. Access log off.
"""

import socket
import sys

import uvicorn
from uvicorn.supervisors import Multiprocess


def main() -> None:
    host, port, workers = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    config = uvicorn.Config(
        "fastapi_app:app", host=host, port=port, workers=workers, access_log=False
    )
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((host, port))
    listener.set_inheritable(True)
    Multiprocess(config, sockets=[listener]).run()


if __name__ == "__main__":  # the workers are spawned: they import this file again
    main()
'''
EVENT_LOOP_PACKAGES = """\
import importlib.util, json
print(json.dumps([name for name in ("uvloop", "httptools") if importlib.util.find_spec(name)]))
"""
FEATURE_TYPES = """\
import json
from PACKAGE.core.schema import load_schema
print(json.dumps({column.name: column.dtype for column in load_schema().features}))
"""
PAGE = """\
# Serving benchmark

Written by `benchmarks/serving.py` (`uv run --locked python benchmarks/serving.py`)
on {date}. Every figure below is from that run: rerun it rather than editing this page.

## What is measured

The default bake in `build/bench-serving/`, after `make setup`; then, for each estimator
(params.yaml's `train.estimator`: {estimators}), `make repro`, `make promote` (forced, with a
REASON) and `python -m {package} champion`, and that champion served several ways at once, each
on {host} and a free port, started from the bake's `.venv` and waited for until it answers its
readiness probe, with {workers_text}:

- **{bentoml}**: the generated service as `make serve` starts it,
  `bentoml serve {package}.serving.service:Champion` (more than one worker: `workers=N` added to
  the `@bentoml.service` settings in the bake's copy of `service.py` while it starts). POST
  /predict with `{{"rows": [...]}}`; it validates with the row type from `api_schema.py`, scores
  a float array of the rows with one `predict_proba` (`scoring.predict`) through adaptive
  batching, counts predictions for /metrics and appends each row to the inference log; BentoML
  adds its request metrics.
- **{fastapi}**: a hand-written FastAPI app on uvicorn, written by the benchmark into
  `build/bench-serving/fastapi_app.py`: an `async` endpoint (no thread-pool hop), the same
  request shape validated by the package's `row_model`, a float array of the rows and one
  `predict_proba` through `scoring.predict`, the estimator from `registry.load_registered`,
  answers with a `prediction_id` per row (`new_ids`) written as plain JSON, uvicorn's access log
  off. One worker: `uvicorn --workers 1`; more: uvicorn's own supervisor on a listener that keeps
  TCP_NODELAY (`fastapi_workers.py`, see the notes at the end).
- **{fastapi_work}**: the same app doing the service's extra work: every row appended to the
  package's inference log (`InferenceLog`, one file per worker process) and prediction counters
  (prometheus_client, served on /metrics).
- **{litserve}**: {litserve_text}
- **{mlflow}**: `mlflow models serve -m models:/<name>@champion --env-manager local --workers N`,
  POST /invocations with `{{"dataframe_records": [...]}}`; MLflow's pyfunc wrapper around the
  skops file (`MLFLOW_ALLOW_PICKLE_DESERIALIZATION=true` lets it load), which answers `predict`
  only, no probability and no prediction id.
- **{naive}** (one worker only): the app this page measured before, kept for reference
  (`fastapi_naive.py`): a plain `def` endpoint (a thread-pool hop), a DataFrame of the rows,
  `predict` and `predict_proba`, answers through the `prediction_model` type, uvicorn's access
  log on.
{regression}
{event_loop}

**Load.** The first test-set row, the same for every server, sent alone or 16 times in one
request; the servers' answers to it are checked to agree. {concurrencies} concurrent keep-alive
connections, each sending its next request as soon as the previous answer is in. Per load
(server, connections, rows per request) {warm_up} warm-up requests, whose speed sets the load's
requests per round (about {round_seconds:.0f} s of them, at least {min_requests}); then {rounds}
rounds, counted exactly, one load at a time but interleaved: the first round of every load, then
the second, and so on, so that a change in the speed of a shared machine falls on all of them
alike. Requests/s is answers over the round's wall time; rows per server CPU-second is rows
answered over the CPU time (user and system, from /proc) of all the server's processes during
the round, the cost of a row whatever the number of workers; latency runs from writing a request
to reading the last byte of its answer. Each figure is the median of the rounds; ranges are in
brackets; "max" is the slowest single answer of all the rounds; non-2xx answers and errors are
summed over the rounds. A request may take {request_timeout:.0f} s and a round
{run_timeout:.0f} s; a request that fails or times out is an error.

**Client.** A small asyncio client in the benchmark's own process (raw streams, HTTP/1.1
keep-alive, no HTTP library), not `wrk`: wrk 4.1 runs for a set duration, so it cannot send an
exact number of requests. The client shares the machine's cores with the servers; its CPU use,
as a share of one core, is in the tables ({client_cpu:.0%} at most).

## Machine

{machine}

The other jobs on the machine are not ours: the benchmark waits up to {quiet_wait:.0f} s for the
1-minute load average to drop below {quiet_load} before measuring, and measures anyway after
that.

## Results

{results}

{statuses}

## Against the goals

Each at one worker and 8 connections, BentoML's rows/s against the other server's in the same
rounds.

{goals}

{explanation}

## Where BentoML's time goes

{profile}
{variants}"""

VARIANTS_PAGE = """
## Other BentoML settings

Each tried on its own, for `{estimator}`, single rows from 8 connections, in the bake's copy of
`service.py` or in the service's environment, and served beside a BentoML server with the
service as generated (started before the edit), their rounds interleaved. The competent FastAPI
app with 2 workers, twice, is there to set against `workers=2`.

{head}
{rows}

{note}
"""
PACKAGES = ["bentoml", "fastapi", "uvicorn", "starlette", "pydantic", "mlflow"]
PACKAGES += ["scikit-learn", "pandas", "prometheus-client"]
COLUMNS: tuple[str, ...] = (
    "server",
    "workers",
    "connections",
    "rows per request",
    "requests",
    "requests/s",
)
COLUMNS += ("rows/s", "rows per server CPU-second", "p50 ms", "p99 ms", "max ms", "non-2xx")
COLUMNS += ("errors", "client CPU")
TABLE_HEAD = f"| {' | '.join(COLUMNS)} |\n|---|{'---:|' * (len(COLUMNS) - 1)}"
BENTOML = "BentoML (the service)"
FASTAPI = "FastAPI, competent"
FASTAPI_WORK = "FastAPI, competent, same work"
MLFLOW = "mlflow models serve"
LITSERVE = "LitServe, batched"
NAIVE = "FastAPI, naive"
ORDER = (BENTOML, FASTAPI, FASTAPI_WORK, LITSERVE, MLFLOW, NAIVE)


@dataclass(frozen=True)
class Server:
    """How to start one server and talk to it."""

    label: str
    workers: int
    command: Callable[[int], list[str]]
    ready_path: str
    predict_path: str
    body_key: str
    settings: tuple[tuple[str, str], ...] = ()  # added to the project's environment
    edits: tuple[tuple[str, str], ...] = ()  # to this bake's service.py while it starts

    @property
    def name(self) -> str:
        return f"{self.label}, {self.workers} worker{'s' if self.workers > 1 else ''}"

    def body(self, rows: list[dict[str, float]]) -> bytes:
        return json.dumps({self.body_key: rows}).encode()

    def request(self, port: int, rows: list[dict[str, float]]) -> bytes:
        body = self.body(rows)
        head = (
            f"POST {self.predict_path} HTTP/1.1\r\nHost: {HOST}:{port}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        )
        return head.encode() + body


@dataclass
class Tally:
    """What one load run saw; `left` counts down the requests still to send."""

    left: int
    latencies: list[float] = field(default_factory=list)
    statuses: Counter[int] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)

    def take(self) -> bool:
        if self.left <= 0:
            return False
        self.left -= 1
        return True


@dataclass(frozen=True)
class Run:
    """One timed round of requests; CPU use as a share of one core over the round."""

    seconds: float
    client_cpu: float
    server_cpu: float
    tally: Tally

    @property
    def rps(self) -> float:
        return len(self.tally.latencies) / self.seconds

    @property
    def max_ms(self) -> float:
        return 1000 * max(self.tally.latencies, default=math.nan)

    def percentile_ms(self, which: int) -> float:
        if len(self.tally.latencies) < 2:
            return math.nan
        cuts = statistics.quantiles(self.tally.latencies, n=100, method="inclusive")
        return 1000 * cuts[which - 1]


@dataclass(frozen=True)
class Load:
    """One server, a request to send it again and again, and from how many connections."""

    label: str
    server: Server
    port: int
    pids: tuple[int, ...]  # the server's processes, whose CPU time is read around each round
    request: bytes
    rows: int
    concurrency: int
    estimator: str = ""
    task: str = CLASSIFICATION


@dataclass(frozen=True)
class Measured:
    """The rounds against one server with one request body and concurrency."""

    load: Load
    runs: tuple[Run, ...]
    requests: int  # per round

    @property
    def label(self) -> str:
        return self.load.label

    @property
    def rows(self) -> int:
        return self.load.rows

    @property
    def rps(self) -> float:
        return statistics.median(run.rps for run in self.runs)

    @property
    def rows_per_cpu_second(self) -> float:
        """Rows answered per second of CPU time the server's processes used."""
        per_round = [run.rps * self.rows / run.server_cpu for run in self.runs if run.server_cpu]
        return statistics.median(per_round) if per_round else math.nan

    def percentile_ms(self, which: int) -> float:
        return statistics.median(run.percentile_ms(which) for run in self.runs)

    @property
    def max_ms(self) -> float:
        """The slowest single answer of all the rounds."""
        return max(run.max_ms for run in self.runs)

    @property
    def statuses(self) -> Counter[int]:
        return sum((run.tally.statuses for run in self.runs), Counter())

    @property
    def non_2xx(self) -> int:
        return sum(n for status, n in self.statuses.items() if not 200 <= status < 300)

    @property
    def errors(self) -> Counter[str]:
        return sum((run.tally.errors for run in self.runs), Counter())

    def row(self) -> str:
        rps = [run.rps for run in self.runs]
        p99 = [run.percentile_ms(99) for run in self.runs]
        answered = sum(len(run.tally.latencies) for run in self.runs)
        cpu = statistics.median(run.client_cpu for run in self.runs)
        return (
            f"| {self.label} | {self.load.server.workers} | {self.load.concurrency} | "
            f"{self.rows} | {answered} | {self.rps:.0f} ({min(rps):.0f}-{max(rps):.0f}) | "
            f"{self.rps * self.rows:.0f} | {self.rows_per_cpu_second:.0f} | "
            f"{self.percentile_ms(50):.1f} | {self.percentile_ms(99):.1f} "
            f"({min(p99):.1f}-{max(p99):.1f}) | {self.max_ms:.0f} | {self.non_2xx} | "
            f"{sum(self.errors.values())} | {100 * cpu:.0f}% |"
        )

    def summary(self) -> str:
        return (
            f"{self.label}, c={self.load.concurrency}, "
            f"{self.rows} row(s): {self.rps:.0f} req/s, {self.rps * self.rows:.0f} rows/s, "
            f"{self.rows_per_cpu_second:.0f} rows/CPU-s, p50 {self.percentile_ms(50):.1f} ms, "
            f"p99 {self.percentile_ms(99):.1f} ms, statuses {dict(self.statuses)}, "
            f"errors {dict(self.errors)}"
        )


@dataclass(frozen=True)
class Profile:
    """py-spy's samples of the BentoML worker while it answered a round of requests."""

    samples: int
    requests: int
    rows: int  # per request
    concurrency: int
    parts: dict[str, int]
    busiest: list[tuple[str, int]]


@dataclass
class Figures:
    """Everything one benchmark run measured."""

    plan: Plan
    facts: dict[str, str] = field(default_factory=dict)
    results: list[Measured] = field(default_factory=list)
    profile: Profile | None = None
    profile_note: str = "not run"
    variants: list[Measured] = field(default_factory=list)
    beside: dict[str, Measured] = field(default_factory=dict)
    # label -> each worker's share of the CPU time, for the variants with more than one worker
    spread: dict[str, list[float]] = field(default_factory=dict)
    event_loop: str = ""
    litserve_note: str = ""

    def find(
        self,
        model: tuple[str, str],
        label: str,
        workers: int = 1,
        concurrency: int = 8,
        rows: int = 1,
    ) -> Measured | None:
        """The loads of `model` (task, estimator) on the server `label`."""
        for measured in self.results:
            load = measured.load
            if (load.task, load.estimator, load.server.label, load.server.workers) == (
                *model,
                label,
                workers,
            ) and (load.concurrency, load.rows) == (concurrency, rows):
                return measured
        return None


# Every server still running, so an error or a signal stops them all.
RUNNING: dict[int, subprocess.Popen[bytes]] = {}


def work_folder(project: Project) -> Path:
    """The folder the bake sits in: the baselines' apps, the servers' logs, LitServe's venv."""
    return project.path.parent


def baked(task: str, folder: Path, keep_bake: bool) -> Project:
    """The project baked with the answer `task` in `folder`, set up: the one an earlier run left
    there (with `keep_bake`), or a new bake."""
    kept = sorted(folder.glob("*/.venv/bin/bentoml")) if keep_bake else []
    if kept:
        project = served_project(kept[0].parents[2])
        print(f"reusing the {task} bake in {project.path}")
        return project
    return setup(bake(folder, {"dvc_remote_url": str(folder / "dvc-remote"), "task": task}))


def setup(path: Path) -> Project:
    """Install the bake; the project as the servers run it."""
    env = quiet_env({"BENTOML_HOME": str(path / ".bentoml")})
    make(path, SETUP_TARGETS, env)
    return served_project(path)


def served_project(path: Path) -> Project:
    serving_env = {
        "BENTOML_HOME": str(path / ".bentoml"),
        "MLFLOW_TRACKING_URI": f"sqlite:///{path / 'mlflow.db'}",
        "MLFLOW_ALLOW_PICKLE_DESERIALIZATION": "true",
    }
    return Project.baked(path, serving_env)


def champion(project: Project, estimator: str) -> None:
    """Make a model of `estimator` the champion: params.yaml, `make repro`, a forced promotion,
    and the champion stored for BentoML. Skipped when the champion already is one (a kept bake)."""
    marker = project.path / "build" / "bench-champion.txt"
    if marker.exists() and marker.read_text(encoding="utf-8").strip() == estimator:
        print(f"  the champion is already {estimator}")
        return
    params = project.path / "params.yaml"
    text = params.read_text(encoding="utf-8")
    edited = re.sub(r"(?m)^(  estimator: )\S+", rf"\g<1>{estimator}", text, count=1)
    if f"  estimator: {estimator}\n" not in edited:
        sys.exit(f"ERROR: could not set train.estimator to {estimator} in {params}")
    params.write_text(edited, encoding="utf-8")
    env = quiet_env({"BENTOML_HOME": str(project.path / ".bentoml")})
    make(project.path, ("repro",), env)
    print(f"  make promote REASON=... ({estimator}) ...", flush=True)
    run(["make", "promote", f"REASON=serving benchmark: {estimator}"], project.path, env)
    print(
        "  " + run([project.python, "-m", project.package, "champion"], project.path, env).strip()
    )
    marker.parent.mkdir(exist_ok=True)
    marker.write_text(estimator, encoding="utf-8")


def event_loop(project: Project) -> str:
    """Which event loop and HTTP parser uvicorn picks in the bake (its `auto` settings)."""
    found = json.loads(run([project.python, "-c", EVENT_LOOP_PACKAGES], project.path, project.env))
    loop = "uvloop" if "uvloop" in found else "asyncio's own loop"
    parser = "httptools" if "httptools" in found else "h11"
    if found:
        verb = "are" if len(found) == 2 else "is"
        installed = (
            f"{' and '.join(found)} {verb} installed (Evidently asks for `uvicorn[standard]`)"
        )
    else:
        installed = "Neither uvloop nor httptools is installed"
    return f"{installed}, so the uvicorn servers run on {loop} with the {parser} parser."


def write_apps(project: Project) -> None:
    """The baselines' apps, for this bake's package, into the folder it sits in."""
    folder = work_folder(project)
    for name, text in (
        ("fastapi_app.py", FASTAPI_APP),
        ("fastapi_naive.py", NAIVE_APP),
        ("fastapi_workers.py", FASTAPI_WORKERS),
    ):
        (folder / name).write_text(text.replace("PACKAGE", project.package), encoding="utf-8")
    lit = LITSERVE_APP.replace("PACKAGE", project.package)
    lit = lit.replace("MAX_BATCH", str(LIT_MAX_BATCH)).replace(
        "BATCH_TIMEOUT", str(LIT_BATCH_TIMEOUT)
    )
    (folder / "litserve_app.py").write_text(lit, encoding="utf-8")


def litserve(project: Project) -> tuple[str | None, str]:
    """LitServe in a virtualenv of its own beside the bake, seeing the bake's packages after its
    own: its Python, or None and why not."""
    folder = work_folder(project)
    venv = folder / "litserve-venv"
    python = venv / "bin" / "python"
    steps = [
        ["uv", "venv", "--quiet", "--allow-existing", "-p", project.python, str(venv)],
        ["uv", "pip", "install", "--quiet", "-p", str(python), "litserve"],
    ]
    for step in steps:
        done = subprocess.run(step, cwd=folder, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            last = (done.stderr or done.stdout).strip().splitlines()[-1:]
            return None, f"`{' '.join(step[:3])}` failed: {' '.join(last)}"
    purelib = run(
        [project.python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        project.path,
        project.env,
    ).strip()
    site = run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        folder,
        quiet_env(),
    ).strip()
    (Path(site) / "zz_bench_bake.pth").write_text(
        f"import site; site.addsitedir({purelib!r})\n", encoding="utf-8"
    )
    probe = subprocess.run(
        [str(python), "-c", f"import litserve, {project.package}; print(litserve.__version__)"],
        cwd=project.path,
        env=project.env,
        capture_output=True,
        text=True,
        check=False,
    )
    if probe.returncode != 0:
        return None, f"litserve installed but does not import: {probe.stderr.strip()[-300:]}"
    return str(python), f"LitServe {probe.stdout.strip()}"


def test_row(project: Project) -> dict[str, float]:
    """The first test-set row, features only, typed as the schema says."""
    lines = (project.path / "data" / "prepared" / "test.csv").read_text().splitlines()
    row = dict(zip(lines[0].split(","), lines[1].split(","), strict=True))
    probe = FEATURE_TYPES.replace("PACKAGE", project.package)
    kinds = json.loads(run([project.python, "-c", probe], project.path, project.env))
    return {name: (int if kind == "int" else float)(row[name]) for name, kind in kinds.items()}


def bentoml_server(project: Project, workers: int) -> Server:
    service = f"{project.package}.serving.service:Champion"
    edits = (
        () if workers == 1 else ((GENERATED_TRAFFIC, f"{GENERATED_TRAFFIC} workers={workers},"),)
    )
    return Server(
        BENTOML,
        workers,
        lambda port: [
            project.tool("bentoml"),
            "serve",
            service,
            "--host",
            HOST,
            "--port",
            str(port),
        ],
        "/readyz",
        "/predict",
        "rows",
        edits=edits,
    )


def fastapi_server(
    project: Project, workers: int, label: str = FASTAPI, nodelay: bool = True
) -> Server:
    """The competent app (or, with `label`, the same app doing the service's work, or the naive
    one) on uvicorn: one worker as `uvicorn` runs it; more on uvicorn's own supervisor with a
    TCP_NODELAY listener (`fastapi_workers.py`), or, without `nodelay`, `uvicorn --workers N`."""
    python, folder = project.python, work_folder(project)
    module = "fastapi_naive" if label == NAIVE else "fastapi_app"
    settings: tuple[tuple[str, str], ...] = ()
    if label == FASTAPI_WORK:
        settings = (
            ("SAME_WORK", "1"),
            ("INFERENCE_LOG_DIR", str(project.path / "logs" / "inference-fastapi")),
        )
    if workers > 1 and nodelay and module == "fastapi_app":
        return Server(
            label,
            workers,
            lambda port: [
                python,
                str(folder / "fastapi_workers.py"),
                HOST,
                str(port),
                str(workers),
            ],
            "/readyz",
            "/predict",
            "rows",
            settings,
        )
    access = [] if label == NAIVE else ["--no-access-log"]
    return Server(
        label,
        workers,
        lambda port: [
            *(python, "-m", "uvicorn", f"{module}:app", "--app-dir", str(folder), *access),
            *("--host", HOST, "--port", str(port), "--workers", str(workers)),
        ],
        "/readyz",
        "/predict",
        "rows",
        settings,
    )


def mlflow_server(project: Project, workers: int) -> Server:
    uri = f"models:/{project.model_name}@champion"
    return Server(
        MLFLOW,
        workers,
        lambda port: [
            *(project.tool("mlflow"), "models", "serve", "-m", uri, "--env-manager", "local"),
            *("--host", HOST, "--port", str(port), "--workers", str(workers)),
        ],
        "/ping",
        "/invocations",
        "dataframe_records",
    )


def litserve_server(project: Project, python: str, workers: int) -> Server:
    app = str(work_folder(project) / "litserve_app.py")
    return Server(
        LITSERVE,
        workers,
        lambda port: [python, app, HOST, str(port), str(workers)],
        "/health",
        "/predict",
        "rows",
    )


def servers(project: Project, workers: int, lit_python: str | None) -> list[Server]:
    """Every way to serve the champion with `workers` workers (the naive app with one only)."""
    found = [
        bentoml_server(project, workers),
        fastapi_server(project, workers),
        fastapi_server(project, workers, FASTAPI_WORK),
    ]
    if lit_python is not None:
        found.append(litserve_server(project, lit_python, workers))
    found.append(mlflow_server(project, workers))
    if workers == 1:
        found.append(fastapi_server(project, 1, NAIVE))
    return found


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        port: int = probe.getsockname()[1]
        return port


def http(port: int, path: str, body: bytes | None = None, timeout: float = 5.0) -> bytes:
    """One plain request, no proxies; raises OSError on failure or a non-2xx answer."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    headers = {"Content-Type": "application/json"} if body is not None else {}
    request = urllib.request.Request(f"http://{HOST}:{port}{path}", data=body, headers=headers)
    with opener.open(request, timeout=timeout) as answer:
        content: bytes = answer.read()
        return content


def wait_ready(process: subprocess.Popen[bytes], port: int, path: str, log: Path) -> float:
    """Seconds until `path` answers 2xx; raise if the server dies or takes too long."""
    start = time.perf_counter()
    while time.perf_counter() - start < START_TIMEOUT:
        if process.poll() is not None:
            tail = log.read_text(errors="replace")[-3000:]
            raise RuntimeError(f"server exited {process.returncode} before it was ready:\n{tail}")
        with suppress(OSError):
            http(port, path, timeout=2.0)
            return time.perf_counter() - start
        time.sleep(0.25)
    raise RuntimeError(f"server not ready after {START_TIMEOUT:.0f} s; see {log}")


def proc_stat(pid: int) -> list[str]:
    """The fields of /proc/<pid>/stat after the command name: state, parent, ..., utime, stime."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def descendants(pid: int) -> list[tuple[int, str]]:
    """The processes started by `pid`, however deep (BentoML's worker has its own session)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        with suppress(OSError, ValueError):
            parent = int(proc_stat(int(entry.name))[1])
            children.setdefault(parent, []).append(int(entry.name))
    found, todo = [], list(children.get(pid, []))
    while todo:
        child = todo.pop()
        todo.extend(children.get(child, []))
        with suppress(OSError):
            found.append((child, command_line(child)))
    return sorted(found)


def command_line(pid: int) -> str:
    raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    return raw.replace(b"\0", b" ").decode(errors="replace").strip()


def still_running(pid: int, command: str) -> bool:
    """Whether `pid` is still the live process that ran `command`."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat[stat.rindex(")") + 2] != "Z" and command_line(pid) == command
    except OSError:
        return False


def stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM the server's process group, wait, then SIGKILL what is left, children included."""
    children = descendants(process.pid)
    with suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    with suppress(subprocess.TimeoutExpired):
        process.wait(timeout=STOP_TIMEOUT)
    with suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    deadline = time.monotonic() + STOP_TIMEOUT
    for pid, command in children:
        while still_running(pid, command) and time.monotonic() < deadline:
            time.sleep(0.1)
        if still_running(pid, command):
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    RUNNING.pop(process.pid, None)


def stop_all() -> None:
    for process in list(RUNNING.values()):
        stop(process)


def on_signal(number: int, _frame: object) -> None:
    raise SystemExit(f"stopped by signal {number}")


@contextmanager
def serving(
    server: Server, project: Project, settings: tuple[tuple[str, str], ...] = ()
) -> Iterator[tuple[int, int]]:
    """Start `server` in its own process group, with its settings and `settings` added to the
    project's environment (and its edits in this bake's service.py until it is ready); yield its
    port and pid once it is ready."""
    port = free_port()
    slug = re.sub(r"[^a-z0-9]+", "-", server.name.lower()).strip("-")
    log = work_folder(project) / f"server-{slug}.log"
    with edited_service(project, server.edits):
        with log.open("wb") as output:
            process = subprocess.Popen(
                server.command(port),
                cwd=project.path,
                env={**project.env, **dict(server.settings), **dict(settings)},
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        RUNNING[process.pid] = process
        try:
            seconds = wait_ready(process, port, server.ready_path, log)
        except BaseException:
            stop(process)
            raise
    try:
        print(f"  {server.name}: ready on port {port} after {seconds:.1f} s", flush=True)
        yield port, process.pid
    finally:
        stop(process)


async def read_answer(reader: asyncio.StreamReader) -> tuple[int, bytes, bool]:
    """One HTTP/1.1 answer: status, body, and whether the connection stays open."""
    head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
    status = int(head[0].split(" ", 2)[1])
    headers = {}
    for line in head[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip().lower()
    if "content-length" in headers:
        body = await reader.readexactly(int(headers["content-length"]))
    elif headers.get("transfer-encoding") == "chunked":
        body = await read_chunks(reader)
    else:
        return status, await reader.read(), False
    return status, body, headers.get("connection") != "close"


async def read_chunks(reader: asyncio.StreamReader) -> bytes:
    parts = []
    while size := int((await reader.readuntil(b"\r\n")).split(b";")[0], 16):
        parts.append((await reader.readexactly(size + 2))[:-2])
    await reader.readuntil(b"\r\n")
    return b"".join(parts)


Streams = tuple[asyncio.StreamReader, asyncio.StreamWriter]


def close(streams: Streams | None) -> None:
    if streams is not None:
        streams[1].close()


async def connection_loop(port: int, request: bytes, tally: Tally) -> None:
    """Send requests one after another on one keep-alive connection, reconnecting on failure."""
    streams: Streams | None = None
    while tally.take():
        try:
            if streams is None:
                connect = asyncio.open_connection(HOST, port)
                streams = await asyncio.wait_for(connect, REQUEST_TIMEOUT)
            reader, writer = streams
            start = time.perf_counter()
            writer.write(request)
            status, _, keep = await asyncio.wait_for(read_answer(reader), REQUEST_TIMEOUT)
        except (OSError, TimeoutError, asyncio.IncompleteReadError, ValueError) as error:
            tally.errors[type(error).__name__] += 1
            close(streams)
            streams = None
            continue
        tally.latencies.append(time.perf_counter() - start)
        tally.statuses[status] += 1
        if not keep:
            close(streams)
            streams = None
    close(streams)


async def send(port: int, request: bytes, count: int, concurrency: int) -> Tally:
    """`count` requests from `concurrency` connections, within RUN_TIMEOUT."""
    tally = Tally(count)
    connections = [connection_loop(port, request, tally) for _ in range(concurrency)]
    try:
        await asyncio.wait_for(asyncio.gather(*connections), RUN_TIMEOUT)
    except TimeoutError:
        failed = sum(tally.errors.values())
        tally.errors["not answered within the round's time limit"] += (
            count - len(tally.latencies) - failed
        )
    return tally


def timed_round(load: Load, count: int) -> Run:
    server_cpu = cpu_seconds(*load.pids)
    cpu, start = time.process_time(), time.perf_counter()
    tally = asyncio.run(send(load.port, load.request, count, load.concurrency))
    seconds = time.perf_counter() - start
    client_cpu = (time.process_time() - cpu) / seconds
    return Run(seconds, client_cpu, (cpu_seconds(*load.pids) - server_cpu) / seconds, tally)


def cpu_seconds(*pids: int) -> float:
    """The CPU time `pids` have used so far, user and system (those gone count nothing)."""
    total = 0
    for pid in pids:
        with suppress(OSError):
            fields = proc_stat(pid)
            total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


@contextmanager
def py_spy(pid: int, output: Path) -> Iterator[subprocess.Popen[bytes]]:
    """py-spy sampling `pid` while one of its threads holds the GIL, until the block ends."""
    command = [
        *("uv", "run", "--locked", "--with", "py-spy", "py-spy", "record", "--gil"),
        *("-p", str(pid), "-r", str(PROFILE_RATE), "--format", "raw", "-o", str(output)),
    ]
    with output.with_suffix(".log").open("wb") as log:
        spy = subprocess.Popen(
            command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    RUNNING[spy.pid] = spy
    try:
        time.sleep(PROFILE_ATTACH)
        yield spy
        with suppress(ProcessLookupError):
            os.killpg(spy.pid, signal.SIGINT)  # py-spy writes its output on Ctrl-C
        with suppress(subprocess.TimeoutExpired):
            spy.wait(timeout=STOP_TIMEOUT)
    finally:
        stop(spy)


def part_of(frames: list[str]) -> str:
    """The part of the request path a sampled stack belongs to: its innermost known frame."""
    for frame in reversed(frames):
        for label, patterns in PROFILE_PARTS.items():
            if any(pattern in frame for pattern in patterns):
                return label
    return "other"


def read_profile(path: Path, requests: int, rows: int, concurrency: int) -> Profile:
    """py-spy's folded stacks, summed by part of the request path and by innermost line."""
    parts: Counter[str] = Counter()
    lines: Counter[str] = Counter()
    for line in path.read_text(encoding="utf-8").splitlines():
        stack, _, count = line.rpartition(" ")
        frames = stack.split(";")
        parts[part_of(frames)] += int(count)
        lines[frames[-1]] += int(count)
    samples = sum(parts.values())
    return Profile(
        samples, requests, rows, concurrency, dict(parts.most_common()), lines.most_common(3)
    )


def service_file(project: Project) -> Path:
    return project.path / "src" / project.package / "serving" / "service.py"


@contextmanager
def edited_service(project: Project, edits: tuple[tuple[str, str], ...]) -> Iterator[None]:
    """This bake's service.py with `edits` applied, put back as generated afterwards."""
    original = service_file(project).read_text(encoding="utf-8")
    text = original
    for old, new in edits:
        text = text.replace(old, new, 1)
    service_file(project).write_text(text, encoding="utf-8")
    try:
        yield
    finally:
        service_file(project).write_text(original, encoding="utf-8")


def check_variants(project: Project) -> None:
    """Stop before measuring anything if service.py no longer has the text a variant changes."""
    text = service_file(project).read_text(encoding="utf-8")
    for label, variant in VARIANTS.items():
        for old, _ in variant.edits:
            if old not in text:
                sys.exit(f"ERROR: service.py has no {old!r} for {label!r}; update VARIANTS")


def measure_loads(loads: list[Load], plan: Plan) -> list[Measured]:
    """A warm-up for each load, which sets its requests per round (about `round_seconds`); then
    `rounds` rounds in which each load gets its requests in turn: loads measured together meet
    the same changes in the machine's speed."""
    counts = []
    for load in loads:
        warm = timed_round(load, plan.warm_up)
        counts.append(max(plan.min_requests, round(warm.rps * plan.round_seconds)))
    runs: list[list[Run]] = [[] for _ in loads]
    for _ in range(plan.rounds):
        for load, count, done in zip(loads, counts, runs, strict=True):
            done.append(timed_round(load, count))
    measured = [
        Measured(load, tuple(done), count)
        for load, count, done in zip(loads, counts, runs, strict=True)
    ]
    for each in measured:
        print(f"    {each.summary()}", flush=True)
    return measured


def answer_of(server: Server, port: int, row: dict[str, float]) -> object:
    """What the server answers for `row`, in its own format."""
    return json.loads(http(port, server.predict_path, server.body([row]), REQUEST_TIMEOUT))


def without_ids(answer: object) -> object:
    """An answer of a server that answers with prediction ids, without them (new every time)."""
    if not isinstance(answer, list):
        return answer
    return [{k: v for k, v in item.items() if k != "prediction_id"} for item in answer]


def check_answers(answers: dict[str, object]) -> None:
    """The servers with prediction ids answer alike but for the ids; mlflow serve predicts the
    same class."""
    reference = answers[BENTOML]
    same = isinstance(reference, list) and all(
        isinstance(item.get("prediction_id"), str) for item in reference
    )
    for label, answer in answers.items():
        if label == MLFLOW:
            predicted = answer.get("predictions") if isinstance(answer, dict) else None
            first = reference[0] if isinstance(reference, list) and reference else {}
            same = same and isinstance(predicted, list) and bool(predicted)
            same = same and predicted[0] == first.get("prediction")  # type: ignore[index]
        else:
            same = same and without_ids(answer) == without_ids(reference)
    if not same:
        raise RuntimeError(f"the servers answered the same row differently: {answers}")


def profile(load: Load, count: int) -> tuple[Profile | None, str]:
    """Sample BentoML's worker with py-spy during one more round; the profile, or why not."""
    workers = bentoml_workers(load.pids[0])
    if not workers:
        return None, "no BentoML worker process found to profile"
    output = BENCH / "profile-bentoml.txt"
    output.unlink(missing_ok=True)
    with py_spy(workers[0], output) as spy:
        tally = asyncio.run(send(load.port, load.request, count, load.concurrency))
    if not output.exists() or not output.stat().st_size:
        log = output.with_suffix(".log").read_text(errors="replace")[-500:].strip()
        return None, f"py-spy could not sample the worker (exit {spy.returncode}): {log}"
    return read_profile(output, len(tally.latencies), load.rows, load.concurrency), ""


def serve_estimator(
    project: Project,
    plan: Plan,
    estimator: str,
    row: dict[str, float],
    figures: Figures,
    lit: str | None,
) -> None:
    """Every server, with every worker count of `plan`, side by side, their rounds interleaved;
    for the run's first estimator, BentoML's one-worker process profiled with 16-row requests."""
    loads: list[Load] = []
    with ExitStack() as stack:
        answers: dict[str, object] = {}
        for workers in plan.workers:
            for server in servers(project, workers, lit):
                port, pid = stack.enter_context(serving(server, project))
                pids = (pid, *(child for child, _ in descendants(pid)))
                if workers == plan.workers[0]:
                    answers[server.label] = answer_of(server, port, row)
                for concurrency in plan.concurrencies:
                    for rows in plan.bodies:
                        request = server.request(port, [row] * rows)
                        loads.append(
                            Load(
                                server.name,
                                server,
                                port,
                                pids,
                                request,
                                rows,
                                concurrency,
                                estimator,
                                plan.task,
                            )
                        )
        check_answers(answers)
        print(f"  {len(loads)} loads, {plan.rounds} round(s) each ...", flush=True)
        measured = measure_loads(loads, plan)
        figures.results.extend(measured)
        if estimator == figures.plan.estimators[0]:
            target = max(
                (m for m in measured if m.load.server.label == BENTOML),
                key=lambda m: (-m.load.server.workers, m.rows, -m.load.concurrency),
            )
            print("  profiling BentoML's worker with py-spy ...", flush=True)
            figures.profile, figures.profile_note = profile(target.load, target.requests)


def variants(project: Project, row: dict[str, float], figures: Figures) -> None:
    """Each of VARIANTS beside the service as generated (started before service.py is edited),
    their rounds interleaved, single rows from 8 connections; then the competent FastAPI app
    with 2 workers, on `uvicorn --workers 2` and on the TCP_NODELAY listener, for `workers=2`."""
    plan = figures.plan
    reference_server = bentoml_server(project, 1)
    with serving(reference_server, project) as (reference_port, reference_pid):
        reference = Load(
            "BentoML, as generated",
            reference_server,
            reference_port,
            (reference_pid, *(child for child, _ in descendants(reference_pid))),
            reference_server.request(reference_port, [row]),
            1,
            8,
        )
        for label, variant in VARIANTS.items():
            started = serving(reference_server, project, variant.env)
            with edited_service(project, variant.edits), started as (port, pid):
                workers = bentoml_workers(pid)
                pids = (pid, *(child for child, _ in descendants(pid)))
                request = reference_server.request(port, [row])
                server = replace(reference_server, workers=max(1, len(workers)))
                tried = Load(label, server, port, pids, request, 1, 8)
                before = [cpu_seconds(worker) for worker in workers]
                figures.beside[label], measured = measure_loads([reference, tried], plan)
                used = [cpu_seconds(worker) - b for worker, b in zip(workers, before, strict=True)]
            if len(used) > 1 and sum(used) > 0:
                figures.spread[label] = [seconds / sum(used) for seconds in used]
            figures.variants.append(measured)
    for nodelay, how in (
        (False, "`uvicorn --workers 2`"),
        (True, "TCP_NODELAY listener (`fastapi_workers.py`)"),
    ):
        fastapi = fastapi_server(project, 2, nodelay=nodelay)
        with serving(fastapi, project) as (port, pid):
            pids = (pid, *(child for child, _ in descendants(pid)))
            request = fastapi.request(port, [row])
            load = Load(f"{FASTAPI}, 2 workers, {how}", fastapi, port, pids, request, 1, 8)
            figures.variants.extend(measure_loads([load], plan))


def bentoml_workers(pid: int) -> list[int]:
    """The worker processes `bentoml serve` started."""
    return [child for child, command in descendants(pid) if "_bentoml_impl.worker" in command]


def verdict(met: bool) -> str:
    return "**met**" if met else "**NOT met**"


def model_text(model: tuple[str, str]) -> str:
    """A model's name in the report: its estimator, then its task."""
    task, estimator = model
    return f"`{estimator}` ({task})"


def ratio_goal(
    figures: Figures, model: tuple[str, str], other: str, goal: float, rows: int
) -> tuple[str, bool] | None:
    ours, theirs = (
        figures.find(model, BENTOML, rows=rows),
        figures.find(model, other, rows=rows),
    )
    if ours is None or theirs is None:
        return None
    ratio = ours.rps / theirs.rps
    met = ratio >= goal
    return (
        f"- {model_text(model)}, {rows} row{'s' if rows > 1 else ''} per request, "
        f"BentoML / {other}: **{ratio:.2f}x** ({ours.rps * rows:.0f} against "
        f"{theirs.rps * rows:.0f} rows/s; goal at least {goal}x): {verdict(met)}.",
        met,
    )


def goals(figures: Figures) -> tuple[list[str], bool]:
    """The goal lines, and whether every goal was met."""
    found: list[tuple[str, bool]] = []
    models = figures.plan.models()
    for model in models:
        goal = GOAL_CHEAP if model[1] in CHEAP_MODELS else GOAL_EXPENSIVE
        for rows in figures.plan.bodies:
            line = ratio_goal(figures, model, FASTAPI_WORK, goal, rows)
            if line:
                found.append(line)
        line = ratio_goal(figures, model, MLFLOW, GOAL_VS_MLFLOW, 1)
        if line:
            found.append(line)
    for model in (model for model in models if model[1] in CHEAP_MODELS):
        for rows in figures.plan.bodies:
            line = p99_goal(figures, model, rows)
            if line:
                found.append(line)
    everything = [*figures.results, *figures.variants]
    failures = sum(m.non_2xx + sum(m.errors.values()) for m in everything)
    found.append(
        (
            f"- Errors and non-2xx answers, every server and load: **{failures}** (goal zero): "
            f"{verdict(not failures)}.",
            not failures,
        )
    )
    return [line for line, _ in found], all(met for _, met in found)


def p99_goal(figures: Figures, model: tuple[str, str], rows: int) -> tuple[str, bool] | None:
    """BentoML's p99 for a cheap model, against GOAL_P99_MS."""
    cheap = figures.find(model, BENTOML, rows=rows)
    if cheap is None:
        return None
    p99 = cheap.percentile_ms(99)
    return (
        f"- {model_text(model)}, {rows} row{'s' if rows > 1 else ''} per request, BentoML's "
        f"p99: **{p99:.1f} ms** (goal at most {GOAL_P99_MS:.0f} ms): "
        f"{verdict(p99 <= GOAL_P99_MS)}.",
        p99 <= GOAL_P99_MS,
    )


def explanation(figures: Figures, met: bool) -> str:
    """What bounds the missed goals, from this run's figures."""
    if met:
        return "Every goal is met."
    found = figures.profile
    http = ""
    if found is not None and found.samples:
        per_request = 1000 / PROFILE_RATE / found.requests
        own = found.parts.get(HTTP_PART, 0) + found.parts.get(LOOP_PART, 0)
        model = found.parts.get(MODEL_PART, 0)
        http = (
            f" In BentoML's profile ({found.rows}-row requests) HTTP, ASGI and the event loop "
            f"took about {own * per_request:.2f} ms of the worker's GIL per request and the model "
            f"{model * per_request:.2f} ms: the first is a per-request cost any Python server on "
            "uvicorn pays, the second what batching can share between requests."
        )
    return (
        "Where a goal is not met, the rows/s per server CPU-second column shows whether the gap "
        "is work per row (a lower figure) or waiting (the same figure at a lower rate)." + http
    )


def results_section(figures: Figures) -> str:
    parts = []
    for model in figures.plan.models():
        measured = [m for m in figures.results if (m.load.task, m.load.estimator) == model]
        measured.sort(
            key=lambda m: (
                m.load.server.workers,
                m.load.concurrency,
                m.rows,
                ORDER.index(m.load.server.label),
            )
        )
        parts += [f"### {model_text(model)}", "", TABLE_HEAD, *(m.row() for m in measured), ""]
    return "\n".join(parts).rstrip()


def profile_section(figures: Figures) -> str:
    found = figures.profile
    if found is None:
        return f"Not profiled: {figures.profile_note}."
    per_request = 1000 / PROFILE_RATE / found.requests
    rows = [
        "| part of the request path | share of samples | GIL ms per request (approx.) "
        "| GIL µs per row (approx.) |",
        "|---|---:|---:|---:|",
        *(
            f"| {part} | {100 * n / found.samples:.1f}% | {n * per_request:.2f} | "
            f"{1000 * n * per_request / found.rows:.0f} |"
            for part, n in found.parts.items()
        ),
    ]
    return "\n".join(
        [
            f"py-spy {PROFILE_RATE} samples/s on BentoML's worker process (`py-spy record --gil`:"
            " only while a thread holds the GIL, so idle waiting is left out) during one more "
            f"round of {found.requests} requests of {found.rows} rows from {found.concurrency} "
            "connections "
            f"(`{figures.plan.estimators[0]}`), {found.samples} samples. Each sample goes to the "
            "innermost frame it has from the table's parts (so HTTP and ASGI is what is left "
            "once the named parts are taken out). GIL ms per request is samples / rate / "
            "requests: Python time on the worker's GIL, the one resource every request shares, "
            "somewhat inflated by the sampling itself.",
            "",
            *rows,
            "",
            *garbage_note(found),
            f"The folded stacks are in `{(BENCH / 'profile-bentoml.txt').relative_to(ROOT)}`.",
        ]
    )


def garbage_note(found: Profile) -> list[str]:
    """Why a few lines that do almost nothing can hold many samples."""
    busiest = ", ".join(
        f"`{frame}` {100 * n / found.samples:.1f}%" for frame, n in found.busiest if frame
    )
    return [
        "Read the shares with care: CPython's cyclic garbage collector runs inside whichever "
        "allocation sets it off, and py-spy (without `--native`) counts its time on that "
        "Python line, so lines that only allocate can hold many samples, collecting everyone's "
        f"garbage. The busiest single lines in this profile: {busiest}.",
        "",
    ]


def variants_note(figures: Figures) -> str:
    """Each BentoML setting against the generated service; the two 2-worker FastAPI servers."""
    lines = []
    for measured in figures.variants:
        if measured.label not in figures.beside:
            continue
        generated = figures.beside[measured.label]
        problems = measured.non_2xx + sum(measured.errors.values())
        lines.append(
            f"- {measured.label.removeprefix('BentoML, ')}: {measured.rps:.0f} requests/s "
            f"against {generated.rps:.0f} ({measured.rps / generated.rps - 1:+.0%}), p99 "
            f"{measured.percentile_ms(99):.1f} ms against {generated.percentile_ms(99):.1f} ms, "
            f"slowest answer {measured.max_ms:.0f} ms against {generated.max_ms:.0f} ms"
            + (f", {problems} non-2xx answers or errors" if problems else "")
            + "."
        )
    return "\n".join(
        [
            "Each against the service as generated, served beside it in the same interleaved "
            "rounds (differences of a few percent are noise):",
            "",
            *lines,
            "",
            "Without a declared answer media type (service.py returns "
            '`Annotated[list[Prediction], ContentType("application/json")]`), BentoML 1.4.40 '
            "builds the answer type's pydantic JSON schema again for every response just to learn "
            "its media type (`IOMixin.to_http_response` calls `mime_type()`, which calls "
            "`model_json_schema()` for a list answer).",
            "",
            *freeze_note(figures),
            *spread_note(figures.spread),
            *two_workers_note(figures.variants),
        ]
    )


def freeze_note(figures: Figures) -> list[str]:
    """What `gc.freeze()` does for the slowest answers, as this run measured it."""
    unfrozen = next((each for each in figures.variants if each.label == NO_FREEZE), None)
    if unfrozen is None or NO_FREEZE not in figures.beside:
        return []
    frozen = figures.beside[NO_FREEZE]
    if unfrozen.max_ms >= FREEZE_GAIN * frozen.max_ms:
        effect = (
            f"here the slowest answer took {unfrozen.max_ms:.0f} ms without it and "
            f"{frozen.max_ms:.0f} ms with it, while the p99 moved "
            f"{unfrozen.percentile_ms(99):.1f} to {frozen.percentile_ms(99):.1f} ms"
        )
    else:
        effect = (
            f"in this run the slowest answers did not show it ({unfrozen.max_ms:.0f} ms without, "
            f"{frozen.max_ms:.0f} ms with)"
        )
    return [
        "The service calls `gc.freeze()` once the model is loaded: the garbage collector's "
        "full passes then leave out what every worker loads at start (BentoML, scikit-learn, "
        "pydantic, the model). Without it each full pass walks all of that again, and every "
        f"request in flight waits for it; {effect}.",
        "",
    ]


def spread_note(spread: dict[str, list[float]]) -> list[str]:
    """How the variants with several workers split the work between them."""
    lines = []
    for label, shares in spread.items():
        lines += [
            f"With {label.removeprefix('BentoML, ')}, the workers' shares of the CPU time they "
            f"used over its rounds were {', '.join(f'{share:.0%}' for share in shares)}. The "
            "workers share one listening socket, and each of the benchmark's keep-alive "
            "connections, all opened at once, stays with the worker that accepted it: the split "
            "of the work is the split of the connections.",
            "",
        ]
    return lines


def two_workers_note(tried: list[Measured]) -> list[str]:
    """What TCP_NODELAY did for `uvicorn --workers 2`, from its figures and the fixed listener's."""
    fastapi = [m for m in tried if m.label.startswith("FastAPI")]
    if len(fastapi) != 2:
        return []
    plain, fixed = fastapi
    figures = (
        f"FastAPI with `uvicorn --workers 2` answered {plain.rps:.0f} req/s at a p50 of "
        f"{plain.percentile_ms(50):.1f} ms, against {fixed.rps:.0f} req/s and "
        f"{fixed.percentile_ms(50):.1f} ms for the same supervisor on a listener made with "
        "`IPPROTO_TCP` (`build/bench-serving/fastapi_workers.py`). uvicorn binds the listener "
        "for `--workers N` with proto 0, so asyncio leaves TCP_NODELAY off on the accepted "
        "sockets (uvicorn issue Kludex/uvicorn#3149); with one worker uvicorn lets asyncio make "
        "the listener and the flag is set. Without the flag a keep-alive answer can wait for "
        "the client's delayed ACK, about 40 ms"
    )
    if fixed.rps >= NODELAY_GAIN * plain.rps:
        return [
            f"{figures}, as it did here: a plain FastAPI deployment with `--workers N` on "
            "Linux meets the same delay."
        ]
    return [
        f"{figures}; in this run the listener with the flag was not {NODELAY_GAIN - 1:.0%} "
        "faster, so that delay did not show."
    ]


def statuses_line(everything: list[Measured]) -> str:
    odd = [m for m in everything if m.non_2xx or sum(m.errors.values())]
    if not odd:
        return (
            "Every request of every round was answered 2xx: no 503 from BentoML's batching "
            "dispatcher, no 429 from its concurrency limit, no connection errors or timeouts."
        )
    return "Answers other than 2xx, and errors:\n\n" + "\n".join(
        f"- {m.label} ({model_text((m.load.task, m.load.estimator))}, "
        f"{m.load.concurrency} connections, {m.rows} rows): "
        f"statuses {dict(m.statuses)}, errors {dict(m.errors)}"
        for m in odd
    )


def regression_text(plan: Plan) -> str:
    """The page's paragraph on the regression bake, if the run measured one."""
    if not plan.regression:
        return ""
    measured = regression_plan(plan)
    estimators = ", ".join(f"`{name}`" for name in measured.estimators)
    bodies = " and ".join(f"{rows}-row" for rows in measured.bodies)
    return (
        "\n**Regression.** Then a second bake, with the cookiecutter answer `task=regression` "
        f"(the diabetes data), in `{REGRESSION_BENCH.relative_to(ROOT)}/`: the same steps for "
        f"{estimators} (its linear model, the cheap one, held to the cheap model's goals), "
        f"served the same ways with {workers_text(measured)} from "
        f"{' or '.join(map(str, measured.concurrencies))} connections, {bodies} bodies. For "
        "a regressor `scoring.predict` makes one `predict` call and every answer carries the "
        "predicted value, no probability; the service, and the same-work app, observe each "
        "predicted value in a histogram on /metrics where they count a classifier's classes; the "
        "naive app calls `predict` only. Its tables and goals are marked `(regression)`.\n"
    )


def workers_text(plan: Plan) -> str:
    counts = " and ".join(str(n) for n in plan.workers)
    return f"{counts} worker{'s' if plan.workers != (1,) else ''} each ({CORES} cores here)"


def report(figures: Figures, package: str) -> str:
    """docs/benchmarks-serving.md (or the smoke run's page), from this run's figures."""
    plan = figures.plan
    goal_lines, met = goals(figures)
    everything = [*figures.results, *figures.variants, *figures.beside.values()]
    variants = ""
    if figures.variants:
        variants = VARIANTS_PAGE.format(
            estimator=plan.estimators[0],
            head=TABLE_HEAD,
            rows="\n".join(measured.row() for measured in figures.variants),
            note=variants_note(figures),
        )
    return PAGE.format(
        date=figures.facts["date"],
        package=package,
        estimators=", ".join(f"`{name}`" for name in plan.estimators),
        host=HOST,
        workers_text=workers_text(plan),
        bentoml=BENTOML,
        fastapi=FASTAPI,
        fastapi_work=FASTAPI_WORK,
        litserve=LITSERVE,
        litserve_text=(
            f"{figures.litserve_note}, installed with `uv pip install litserve` into a virtualenv "
            "of its own that sees the bake's packages after its own (`litserve_app.py`): "
            "`decode_request` validates each row with `row_model` and makes a float array, "
            f"batches of up to {LIT_MAX_BATCH} requests (waiting at most "
            f"{1000 * LIT_BATCH_TIMEOUT:.0f} ms for them) are scored with one `predict_proba` "
            "through `scoring.predict`, each answer gets its prediction ids; `workers_per_device` "
            "and `num_api_servers` are the number of workers. LitServe runs its API servers and "
            "its inference workers in separate processes, so one worker is two processes (the "
            "rows per server CPU-second count both)."
            if figures.litserve_note.startswith("LitServe")
            else f"not measured: {figures.litserve_note}."
        ),
        mlflow=MLFLOW,
        naive=NAIVE,
        regression=regression_text(plan),
        event_loop=figures.event_loop,
        concurrencies=" or ".join(str(n) for n in plan.concurrencies),
        warm_up=plan.warm_up,
        round_seconds=plan.round_seconds,
        min_requests=plan.min_requests,
        rounds=plan.rounds,
        request_timeout=REQUEST_TIMEOUT,
        run_timeout=RUN_TIMEOUT,
        client_cpu=max(run.client_cpu for measured in everything for run in measured.runs),
        machine="\n".join(f"- {name}: {value}" for name, value in figures.facts.items()),
        quiet_wait=QUIET_WAIT,
        quiet_load=QUIET_LOAD,
        results=results_section(figures),
        statuses=statuses_line(everything),
        goals="\n".join(goal_lines),
        explanation=explanation(figures, met),
        profile=profile_section(figures),
        variants=variants,
    )


def measure(plan: Plan, keep_bake: bool) -> tuple[Figures, str]:
    project = baked(CLASSIFICATION, BENCH, keep_bake)
    # After the classification bake: a new one empties BENCH, the regression bake's folder too.
    regression = baked(REGRESSION, REGRESSION_BENCH, keep_bake) if plan.regression else None
    check_variants(project)
    lit, lit_note = baselines(project)
    figures = Figures(plan, litserve_note=lit_note)
    figures.facts = machine(project, PACKAGES)
    measure_bake(project, plan, figures, lit)
    if regression is not None:
        print(f"{REGRESSION} bake:", flush=True)
        lit, _ = baselines(regression)
        measure_bake(regression, regression_plan(plan), figures, lit)
    figures.facts["load average (1, 5, 15 min) at end"] = load_average()
    figures.event_loop = event_loop(project)
    return figures, project.package


def baselines(project: Project) -> tuple[str | None, str]:
    """The baselines' apps written beside the bake, and LitServe installed: its Python, or None,
    and what was installed or why not."""
    write_apps(project)
    lit, lit_note = litserve(project)
    print(f"  {lit_note}")
    return lit, lit_note


def measure_bake(project: Project, plan: Plan, figures: Figures, lit: str | None) -> None:
    """Each of `plan`'s estimators made the champion of `project` and served every way."""
    for estimator in plan.estimators:
        print(f"{estimator}:", flush=True)
        champion(project, estimator)
        row = test_row(project)
        if figures.plan is FULL:
            print("waiting for a quiet machine ...")
            figures.facts[f"load average (1, 5, 15 min) before `{estimator}`"] = wait_for_quiet()
        serve_estimator(project, plan, estimator, row, figures, lit)
        if plan.variants and estimator == plan.estimators[0]:
            print("  other BentoML settings, in this bake's copy of service.py ...")
            variants(project, row, figures)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="a short run: one estimator a bake, one worker, one round",
    )
    parser.add_argument(
        "--keep-bake", action="store_true", help="reuse the bakes an earlier run left"
    )
    options = parser.parse_args()
    plan = SMOKE if options.smoke else FULL
    start = time.monotonic()
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)
    atexit.register(stop_all)
    try:
        figures, package = measure(plan, options.keep_bake)
    except RuntimeError as error:
        sys.exit(f"ERROR: {error}")
    finally:
        stop_all()
    plan.report.write_text(report(figures, package), encoding="utf-8")
    minutes = (time.monotonic() - start) / 60
    print(f"\nwrote {plan.report.relative_to(ROOT)} after {minutes:.1f} minutes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
