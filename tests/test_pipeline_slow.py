"""Slow tier: install baked projects for real and run their pipelines, checks and a fresh clone."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest
import yaml
from mlflow import MlflowClient

from .conftest import MATRIX, ROOT, Bake, free_port, has_python, make, run, wait_for_http

pytestmark = pytest.mark.slow
UP_TO_DATE = "Data and pipelines are up to date."


def dvc(project: Path, env: dict[str, str], *args: str) -> str:
    return run(["uv", "run", "--locked", "dvc", *args], project, env).stdout


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def registry(project: Path) -> MlflowClient:
    return MlflowClient(tracking_uri=f"sqlite:///{project / 'mlflow.db'}")


# The lifecycle runs on the option cases' answers (a task, a cloud remote, a Python version and a
# licence each), so that every option value goes through it without a bake of its own.
OPTION_CASES = [case for case in MATRIX if case != "default" and "server" not in case]


@pytest.mark.parametrize("case", OPTION_CASES)
def test_pipeline_lifecycle(
    bake: Bake, bake_env: dict[str, str], tmp_path: Path, case: str
) -> None:
    remote = tmp_path / "dvc-remote"
    project = bake_case(bake, bake_env, MATRIX[case], remote)
    task = MATRIX[case]["task"]
    dataset = "breast_cancer" if task == "classification" else "diabetes"
    data = project / "data" / "raw" / f"{dataset}.csv"

    # First run: environment from the lock file, sample data tracked and pushed, pipeline.
    make(project, bake_env, "setup")
    assert data.exists()
    assert any(remote.rglob("*")), "the sample data was not pushed to the local remote"
    output = make(project, bake_env, "repro")
    assert "version 1 is the 'challenger'" in output
    metrics = json.loads((project / "reports" / "metrics.json").read_text(encoding="utf-8"))
    assert metrics

    # Nothing changed: nothing runs, and DVC says so.
    second = make(project, bake_env, "repro")
    assert "Running stage" not in second
    assert UP_TO_DATE in dvc(project, bake_env, "status")

    # A parameter change retrains and registers version 2 with its lineage.
    params_file = project / "params.yaml"
    params = yaml.safe_load(params_file.read_text(encoding="utf-8"))
    params["train"]["estimator"] = "random_forest"
    params_file.write_text(yaml.safe_dump(params, sort_keys=False), encoding="utf-8")
    third = make(project, bake_env, "repro")
    assert "Stage 'prepare' didn't change, skipping" in third
    assert "Running stage 'train'" in third
    version = registry(project).get_model_version(params["mlflow"]["model_name"], "2")
    assert version.tags["params_sha256"] == hashlib.sha256(params_file.read_bytes()).hexdigest()
    pointer = yaml.safe_load(data.with_name(data.name + ".dvc").read_text(encoding="utf-8"))
    assert version.tags["data_md5"] == pointer["outs"][0]["md5"]
    assert re.fullmatch(r"[0-9a-f]{40}|unknown", version.tags["git_commit"])
    assert version.tags["git_dirty"] in {"true", "false", "unknown"}
    challenger = registry(project).get_model_version_by_alias(version.name, "challenger")
    assert str(challenger.version) == "2"

    # The generated project passes its own read-only checks.
    make(project, bake_env, "check")

    # A bento of the champion: Dockerfile, OpenAPI document, and the model version pinned.
    make(project, bake_env, "promote")
    output = make(project, bake_env, "bento")
    assert "serves" in output
    assert "version 2" in output
    bento = next((project / ".bentoml" / "bentos").glob("*/*/bento.yaml")).parent
    assert (bento / "env" / "docker" / "Dockerfile").is_file()
    # What the image runs, and nothing else of the package: the service and core.
    package = (
        bento / "src" / json.loads((project / ".cookiecutter.json").read_text())["package_name"]
    )
    assert sorted(path.name for path in package.iterdir()) == ["__init__.py", "core", "serving"]
    assert "/predict" in (bento / "apis" / "openapi.yaml").read_text(encoding="utf-8")
    manifest = yaml.safe_load((bento / "bento.yaml").read_text(encoding="utf-8"))
    assert manifest["labels"]["mlflow_version"] == "2"
    (model,) = manifest["services"][0]["models"]
    name, tag = model["tag"].split(":")
    stored = project / ".bentoml" / "models" / name / tag / "model.yaml"
    assert yaml.safe_load(stored.read_text(encoding="utf-8"))["labels"]["mlflow_version"] == "2"

    # `make mlflow-ui` serves the embedded store on 127.0.0.1.
    port = free_port()
    ui = subprocess.Popen(
        ["make", "mlflow-ui", f"ARGS=--port {port}"],
        cwd=project,
        env=bake_env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        wait_for_http(f"http://127.0.0.1:{port}/health", ui)
    finally:
        os.killpg(ui.pid, signal.SIGTERM)
        ui.wait(timeout=30)

    # Commit, then a fresh clone gets the data back from the local remote.
    run(["git", "add", "-A"], project, bake_env)
    run(["git", "commit", "-q", "-m", "First model"], project, bake_env)
    assert run(["git", "status", "--porcelain"], project, bake_env).stdout == ""
    clone = tmp_path / "clone"
    run(["git", "clone", "-q", str(project), str(clone)], tmp_path, bake_env)
    assert not (clone / data.relative_to(project)).exists()
    if cloud(MATRIX[case]):
        point_remote_at(clone, bake_env, remote)
    output = make(clone, bake_env, "setup")
    assert "pulled from the DVC remote" in output
    assert md5(clone / data.relative_to(project)) == md5(data)


def aliases(project: Path, name: str) -> dict[str, str]:
    client = registry(project)
    return {
        alias: str(client.get_model_version_by_alias(name, alias).version)
        for alias in client.get_registered_model(name).aliases
    }


def test_a_killed_repro_reruns_to_the_same_outputs_and_a_locked_registry_moves_nothing(
    bake: Bake, bake_env: dict[str, str], tmp_path: Path
) -> None:
    project = bake(dvc_remote_url=str(tmp_path / "dvc-remote"))
    make(project, bake_env, "setup")
    make(project, bake_env, "repro")
    assert "Decision: pass" in make(project, bake_env, "promote")
    metrics = (project / "reports" / "metrics.json").read_text(encoding="utf-8")
    prepared = {path.name: md5(path) for path in (project / "data" / "prepared").iterdir()}

    # kill -9 in the middle of the train stage, after a parameter change.
    params_file = project / "params.yaml"
    params = yaml.safe_load(params_file.read_text(encoding="utf-8"))
    params["train"]["estimator"] = "random_forest"
    params_file.write_text(yaml.safe_dump(params, sort_keys=False), encoding="utf-8")
    # DVC itself is the child here, so that this process reaps it once killed: DVC's lock then
    # names a process that is gone, as on any machine whose init reaps orphans.
    venv = project / ".venv" / "bin"
    repro = subprocess.Popen(
        [str(venv / "dvc"), "repro"],
        cwd=project,
        env={**bake_env, "PATH": f"{venv}{os.pathsep}{bake_env['PATH']}"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    with repro:
        assert repro.stdout is not None
        for line in repro.stdout:
            if "Running stage 'train'" in line:
                time.sleep(1)
                os.killpg(repro.pid, signal.SIGKILL)
                break
    assert repro.returncode == -signal.SIGKILL
    assert "train" in dvc(project, bake_env, "status")

    # The next repro finishes the job, and gives what an uninterrupted run gives.
    output = make(project, bake_env, "repro")
    assert "Running stage 'train'" in output
    recovered = (project / "reports" / "metrics.json").read_text(encoding="utf-8")
    assert UP_TO_DATE in dvc(project, bake_env, "status")
    dvc(project, bake_env, "repro", "--force", "--no-run-cache", "register")
    assert (project / "reports" / "metrics.json").read_text(encoding="utf-8") == recovered
    assert recovered != metrics
    assert {path.name: md5(path) for path in (project / "data" / "prepared").iterdir()} == prepared
    assert UP_TO_DATE in dvc(project, bake_env, "status")

    # A registry that stays locked (another writer holds SQLite) gives one clear line and
    # leaves the aliases where they were. MLflow waits 20 s for the lock before it gives up.
    name = "tumour-classifier"
    make(project, bake_env, "promote", "REASON=a locked registry next")
    before = aliases(project, name)
    # Forced again, register found the model it had already registered (same training inputs).
    assert before == {"challenger": "2", "champion": "2", "previous": "1"}
    lock = sqlite3.connect(project / "mlflow.db", isolation_level=None)
    try:
        lock.execute("BEGIN IMMEDIATE")
        # Both at once: each waits out MLflow's 20 s, then gives up.
        targets = (["promote", "VERSION=1", "REASON=locked registry"], ["rollback"])
        waiting = [
            subprocess.Popen(
                ["make", *target],
                cwd=project,
                env=bake_env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                text=True,
            )
            for target in targets
        ]
        for process in waiting:
            _, stderr = process.communicate(timeout=300)
            assert process.returncode != 0
            assert "database is locked" in stderr
            assert "Traceback" not in stderr
    finally:
        lock.close()
    assert aliases(project, name) == before


def test_an_interrupted_dvc_push_leaves_whole_objects_and_the_next_push_completes(
    bake: Bake, bake_env: dict[str, str], tmp_path: Path
) -> None:
    """The release job pushes the data before it registers (checklist item 26): a push killed
    half-way must leave no object a later pull would take for whole, and pushing again must
    give a fresh clone every file."""
    remote = tmp_path / "remote"
    project = bake(dvc_remote_url=str(remote))
    make(project, bake_env, "setup")
    # Many objects, so that the push is still running when it is killed.
    extra = project / "data" / "extra"
    extra.mkdir()
    for index in range(2000):
        (extra / f"{index}.bin").write_bytes(os.urandom(8192))
    dvc(project, bake_env, "add", "data/extra")
    venv = project / ".venv" / "bin"
    push = subprocess.Popen(
        [str(venv / "dvc"), "push", "--jobs", "1"],
        cwd=project,
        env={**bake_env, "PATH": f"{venv}{os.pathsep}{bake_env['PATH']}"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    objects = remote / "files" / "md5"
    with push:
        while push.poll() is None and sum(1 for _ in objects.rglob("*")) < 200:
            time.sleep(0.01)
        os.killpg(push.pid, signal.SIGKILL)
    assert push.returncode == -signal.SIGKILL, "the push ended before it could be killed"
    files = [path for path in objects.rglob("*") if path.is_file()]
    # DVC writes each object to a hidden temporary file and renames it: the kill can leave
    # such a file behind (on a folder remote; an S3 upload is all or nothing), never a partial
    # object. Every object's name is the md5 of its bytes.
    stored = [path for path in files if not path.name.startswith(".")]
    assert all(path.name.endswith(".tmp") for path in set(files) - set(stored))
    assert 0 < len(stored) < 2000
    for path in stored:
        assert md5(path) == path.parent.name + path.name.removesuffix(".dir"), path

    # The next push uploads the rest: a fresh clone pulls every file as it was.
    dvc(project, bake_env, "push")
    git = ["git", "-c", "user.name=Team", "-c", "user.email=team@example.com"]
    run([*git, "add", "-A"], project, bake_env)
    run([*git, "commit", "-qm", "The sample and many more files"], project, bake_env)
    clone = tmp_path / "clone"
    run(["git", "clone", "-q", str(project), str(clone)], tmp_path, bake_env)
    make(clone, bake_env, "setup")
    dvc(clone, bake_env, "pull", "data/extra")
    assert {path.name: md5(path) for path in (clone / "data" / "extra").iterdir()} == {
        path.name: md5(path) for path in extra.iterdir()
    }


def test_tracking_server_option_runs_its_pipeline(
    bake: Bake, bake_env: dict[str, str], tmp_path: Path, mlflow_server: str
) -> None:
    """The baked http:// tracking URI, pointed at a real server: runs and models land there."""
    (case,) = [case for case in MATRIX if "server" in case]
    answers = {**MATRIX[case], "mlflow_tracking_uri": mlflow_server}
    project = run_option_case(bake, bake_env, tmp_path, answers)
    assert not (project / "mlflow.db").exists()
    record = json.loads((project / "reports" / "model_version.json").read_text(encoding="utf-8"))
    served = MlflowClient(tracking_uri=mlflow_server).get_model_version_by_alias(
        record["name"], "challenger"
    )
    assert str(served.version) == "1"
    assert served.tags["data_md5"] != "unknown"


