"""Slow tier: the team stack's services fail in the middle of the project's steps, for real.

A project baked with an s3 DVC remote works against `make stack` while the test kills one
service at a time (SIGKILL to its process group, as a crash would), then starts it again with
`make stack`, which starts only what is not running:

- the object store during `make push`: the push fails naming the endpoint it cannot reach; the
  retry pushes everything, every object in the remote is the content its md5 key names (moto, like
  S3, stores an object whole or not at all), and a clone pulls the same bytes;
- the object store during `make register`, while MLflow's server uploads the run's files: the
  step fails with one line saying the artifact store is down, the failed run holds no model
  version, and the retry registers version 1 with its files in the bucket;
- the MLflow server between `make register` and `make promote`: promote fails with one line
  saying nothing answers; after `make stack` the cycle goes on (promote, champion) and the
  registry, kept by PostgreSQL, has everything it had.

moto keeps its objects in memory, so a killed store comes back with what its last clean stop
saved (here: empty buckets): each step is checked before the next kill.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from mlflow import MlflowClient

from .conftest import Bake, make, run
from .stack import Stack, stack_of

pytestmark = pytest.mark.slow
MODEL = "tumour-classifier"
DVC_BUCKET = "tumour-classifier-dvc"
ARTIFACTS_BUCKET = "mlflow-artifacts"
# Files large and many enough that the push is still under way when the first one lands.
EXTRA_FILES, EXTRA_BYTES = 20, 4_000_000
# Waits until the first object whose key holds argv[2] is in bucket argv[1], then kills the
# store at once (the pid file argv[3]): the kill lands in the middle of the transfer. Prints
# how many objects the bucket held then.
KILL_AT_FIRST_OBJECT = """
import os, signal, sys, time
import boto3
bucket, part, pid_file = sys.argv[1:]
s3 = boto3.client("s3")
deadline = time.monotonic() + 300
while time.monotonic() < deadline:
    keys = [entry["Key"] for entry in s3.list_objects_v2(Bucket=bucket).get("Contents", [])]
    if any(part in key for key in keys):
        os.killpg(int(open(pid_file).read().split()[0]), signal.SIGKILL)
        print(len(keys))
        sys.exit(0)
    time.sleep(0.02)
sys.exit("no object appeared")
"""
# Every object of the bucket argv[1], downloaded and hashed: {key: md5 of its content}.
HASH_OBJECTS = """
import hashlib, json, sys
import boto3
s3 = boto3.client("s3")
found = {}
for page in s3.get_paginator("list_objects_v2").paginate(Bucket=sys.argv[1]):
    for entry in page.get("Contents", []):
        body = s3.get_object(Bucket=sys.argv[1], Key=entry["Key"])["Body"].read()
        found[entry["Key"]] = hashlib.md5(body).hexdigest()
