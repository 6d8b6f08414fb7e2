"""Slow tier: a team's whole cycle, driven through the generated workflows' steps, against the
stack of `make stack` (PostgreSQL and MLflow with basic auth and its artifacts in an S3 bucket,
moto's S3 server as the DVC remote, docker-registry, Prometheus).

The project is baked with an s3 remote and committed; every job runs in a fresh checkout with
only what GitHub would give it: the repository variables, its environment's secrets (the
users `make mlflow-users` creates), and the S3 credentials the cloud login exports. The images
are real: `make container` builds with buildah, `docker push` is podman's push to the stack's
registry (tests/rehearsal.py), then the champion's image is pulled back and run as the
Deployment runs it, with Prometheus scraping it.

The cycle: a pull request, its merge (version 1 released), a second pull request and merge
(version 2, gated against version 1 in the registry), traffic, the drift job, a rollback, a
push afterwards; then everything counted. Each step's wall time is printed, and written to
the file CYCLE_TIMINGS names, if set (`make bench-cycle`).
"""

from __future__ import annotations

import itertools
import json
import os
import re
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml
from mlflow import MlflowClient

from .conftest import Bake, make, run, wait_for_http
from .rehearsal import Job, Rehearsal
from .stack import Stack, stack_of
from .test_deploy import container, dashboard_exprs
from .test_image_slow import (
    as_the_deployment_runs_it,
    base_image,
    call,
    machine_limits,
    running,
    unpinned_base,
)
from .test_rehearsal import checkout, commit, edit_readme, failed_steps, git, merge, propose
from .test_stack_slow import get_json

pytestmark = pytest.mark.slow
MODEL = "tumour-classifier"
OWNER = "data-team"
GHCR = f"ghcr.io/{OWNER}/{MODEL}"
BUCKET = f"{MODEL}-dvc"
# What `make mlflow-users` prints for each user: gh secret set MLFLOW_TRACKING_<X> --env <e> ...
SECRET_LINE = re.compile(r"gh secret set MLFLOW_TRACKING_(\w+) --env ([\w-]+) --body '?([^'\s]+)'?")
# Every object of every bucket with the MD5 of its content, read with the project's boto3.
HASH_OBJECTS = """
import hashlib, json, boto3
s3 = boto3.client("s3")
print(json.dumps({
    bucket["Name"]: {
        entry["Key"]: hashlib.md5(
            s3.get_object(Bucket=bucket["Name"], Key=entry["Key"])["Body"].read()
        ).hexdigest()
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket["Name"])
        for entry in page.get("Contents", [])
    }
    for bucket in s3.list_buckets()["Buckets"]
}))
"""


