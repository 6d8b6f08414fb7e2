"""The online service, started for real on 127.0.0.1: its contract and every kind of bad request."""

import json
import math
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from {{ cookiecutter.package_name }}.__main__ import main
from {{ cookiecutter.package_name }}.core.checks import read_table
from {{ cookiecutter.package_name }}.core.config import TEST_DATA, load_params
from {{ cookiecutter.package_name }}.core.metrics import measure
from {{ cookiecutter.package_name }}.core.prediction_ids import PREDICTION_ID
from {{ cookiecutter.package_name }}.core.schema import MAX_ROWS, Column, Schema, load_schema
from {{ cookiecutter.package_name }}.core.scoring import PREDICTION, PROBABILITY
from {{ cookiecutter.package_name }}.pipeline.monitor import Window, monitor
from {{ cookiecutter.package_name }}.release.registry import load_registered
from {{ cookiecutter.package_name }}.serving.api_schema import max_body_bytes

from .conftest import PREDICTION_ID_PATTERN

# The service's own limit: what MAX_ROWS rows of the schema need.
BODY_LIMIT = max_body_bytes(load_schema())
# Settings of the service's environment that the tests choose themselves.
SETTINGS = ("INFERENCE_LOG", "FEEDBACK_LOG", "SERVICE_")


class Service:
    def __init__(self, url: str, folder: Path, process: "subprocess.Popen[bytes]") -> None:
        self.url = url
        self.folder = folder
        self.process = process

    def post(self, body: bytes, path: str = "/predict", **headers: str) -> tuple[int, Any, Any]:
        request = urllib.request.Request(
            self.url + path,
            data=body,
            headers={"content-type": "application/json", **headers},
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, response.headers, json.loads(response.read())
        except urllib.error.HTTPError as error:
            with error:
                return error.code, error.headers, json.loads(error.read() or b"null")

    def get(self, path: str) -> tuple[int, str]:
        with urllib.request.urlopen(self.url + path, timeout=30) as response:
            return response.status, response.read().decode()

    def predict(self, rows: list[dict[str, Any]]) -> tuple[int, Any, Any]:
        return self.post(json.dumps({"rows": rows}).encode())

    def feedback(self, labels: list[dict[str, Any]]) -> tuple[int, Any]:
        status, _, answer = self.post(json.dumps({"labels": labels}).encode(), "/feedback")
        return status, answer


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def serve_command(port: int) -> list[str]:
    return [
        *(sys.executable, "-m", "bentoml", "serve"),
        "{{ cookiecutter.package_name }}.serving.service:Champion",
        *("--host", "127.0.0.1", "--port", str(port)),
    ]


def environment(**settings: str) -> dict[str, str]:
    """This environment without the service's own settings, then `settings`."""
    kept = {name: value for name, value in os.environ.items() if not name.startswith(SETTINGS)}
    return {**kept, **settings}


@contextmanager
def serving(folder: Path, log_name: str, **settings: str) -> Iterator[Service]:
    """The service of the project in `folder` on a free port, with `settings` in its
    environment and its output in `folder / log_name`, until the block ends."""
    port = free_port()
    log = (folder / log_name).open("wb")
    process = subprocess.Popen(
        serve_command(port),
        cwd=folder,
        env=environment(**settings),
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    log.close()  # the service holds its own copy
    running = Service(f"http://127.0.0.1:{port}", folder, process)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if running.get("/readyz")[0] == 200:
                    break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    pytest.fail("the service did not start")
                time.sleep(0.5)
        yield running
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=60)


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory, empty_store: Path) -> Iterator[Service]:
    """Train, register and promote a model in a scratch project, then serve it as generated."""
    from .conftest import scratch_project

    folder = tmp_path_factory.mktemp("service")
    with scratch_project(folder, empty_store):
        for command in ("prepare", "train", "evaluate", "register", "drift", "promote", "champion"):
            assert main([command]) == 0, command
        with serving(folder, "service.log") as running:
            yield running


@pytest.fixture(scope="module")
def rows(service: Service) -> list[dict[str, Any]]:
    schema = load_schema()
    frame = read_table(service.folder / TEST_DATA, schema)
    return [
        {str(name): value for name, value in record.items()}
        for record in frame[schema.feature_names].head(20).to_dict("records")
    ]


def test_answers_one_prediction_per_row_with_the_version(
    service: Service, rows: list[dict[str, Any]]
) -> None:
    status, headers, body = service.predict(rows)
    assert status == 200
    assert headers["x-model-version"] == "1"
    assert len(body) == len(rows)
    for answer in body:
        assert list(answer)[:2] == [PREDICTION_ID, PREDICTION]
        assert re.fullmatch(PREDICTION_ID_PATTERN, answer[PREDICTION_ID]), answer
        assert math.isfinite(answer[PREDICTION])
        if PROBABILITY in answer:
            assert 0 <= answer[PROBABILITY] <= 1


