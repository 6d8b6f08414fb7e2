"""Serve the same champion three ways and load each with the same single-row requests.

One run bakes the default project into build/bench-serving/, runs `make setup`, `make repro`,
`make promote` and `python -m <package> champion` in it, then serves that champion three ways
at once, each on 127.0.0.1 and a free port:

- the generated BentoML service, as `make serve` starts it (`bentoml serve`);
- a plain FastAPI app on uvicorn, written here, with the package's own request row type and the
  same estimator from the registry (`registry.load_registered`);
- `mlflow models serve` on `models:/<name>@champion`, MLflow's own scoring server.

Each gets a warm-up, then rounds of a fixed number of POSTs from a fixed number of concurrent
keep-alive connections, one server's round after another's (round 1 of each, then round 2,
and so on: the other jobs on a shared machine slow them alike), sent by a small asyncio client
in this process (raw streams, no HTTP library): every request is timed and every status
counted. wrk is not used because it runs for a set duration and cannot send an exact number
of requests. BentoML is also loaded with 16-row requests, profiled with py-spy (through
`uv run --with py-spy`, when it can attach), and tried with other settings in this bake's copy
of service.py, each beside the service as generated; the main table uses the service as
generated. Every server's process group, and the processes it started, is stopped at the end,
on errors and on SIGTERM too.

Run it from the template repository's root, with `uv` on PATH:
`uv run --locked python benchmarks/serving.py`. It rewrites docs/benchmarks-serving.md.
"""

from __future__ import annotations

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

import yaml

from _bake import (
    QUIET_LOAD,
    QUIET_WAIT,
    ROOT,
    Project,
    bake,
    load_average,
    machine,
    make,
    parse_command_line,
    quiet_env,
    run,
    wait_for_quiet,
)

BENCH = ROOT / "build" / "bench-serving"
REPORT = ROOT / "docs" / "benchmarks-serving.md"
HOST = "127.0.0.1"
CONCURRENCY = 8
WARM_UP = 300
REQUESTS = 3000
ROUNDS = 3
BATCH_ROWS = 16
REQUEST_TIMEOUT = 15.0  # longer than the service's own 10 s traffic timeout
RUN_TIMEOUT = 300.0
START_TIMEOUT = 180.0
STOP_TIMEOUT = 20.0
PROFILE_RATE = 250
PROFILE_ATTACH = 1.0
GOAL_VS_FASTAPI = 1.5
GOAL_VS_MLFLOW = 6.0
GOAL_P99_MS = 15.0
# How much faster the TCP_NODELAY listener must be for the note to call the delayed ACK the cause.
NODELAY_GAIN = 1.2
# The slowest answer without gc.freeze() must be this many times the generated service's to count.
FREEZE_GAIN = 2.0
SETUP_TARGETS = ("setup", "repro", "promote")

# Other settings tried in this bake's copy of service.py: label -> [(generated text, new text)].
GENERATED_API = "@bentoml.api(batchable=True, max_batch_size=256, max_latency_ms=1000)"
GENERATED_TRAFFIC = 'traffic={"timeout": 10, "max_concurrency": 256},'
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
    "answer serialisation": ("to_http_response", "serialize_model", "IterableResponse"),
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