@dataclass
class Team:
    """The repository, the stack it shares, and what GitHub holds for its workflows."""

    stack: Stack
    runner_env: dict[str, str]  # a runner's environment: container tools, the S3 endpoint
    variables: dict[str, str]  # the repository variables
    secrets: dict[str, dict[str, str]]  # by GitHub environment: mlflow-read, production
    cloud_login: dict[str, str]  # what the S3 login exports (the role's session)
    scratch: Path
    timings: dict[str, float] = field(default_factory=dict)
    runs: Iterator[int] = field(default_factory=itertools.count)

    @property
    def project(self) -> Path:
        return self.stack.project

    @property
    def registry(self) -> str:
        return self.stack.variables()["STACK_REGISTRY"]

    def workflow(self, workflow: str, branch: str = "main") -> Rehearsal:
        """`workflow`'s run on a new runner's checkout of `branch`."""
        scratch = self.scratch / f"{workflow}-{next(self.runs)}"
        workspace = checkout(self.project, self.stack.env, scratch / "runner", branch)
        return Rehearsal(
            workspace,
            workflow,
            scratch,
            self.runner_env,
            self.scratch / "caches",
            cloud_login=self.cloud_login,
        )

    def job(self, rehearsal: Rehearsal, name: str, environment: str | None, **kw: Any) -> Job:
        """Job `name` of the run, with the repository's variables and `environment`'s secrets;
        it must succeed."""
        secrets = self.secrets[environment] if environment else {}
        job = rehearsal.run_job(name, variables=self.variables, secrets=secrets, **kw)
        assert job.result == "success", failed_steps(job)
        return job

    def release(self) -> Job:
        """The release job of a push to main."""
        run = self.workflow("release.yml")
        return self.job(run, "release", "production", event_name="push")

    def pull_request(self, branch: str, base: str) -> str:
        """The train job of a pull request from `branch` and its comment: the comment."""
        event = {"pull_request": {"base": {"sha": base}, "head": {"repo": {"full_name": "a/b"}}}}
        run = self.workflow("train.yml", branch)
        train = self.job(run, "train", "mlflow-read", event=event)
        remotes = train.summary.split("### Remotes")[1]
        assert f"as user `{MODEL}-reader`, read-only (READ)" in remotes, remotes
        assert f"s3://{BUCKET}/storage" in remotes
        self.job(run, "comment", None, event=event, needs={"train": train})
        return (run.scratch / "comment.md").read_text(encoding="utf-8")

    def timed(self, step: str, started: float) -> None:
        self.timings[step] = time.monotonic() - started

    def client(self) -> MlflowClient:
        """The registry as its admin sees it."""
        variables = self.stack.variables()
        uri = variables["MLFLOW_TRACKING_URI"]
        parts = urllib.parse.urlsplit(uri)
        user = urllib.parse.quote(variables["MLFLOW_TRACKING_USERNAME"], safe="")
        password = urllib.parse.quote(variables["MLFLOW_TRACKING_PASSWORD"], safe="")
        return MlflowClient(f"{parts.scheme}://{user}:{password}@{parts.netloc}")

    def champion(self) -> str:
        return str(self.client().get_model_version_by_alias(MODEL, "champion").version)

    def digest(self, tag: str) -> str:
        inspect = ["skopeo", "inspect", "--tls-verify=false", "--format={{.Digest}}"]
        image = f"docker://{self.registry}/{OWNER}/{MODEL}:{tag}"
        return run([*inspect, image], self.scratch, self.runner_env).stdout.strip()

    def tags(self) -> list[str]:
        listed = get_json(f"http://{self.registry}/v2/{OWNER}/{MODEL}/tags/list")["tags"]
        return sorted(listed)

    def objects(self) -> dict[str, dict[str, str]]:
        python = str(self.project / ".venv" / "bin" / "python")
        env = self.stack.client_env()
        found: dict[str, dict[str, str]] = json.loads(
            run([python, "-c", HASH_OBJECTS], self.project, env).stdout
        )
        return found

    def prometheus(self, path: str, **query: str) -> Any:
        url = self.stack.variables()["STACK_PROMETHEUS_URL"]
        return get_json(f"{url}{path}?{urllib.parse.urlencode(query)}")["data"]


def users(output: str) -> dict[str, dict[str, str]]:
    """`make mlflow-users`' output as each GitHub environment's secrets."""
    found: dict[str, dict[str, str]] = {}
    for kind, environment, value in SECRET_LINE.findall(output):
        found.setdefault(environment, {})[f"MLFLOW_TRACKING_{kind}"] = value
    assert set(found) == {"mlflow-read", "production"}, output
    return found


@pytest.fixture
def team(
    bake: Bake, bake_env: dict[str, str], engine_env: dict[str, str], tmp_path: Path
) -> Iterator[Team]:
    started = time.monotonic()
    project = bake(github_owner=OWNER, dvc_remote="s3")
    # The base image made here, as tests/test_image_slow.py explains, in the runners' storage.
    _, base = unpinned_base(project)
    dockerfile = tmp_path / "base.Dockerfile"
    dockerfile.write_text(f"FROM {base}\n", encoding="utf-8")
    base_image(dockerfile, engine_env, tmp_path)
    git(project, bake_env, "config", "user.email", "team@example.com")
    git(project, bake_env, "config", "user.name", "Team")
    make(project, bake_env, "setup")
    with stack_of(project, bake_env) as stack:
        stack.start()
        variables = stack.variables()
        admin = stack.client_env()
        make(project, admin, "push")  # the sample data, to the bucket
        secrets = users(make(project, admin, "mlflow-users"))
        # The author's first model, trained on the laptop's own embedded registry.
        make(project, bake_env, "repro")
        commit(project, bake_env, "First model")
        runner_env = {
            **engine_env,
            "BACKEND": "buildah",  # the runner's image builder (GitHub's has Docker)
            "REHEARSAL_REGISTRY": variables["STACK_REGISTRY"],
            "AWS_ENDPOINT_URL_S3": variables["AWS_ENDPOINT_URL_S3"],  # S3's own, on GitHub
        }
        for name in ("MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_USERNAME", "AWS_ACCESS_KEY_ID"):
            runner_env.pop(name, None)
        team = Team(
            stack=stack,
            runner_env=runner_env,
            variables={
                "MLFLOW_TRACKING_URI": variables["MLFLOW_TRACKING_URI"],
                "DVC_REMOTE_URL": f"s3://{BUCKET}/storage",
                "AWS_ROLE_ARN": "arn:aws:iam::123456789012:role/tumour-classifier-dvc",
                "AWS_REGION": "us-east-1",
            },
            secrets=secrets,
            cloud_login={
                "AWS_ACCESS_KEY_ID": variables["AWS_ACCESS_KEY_ID"],
                "AWS_SECRET_ACCESS_KEY": variables["AWS_SECRET_ACCESS_KEY"],
            },
            scratch=tmp_path,
        )
        team.timed("bake, set up, start the stack, first commit", started)
        yield team
        print("\n".join(f"{s:7.1f} s  {step}" for step, s in team.timings.items()))
        if "CYCLE_TIMINGS" in os.environ:  # benchmarks/cycle.py reads them
            Path(os.environ["CYCLE_TIMINGS"]).write_text(json.dumps(team.timings), "utf-8")


