"""`stack`: what it refuses before it starts anything, and the files it leaves for clients (the
services themselves run in the template's slow tier, tests/test_stack_slow.py)."""

import argparse
import os
import stat
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from {{ cookiecutter.package_name }}.__main__ import main
from {{ cookiecutter.package_name }}.core.errors import ProjectError
from {{ cookiecutter.package_name }}.ops import object_store, oci_registry, prometheus, stack


def test_stop_without_a_stack_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("STACK_DIR", str(tmp_path / "nothing"))
    assert main(["stack", "stop"]) == 0
    assert "nothing was running" in capsys.readouterr().out
    assert not (tmp_path / "nothing").exists()


def start_registry(folder: Path) -> None:
    oci_registry.start(oci_registry.Registry(folder, 1))


def start_prometheus(folder: Path) -> None:
    prometheus.start(prometheus.Prometheus(folder, 1, "127.0.0.1:3000"))


@pytest.fixture
def open_umask() -> Iterator[None]:
    """Files made while it lasts would be readable by anyone, unless made private on purpose."""
    previous = os.umask(0)
    yield
    os.umask(previous)


@pytest.mark.parametrize(
    ("start", "service", "package"),
    [
        (start_registry, "registry", "docker-registry"),
        (start_prometheus, "monitoring", "prometheus"),
    ],
    ids=["docker-registry", "prometheus"],
)
def test_a_missing_program_is_one_line_naming_the_debian_package(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    start: Callable[[Path], None],
    service: str,
    package: str,
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ProjectError, match=f"apt-get install {package}\\)$") as error:
        start(tmp_path / "folder")
    assert service in str(error.value)
    assert not (tmp_path / "folder").exists()


def test_only_s3_remotes_use_the_object_store() -> None:
    assert stack.dvc_bucket("s3://team-dvc/storage") == "team-dvc"
    assert stack.dvc_bucket("s3://team-dvc") == "team-dvc"
    for url in ("gs://team-dvc/storage", "azure://team-dvc/storage", "/srv/dvc"):
        assert stack.dvc_bucket(url) is None


@pytest.mark.usefixtures("open_umask")
def test_the_env_file_is_private_and_gives_back_every_value_when_sourced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STACK_DIR", str(tmp_path / "stack"))
    monkeypatch.setenv("MLFLOW_AUTH_ADMIN_PASSWORD", "it's a $(secret) `one`")
    root = stack.stack_dir()
    root.mkdir()
    stored = stack.load_secrets(root)
    assert stack.load_secrets(root) == stored  # made once, then kept
    assert stored["mlflow_admin"] == "it's a $(secret) `one`"
    ports = {"s3_port": 9000, "registry_port": 5050, "prometheus_port": 9090}
    layout = stack.layout(argparse.Namespace(**ports, service="127.0.0.1:3000"), stored)
    variables = stack.client_env(layout, "http://127.0.0.1:5000", stored["mlflow_admin"])
    stack.write_env_file(layout, variables)
    for path in (root / "secrets.json", layout.env_file):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    script = f'source "{layout.env_file}"; printf "%s\\n" ' + " ".join(
        f'"${name}"' for name in variables
    )
    sourced = subprocess.run(
        ["bash", "-c", script], capture_output=True, text=True, check=True, env={}
    ).stdout.splitlines()
    assert sourced == list(variables.values())
    assert variables["AWS_ENDPOINT_URL_S3"] == "http://127.0.0.1:9000"
    assert variables["STACK_REGISTRY"] == "127.0.0.1:5050"
    assert variables["STACK_INFERENCE_LOG_URL"] == "s3://inference-log/inference"
    assert variables["STACK_FEEDBACK_LOG_URL"] == "s3://inference-log/feedback"


def test_a_given_admin_password_too_short_for_mlflow_is_refused_before_anything_is_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLFLOW_AUTH_ADMIN_PASSWORD", "short")
    with pytest.raises(ProjectError, match="MLflow wants 12 or more"):
        stack.load_secrets(tmp_path)
    assert not (tmp_path / "secrets.json").exists()
    monkeypatch.delenv("MLFLOW_AUTH_ADMIN_PASSWORD")
    assert len(stack.load_secrets(tmp_path)["mlflow_admin"]) == 32


def test_an_object_key_that_would_leave_the_snapshot_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ProjectError, match="cannot keep the object"):
        object_store._inside(tmp_path, "../outside")
    assert object_store._inside(tmp_path, "a/b.csv") == (tmp_path / "a" / "b.csv").resolve()