def test_every_row_gets_its_own_prediction_id(service: Service, rows: list[dict[str, Any]]) -> None:
    """Within a request, across requests, and for the same row sent again."""
    answers = [service.predict(rows)[2] for _ in range(3)] + [service.predict(rows[:1] * 5)[2]]
    ids = [answer[PREDICTION_ID] for body in answers for answer in body]
    assert len(ids) == 3 * len(rows) + 5
    assert len(set(ids)) == len(ids)


def test_answers_are_the_champions_own_predictions(
    service: Service, rows: list[dict[str, Any]]
) -> None:
    """The service scores a float array: the same answers as the model on a DataFrame."""
    _, _, body = service.predict(rows)
    frame = pd.DataFrame(rows)
    estimator = load_registered(load_params().mlflow).estimator
    answers = [answer[PREDICTION] for answer in body]
{%- if cookiecutter.task == "classification" %}
    np.testing.assert_array_equal(answers, estimator.predict(frame))
{%- else %}
    # A float array and a DataFrame may take different summation orders: equal to rounding.
    np.testing.assert_allclose(answers, estimator.predict(frame), rtol=1e-12)
{%- endif %}
    if hasattr(estimator, "predict_proba"):
        np.testing.assert_allclose(
            [answer[PROBABILITY] for answer in body],
            estimator.predict_proba(frame)[:, 1],
            rtol=1e-12,
        )