def assert_released(team: Team, job: Job, version: str, commit_sha: str) -> str:
    """The release job published `version` from `commit_sha`: its tags, the champion tag on
    the same manifest, the alias. Returns the image's digest."""
    assert f"### Release: {MODEL} version {version}" in job.summary
    digest = team.digest(f"v{version}")
    assert team.digest(commit_sha[:12]) == digest
    assert team.digest("champion") == digest
    assert team.champion() == version
    return digest


def test_the_team_cycle_against_the_stack(team: Team) -> None:
    project, env = team.project, team.stack.env

    # Pull request 1: the gate against the registry, which holds no champion yet.
    started = time.monotonic()
    base = git(project, env, "rev-parse", "main")
    propose(project, env, "better", "Less regularisation", train__logistic_regression__C=10.0)
    comment = team.pull_request("better", base)
    assert "(the registry has no champion)" in comment
    assert "**Decision: pass.**" in comment
    team.timed("pull request 1: train and comment jobs", started)

    # Merge 1: version 1, its image in the registry, the champion.
    started = time.monotonic()
    first = merge(project, env, "better")
    digest_1 = assert_released(team, team.release(), "1", first)
    team.timed("merge 1: release job (version 1, its image built and pushed)", started)

    # Pull request 2 and its merge: version 2, gated against version 1 in the registry.
    started = time.monotonic()
    propose(project, env, "seed", "Another seed", train__seed=7)
    comment = team.pull_request("seed", first)
    assert "version 1" in comment, comment
    assert "**Decision: pass.**" in comment
    team.timed("pull request 2: train and comment jobs", started)
    started = time.monotonic()
    second = merge(project, env, "seed")
    digest_2 = assert_released(team, team.release(), "2", second)
    assert digest_2 != digest_1
    team.timed("merge 2: release job (version 2, its image built and pushed)", started)

    # The champion's image, pulled from the registry and run as the Deployment runs it, on the
    # port Prometheus scrapes; healthy traffic, then a burst of refused requests.
    serve_and_watch(team, "2")

    # The scheduled monitor job, on the data in the bucket (drift; no label has come yet).
    started = time.monotonic()
    drift = team.job(team.workflow("monitor.yml"), "monitor", None, event_name="schedule")
    assert drift.outputs["drift"] in {"true", "false"}
    team.timed("monitor job (drift; no labels yet)", started)

    # Roll back: version 1 is the champion again, and the image's champion tag with it.
    started = time.monotonic()
    reason = {"reason": "AUC fell on cohort B"}
    rollback = team.workflow("rollback.yml")
    team.job(rollback, "rollback", "production", event_name="workflow_dispatch", inputs=reason)
    assert team.champion() == "1"
    assert team.digest("champion") == digest_1
    team.timed("rollback job", started)

    # A push afterwards trains version 2's model again: nothing moves.
    started = time.monotonic()
    edit_readme(project, env, "On call: the data team.")
    release = team.release()
    assert "### Release: nothing published" in release.summary
    assert "version 2, which was rolled back (AUC fell on cohort B)" in release.summary
    assert team.champion() == "1"
    assert team.digest("champion") == digest_1
    team.timed("a push after the rollback: release job", started)
    # What the Deployment pulls on its next start serves version 1.
    serve_and_watch(team, "1", watch=False)

    # Counted: versions and aliases, image tags, DVC's objects and MLflow's artifacts.
    client = team.client()
    versions = client.search_model_versions(f"name='{MODEL}'")
    assert sorted(str(version.version) for version in versions) == ["1", "2"]
    aliases = client.get_registered_model(MODEL).aliases
    assert aliases["champion"] == "1"
    assert team.tags() == sorted(["v1", "v2", first[:12], second[:12], "champion"])
    objects = team.objects()
    assert objects[BUCKET]
    for key, md5 in objects[BUCKET].items():
        # storage/files/md5/ab/cdef...[.dir]: every object whole, its content its name.
        assert key.removesuffix(".dir").replace("/", "").endswith(md5), key
    for version in versions:
        logged = str(version.source).removeprefix("models:/")
        files = {key.rsplit("/", 1)[1] for key in objects["mlflow-artifacts"] if logged in key}
        assert {"MLmodel", "model.skops"} <= files, (version.version, version.source)


