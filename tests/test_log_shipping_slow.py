"""Slow tier: the inference log leaves the service and comes back as the drift stage's data.

A project baked with an s3 remote trains and promotes a champion, then serves it with
INFERENCE_LOG_URL in the stack's object store (moto, started by the project's own
`ops/object_store.py`). Once the service stops, the day's partition holds the rows it scored,
with the ids its answers carried; `make drift` over a window of days then reads them back.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest
import yaml

from .conftest import Bake, free_port, make, run, wait_for_http

pytestmark = pytest.mark.slow

BUCKET = "inference-log"
URL = f"s3://{BUCKET}/inference"
ROWS = 60
# The stack's object store as `make stack` starts it, with only the log's bucket.
STORE = """
import sys
from pathlib import Path
from tumour_classifier.ops import object_store
store = object_store.ObjectStore(Path(sys.argv[2]), int(sys.argv[3]), "key", "secret-key")
if sys.argv[1] == "start":
    store.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    object_store.start(store, [sys.argv[4]])
else:
    object_store.stop(store)
"""
# Every object under the log's prefix, with its text.
OBJECTS = """
import json, sys
import boto3
s3 = boto3.client("s3")
found = {}
for page in s3.get_paginator("list_objects_v2").paginate(Bucket=sys.argv[1]):
    for entry in page.get("Contents", []):
        body = s3.get_object(Bucket=sys.argv[1], Key=entry["Key"])["Body"].read()
        found[entry["Key"]] = body.decode()
print(json.dumps(found))
"""


@pytest.fixture
def project(bake: Bake, bake_env: dict[str, str]) -> Path:
    """An s3 project with a champion, from the local MLflow store."""
    baked = bake(dvc_remote="s3")
    make(baked, bake_env, "setup")  # no remote to push to: the sample stays local
    make(baked, bake_env, "repro")
    assert "version 1 is now 'champion'" in make(baked, bake_env, "promote")
    return baked


@pytest.fixture
def store_env(project: Path, bake_env: dict[str, str], tmp_path: Path) -> Iterator[dict[str, str]]:
    """The object store running, and the variables a client of it reads."""
    port = free_port()
    folder = tmp_path / "s3"
    command = ["uv", "run", "--locked", "--group", "server", "python", "-c", STORE]
    env = {
        **bake_env,
        "AWS_ACCESS_KEY_ID": "key",
        "AWS_SECRET_ACCESS_KEY": "secret-key",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL_S3": f"http://127.0.0.1:{port}",
    }
    run([*command, "start", str(folder), str(port), BUCKET], project, env)
    try:
        yield env
    finally:
        run([*command, "stop", str(folder), str(port)], project, env, check=False)


def post(url: str, rows: list[dict[str, float]]) -> list[dict[str, object]]:
    request = urllib.request.Request(
        url, json.dumps({"rows": rows}).encode(), {"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        answer: list[dict[str, object]] = json.load(response)
        return answer


def test_the_served_rows_land_in_the_store_and_drift_reads_them_back(
    project: Path, store_env: dict[str, str], tmp_path: Path
) -> None:
    port = free_port()
    log = tmp_path / "service.log"
    env = {**store_env, "INFERENCE_LOG_URL": URL, "INFERENCE_LOG_DIR": str(tmp_path / "log")}
    current = pd.read_csv(project / "data" / "current" / "breast_cancer.csv").head(ROWS)
    rows = [{str(k): float(v) for k, v in row.items()} for row in current.to_dict("records")]
    with log.open("w", encoding="utf-8") as output:
        service = subprocess.Popen(
            ["make", "serve", f"PORT={port}"],
            cwd=project,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        wait_for_http(f"http://127.0.0.1:{port}/readyz", service, 120, log)
        answers = post(f"http://127.0.0.1:{port}/predict", rows[: ROWS // 2])
        answers += post(f"http://127.0.0.1:{port}/predict", rows[ROWS // 2 :])
    finally:
        # A stop as Kubernetes does it: the shutdown hook ships the worker's last file.
        os.killpg(service.pid, signal.SIGTERM)
        service.wait(timeout=60)
    assert "not copied" not in log.read_text(encoding="utf-8")

    python = str(project / ".venv" / "bin" / "python")
    objects = json.loads(run([python, "-c", OBJECTS, BUCKET], project, store_env).stdout)
    today = f"inference/date={datetime.now(UTC):%Y-%m-%d}/"
    assert objects, "nothing was shipped"
    assert all(key.startswith(today) and key.endswith(".jsonl") for key in objects)
    shipped = [json.loads(line) for text in objects.values() for line in text.splitlines()]
    assert sorted(row["prediction_id"] for row in shipped) == sorted(
        str(answer["prediction_id"]) for answer in answers
    )
    assert not list((tmp_path / "log").iterdir()), "every file was copied, then removed"

    params_file = project / "params.yaml"
    params = yaml.safe_load(params_file.read_text(encoding="utf-8"))
    params["drift"].update(current=URL, window_days=7)
    params_file.write_text(yaml.safe_dump(params, sort_keys=False), encoding="utf-8")
    output = make(project, store_env, "drift")
    assert f"rows of `{URL}` with" in output  # the headline names the source
    summary = json.loads((project / "reports" / "drift.json").read_text(encoding="utf-8"))
    assert summary["rows"]["current"] == ROWS