@pytest.mark.parametrize("asked", [False, True])
def test_access_log_and_tracing_of_predict_are_off_unless_asked_for(
    service: Service, asked: bool
) -> None:
    settings = {"SERVICE_ACCESS_LOG": "1", "SERVICE_TRACING": "1"} if asked else {}
    env = {
        name: value
        for name, value in os.environ.items()
        if name not in {"SERVICE_ACCESS_LOG", "SERVICE_TRACING"}
    }
    read_config = (
        "import json; from {{ cookiecutter.package_name }}.serving.service import Champion; "
        "print(json.dumps(Champion.config))"
    )
    printed = subprocess.run(
        [sys.executable, "-c", read_config],
        cwd=service.folder,
        env={**env, **settings},
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    config = json.loads(printed.splitlines()[-1])
    assert config["logging"]["access"]["enabled"] is asked
    assert config["tracing"]["excluded_urls"] == ([] if asked else ["/predict"])


def test_probes_and_metrics(service: Service, rows: list[dict[str, Any]]) -> None:
    service.predict(rows[:3])
    assert service.get("/livez")[0] == 200
    assert service.get("/readyz")[0] == 200
    status, metrics = service.get("/metrics")
    assert status == 200
    assert 'model_version_info{model_version="1"} 1.0' in metrics
    assert 'model_rows_scored_total{model_version="1"}' in metrics
    assert 'bentoml_service_request_total{endpoint="/predict",http_response_code="200"' in metrics


def test_the_api_page_loads_only_the_services_own_files(service: Service) -> None:
    """BentoML's Swagger UI page at / also loads Google Tag Manager: the page's policy keeps a
    browser to the service's own files, and those are all there."""
    with urllib.request.urlopen(service.url + "/", timeout=30) as response:
        policy = response.headers["Content-Security-Policy"]
        page = response.read().decode()
    directives = dict(rule.strip().split(" ", 1) for rule in policy.split(";"))
    assert directives["default-src"] == "'self'"
    assert directives["script-src"] == "'self' 'unsafe-inline'"
    assert directives["frame-src"] == "'none'"
    assert "http" not in policy  # no other site is allowed anything
    own_files = re.findall(r'(?:src|href)="\./([^"]+)"', page)
    assert own_files
    for path in own_files:
        with urllib.request.urlopen(f"{service.url}/{path}", timeout=30) as response:
            assert response.status == 200, path


def test_every_accepted_row_is_logged(service: Service, rows: list[dict[str, Any]]) -> None:
    log = service.folder / "logs" / "inference" / "inference-1.jsonl"
    before = len(log.read_text(encoding="utf-8").splitlines()) if log.exists() else 0
    status, _, body = service.predict(rows[:4])
    assert status == 200
    lines = log.read_text(encoding="utf-8").splitlines()[before:]
    assert len(lines) == 4
    records = [json.loads(line) for line in lines]
    # Each row's line has the id and the prediction its answer has: the ground truth's join key.
    for record, answer, row in zip(records, body, rows[:4], strict=True):
        assert record[PREDICTION_ID] == answer[PREDICTION_ID]
        assert record[PREDICTION] == answer[PREDICTION]
        assert {name: record[name] for name in row} == row
        assert record["model_version"] == "1"
        assert math.isfinite(record["time"])


def valid_label(target: Column) -> float:
    """A value the target may take."""
    if target.allowed is not None:
        return target.allowed[-1]
    return ((target.min or 0.0) + (target.max or 0.0)) / 2


def labels_for(ids: list[str], values: list[float]) -> list[dict[str, Any]]:
    return [{PREDICTION_ID: key, "label": value} for key, value in zip(ids, values, strict=True)]


def feedback_lines(folder: Path) -> list[dict[str, Any]]:
    """The feedback log's lines, every worker's file and its rotated copies."""
    return [
        json.loads(line)
        for file in sorted(folder.glob("feedback-*.jsonl*"))
        for line in file.read_text(encoding="utf-8").splitlines()
    ]


def test_labels_are_written_with_the_time_they_came_and_once(
    service: Service, rows: list[dict[str, Any]]
) -> None:
    folder = service.folder / "logs" / "feedback"
    before = len(feedback_lines(folder))
    _, _, answers = service.predict(rows[:5])
    ids = [answer[PREDICTION_ID] for answer in answers]
    label = valid_label(load_schema().target)
    sent = time.time()
    status, answer = service.feedback(labels_for(ids, [label] * 5))
    assert (status, answer) == (200, {"accepted": 5})
    lines = feedback_lines(folder)[before:]
    assert [(line[PREDICTION_ID], line["label"]) for line in lines] == [(key, label) for key in ids]
    assert [list(line) for line in lines] == [[PREDICTION_ID, "label", "time"]] * 5
    assert all(sent <= line["time"] <= time.time() for line in lines)

    # Sent again, as a client that timed out would: taken, and no second line.
    assert service.feedback(labels_for(ids, [label] * 5)) == (200, {"accepted": 5})
    assert len(feedback_lines(folder)) == before + 5


def bad_labels(schema: Schema, key: str) -> dict[str, tuple[bytes, str]]:
    """Each kind of bad /feedback body, and where its 400 says the error is."""
    target = schema.target
    label = valid_label(target)
    invalid = max(target.allowed) + 1 if target.allowed is not None else (target.max or 0) + 1

    def body(labels: Any) -> bytes:
        return json.dumps({"labels": labels}).encode()

    def one(**fields: Any) -> bytes:
        return body([{PREDICTION_ID: key, "label": label, **fields}])

    good = {PREDICTION_ID: key, "label": label}
    at_id, at_label = "labels.0.prediction_id: ", "labels.0.label: "
    return {
        "short-id": (one(prediction_id=key[:31]), at_id),
        "upper-case-id": (one(prediction_id=key.upper()), at_id),
        "id-and-a-newline": (one(prediction_id=key + "\n"), at_id),
        "number-id": (one(prediction_id=int(key[:8], 16)), at_id),
        "invalid-label": (one(label=invalid), at_label),
        "label-as-text": (one(label=str(label)), at_label),
        "nan-label": (one(label=0).replace(b'"label": 0', b'"label": NaN'), at_label),
        "null-label": (one(label=None), at_label),
        "no-label": (body([{PREDICTION_ID: key}]), at_label),
        "a-time": (one(time=1), "labels.0.time: "),  # the time is when the service got it
        "empty-list": (body([]), "labels: "),
        "too-many-labels": (body([good] * (MAX_ROWS + 1)), "labels: "),
        "labels-not-a-list": (body(good), "labels: "),
        "rows-not-labels": (json.dumps({"rows": [good]}).encode(), "labels: "),
    }


@pytest.mark.parametrize("case", list(bad_labels(load_schema(), "0" * 32)))
def test_a_bad_label_gets_a_400_naming_it_and_nothing_is_written(
    service: Service, rows: list[dict[str, Any]], case: str
) -> None:
    folder = service.folder / "logs" / "feedback"
    _, _, answers = service.predict(rows[:1])
    body, where = bad_labels(load_schema(), answers[0][PREDICTION_ID])[case]
    before = len(feedback_lines(folder))
    status, _, answer = service.post(body, "/feedback")
    assert status == 400, answer
    assert answer["detail"].startswith(where), answer["detail"][:300]
    assert isinstance(answer["errors"], list)
    assert len(feedback_lines(folder)) == before


def test_monitor_joins_the_labels_the_service_took_with_its_predictions(
    service: Service, tmp_path: Path
) -> None:
    """Score the test data, send its truth to /feedback (some twice, one corrected), then
    `make monitor`'s code reads the two logs: every prediction labelled, measured as evaluate
    measures."""
    schema = load_schema()
    frame = read_table(service.folder / TEST_DATA, schema)
    rows = [
        {str(name): value for name, value in record.items()}
        for record in frame[schema.feature_names].to_dict("records")
    ]
    truth = frame[schema.target.name].tolist()
    logs = {"INFERENCE_LOG_DIR": str(tmp_path / "inference")}
    logs["FEEDBACK_LOG_DIR"] = str(tmp_path / "feedback")
    with serving(service.folder, "service-feedback.log", **logs) as running:
        status, _, answers = running.predict(rows)
        assert status == 200, answers
        ids = [answer[PREDICTION_ID] for answer in answers]
        wrong = {truth[0]} ^ set(schema.target.allowed or {truth[0], truth[0] + 1})
        assert running.feedback(labels_for(ids[:1], [wrong.pop()]))[0] == 200  # corrected next
        assert running.feedback(labels_for(ids, truth)) == (200, {"accepted": len(ids)})
        assert running.feedback(labels_for(ids[:10], truth[:10]))[0] == 200
        metrics = running.get("/metrics")[1]
        # Every label accepted is counted, resent ones too: the rate at which truth arrives.
        assert re.search(rf"^model_labels_received_total {len(ids) + 11}\.0$", metrics, re.M)
    params = load_params().monitor.model_copy(
        update={
            "predictions": logs["INFERENCE_LOG_DIR"],
            "labels": logs["FEEDBACK_LOG_DIR"],
            "min_labelled": len(ids),
        }
    )

    found, _ = monitor(params, schema, Window.ending_today(params.window_days))

    assert (found.predictions, found.labels, found.labelled) == (len(ids), len(ids) + 1, len(ids))
    assert found.skipped == {"duplicates": 1}  # the correction: the latest label is kept
    assert found.version == "1"
    predicted = [answer[PREDICTION] for answer in answers]
    probability = [answer[PROBABILITY] for answer in answers] if PROBABILITY in answers[0] else None
    expected = measure(np.array(truth, dtype=float), np.array(predicted, dtype=float), probability)
    assert found.versions[0].metrics == pytest.approx(expected)


def with_change(row: dict[str, Any], **changes: Any) -> dict[str, Any]:
    return {**row, **changes}


def bad_requests(schema: Schema, row: dict[str, Any]) -> dict[str, bytes]:
    feature = schema.features[0].name
    without = {name: value for name, value in row.items() if name != feature}

    def body(rows: Any) -> bytes:
        return json.dumps({"rows": rows}).encode()

    return {
        "nan": body([row]).replace(json.dumps(row[feature]).encode(), b"NaN", 1),
        "infinity": body([with_change(row, **{feature: math.inf})]),
        "overflow": body([row]).replace(json.dumps(row[feature]).encode(), b"1e400", 1),
        "out-of-range": body([with_change(row, **{feature: -1e9})]),
        "missing-field": body([without]),
        "extra-field": body([with_change(row, surprise=1.0)]),
        "string-number": body([with_change(row, **{feature: str(row[feature])})]),
        "null-value": body([with_change(row, **{feature: None})]),
        "empty-batch": body([]),
        "too-many-rows": body([row] * (MAX_ROWS + 1)),
        "rows-not-a-list": body(row),
        "row-not-an-object": body([1, 2]),
        "malformed-json": b'{"rows": [',
        "not-an-object": b"[]",
        "empty-body": b"",
    }


@pytest.mark.parametrize(
    "case",
    list(bad_requests(load_schema(), {feature: 1.0 for feature in load_schema().feature_names})),
)
def test_bad_requests_get_a_4xx_with_a_reason(
    service: Service, rows: list[dict[str, Any]], case: str
) -> None:
    status, _, body = service.post(bad_requests(load_schema(), rows[0])[case])
    assert status == 400, body
    assert body["error"]
    # As the OpenAPI document declares: `detail` text, pydantic's list of errors beside it.
    assert isinstance(body["detail"], str)
    assert body["detail"]
    assert isinstance(body["errors"], list)


def test_a_bad_value_is_named_by_row_and_field(
    service: Service, rows: list[dict[str, Any]]
) -> None:
    feature = load_schema().features[0].name
    status, _, body = service.predict([rows[0], with_change(rows[1], **{feature: -1e9})])
    assert status == 400
    assert body["detail"].startswith(f"rows.1.{feature}: ")
    assert body["errors"][0]["loc"] == ["rows", 1, feature]


@pytest.mark.parametrize(
    "content_type",
    [
        "multipart/form-data",
        "multipart/form-data; boundary=x",
        "application/x-www-form-urlencoded",
        "text/plain",
        "application/vnd.bentoml+pickle",
    ],
)
def test_a_body_that_is_not_json_is_refused(
    service: Service, rows: list[dict[str, Any]], content_type: str
) -> None:
    body = json.dumps({"rows": rows[:1]}).encode()
    status, headers, answer = service.post(body, **{"content-type": content_type})
    assert status == 415
    assert answer["error"] == f"send JSON (Content-Type: application/json), not {content_type}"
    assert headers["X-Model-Version"] == "1"


@pytest.mark.parametrize("content_type", ["application/json; charset=utf-8", "Application/JSON"])
def test_json_is_json_whatever_its_spelling(
    service: Service, rows: list[dict[str, Any]], content_type: str
) -> None:
    body = json.dumps({"rows": rows[:2]}).encode()
    status, _, answer = service.post(body, **{"content-type": content_type})
    assert status == 200, answer
    assert len(answer) == 2


def test_a_body_without_a_content_type_is_refused_and_not_logged(
    service: Service, rows: list[dict[str, Any]]
) -> None:
    """BentoML reads such a body as JSON; a browser sends one from any web page without asking
    the service first (no CORS preflight), which would let any site score and log rows."""
    log = service.folder / "logs" / "inference" / "inference-1.jsonl"
    logged = log.stat().st_size if log.exists() else 0
    body = json.dumps({"rows": rows[:1]}).encode()
    head = (
        f"POST /predict HTTP/1.1\r\nHost: test\r\nContent-Length: {len(body)}\r\n"
        "Connection: close\r\n\r\n"
    )
    answer = raw_exchange(service, head.encode(), [body])
    assert answer.startswith(b"HTTP/1.1 415"), answer
    refusal = json.loads(answer.partition(b"\r\n\r\n")[2])
    assert refusal == {
        "error": "send JSON (Content-Type: application/json), not a body without one"
    }
    assert (log.stat().st_size if log.exists() else 0) == logged


def raw_exchange(service: Service, head: bytes, body_parts: list[bytes]) -> bytes:
    """Send a request by hand and read the start of the answer, however early it comes."""
    host, port = service.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as connection:
        connection.sendall(head)
        for part in body_parts:
            connection.sendall(part)
        answer = b""
        while chunk := connection.recv(4096):  # the server closes after a refusal
            answer += chunk
        return answer


def test_the_body_limit_holds_max_rows_rows_of_the_schema_at_their_longest() -> None:
    """Every value as long as JSON writes a number, indented as `indent=4` does: within the
    limit, and the limit not much above it."""
    longest = {name: -2.2250738585072014e-308 for name in load_schema().feature_names}
    body = json.dumps({"rows": [longest] * MAX_ROWS}, indent=4).encode()
    assert len(body) <= BODY_LIMIT < 2 * len(body)


def test_the_body_limit_holds_max_rows_labels_at_their_longest() -> None:
    label = {PREDICTION_ID: "0" * 32, "label": -2.2250738585072014e-308}
    body = json.dumps({"labels": [label] * MAX_ROWS}, indent=4).encode()
    assert len(body) <= BODY_LIMIT


def test_max_rows_rows_with_generous_spacing_are_scored(service: Service) -> None:
    schema = load_schema()
    row = {
        column.name: column.allowed[-1]
        if column.allowed is not None
        else (column.min or 0) + ((column.max or 0) - (column.min or 0)) / 3
        if column.dtype == "float"
        else int(column.min or 0)
        for column in schema.features
    }
    body = json.dumps({"rows": [row] * MAX_ROWS}, indent=4).encode()
    status, _, answer = service.post(body)
    assert status == 200, answer
    assert len(answer) == MAX_ROWS


def test_an_oversized_body_is_refused_before_it_is_sent(service: Service) -> None:
    """A declared Content-Length over the limit is answered from the headers alone."""
    head = (
        b"POST /predict HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
        + f"Content-Length: {BODY_LIMIT + 1}\r\n\r\n".encode()
    )
    answer = raw_exchange(service, head, [])
    assert answer.startswith(b"HTTP/1.1 413")
    assert b"larger than" in answer


def test_a_streamed_oversized_body_is_refused(service: Service) -> None:
    """No Content-Length (chunked transfer): the limit holds while the body streams in."""
    head = (
        b"POST /predict HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n"
    )
    chunk = b" " * 65536
    parts = [b"%x\r\n%s\r\n" % (len(chunk), chunk)] * (BODY_LIMIT // len(chunk) + 1)
    answer = raw_exchange(service, head, [*parts, b"0\r\n\r\n"])
    assert answer.startswith(b"HTTP/1.1 413")


JSON = st.recursive(
    st.none() | st.booleans() | st.floats(allow_nan=False) | st.integers() | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    payload=st.fixed_dictionaries(
        {"rows": st.lists(st.dictionaries(st.text(max_size=20), JSON, max_size=5), max_size=3)}
    )
    | JSON
)
def test_no_request_makes_the_service_fail(service: Service, payload: Any) -> None:
    status, _, _ = service.post(json.dumps(payload).encode())
    assert status < 500


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_rows_within_the_schema_are_always_scored(service: Service, data: st.DataObject) -> None:
    schema = load_schema()
    row = {
        column.name: data.draw(
            st.sampled_from(column.allowed)
            if column.allowed is not None
            else st.floats(min_value=column.min, max_value=column.max)
            if column.dtype == "float"
            else st.integers(min_value=int(column.min or 0), max_value=int(column.max or 0))
        )
        for column in schema.features
    }
    status, _, body = service.predict([row])
    assert status == 200, body


def test_schemathesis_finds_no_fault_against_the_openapi_document(
    service: Service, tmp_path: Path
) -> None:
    """`schemathesis run` over every operation of the document the service publishes
    (/docs.json), with every check: requests it allows and requests it forbids (wrong types,
    missing fields, other media types and methods), none answered with a 5xx, each answered as
    the document declares: valid rows scored, invalid ones refused, every answer in its schema.

    BentoML leaves /predict's request body optional in the document; the service needs one
    (without, a 400 "rows: Field required"), so the document is checked with the body required.
    """
    document = json.loads(service.get("/docs.json")[1])
    for path in ("/predict", "/feedback"):
        document["paths"][path]["post"]["requestBody"]["required"] = True
    published = tmp_path / "openapi.json"
    published.write_text(json.dumps(document), encoding="utf-8")
    command = [
        *(str(Path(sys.executable).with_name("schemathesis")), "run", str(published)),
        *("--url", service.url, "--checks", "all", "--max-examples", "100"),
        *("--generation-database", "none", "--no-color"),
    ]
    result = subprocess.run(
        command, cwd=tmp_path, capture_output=True, text=True, timeout=600, check=False
    )
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]


def group_rss_bytes(leader: int) -> int:
    """The resident memory of every process in the service's process group (its workers)."""
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()
        except OSError:
            continue  # a process that ended meanwhile
        if int(fields[2]) == leader:  # the process group, after the name and state
            total += int(fields[21]) * os.sysconf("SC_PAGE_SIZE")
    return total


def unknown_fields(count: int) -> bytes:
    return json.dumps({"rows": [{f"u{i}": 1 for i in range(count)}]}).encode()


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc (Linux)")
def test_a_row_with_a_hundred_thousand_unknown_fields_costs_next_to_nothing(
    service: Service,
) -> None:
    """One error for the row, not one per field: a small 400, soon, in one log line, and the
    workers' memory as it was. A schema of few fields has a body limit that 100,000 keys exceed
    (refused with a 413 unread): then the row has as many as the limit lets through."""
    count = 100_000
    body = unknown_fields(count)
    if len(body) > BODY_LIMIT:
        count = count * BODY_LIMIT // len(body)
        body = unknown_fields(count)
    assert len(body) <= BODY_LIMIT
    log = service.folder / "service.log"
    service.predict([])  # a warm-up refusal, so that memory is measured after the first one
    logged, rss = log.stat().st_size, group_rss_bytes(service.process.pid)
    began = time.monotonic()
    status, _, answer = service.post(body)
    seconds = time.monotonic() - began
    assert status == 400
    features = len(load_schema().feature_names)
    assert answer["detail"] == (
        f"rows.0: Value error, {count} unknown and {features} missing fields (missing: "
        f"{', '.join(load_schema().feature_names[:5])}, ...); a row has exactly the {features} "
        "fields of the schema"
    )
    assert len(json.dumps(answer)) < 2_000
    assert seconds < 5
    time.sleep(0.5)  # the log line is written after the answer
    with log.open("rb") as output:
        output.seek(logged)
        written = output.read().decode("utf-8", errors="replace")
    assert written.count("\n") == 1, written[:2_000]
    assert "/predict [POST]: refused, 1 validation errors" in written
    assert f"u{count - 1}" not in written
    assert "Traceback" not in written
    assert group_rss_bytes(service.process.pid) - rss < 50 * 1024 * 1024


def test_no_refused_value_reaches_the_services_log(
    service: Service, rows: list[dict[str, Any]]
) -> None:
    """Each kind of bad request, its values marked: the 400s log one line each, none of them
    quoting a value or an unknown field's name."""
    marker = 987654.125
    feature = load_schema().features[0].name
    row = rows[0]
    requests = [
        *bad_requests(load_schema(), with_change(row, **{feature: marker})).values(),
        json.dumps({"rows": [with_change(row, **{feature: str(marker)})]}).encode(),
        json.dumps({"rows": [with_change(row, marked_987654=marker)]}).encode(),
        json.dumps({"rows": [{f"marked_{i}": marker for i in range(50)}]}).encode(),
        json.dumps({"rows": str(marker)}).encode(),
        b'{"rows": [{"987654.125": ',
    ]
    labels = [
        {PREDICTION_ID: "0" * 32, "label": marker},
        {PREDICTION_ID: str(marker), "label": valid_label(load_schema().target)},
        {PREDICTION_ID: "0" * 32, "label": valid_label(load_schema().target), "m987654": 1},
    ]
    feedback = [json.dumps({"labels": [label]}).encode() for label in labels]
    log = service.folder / "service.log"
    logged = log.stat().st_size
    for body in requests:
        assert 400 <= service.post(body)[0] < 500
    for body in feedback:
        assert service.post(body, "/feedback")[0] == 400
    time.sleep(0.5)  # the log lines are written after the answers
    with log.open("rb") as output:
        output.seek(logged)
        written = output.read().decode("utf-8", errors="replace")
    assert "987654" not in written, written[:4_000]
    assert "Traceback" not in written, written[:4_000]


def test_a_400_lists_twenty_errors_and_counts_the_rest(service: Service) -> None:
    """Every row of `[{}, ...]` misses every field: one error per row, or one per field where
    the schema has few of them; 20 are listed either way."""
    status, _, answer = service.predict([{}] * MAX_ROWS)
    assert status == 400
    assert len(answer["errors"]) == 20
    counted = re.search(r"; and (\d+) more errors$", answer["detail"])
    assert counted is not None, answer["detail"][-200:]
    assert int(counted[1]) >= MAX_ROWS - 20
    assert len(json.dumps(answer)) < 20_000


def test_with_the_inference_log_off_the_service_serves_counts_and_writes_no_row(
    service: Service, rows: list[dict[str, Any]]
) -> None:
    """Nor any label: /feedback says it keeps none, rather than take labels and drop them."""
    folder = service.folder / "logs" / "not-written"
    with serving(
        service.folder,
        "service-log-off.log",
        INFERENCE_LOG="off",
        INFERENCE_LOG_DIR=str(folder / "inference"),
        FEEDBACK_LOG_DIR=str(folder / "feedback"),
    ) as quiet:
        status, _, answer = quiet.predict(rows[:3])
        assert status == 200, answer
        assert len(answer) == 3
        metrics = quiet.get("/metrics")[1]
        label = valid_label(load_schema().target)
        status, refused = quiet.feedback(labels_for([answer[0][PREDICTION_ID]], [label]))
    assert (status, refused) == (
        503,
        {
            "error": "labels are not kept while INFERENCE_LOG=off: a label needs its logged "
            "prediction"
        },
    )
    assert re.search(r'^model_rows_scored_total\{model_version="1"\} 3\.0$', metrics, re.M)
    lines = metrics.splitlines()
    if load_schema().target_is_categorical:  # each class counted as often as it was answered
        answered = Counter(str(int(item[PREDICTION])) for item in answer)
        for predicted, count in answered.items():
            series = 'model_predictions_total{model_version="1",prediction="' + predicted + '"}'
            assert f"{series} {float(count)}" in lines, metrics
    else:  # each value observed once
        assert 'model_prediction_value_count{model_version="1"} 3.0' in lines, metrics
    assert not folder.exists()


def test_with_a_log_url_the_rows_are_in_the_store_once_the_service_stops(
    service: Service, rows: list[dict[str, Any]], tmp_path: Path
) -> None:
    """The worker's shutdown hook closes its files and copies them: no row or label stays
    behind."""
    folder, store = tmp_path / "log", tmp_path / "store"
    with serving(
        service.folder,
        "service-log-shipped.log",
        INFERENCE_LOG_DIR=str(folder / "inference"),
        INFERENCE_LOG_URL=f"file://{store}/inference",
        FEEDBACK_LOG_DIR=str(folder / "feedback"),
        FEEDBACK_LOG_URL=f"file://{store}/feedback",
    ) as shipping:
        status, _, answer = shipping.predict(rows[:3])
        assert status == 200, answer
        ids = [row[PREDICTION_ID] for row in answer]
        labels = labels_for(ids, [valid_label(load_schema().target)] * 3)
        assert shipping.feedback(labels) == (200, {"accepted": 3})
    for log, expected in (("inference", answer), ("feedback", labels)):
        copies = list((store / log).glob("date=*/*.jsonl"))
        assert len(copies) == 1, log
        logged = [json.loads(line) for line in copies[0].read_text("utf-8").splitlines()]
        assert [row[PREDICTION_ID] for row in logged] == [row[PREDICTION_ID] for row in expected]
        assert not list((folder / log).iterdir())


def test_the_body_limit_can_be_set(service: Service, rows: list[dict[str, Any]]) -> None:
    with serving(service.folder, "service-small-body.log", SERVICE_MAX_BODY_BYTES="2000") as small:
        assert small.predict(rows[:1])[0] == 200
        status, _, answer = small.post(b" " * 2001)
    assert status == 413
    assert answer == {"error": "request body larger than 2000 bytes"}


@pytest.mark.parametrize(
    "setting",
    [
        "INFERENCE_LOG_MAX_BYTES=0",
        "INFERENCE_LOG_BACKUPS=-1",
        "INFERENCE_LOG_RETENTION_DAYS=a week",
        "INFERENCE_LOG=maybe",
        "INFERENCE_LOG_URL=ftp://host/inference",
        "FEEDBACK_LOG_URL=ftp://host/feedback",
        "FEEDBACK_LOG_DIR=logs/inference",
        "SERVICE_MAX_BODY_BYTES=4MB",
        "SERVICE_TIMEOUT_SECONDS=0",
        "SERVICE_MAX_CONCURRENCY=lots",
    ],
)
def test_a_bad_setting_stops_the_service_with_one_line(service: Service, setting: str) -> None:
    """A log that would never rotate, or a limit that cannot be read: refused at start-up."""
    name, _, value = setting.partition("=")
    process = subprocess.Popen(
        serve_command(free_port()),
        cwd=service.folder,
        env=environment(**{name: value}),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        stdout, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:  # it started: stop it and its workers
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    assert process.returncode == 1
    assert stdout == ""
    lines = stderr.splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith(f"ERROR: {name}={value!r}: expected ")


def request_head(length: int) -> bytes:
    return (
        f"POST /predict HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
        f"Content-Length: {length}\r\nConnection: close\r\n\r\n"
    ).encode()


def read_answer(connection: socket.socket) -> bytes:
    answer = b""
    while chunk := connection.recv(4096):
        answer += chunk
    return answer


def test_a_request_past_the_timeout_gets_a_504_and_one_past_the_limit_a_429(
    service: Service, rows: list[dict[str, Any]]
) -> None:
    """A client that never finishes its body holds the one slot it is given, then times out."""
    body = json.dumps({"rows": rows[:1]}).encode()
    settings = {"SERVICE_TIMEOUT_SECONDS": "2", "SERVICE_MAX_CONCURRENCY": "1"}
    with serving(service.folder, "service-limits.log", **settings) as limited:
        host, port = limited.url.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port)), timeout=30) as slow:
            slow.sendall(request_head(len(body)) + body[: len(body) // 2])
            time.sleep(0.5)
            status, _, answer = limited.predict(rows[:1])
            assert status == 429, answer
            waited = time.monotonic()
            timed_out = read_answer(slow)
            waited = time.monotonic() - waited
        assert timed_out.startswith(b"HTTP/1.1 504"), timed_out[:200]
        assert waited < 5
        # The slot is free again.
        assert limited.predict(rows[:1])[0] == 200


def test_sigterm_drains_and_stops(service: Service, rows: list[dict[str, Any]]) -> None:
    """Last: a graceful stop answers the request in flight, then exits."""
    body = json.dumps({"rows": rows[:2]}).encode()
    host, port = service.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as in_flight:
        in_flight.sendall(request_head(len(body)) + body[: len(body) // 2])
        time.sleep(0.5)
        os.killpg(service.process.pid, signal.SIGTERM)
        time.sleep(1)  # the stop has begun; the request is still coming in
        in_flight.sendall(body[len(body) // 2 :])
        answer = read_answer(in_flight)
    assert answer.startswith(b"HTTP/1.1 200"), answer[:300]
    assert len(json.loads(answer.partition(b"\r\n\r\n")[2])) == 2
    assert service.process.wait(timeout=60) in (0, -signal.SIGTERM)