def serve_and_watch(team: Team, version: str, *, watch: bool = True) -> None:
    """Run IMAGE:champion from the registry; with `watch`, send traffic and check Prometheus."""
    started = time.monotonic()
    volumes = team.scratch / f"volumes-{version}"
    port = team.stack.service_port
    name = f"cycle-{port}"
    service = container(team.project)
    (http,) = service["ports"]
    image = f"{team.registry}/{OWNER}/{MODEL}:champion"
    runtime = ["--runtime=runc", *machine_limits()]
    command = [
        *("podman", "run", f"--name={name}", "--pull=always", "--tls-verify=false", *runtime),
        *as_the_deployment_runs_it(team.project, volumes),
        *(f"--publish=127.0.0.1:{port}:{http['containerPort']}", image),
    ]
    url = f"http://127.0.0.1:{port}"
    log = team.scratch / f"container-{version}.log"
    with running(command, name, team.runner_env, 30, log) as (process, _):
        wait_for_http(url + "/readyz", process, 180, log)
        rows = sample_rows_from(team)
        for count in (1, 3, 5) * 10:
            status, headers, answer = call(
                url + "/predict", json.dumps({"rows": rows[:count]}).encode()
            )
            assert status == 200, answer
            assert headers["x-model-version"] == version
            assert len({item["prediction_id"] for item in json.loads(answer)}) == count
        team.timed(
            f"the champion's image (version {version}) pulled, started, 30 requests", started
        )
        if watch:
            watch_prometheus(team, url)


def sample_rows_from(team: Team) -> list[dict[str, float]]:
    """Rows of the raw data without the target: what a client sends."""
    raw = pd.read_csv(next((team.project / "data" / "raw").glob("*.csv")), nrows=5)
    schema = team.project / "src" / "tumour_classifier" / "core" / "schema.yaml"
    target = yaml.safe_load(schema.read_text(encoding="utf-8"))["target"]["name"]
    rows: list[dict[str, float]] = raw.drop(columns=target).to_dict("records")
    return rows


def watch_prometheus(team: Team, url: str) -> None:
    """Every dashboard query returns data; no alert but the new-version notice on healthy
    traffic; a burst of refused requests sets off the rejected-requests alert."""
    started = time.monotonic()
    slug = MODEL
    queries = [
        expr.replace("$job", slug).replace("$__rate_interval", "1m")
        for expr in dashboard_exprs(team.project)
    ]
    # Healthy traffic until every panel has data: a rate needs two scrapes of a series.
    rows = json.dumps({"rows": sample_rows_from(team)}).encode()
    empty = queries
    while empty and time.monotonic() < started + 90:
        for _ in range(5):
            assert call(url + "/predict", rows)[0] == 200
        time.sleep(1)
        empty = [q for q in queries if not team.prometheus("/api/v1/query", query=q)["result"]]
    assert not empty, empty
    # The error-rate panel: zero, not "no data", while every request succeeds.
    for query in [query for query in queries if "http_response_code=~" in query]:
        (series,) = team.prometheus("/api/v1/query", query=query)["result"]
        assert float(series["value"][1]) == 0, (query, series)
    alerts = team.prometheus("/api/v1/alerts")["alerts"]
    # A Prometheus started today saw no version an hour ago: the notice is right to show.
    assert [alert["labels"]["alertname"] for alert in alerts] in ([], ["ModelVersionChanged"])
    team.timed("Prometheus: every dashboard query answers, no alert on healthy traffic", started)

    # Refused requests for as long as it takes: Prometheus sees a rate only between two scrapes
    # of a series, and the 4xx series starts at the first scrape after the first refusal.
    started = time.monotonic()
    states: dict[str, str] = {}
    while "ModelServiceManyRejectedRequests" not in states and time.monotonic() < started + 90:
        for _ in range(10):
            assert call(url + "/predict", b'{"rows": [{"x": 1}]}')[0] == 400
        time.sleep(1)
        alerts = team.prometheus("/api/v1/alerts")["alerts"]
        states = {alert["labels"]["alertname"]: alert["state"] for alert in alerts}
    # Pending: the condition holds on real scrapes; it fires after the rule's `for:` (15
    # minutes), which `promtool test rules` checks in tests/test_deploy.py.
    assert states.get("ModelServiceManyRejectedRequests") in {"pending", "firing"}, states
    assert "ModelServiceHighErrorRate" not in states
    team.timed("Prometheus: a burst of refused requests sets off the alert", started)
