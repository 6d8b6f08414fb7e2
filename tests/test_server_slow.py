"""Slow tier: the shared MLflow server of `make mlflow-server` (PostgreSQL, basic auth), for real.

A baked project starts the server exactly as its README says, then trains, registers, promotes
and rolls back against it over HTTP with credentials, while two other processes register
versions of one model at the same moment. On the embedded SQLite store the second writer would
wait for the first one's lock and fail with "database is locked" (see test_pipeline_slow.py);
PostgreSQL takes both.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import stat
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from .conftest import Bake, answers, free_port, make, run

pytestmark = pytest.mark.slow
PASSWORD = "not-the-default-0123"  # a non-default admin password, 12 characters or more
# Each process logs a small model, says "ready", waits for "go" on stdin and then registers it,
# so that both registrations hit the server at the same moment.
REGISTER_WHEN_TOLD = """
import os
import sys
import mlflow
from sklearn.dummy import DummyClassifier

model = DummyClassifier().fit([[0.0], [1.0]], [0, 1])
mlflow.set_experiment(os.environ["EXPERIMENT"])  # one that exists: no race to create it
with mlflow.start_run():
    logged = mlflow.sklearn.log_model(model, name="model", pip_requirements=["scikit-learn"])
print("ready", flush=True)
sys.stdin.readline()
print(mlflow.register_model(logged.model_uri, "concurrent-registrations").version, flush=True)
"""


@dataclass(frozen=True)
class Server:
    project: Path
    uri: str
    env: dict[str, str]  # what the project's commands run with: the server and its credentials
    folder: Path
    pg_port: int


def error_lines(result: subprocess.CompletedProcess[str]) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.startswith("ERROR")]


@pytest.fixture
def server(bake: Bake, bake_env: dict[str, str], tmp_path: Path) -> Iterator[Server]:
    """A baked project pointed at http://127.0.0.1:<port>, and `make mlflow-server` started."""
    port, pg_port = free_port(), free_port()
    uri = f"http://127.0.0.1:{port}"
    project = bake(mlflow_tracking_uri=uri, dvc_remote_url=str(tmp_path / "dvc-remote"))
    make(project, bake_env, "setup")
    # The server's folder outside pytest's private temp folder: as root, PostgreSQL runs as the
    # `postgres` user, who must be able to reach its data folder.
    folder = Path(tempfile.mkdtemp(prefix="mlflow-server-"))
    folder.chmod(0o755)
    env = {**bake_env, "MLFLOW_SERVER_DIR": str(folder)}
    env.pop("MLFLOW_AUTH_ADMIN_PASSWORD", None)
    start = ["make", "mlflow-server", f"ARGS=--port {port} --pg-port {pg_port}"]
    try:
        # Bad situations give one line and start nothing: no password, the port taken.
        refused = run(start, project, env, check=False)
        assert refused.returncode != 0
        assert [line.split(":")[1] for line in error_lines(refused)] == [
            " MLFLOW_AUTH_ADMIN_PASSWORD is not set"
        ]
        env["MLFLOW_AUTH_ADMIN_PASSWORD"] = PASSWORD
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", port))
            taken.listen()
            refused = run(start, project, env, check=False)
        assert refused.returncode != 0
        assert error_lines(refused) == [
            f"ERROR: port {port} on 127.0.0.1 is taken, so the MLflow server cannot listen "
            f'there: stop what uses it or pick another port (make mlflow-server ARGS="--port '
            f'<port>")'
        ]
        assert not (folder / "postgres").exists()

        output = run(start, project, env).stdout
        assert f"MLflow server at {uri} (PostgreSQL on 127.0.0.1:{pg_port}" in output
        assert_private(folder)
        client_env = {
            **env,
            "MLFLOW_TRACKING_USERNAME": "admin",
            "MLFLOW_TRACKING_PASSWORD": PASSWORD,
        }
        yield Server(project, uri, client_env, folder, pg_port)
    finally:
        run(["make", "mlflow-server-stop"], project, env, check=False)
        shutil.rmtree(folder, ignore_errors=True)


