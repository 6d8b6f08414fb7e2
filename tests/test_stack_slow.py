"""Slow tier: `make stack`, the team's services on one machine without containers, for real.

A project baked with an s3 DVC remote starts the stack (moto's S3 server, PostgreSQL and MLflow
with its artifacts in a bucket, docker-registry, Prometheus) and works against it: its data goes
to the object store, its model's files to the artifact bucket; a clone on a second path, given
only the stack's variables and `.dvc/config.local`, pulls the data and resolves the champion over
HTTP; the registry takes an image; Prometheus loads the alert rules and scrapes the service. A
stop and a second start keep everything.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import shutil
import socket
import stat
import tarfile
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from mlflow import MlflowClient

from .conftest import Bake, answers, make, run
from .stack import Stack, stack_of

pytestmark = pytest.mark.slow


@pytest.fixture
def stack(bake: Bake, bake_env: dict[str, str]) -> Iterator[Stack]:
    project = bake(dvc_remote="s3")
    make(project, bake_env, "setup")  # the remote is not there yet: the push waits
    with stack_of(project, bake_env) as started:
        ports, env = started.ports, started.env
        # A taken port: one line naming the option that moves it, and nothing left running.
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", ports["s3"]))
            taken.listen()
            refused = run(started.start_command(), project, env, check=False)
        assert refused.returncode != 0
        assert [line for line in refused.stderr.splitlines() if line.startswith("ERROR")] == [
            f"ERROR: port {ports['s3']} on 127.0.0.1 is taken, so the object store cannot listen "
            'there: stop what uses it or pick another port (make stack ARGS="--s3-port <port>")'
        ]
        assert "Nothing was running" in make(project, env, "stack-stop")
        output = started.start()
        assert "ERROR" not in output
        yield started


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.load(response)


def test_the_project_works_against_the_stack_and_a_clone_gets_data_and_champion(
    stack: Stack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project, env = stack.project, stack.client_env()
    variables = stack.variables()
    s3_url = f"http://127.0.0.1:{stack.ports['s3']}"
    mlflow_url = f"http://127.0.0.1:{stack.ports['mlflow']}"
    assert variables["MLFLOW_TRACKING_URI"] == mlflow_url
    assert variables["AWS_ENDPOINT_URL_S3"] == s3_url
    assert variables["STACK_REGISTRY"] == f"127.0.0.1:{stack.ports['registry']}"
    assert {"MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "AWS_ACCESS_KEY_ID"} <= set(
        variables
    )
    # Only its owner reads the credentials; DVC's endpoint is in config.local, git's config
    # untouched.
    assert stat.S_IMODE((stack.folder / "stack.env").stat().st_mode) == 0o600
    root_mode = 0o710 if os.geteuid() == 0 else 0o700
    assert stat.S_IMODE(stack.folder.stat().st_mode) == root_mode
    local = (project / ".dvc" / "config.local").read_text(encoding="utf-8")
    assert f"endpointurl = {s3_url}" in local
    assert variables["AWS_SECRET_ACCESS_KEY"] in local
    unchanged = run(["git", "diff", "--quiet", "--", ".dvc/config"], project, env, check=False)
    assert unchanged.returncode == 0
    assert "127.0.0.1" not in (project / ".dvc" / "config").read_text(encoding="utf-8")
    # Started again, it says what runs and starts nothing twice.
    again = stack.start()
    for line in ("The object store is already running", "The MLflow server is already running"):
        assert line in again

    # The data goes to the object store, through the project's own remote.
    make(project, env, "push")
    bucket = "tumour-classifier-dvc"
    objects = stack.objects()
    assert len(objects[bucket]) == 2  # the raw and the current sample
    assert all(key.startswith("storage/files/md5/") for key in objects[bucket])

    # The model's files go through MLflow's server into the artifact bucket, none to a folder.
    assert "version 1 is the 'challenger'" in make(project, env, "repro")
    assert "version 1 is now 'champion'" in make(project, env, "promote")
    artifacts = stack.objects()["mlflow-artifacts"]
    assert any(key.endswith("/model.skops") for key in artifacts), artifacts
    assert any(key.endswith("/MLmodel") for key in artifacts)
    assert not [path for path in (stack.folder / "mlflow" / "artifacts").rglob("*")]
    assert not (project / "mlruns").exists()
    assert not (project / "mlflow.db").exists()

    # A clone on a second path: only the stack's variables and .dvc/config.local.
    run(["git", "add", "--all"], project, env)
    run(["git", "commit", "--quiet", "--message", "the pipeline's outputs"], project, env)
    clone = tmp_path / "second-machine"
    run(["git", "clone", "--quiet", str(project), str(clone)], tmp_path, env)
    shutil.copy(project / ".dvc" / "config.local", clone / ".dvc" / "config.local")
    assert "pulled from the DVC remote" in make(clone, env, "setup")
    for pointer in [*project.glob("data/raw/*.csv"), *project.glob("data/current/*.csv")]:
        twin = clone / pointer.relative_to(project)
        assert twin.read_bytes() == pointer.read_bytes()
    champion = run(
        ["uv", "run", "--locked", "python", "-m", "tumour_classifier", "champion"], clone, env
    )
    assert "champion: tumour-classifier version 1" in champion.stdout

    check_registry(stack, tmp_path)
    check_prometheus(stack)

    # Stopped: nothing answers. Started again: the registry, the objects, the images are there.
    assert "the object store" in make(project, stack.env, "stack-stop")
    for name in ("mlflow", "s3", "registry", "prometheus"):
        assert not reachable(f"http://127.0.0.1:{stack.ports[name]}/")
    stack.start()
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    client = MlflowClient(tracking_uri=mlflow_url)
    assert client.get_model_version_by_alias("tumour-classifier", "champion").version == "1"
    kept = stack.objects()
    assert kept["mlflow-artifacts"] == artifacts
    assert len(kept[bucket]) == 2
    tags = get_json(f"http://{variables['STACK_REGISTRY']}/v2/stack-check/tags/list")["tags"]
    assert "v1" in tags
    shutil.rmtree(clone / ".dvc" / "cache")
    (clone / "data" / "raw" / "breast_cancer.csv").unlink()
    pull = ["uv", "run", "--locked", "dvc", "pull", "data/raw/breast_cancer.csv.dvc"]
    run(pull, clone, env)
    assert (clone / "data" / "raw" / "breast_cancer.csv").exists()


def reachable(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2):
            return True
    except urllib.error.HTTPError:
        return True
    except OSError:
        return False


def check_registry(stack: Stack, tmp_path: Path) -> None:
    """The registry answers /v2/ and takes an image pushed over its HTTP API, then (where skopeo
    is installed) a copy of it under another tag."""
    registry = stack.variables()["STACK_REGISTRY"]
    assert answers(f"http://{registry}/v2/")
    blobs, manifest_body = small_image()
    base = f"http://{registry}/v2/stack-check"
    for digest, body in blobs.items():
        request = urllib.request.Request(f"{base}/blobs/uploads/", method="POST")
        with urllib.request.urlopen(request, timeout=10) as response:
            location = response.headers["Location"]
        joiner = "&" if "?" in location else "?"
        upload = urllib.request.Request(
            f"{location}{joiner}digest={digest}",
            data=body,
            method="PUT",
            headers={"Content-Type": "application/octet-stream"},
        )
        with urllib.request.urlopen(upload, timeout=10) as response:
            assert response.status == 201
    manifest = urllib.request.Request(
        f"{base}/manifests/v1",
        data=manifest_body,
        method="PUT",
        headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"},
    )
    with urllib.request.urlopen(manifest, timeout=10) as response:
        assert response.status == 201
        digest = response.headers["Docker-Content-Digest"]
    assert digest == "sha256:" + hashlib.sha256(manifest_body).hexdigest()
    tags = ["v1"]
    if shutil.which("skopeo"):
        run(
            [
                *("skopeo", "copy", "--src-tls-verify=false", "--dest-tls-verify=false"),
                f"docker://{registry}/stack-check:v1",
                f"docker://{registry}/stack-check:copied",
            ],
            tmp_path,
            stack.env,
        )
        tags.append("copied")
    listed = get_json(f"{base}/tags/list")["tags"]
    assert sorted(listed) == sorted(tags)


def small_image() -> tuple[dict[str, bytes], bytes]:
    """An OCI image of one layer holding one file: its blobs by digest and its manifest."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        data = b"stack check\n"
        info = tarfile.TarInfo("hello.txt")
        info.size = len(data)
        archive.addfile(info, io.BytesIO(data))
    layer = gzip.compress(buffer.getvalue(), mtime=0)
    diff_id = "sha256:" + hashlib.sha256(buffer.getvalue()).hexdigest()
    config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        }
    ).encode()

    def digest(blob: bytes) -> str:
        return "sha256:" + hashlib.sha256(blob).hexdigest()

    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": digest(config),
            "size": len(config),
        },
        "layers": [
            {
                "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                "digest": digest(layer),
                "size": len(layer),
            }
        ],
    }
    return {digest(config): config, digest(layer): layer}, json.dumps(manifest).encode()


def check_prometheus(stack: Stack) -> None:
    """Every alert rule of deploy/monitoring/alerts.yaml loaded; the service a scrape target."""
    url = stack.variables()["STACK_PROMETHEUS_URL"]
    rules_file = stack.project / "deploy" / "monitoring" / "alerts.yaml"
    written = {
        rule["alert"]
        for group in yaml.safe_load(rules_file.read_text(encoding="utf-8"))["groups"]
        for rule in group["rules"]
    }
    groups = get_json(f"{url}/api/v1/rules")["data"]["groups"]
    loaded = {rule["name"] for group in groups for rule in group["rules"]}
    assert written
    assert loaded == written
    targets = get_json(f"{url}/api/v1/targets")["data"]["activeTargets"]
    assert [(target["labels"]["job"], target["scrapeUrl"]) for target in targets] == [
        ("tumour-classifier", f"http://127.0.0.1:{stack.service_port}/metrics")
    ]