# The plain baseline: FastAPI on uvicorn, the package's row type, the registry's champion.
FASTAPI_APP = '''\
"""A plain FastAPI app serving the registry's champion with the service's own row type."""

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
(Kludex/uvicorn#3149). Arguments: host, port, workers.
"""

import socket
import sys

import uvicorn
from uvicorn.supervisors import Multiprocess


def main() -> None:
    host, port, workers = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    config = uvicorn.Config("fastapi_app:app", host=host, port=port, workers=workers)
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
PACKAGES = ["bentoml", "fastapi", "uvicorn", "starlette", "pydantic", "mlflow"]
PACKAGES += ["scikit-learn", "pandas"]
COLUMNS = ("server", "rows per request", "requests", "requests/s", "rows/s", "p50 ms", "p99 ms")
COLUMNS += ("max ms", "non-2xx", "errors", "client CPU")
TABLE_HEAD = f"| {' | '.join(COLUMNS)} |\n|---|{'---:|' * (len(COLUMNS) - 1)}"

PAGE = """\
# Serving benchmark

Written by `benchmarks/serving.py` (`uv run --locked python benchmarks/serving.py`)
on {date}. Every figure below is from that run: rerun it rather than editing this page.

## What is measured

The default bake in `build/bench-serving/`, after `make setup`, `make repro`, `make promote` and
`python -m {package} champion`: one champion, served three ways at once, each on
{host} and a free port, started from the bake's `.venv` and waited for until it answers its
readiness probe. The champion is {estimator}.

- **BentoML**: the generated service as `make serve` starts it,
  `bentoml serve {package}.serving.service:Champion`, which runs
  {bentoml_processes}.
  POST /predict with `{{"rows": [row]}}`; it validates with the row type from `api_schema.py`,
  scores a float array of the rows with one `predict_proba` (`scoring.predict`) through
  adaptive batching (`max_batch_size=256, max_latency_ms=1000`), counts predictions for
  /metrics and appends each row to the inference log; BentoML adds its request metrics. Its
  access log and tracing spans are off for /predict as generated (settings further down).
- **FastAPI**: a plain FastAPI app on uvicorn with 1 worker (`--workers 1`:
  {fastapi_workers}), written by the benchmark into
  `build/bench-serving/fastapi_app.py`: the same request shape (`{{"rows": [...]}}` validated by
  the package's `row_model`, 1 to `MAX_ROWS` rows), `prediction_model` answers with a
  `prediction_id` per row made as the service makes it, the estimator from
  `registry.load_registered`, `predict` and `predict_proba` on a DataFrame of the rows, in
  a plain `def` endpoint. No batching, metrics or inference log; uvicorn's access log on (its
  default). FastAPI and uvicorn are already in the project's environment: uvicorn and Starlette
  come with BentoML, FastAPI with MLflow. {event_loop}
- **mlflow serve**: `mlflow models serve -m models:/<name>@champion --env-manager local` (one
  uvicorn worker, its default), POST /invocations with `{{"dataframe_records": [row]}}`; MLflow's
  pyfunc wrapper around the skops file (`MLFLOW_ALLOW_PICKLE_DESERIALIZATION=true` lets it load),
  which answers `predict` only, no probability and no prediction id.

**Load.** The first test-set row, the same for every server; the three servers' answers to it
are checked to agree. {concurrency} concurrent keep-alive connections, each sending its next
request as soon as the previous answer is in; per server and body {warm_up} warm-up requests,
then {rounds} rounds of {requests} requests, counted exactly, one server at a time but
interleaved: the first round of every server and body, then the second, and so on, so that a
change in the speed of a shared machine falls on all of them alike. Requests/s is answers over
the round's wall time; latency runs from writing a request to reading the last byte of its
answer. Each figure is the median of the rounds; ranges are in brackets; "max" is the slowest
single answer of all the rounds; non-2xx answers and errors are summed over the rounds. A
request may take {request_timeout:.0f} s and a round {run_timeout:.0f} s; a request that fails
or times out is an error.

**Client.** A small asyncio client in the benchmark's own process (raw streams, HTTP/1.1
keep-alive, no HTTP library), not `wrk`: wrk 4.1 runs for a set duration, so it cannot send an
exact number of requests (a Lua `wrk.thread:stop()` ends the thread, but wrk still sleeps out
the whole `-d` and divides by it). The client shares the machine's cores with the server; its
CPU use, as a share of one core, is in the table ({client_cpu:.0%} at most), the same kind of
cost for every server.

## Machine

{machine}

The other jobs on the machine are not ours: the benchmark waits up to {quiet_wait:.0f} s for the
1-minute load average to drop below {quiet_load} before measuring, and measures anyway after
that.

## Results

{head}
{results}

{statuses}

## Against the goals

{goals}

{explanation}

## Where BentoML's time goes

{profile}

## Other BentoML settings

{variants_intro}

{head}
{variants}

{variants_note}
"""


@dataclass(frozen=True)
class Server:
    """How to start one server and talk to it."""

    key: str
    label: str
    command: Callable[[int], list[str]]
    ready_path: str
    predict_path: str
    body_key: str

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
    """One timed round of requests."""

    seconds: float
    client_cpu: float
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
    """One server and the request to send it, again and again."""

    label: str
    port: int
    request: bytes
    rows: int


@dataclass(frozen=True)
class Measured:
    """The rounds against one server with one request body."""

    label: str
    rows: int
    runs: tuple[Run, ...]

    @property
    def rps(self) -> float:
        return statistics.median(run.rps for run in self.runs)

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
            f"| {self.label} | {self.rows} | {answered} | {self.rps:.0f} "
            f"({min(rps):.0f}-{max(rps):.0f}) | {self.rps * self.rows:.0f} | "
            f"{self.percentile_ms(50):.1f} | {self.percentile_ms(99):.1f} "
            f"({min(p99):.1f}-{max(p99):.1f}) | {self.max_ms:.0f} | {self.non_2xx} | "
            f"{sum(self.errors.values())} | "
            f"{100 * cpu:.0f}% |"
        )

    def summary(self) -> str:
        return (
            f"{self.label}, {self.rows} row(s): {self.rps:.0f} req/s, "
            f"p50 {self.percentile_ms(50):.1f} ms, p99 {self.percentile_ms(99):.1f} ms, "
            f"statuses {dict(self.statuses)}, errors {dict(self.errors)}"
        )


@dataclass(frozen=True)
class Profile:
    """py-spy's samples of the BentoML worker while it answered a round of requests."""

    samples: int
    requests: int
    parts: dict[str, int]
    busiest: list[tuple[str, int]]


@dataclass(frozen=True)
class Figures:
    """Everything one benchmark run measured."""

    facts: dict[str, str]
    estimator: str
    bentoml_workers: int
    results: dict[str, Measured]
    profile: Profile | None
    profile_note: str
    variants: list[Measured]
    beside: dict[str, Measured] = field(default_factory=dict)
    # label -> each worker's share of the CPU time, for the variants with more than one worker
    spread: dict[str, list[float]] = field(default_factory=dict)
    event_loop: str = ""


# Every server still running, so an error or a signal stops them all.
RUNNING: dict[int, subprocess.Popen[bytes]] = {}


def setup(path: Path) -> Project:
    """Install, run the pipeline, promote the challenger and store the champion for BentoML."""
    env = quiet_env({"BENTOML_HOME": str(path / ".bentoml")})
    make(path, SETUP_TARGETS, env)
    serving_env = {
        "BENTOML_HOME": str(path / ".bentoml"),
        "MLFLOW_TRACKING_URI": f"sqlite:///{path / 'mlflow.db'}",
        "MLFLOW_ALLOW_PICKLE_DESERIALIZATION": "true",
    }
    project = Project.baked(path, serving_env)
    print("  " + run([project.python, "-m", project.package, "champion"], path, env).strip())
    return project


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
    return f"{installed}, so all three servers run uvicorn on {loop} with the {parser} parser."


def write_app(project: Project) -> None:
    app = FASTAPI_APP.replace("PACKAGE", project.package)
    (BENCH / "fastapi_app.py").write_text(app, encoding="utf-8")
    (BENCH / "fastapi_workers.py").write_text(FASTAPI_WORKERS, encoding="utf-8")


def test_row(project: Project) -> dict[str, float]:
    """The first test-set row, features only, typed as the schema says."""
    lines = (project.path / "data" / "prepared" / "test.csv").read_text().splitlines()
    row = dict(zip(lines[0].split(","), lines[1].split(","), strict=True))
    probe = FEATURE_TYPES.replace("PACKAGE", project.package)
    kinds = json.loads(run([project.python, "-c", probe], project.path, project.env))
    return {name: (int if kind == "int" else float)(row[name]) for name, kind in kinds.items()}


def servers(project: Project) -> list[Server]:
    """The three ways to serve the champion."""
    bentoml = project.tool("bentoml")
    service = f"{project.package}.serving.service:Champion"
    uri = f"models:/{project.model_name}@champion"
    return [
        Server(
            "bentoml",
            "BentoML",
            lambda port: [bentoml, "serve", service, "--host", HOST, "--port", str(port)],
            "/readyz",
            "/predict",
            "rows",
        ),
        fastapi_server(project, workers=1),
        Server(
            "mlflow",
            "mlflow serve",
            lambda port: [
                *(project.tool("mlflow"), "models", "serve", "-m", uri),
                *("--env-manager", "local", "--host", HOST, "--port", str(port)),
            ],
            "/ping",
            "/invocations",
            "dataframe_records",
        ),
    ]


def fastapi_server(project: Project, workers: int, nodelay: bool = False) -> Server:
    """FastAPI on `uvicorn --workers N`, or on uvicorn's supervisor with a TCP_NODELAY listener."""
    python = project.python
    label = f"FastAPI + uvicorn, {workers} worker{'s' if workers > 1 else ''}"
    if nodelay:
        return Server(
            "fastapi",
            f"{label}, TCP_NODELAY listener (`fastapi_workers.py`)",
            lambda port: [python, str(BENCH / "fastapi_workers.py"), HOST, str(port), str(workers)],
            "/readyz",
            "/predict",
            "rows",
        )
    return Server(
        "fastapi",
        f"{label} (`--workers {workers}`)",
        lambda port: [
            *(python, "-m", "uvicorn", "fastapi_app:app", "--app-dir", str(BENCH)),
            *("--host", HOST, "--port", str(port), "--workers", str(workers)),
        ],
        "/readyz",
        "/predict",
        "rows",
    )


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
    """Start `server` in its own process group, with `settings` added to the project's
    environment; yield its port and pid once it is ready."""
    port = free_port()
    slug = re.sub(r"[^a-z0-9]+", "-", server.label.lower()).strip("-")
    log = BENCH / f"server-{slug}.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            server.command(port),
            cwd=project.path,
            env={**project.env, **dict(settings)},
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    RUNNING[process.pid] = process
    try:
        seconds = wait_ready(process, port, server.ready_path, log)
        print(f"  {server.label}: ready on port {port} after {seconds:.1f} s")
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


async def send(port: int, request: bytes, count: int) -> Tally:
    """`count` requests from CONCURRENCY connections, within RUN_TIMEOUT."""
    tally = Tally(count)
    connections = [connection_loop(port, request, tally) for _ in range(CONCURRENCY)]
    try:
        await asyncio.wait_for(asyncio.gather(*connections), RUN_TIMEOUT)
    except TimeoutError:
        failed = sum(tally.errors.values())
        tally.errors["not answered within the round's time limit"] += (
            count - len(tally.latencies) - failed
        )
    return tally


def timed_round(port: int, request: bytes, count: int) -> Run:
    cpu, start = time.process_time(), time.perf_counter()
    tally = asyncio.run(send(port, request, count))
    seconds = time.perf_counter() - start
    return Run(seconds, (time.process_time() - cpu) / seconds, tally)


def measure_loads(loads: list[Load]) -> list[Measured]:
    """A warm-up for each load, then ROUNDS rounds in which each load gets REQUESTS requests in
    turn: loads measured together meet the same changes in the machine's speed."""
    for load in loads:
        asyncio.run(send(load.port, load.request, WARM_UP))
    runs: list[list[Run]] = [[] for _ in loads]
    for _ in range(ROUNDS):
        for load, done in zip(loads, runs, strict=True):
            done.append(timed_round(load.port, load.request, REQUESTS))
    measured = [
        Measured(load.label, load.rows, tuple(done)) for load, done in zip(loads, runs, strict=True)
    ]
    for each in measured:
        print(f"    {each.summary()}")
    return measured


def answer_of(server: Server, port: int, row: dict[str, float]) -> object:
    """What the server answers for `row`, in its own format."""
    return json.loads(http(port, server.predict_path, server.body([row]), REQUEST_TIMEOUT))


def without_ids(answer: object) -> object:
    """An answer of BentoML or FastAPI without its prediction ids, new for every request."""
    if not isinstance(answer, list):
        return answer
    return [{k: v for k, v in item.items() if k != "prediction_id"} for item in answer]


def check_answers(answers: dict[str, object]) -> None:
    """BentoML and FastAPI answer alike but for their prediction ids; mlflow serve predicts the
    same class."""
    bentoml, fastapi, mlflow = answers["bentoml"], answers["fastapi"], answers["mlflow"]
    same = (
        isinstance(bentoml, list)
        and isinstance(fastapi, list)
        and without_ids(bentoml) == without_ids(fastapi)
        and all(isinstance(item.get("prediction_id"), str) for item in [*bentoml, *fastapi])
        and isinstance(mlflow, dict)
        and mlflow["predictions"][0] == bentoml[0]["prediction"]
    )
    if not same:
        raise RuntimeError(f"the servers answered the same row differently: {answers}")


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


def profile(pid: int, port: int, request: bytes) -> tuple[Profile | None, str]:
    """Sample BentoML's worker with py-spy during one more round; the profile, or why not."""
    workers = bentoml_workers(pid)
    if not workers:
        return None, "no BentoML worker process found to profile"
    output = BENCH / "profile-bentoml.txt"
    output.unlink(missing_ok=True)
    with py_spy(workers[0], output) as spy:
        tally = asyncio.run(send(port, request, REQUESTS))
    if not output.exists() or not output.stat().st_size:
        log = output.with_suffix(".log").read_text(errors="replace")[-500:].strip()
        return None, f"py-spy could not sample the worker (exit {spy.returncode}): {log}"
    return read_profile(output, len(tally.latencies)), ""


def part_of(frames: list[str]) -> str:
    """The part of the request path a sampled stack belongs to: its innermost known frame."""
    for frame in reversed(frames):
        for label, patterns in PROFILE_PARTS.items():
            if any(pattern in frame for pattern in patterns):
                return label
    return "other"


def read_profile(path: Path, requests: int) -> Profile:
    """py-spy's folded stacks, summed by part of the request path and by innermost line."""
    parts: Counter[str] = Counter()
    lines: Counter[str] = Counter()
    for line in path.read_text(encoding="utf-8").splitlines():
        stack, _, count = line.rpartition(" ")
        frames = stack.split(";")
        parts[part_of(frames)] += int(count)
        lines[frames[-1]] += int(count)
    samples = sum(parts.values())
    return Profile(samples, requests, dict(parts.most_common()), lines.most_common(3))


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


def variants(
    project: Project, bentoml: Server, row: dict[str, float]
) -> tuple[list[Measured], dict[str, Measured], dict[str, list[float]]]:
    """Each of VARIANTS beside the service as generated (started before service.py is edited),
    their rounds interleaved; then FastAPI with 2 workers for `workers=2`, twice.

    Returns the variants' figures, the generated service's figures beside each of them, and how
    the CPU time was split between the workers of the variants with more than one.
    """
    results, beside, spread = [], {}, {}
    with serving(bentoml, project) as (reference_port, _):
        request = bentoml.request(reference_port, [row])
        reference = Load("BentoML, as generated", reference_port, request, 1)
        for label, variant in VARIANTS.items():
            started = serving(bentoml, project, variant.env)
            with edited_service(project, variant.edits), started as (port, pid):
                tried = Load(label, port, bentoml.request(port, [row]), 1)
                workers = bentoml_workers(pid)
                before = [cpu_seconds(worker) for worker in workers]
                beside[label], measured = measure_loads([reference, tried])
                used = [cpu_seconds(worker) - b for worker, b in zip(workers, before, strict=True)]
            if len(used) > 1 and sum(used) > 0:
                spread[label] = [seconds / sum(used) for seconds in used]
            results.append(measured)
    for fastapi in (fastapi_server(project, 2), fastapi_server(project, 2, nodelay=True)):
        with serving(fastapi, project) as (port, _):
            load = Load(fastapi.label, port, fastapi.request(port, [row]), 1)
            results.extend(measure_loads([load]))
    return results, beside, spread


def bentoml_workers(pid: int) -> list[int]:
    """The worker processes `bentoml serve` started."""
    return [child for child, command in descendants(pid) if "_bentoml_impl.worker" in command]


def cpu_seconds(pid: int) -> float:
    """The CPU time `pid` has used so far, user and system."""
    fields = proc_stat(pid)
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def processes_text(workers: int) -> str:
    plural = "es" if workers != 1 else ""
    return (
        f"the `bentoml serve` supervisor and {workers} worker process{plural} "
        "(`_bentoml_impl.worker.service`), where requests are parsed, validated and scored"
    )


def fastapi_workers_text(workers: int) -> str:
    if workers == 1:
        return "BentoML also scores in one worker process, so there is no other count to match"
    return f"BentoML scores in {workers} worker processes: see the 2-worker rows further down"


def serve_all(project: Project, row: dict[str, float]) -> Figures:
    """The three servers side by side, their rounds interleaved; then BentoML's extras."""
    loads: dict[str, Load] = {}
    with ExitStack() as stack:
        started = {}
        for server in servers(project):
            port, pid = stack.enter_context(serving(server, project))
            started[server.key] = (server, port, pid)
            loads[server.key] = Load(server.label, port, server.request(port, [row]), 1)
        answers = {key: answer_of(server, port, row) for key, (server, port, _) in started.items()}
        for key in ("bentoml", "fastapi"):
            server, port, _ = started[key]
            batch = server.request(port, [row] * BATCH_ROWS)
            loads[f"{key}-batch"] = Load(server.label, port, batch, BATCH_ROWS)
        results = dict(zip(loads, measure_loads(list(loads.values())), strict=True))
        server, port, pid = started["bentoml"]
        workers = len(bentoml_workers(pid))
        print("  profiling BentoML's worker with py-spy ...")
        found = profile(pid, port, server.request(port, [row]))
    check_answers(answers)
    print("  other BentoML settings, in this bake's copy of service.py ...")
    tried, beside, spread = variants(project, servers(project)[0], row)
    return Figures({}, "", workers, results, *found, tried, beside, spread)


def estimator(project: Project) -> str:
    params = yaml.safe_load((project.path / "params.yaml").read_text(encoding="utf-8"))
    return f"`{params['train']['estimator']}` in a scikit-learn pipeline"


def verdict(met: bool) -> str:
    return "**met**" if met else "**NOT met**"


def goals(results: dict[str, Measured]) -> tuple[list[str], dict[str, bool]]:
    """The goal lines, and which goals were met."""
    bentoml = results["bentoml"]
    vs_fastapi = bentoml.rps / results["fastapi"].rps
    vs_mlflow = bentoml.rps / results["mlflow"].rps
    p99 = bentoml.percentile_ms(99)
    failures = {key: m.non_2xx + sum(m.errors.values()) for key, m in results.items()}
    met = {
        "fastapi": vs_fastapi >= GOAL_VS_FASTAPI,
        "mlflow": vs_mlflow >= GOAL_VS_MLFLOW,
        "p99": p99 <= GOAL_P99_MS,
        "errors": not any(failures.values()),
    }
    lines = [
        f"- BentoML / FastAPI requests/s: **{vs_fastapi:.2f}x** (goal at least "
        f"{GOAL_VS_FASTAPI}x): {verdict(met['fastapi'])}.",
        f"- BentoML / mlflow serve requests/s: **{vs_mlflow:.2f}x** (goal at least "
        f"{GOAL_VS_MLFLOW}x): {verdict(met['mlflow'])}.",
        f"- BentoML p99 latency, single rows: **{p99:.1f} ms** (goal at most {GOAL_P99_MS:.0f} "
        f"ms): {verdict(met['p99'])}.",
        f"- Errors and non-2xx answers, every server and body: **{sum(failures.values())}** "
        f"(goal zero): {verdict(met['errors'])}.",
    ]
    return lines, met


def explanation(figures: Figures, met: dict[str, bool]) -> str:
    """Why the missed goals were missed, from this run's figures."""
    reasons = {"p99": p99_reason, "fastapi": fastapi_reason, "mlflow": mlflow_reason}
    lines = [reason(figures) for key, reason in reasons.items() if not met[key]]
    return "\n\n".join(lines) if lines else "Every throughput and latency goal is met."


def p99_reason(figures: Figures) -> str:
    bentoml = figures.results["bentoml"]
    floor = CONCURRENCY / (GOAL_P99_MS / 1000)
    fastest = max(figures.results[key].rps for key in ("bentoml", "fastapi", "mlflow"))
    return (
        f"**p99.** With {CONCURRENCY} requests always in flight, the mean latency is "
        f"{CONCURRENCY} / (requests/s) (Little's law): BentoML's {bentoml.rps:.0f} req/s means "
        f"{1000 * CONCURRENCY / bentoml.rps:.1f} ms on average, before any tail. A p99 of "
        f"{GOAL_P99_MS:.0f} ms at this concurrency needs well over {floor:.0f} req/s; the "
        f"fastest single-row server here answered {fastest:.0f} req/s. On these 2 shared "
        "cores the p99 goal is a throughput goal; the spread of p99 between rounds (in "
        "brackets) is the other jobs on the machine as much as the server."
    )


def fastapi_reason(figures: Figures) -> str:
    bentoml, fastapi = figures.results["bentoml"], figures.results["fastapi"]
    return (
        f"**BentoML against FastAPI.** BentoML answered {bentoml.rps / fastapi.rps:.2f}x "
        "FastAPI's requests/s. Both score in one Python worker process on the same uvicorn "
        "and pydantic, and the model itself is "
        f"{share(figures, MODEL_PART)} of BentoML's worker time in the profile "
        "below, so what decides is what each server does around it. BentoML does more per "
        "request: its request metrics, the adaptive-batching "
        "dispatcher (a hand-off to a worker thread and back), and the service's prediction "
        f"metrics and inference log. {largest_parts(figures)} {batching_effect(figures)} "
        f"{best_variant(figures)}"
    )


def largest_parts(figures: Figures) -> str:
    """The three largest parts of the profile, HTTP handling and the event loop aside."""
    found = figures.profile
    if found is None or not found.samples:
        return ""
    generic = (HTTP_PART, LOOP_PART, MODEL_PART)
    named = [(part, n) for part, n in found.parts.items() if part not in generic]
    listing = "; ".join(f"{part}, {100 * n / found.samples:.0f}%" for part, n in named[:3])
    return f"The largest of those in the profile: {listing}."


def batching_effect(figures: Figures) -> str:
    """What adaptive batching was worth, from the variant without it."""
    without = [m for m in figures.variants if m.label == NO_BATCHING]
    if not without:
        return ""
    generated = figures.beside[NO_BATCHING].rps
    change = generated / without[0].rps - 1
    if change > 0.05:
        return (
            f"Adaptive batching pays back part of it: without it BentoML answered "
            f"{1 - without[0].rps / generated:.0%} fewer requests/s (settings below), as "
            "concurrent rows are scored in one call."
        )
    if change < -0.05:
        return f"Adaptive batching costs here: without it BentoML answered {-change:.0%} more."
    return "Adaptive batching makes little difference here (settings below)."


def best_variant(figures: Figures) -> str:
    """The fastest single-worker BentoML setting tried, against FastAPI."""
    tried = [
        m for m in figures.variants if m.label.startswith("BentoML") and "workers" not in m.label
    ]
    if not tried:
        return ""
    best = max(tried, key=lambda m: m.rps)
    return (
        f"The fastest setting tried, {best.label.removeprefix('BentoML, ')}, answered "
        f"{best.rps:.0f} req/s, {best.rps / figures.results['fastapi'].rps:.2f}x FastAPI."
    )


def mlflow_reason(figures: Figures) -> str:
    bentoml, mlflow = figures.results["bentoml"], figures.results["mlflow"]
    return (
        f"**BentoML against mlflow serve.** {bentoml.rps / mlflow.rps:.2f}x. MLflow 3.17's "
        "scoring server (`mlflow.pyfunc.scoring_server`) is a FastAPI app on uvicorn too, one "
        "worker by default; per answer it turns `dataframe_records` into a DataFrame, enforces "
        "the model's signature and goes through the pyfunc wrapper, and it answers `predict` "
        f"only. That is {1000 / mlflow.rps:.1f} ms of wall time per answer at full load, "
        f"against BentoML's {1000 / bentoml.rps:.1f} ms: a ratio of a few, not "
        f"{GOAL_VS_MLFLOW:.0f}."
    )


def share(figures: Figures, *parts: str) -> str:
    """The profile's share of samples in `parts`, in words."""
    found = figures.profile
    if found is None or not found.samples:
        return "an unmeasured share (no profile)"
    samples = sum(found.parts.get(part, 0) for part in parts)
    return f"{100 * samples / found.samples:.0f}%"


def profile_section(figures: Figures) -> str:
    found = figures.profile
    if found is None:
        return f"Not profiled: {figures.profile_note}."
    per_request = 1000 / PROFILE_RATE / found.requests
    rows = [
        "| part of the request path | share of samples | GIL ms per request (approx.) |",
        "|---|---:|---:|",
        *(
            f"| {part} | {100 * n / found.samples:.1f}% | {n * per_request:.2f} |"
            for part, n in found.parts.items()
        ),
    ]
    return "\n".join(
        [
            f"py-spy {PROFILE_RATE} samples/s on BentoML's worker process (`py-spy record --gil`:"
            " only while a thread holds the GIL, so idle waiting is left out) during one more "
            f"round of {found.requests} single-row requests, {found.samples} samples. Each "
            "sample goes to the innermost frame it has from the table's parts (so HTTP and "
            "ASGI is what is left once the named parts are taken out). GIL ms per request is "
            "samples / rate / requests: Python time on the worker's GIL, the one resource every "
            "request shares, somewhat inflated by the sampling itself.",
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
        "Python line, so lines that only allocate (a lock in OpenTelemetry's "
        "`BoundedList.__init__`, an enum lookup, a function entered) can hold many samples, "
        "collecting everyone's garbage; a trial with `py-spy --native` showed "
        "`gc_collect_main` under such lines. The busiest single lines in this profile: "
        f"{busiest}.",
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


def statuses_line(results: dict[str, Measured], tried: list[Measured]) -> str:
    everything = [*results.values(), *tried]
    odd = [m for m in everything if m.non_2xx or sum(m.errors.values())]
    if not odd:
        return (
            "Every request of every round was answered 2xx: no 503 from BentoML's batching "
            "dispatcher, no 429 from its concurrency limit, no connection errors or timeouts."
        )
    return "Answers other than 2xx, and errors:\n\n" + "\n".join(
        f"- {m.label} ({m.rows} rows): statuses {dict(m.statuses)}, errors {dict(m.errors)}"
        for m in odd
    )


def report(figures: Figures, package: str) -> str:
    """docs/benchmarks-serving.md, from this run's figures."""
    order = ["bentoml", "fastapi", "mlflow", "bentoml-batch", "fastapi-batch"]
    goal_lines, met = goals(figures.results)
    return PAGE.format(
        date=figures.facts["date"],
        package=package,
        head=TABLE_HEAD,
        estimator=figures.estimator,
        host=HOST,
        bentoml_processes=processes_text(figures.bentoml_workers),
        fastapi_workers=fastapi_workers_text(figures.bentoml_workers),
        event_loop=figures.event_loop,
        client_cpu=max(
            run.client_cpu
            for measured in [*figures.results.values(), *figures.variants]
            for run in measured.runs
        ),
        concurrency=CONCURRENCY,
        warm_up=WARM_UP,
        rounds=ROUNDS,
        requests=REQUESTS,
        request_timeout=REQUEST_TIMEOUT,
        run_timeout=RUN_TIMEOUT,
        machine="\n".join(f"- {name}: {value}" for name, value in figures.facts.items()),
        quiet_wait=QUIET_WAIT,
        quiet_load=QUIET_LOAD,
        results="\n".join(figures.results[key].row() for key in order),
        statuses=statuses_line(figures.results, [*figures.variants, *figures.beside.values()]),
        goals="\n".join(goal_lines),
        explanation=explanation(figures, met),
        profile=profile_section(figures),
        variants_intro=(
            "Each tried on its own, in the bake's copy of `service.py` or in the service's "
            "environment, and served beside a BentoML server with the service as generated "
            "(started before the edit), their rounds interleaved (the tables above use the "
            "service as generated). "
            "FastAPI with 2 uvicorn workers, twice, is there to set against `workers=2`."
        ),
        variants="\n".join(measured.row() for measured in figures.variants),
        variants_note=variants_note(figures),
    )


def measure() -> tuple[Figures, str]:
    project = setup(bake(BENCH))
    check_variants(project)
    write_app(project)
    row = test_row(project)
    facts = machine(project, PACKAGES)
    print("waiting for a quiet machine ...")
    facts["load average (1, 5, 15 min) at start"] = wait_for_quiet()
    print(f"serving, {ROUNDS} rounds of {REQUESTS} requests, {CONCURRENCY} connections ...")
    figures = serve_all(project, row)
    facts["load average (1, 5, 15 min) at end"] = load_average()
    loop = event_loop(project)
    return replace(
        figures, facts=facts, estimator=estimator(project), event_loop=loop
    ), project.package


def main() -> int:
    parse_command_line(__doc__)
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)
    atexit.register(stop_all)
    try:
        figures, package = measure()
    except RuntimeError as error:
        sys.exit(f"ERROR: {error}")
    finally:
        stop_all()
    REPORT.write_text(report(figures, package), encoding="utf-8")
    print(f"\nwrote {REPORT.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