def assert_private(folder: Path) -> None:
    """Only the owner may enter the server's folder (and, under root, pass PostgreSQL's user
    through to its cluster); its files are the owner's alone, though the folder was 0755."""
    modes = {
        name: stat.S_IMODE((folder / name).stat().st_mode)
        for name in (".", "artifacts", "secrets.json", "auth.ini", "mlflow.log", "mlflow.pid")
    }
    root_mode = 0o710 if os.geteuid() == 0 else 0o700
    assert modes == {
        ".": root_mode,
        "artifacts": 0o700,
        **dict.fromkeys(["secrets.json", "auth.ini", "mlflow.log", "mlflow.pid"], 0o600),
    }
    pid, started = (folder / "mlflow.pid").read_text(encoding="utf-8").split()
    stat_fields = Path(f"/proc/{pid}/stat").read_text(encoding="utf-8").rpartition(")")[2].split()
    assert stat_fields[22 - 3] == started


def registry(server: Server, monkeypatch: pytest.MonkeyPatch) -> MlflowClient:
    for name in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"):
        monkeypatch.setenv(name, server.env[name])
    return MlflowClient(tracking_uri=server.uri)


def test_a_project_trains_promotes_and_rolls_back_on_the_shared_server(
    server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    project, env = server.project, server.env
    assert "version 1 is the 'challenger'" in make(project, env, "repro")
    assert "version 1 is now 'champion'" in make(project, env, "promote")

    params_file = project / "params.yaml"
    params = yaml.safe_load(params_file.read_text(encoding="utf-8"))
    params["train"]["estimator"] = "random_forest"
    params_file.write_text(yaml.safe_dump(params, sort_keys=False), encoding="utf-8")
    assert "version 2 is the 'challenger'" in make(project, env, "repro")
    assert "version 2 is now 'champion'" in make(project, env, "promote", "REASON=second model")
    make(project, env, "rollback", "REASON=back to the first")

    client = registry(server, monkeypatch)
    name = params["mlflow"]["model_name"]
    assert client.get_model_version_by_alias(name, "champion").version == "1"
    assert client.get_model_version_by_alias(name, "challenger").version == "2"
    rolled_back = client.get_model_version(name, "2")
    assert rolled_back.tags["rollback_reason"] == "back to the first"
    # The models' files went through the server into its artifact folder, none into the project.
    assert list((server.folder / "artifacts").rglob("model.skops"))
    assert not (project / "mlruns").exists()
    assert not (project / "mlflow.db").exists()

    # The registry is in PostgreSQL, not in a file beside the server.
    secrets = json.loads((server.folder / "secrets.json").read_text(encoding="utf-8"))
    query = "SELECT count(*) FROM model_versions WHERE name = '" + name + "'"
    psql = [
        *("psql", "-h", "127.0.0.1", "-p", str(server.pg_port), "-U", "mlflow", "-d", "mlflow"),
        *("-tA", "-c", query),
    ]
    counted = run(psql, project, {**env, "PGPASSWORD": secrets["database"]}).stdout
    assert counted.strip() == "2"

    # Two processes register versions of one model at the same moment: both get one.
    concurrent = {
        **env,
        "MLFLOW_TRACKING_URI": server.uri,
        "EXPERIMENT": params["mlflow"]["experiment"],
    }
    assert sorted(register_at_once(project, concurrent, writers=2)) == ["1", "2"]

    # Wrong credentials: one line that says what to set, no traceback, nothing moved.
    wrong = {**env, "MLFLOW_TRACKING_PASSWORD": "not-the-password"}
    promote = ["make", "promote", "VERSION=2", "REASON=wrong password"]
    result = run(promote, project, wrong, check=False)
    assert result.returncode != 0
    assert error_lines(result) == [
        f"ERROR: MLflow at {server.uri}: the server refused the password of 'admin' (HTTP 401): "
        "set MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD to a user of that server"
    ]
    assert "Traceback" not in result.stderr
    assert client.get_model_version_by_alias(name, "champion").version == "1"

    # The stop target stops both; a second start finds the data where it was.
    stopped = make(project, env, "mlflow-server-stop")
    assert "Stopped the MLflow server and PostgreSQL" in stopped
    assert not answers(f"{server.uri}/health")
    assert "ERROR" not in make(project, env, "mlflow-server", f"ARGS={port_args(server)}")
    assert client.get_model_version_by_alias(name, "champion").version == "1"


def register_at_once(project: Path, env: dict[str, str], writers: int) -> list[str]:
    """Start `writers` processes, tell them to register once all are ready; their versions."""
    python = str(project / ".venv" / "bin" / "python")
    started = [
        subprocess.Popen(
            [python, "-c", REGISTER_WHEN_TOLD],
            cwd=project,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(writers)
    ]
    try:
        for writer in started:
            assert writer.stdout is not None
            # MLflow prints a line of its own when a run ends; "ready" comes after it.
            for line in writer.stdout:
                if line.strip() == "ready":
                    break
            else:
                pytest.fail(f"a writer stopped before it was ready: {writer.communicate()[1]}")
        for writer in started:
            assert writer.stdin is not None
            writer.stdin.write("go\n")
            writer.stdin.flush()
        results = [writer.communicate(timeout=120) for writer in started]
    finally:
        for writer in started:
            if writer.poll() is None:
                writer.kill()
                writer.communicate()
    for writer, (_, errors) in zip(started, results, strict=True):
        assert writer.returncode == 0, errors[-2000:]
    return [stdout.strip().splitlines()[-1] for stdout, _ in results]


def port_args(server: Server) -> str:
    return f"--port {server.uri.rsplit(':', 1)[1]} --pg-port {server.pg_port}"


def users_created(output: str) -> dict[str, dict[str, str]]:
    """`make mlflow-users`' output: each GitHub environment's MLflow username and password."""
    pattern = re.compile(r"gh secret set MLFLOW_TRACKING_(\w+) --env (\S+) --body '?([^']+)'?$")
    created: dict[str, dict[str, str]] = {}
    for match in filter(None, map(pattern.search, output.splitlines())):
        key, environment, value = match.groups()
        created.setdefault(environment, {})[f"MLFLOW_TRACKING_{key}"] = value
    return created


def test_pull_requests_read_with_their_own_user_and_only_the_release_user_writes(
    server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    """H2 of the security review: the pull-request job's MLflow user reads, never writes."""
    project, admin = server.project, server.env
    users = users_created(make(project, admin, "mlflow-users"))
    assert set(users) == {"mlflow-read", "production"}
    reader = {**admin, **users["mlflow-read"]}
    release = {**admin, **users["production"]}
    name = yaml.safe_load((project / "params.yaml").read_text(encoding="utf-8"))["mlflow"]
    model = name["model_name"]
    assert reader["MLFLOW_TRACKING_USERNAME"] == f"{model}-reader"

    # The release user registers and promotes; the pull request's user reads what the gate needs.
    assert "version 1 is the 'challenger'" in make(project, release, "repro")
    assert "version 1 is now 'champion'" in make(project, release, "promote")
    checked = make(project, reader, "remotes", "READ_ONLY=1")
    assert f"as user `{model}-reader`, read-only (READ)" in checked
    gate = run(["make", "gate", "METRICS=reports/metrics.json"], project, reader, check=False)
    assert "ERROR: MLflow" not in gate.stderr
    assert "version 1" in (project / "reports" / "gate.md").read_text(encoding="utf-8")

    # It cannot change the registry: aliases, tags, versions all refused, nothing moved.
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", reader["MLFLOW_TRACKING_USERNAME"])
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", reader["MLFLOW_TRACKING_PASSWORD"])
    as_reader = MlflowClient(tracking_uri=server.uri)
    writes = (
        lambda: as_reader.set_registered_model_alias(model, "challenger", "1"),
        lambda: as_reader.set_model_version_tag(model, "1", "rolled_back", "true"),
        lambda: as_reader.delete_registered_model_alias(model, "champion"),
        lambda: as_reader.delete_model_version(model, "1"),
    )
    for write in writes:
        with pytest.raises(MlflowException, match="Permission denied"):
            write()
    client = registry(server, monkeypatch)
    assert client.get_model_version_by_alias(model, "champion").version == "1"
    assert "rolled_back" not in client.get_model_version(model, "1").tags

    # A pull request's job given a user that could write fails before it runs anything else.
    for env, what in ((admin, "'admin' is an admin"), (release, f"'{model}-release' has EDIT")):
        result = run(["make", "remotes", "READ_ONLY=1"], project, env, check=False)
        assert result.returncode != 0
        assert len(error_lines(result)) == 1
        assert error_lines(result)[0].startswith(f"ERROR: MLflow user {what}")

    # Only the admin may create users; running it again gives new passwords, and the old ones
    # stop working.
    not_admin = run(["make", "mlflow-users"], project, release, check=False)
    assert error_lines(not_admin) == [
        "ERROR: `mlflow-users` runs as the server's admin: set MLFLOW_TRACKING_USERNAME and "
        f"MLFLOW_TRACKING_PASSWORD to the admin, not '{model}-release'"
    ]
    make(project, admin, "mlflow-users")
    stale = run(["make", "remotes", "READ_ONLY=1"], project, reader, check=False)
    assert "refused the password" in stale.stderr