def bake_case(bake: Bake, bake_env: dict[str, str], answers: dict[str, str], remote: Path) -> Path:
    """Bake `answers` with its DVC remote in the folder `remote`; return the project."""
    version = answers.get("python_version", "3.11")
    if not has_python(version):
        pytest.skip(f"no Python {version} on this machine, and uv must not download one")
    if not cloud(answers):
        return bake(**answers, dvc_remote_url=str(remote))
    project = bake(**answers)
    # Cloud storage cannot be reached from here: install the DVC extra, check it imports, and
    # point this copy at the folder through DVC's git-ignored local config.
    run(["uv", "lock"], project, bake_env)
    run(["uv", "sync", "--locked"], project, bake_env)
    plugin = {"s3": "dvc_s3", "gcs": "dvc_gs", "azure": "dvc_azure"}[answers["dvc_remote"]]
    run(["uv", "run", "--locked", "python", "-c", f"import {plugin}"], project, bake_env)
    point_remote_at(project, bake_env, remote)
    return project


def cloud(answers: dict[str, str]) -> bool:
    """Whether `answers` bake a cloud DVC remote, which the tests stand in for with a folder."""
    return answers.get("dvc_remote", "local") != "local"


def point_remote_at(project: Path, bake_env: dict[str, str], remote: Path) -> None:
    """This copy of a project reads and writes the folder `remote` (DVC's local config)."""
    dvc(project, bake_env, "remote", "modify", "--local", "storage", "url", str(remote))