print(json.dumps(found))
"""


@pytest.fixture
def stack(bake: Bake, bake_env: dict[str, str]) -> Iterator[Stack]:
    project = bake(dvc_remote="s3")
    make(project, bake_env, "setup")
    with stack_of(project, bake_env) as started:
        started.start()
        yield started


def during(
    stack: Stack, target: str, bucket: str, part: str, env: dict[str, str]
) -> tuple[subprocess.CompletedProcess[str], int]:
    """Run `make <target>` and kill the object store when the first object whose key holds
    `part` lands in `bucket`; what the target did, and how many objects the bucket held."""
    with subprocess.Popen(
        ["make", target],
        cwd=stack.project,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as process:
        pid_file = str(stack.folder / "s3" / "moto.pid")
        held = int(stack.python(KILL_AT_FIRST_OBJECT, bucket, part, pid_file))
        stdout, stderr = process.communicate(timeout=600)
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr), held


def errors(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith("ERROR")]


def test_services_stopped_mid_step_come_back_and_the_step_completes(
    stack: Stack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project, env = stack.project, stack.client_env()
    for name, value in stack.variables().items():
        monkeypatch.setenv(name, value)
    client = MlflowClient()
    mlflow_url = stack.variables()["MLFLOW_TRACKING_URI"]
    # MLflow's client retries a failing request for minutes (MLFLOW_HTTP_REQUEST_MAX_RETRIES,
    # 7 by default): once is enough to see what the user sees at the end.
    impatient = {**env, "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1"}

    # (a) The object store dies during `make push`.
    extra = project / "data" / "extra"
    extra.mkdir()
    for number in range(EXTRA_FILES):
        (extra / f"part-{number:02}.bin").write_bytes(os.urandom(EXTRA_BYTES))
    run(["uv", "run", "--locked", "dvc", "add", "--quiet", "data/extra"], project, env)
    cached = {
        "storage/" + path.relative_to(project / ".dvc" / "cache").as_posix()
        for path in (project / ".dvc" / "cache" / "files").rglob("*")
        if path.is_file()
    }
    assert len(cached) == EXTRA_FILES + 3  # the parts, their folder's listing, two samples
    push, held = during(stack, "push", DVC_BUCKET, "storage/files/md5/", env)
    assert push.returncode != 0
    assert held < len(cached)
    endpoint = f'Could not connect to the endpoint URL: "{stack.variables()["AWS_ENDPOINT_URL_S3"]}'
    reported = errors(push.stderr)
    assert reported, push.stderr
    assert all(endpoint in line for line in reported[:-1]), reported
    assert reported[-1].startswith("ERROR: failed to push data to the cloud - "), reported
    assert "Traceback" not in push.stderr
    restarted = stack.start()
    assert "The MLflow server is already running" in restarted
    assert "The registry is already running" in restarted
    assert "files pushed" in make(project, env, "push")
    # Every object is whole: its content has the md5 its key names.
    hashed: dict[str, str] = json.loads(stack.python(HASH_OBJECTS, DVC_BUCKET))
    assert set(hashed) == cached
    for key, md5 in hashed.items():
        assert "".join(key.split("/")[-2:]).removesuffix(".dir") == md5, key
    # A clone pulls the same bytes.
    run(["git", "add", "--all"], project, env)
    run(["git", "commit", "--quiet", "--message", "extra data"], project, env)
    clone = tmp_path / "clone"
    run(["git", "clone", "--quiet", str(project), str(clone)], tmp_path, env)
    shutil.copy(project / ".dvc" / "config.local", clone / ".dvc" / "config.local")
    make(clone, env, "setup")
    run(["uv", "run", "--locked", "dvc", "pull", "--quiet", "data/extra.dvc"], clone, env)
    data = [path for path in (project / "data").rglob("*") if path.is_file()]
    data = [path for path in data if path.suffix in (".csv", ".bin")]
    assert len(data) == EXTRA_FILES + 2
    for path in data:
        assert (clone / path.relative_to(project)).read_bytes() == path.read_bytes(), path
    shutil.rmtree(clone)

    # (b) The object store dies while MLflow's server uploads the run's files.
    make(project, env, "evaluate")
    register, _ = during(stack, "register", ARTIFACTS_BUCKET, "/artifacts/", impatient)
    assert register.returncode != 0
    assert errors(register.stderr) == [
        f"ERROR: MLflow at {mlflow_url}: the server could not store or read a model's files "
        "(HTTP 5xx or a dropped connection, retried): its artifact store is down or failing "
        "(`make stack` starts the stack's object store again); see the server's log, then run "
        "this again"
    ], register.stderr
    assert "Traceback" not in register.stderr
    # A failed run, and no version: nothing is half-registered.
    experiment = client.get_experiment_by_name(MODEL)
    assert experiment is not None
    runs = client.search_runs([experiment.experiment_id])
    assert [found.info.status for found in runs] == ["FAILED"]
    assert client.search_model_versions(f"name='{MODEL}'") == []
    stack.start()
    assert f"{MODEL} version 1 is the 'challenger'" in make(project, env, "register")
    check_every_version_has_its_files(stack, client)

    # (c) The MLflow server dies between register and promote.
    stack.kill("mlflow/mlflow.pid")
    promote = run(["make", "promote"], project, impatient, check=False)
    assert promote.returncode != 0
    assert errors(promote.stderr) == [
        f"ERROR: MLflow at {mlflow_url}: nothing answers there (connection refused): start the "
        "server (`make stack` starts the stack's) or point MLFLOW_TRACKING_URI at one that runs, "
        "then run this again"
    ], promote.stderr
    assert "The object store is already running" in stack.start()
    # PostgreSQL kept the registry: the failed run, the version, its alias.
    assert len(client.search_runs([experiment.experiment_id])) == 2
    assert client.get_model_version_by_alias(MODEL, "challenger").version == "1"
    assert "version 1 is now 'champion'" in make(project, env, "promote")
    champion = run(
        ["uv", "run", "--locked", "python", "-m", "tumour_classifier", "champion"], project, env
    )
    assert "champion: tumour-classifier version 1" in champion.stdout
    check_every_version_has_its_files(stack, client)


def check_every_version_has_its_files(stack: Stack, client: MlflowClient) -> None:
    """Each model version's logged model has its files in the artifact bucket (`champion`
    checks the skops file's sha256 against the one the version recorded)."""
    hashed: dict[str, str] = json.loads(stack.python(HASH_OBJECTS, ARTIFACTS_BUCKET))
    versions = client.search_model_versions(f"name='{MODEL}'")
    assert versions
    for version in versions:
        # A search leaves the logged model's id out; the version itself names it.
        found = client.get_model_version(MODEL, version.version)
        model_id = found.model_id or found.source.removeprefix("models:/")
        location = client.get_logged_model(model_id).artifact_location
        prefix = "mlflow/" + location.removeprefix("mlflow-artifacts:/") + "/"
        files = {key.removeprefix(prefix) for key in hashed if key.startswith(prefix)}
        assert {"MLmodel", "model.skops"} <= files, (version.version, sorted(hashed))