def run_option_case(
    bake: Bake, bake_env: dict[str, str], tmp_path: Path, answers: dict[str, str]
) -> Path:
    """Bake, set up, run the pipeline and the project's own tests; return the project.

    Its lint, type check (at the Python it asks for) and workflow audit, the rest of its `make
    check`, are the fast tier's, on the same answers (test_bake.py, test_workflows.py)."""
    project = bake_case(bake, bake_env, answers, tmp_path / "dvc-remote")
    make(project, bake_env, "setup")
    output = make(project, bake_env, "repro")
    assert "version 1 is the 'challenger'" in output
    make(project, bake_env, "test")
    return project


def test_make_demo(bake_env: dict[str, str]) -> None:
    """The README's first command, exactly: bake the default project into build/demo/ and run it."""
    demo = ROOT / "build" / "demo"
    output = run(["make", "demo"], ROOT, bake_env).stdout
    assert "Metrics of the model on the test set:" in output
    assert "roc_auc" in output
    assert "Registered in MLflow: tumour-classifier version 1 as @challenger" in output
    assert (demo / "dvc-remote").is_dir()
    # The next step it prints, in a shell whose PATH has no uv (a new machine's).
    bare = {**bake_env, "PATH": "/usr/local/bin:/usr/bin:/bin"}
    project = demo / "tumour-classifier"
    assert shutil.which("uv", path=bare["PATH"]) is None
    assert "version 1 is now 'champion'" in make(project, bare, "promote")
