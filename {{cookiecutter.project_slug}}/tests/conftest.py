"""Shared fixtures: the project's real data and a scratch copy of the project to run stages in."""

import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from importlib.util import find_spec
from pathlib import Path

import pandas as pd
import pytest

from {{ cookiecutter.package_name }}.core.checks import read_table
from {{ cookiecutter.package_name }}.core.config import PARAMS_FILE, RAW_DATA, load_params
from {{ cookiecutter.package_name }}.core.schema import Schema, load_schema

ROOT = Path(__file__).resolve().parents[1]
# What a skops file that runs code holds, as this project's loading names it.
UNTRUSTED = ("posix.system", f"{__name__}.Trap")
# A prediction id: a version 4 UUID as 32 lowercase hex characters.
PREDICTION_ID_PATTERN = r"[0-9a-f]{12}4[0-9a-f]{3}[89ab][0-9a-f]{15}"


class Trap:
    """Writes its marker file when it is created from a file: proof that loading ran code."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __setstate__(self, state: dict[str, str]) -> None:
        Path(state["marker"]).write_text("code from the model file ran", encoding="utf-8")
        self.__dict__.update(state)


def malicious_model(path: Path, marker: Path) -> bytes:
    """Write a skops file that calls os.system when it scores and writes `marker` when it is
    loaded; check that it would, and return its bytes."""
    import skops.io
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import FunctionTransformer

    steps = [("run", FunctionTransformer(func=os.system)), ("trap", Trap(marker))]
    skops.io.dump(Pipeline(steps), path)
    loaded = skops.io.load(path, trusted=skops.io.get_untrusted_types(file=path))
    assert marker.is_file()
    assert loaded.steps[0][1].func is os.system
    marker.unlink()
    return path.read_bytes()


@pytest.fixture(scope="session")
def schema() -> Schema:
    return load_schema()


@pytest.fixture(scope="session")
def raw_data(schema: Schema) -> pd.DataFrame:
    """The DVC-tracked raw data (`make setup` puts it in place)."""
    path = ROOT / RAW_DATA
    if not path.exists():
        pytest.fail(f"{RAW_DATA} is missing: run `make setup` first")
    return read_table(path, schema)


def write_table(frame: pd.DataFrame, path: Path) -> Path:
    """The frame as CSV or Parquet, by the path's suffix, without its index."""
    if path.suffix == ".csv":
        frame.to_csv(path, index=False)
    else:
        frame.to_parquet(path, index=False)
    return path


def copy_inputs(folder: Path) -> None:
    """Copy params.yaml, the raw data and the current data of this project into `folder`."""
    shutil.copy(ROOT / PARAMS_FILE, folder / PARAMS_FILE)
    for data in (RAW_DATA, Path(load_params(ROOT / PARAMS_FILE).drift.current)):
        (folder / data).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / data, folder / data)


@pytest.fixture(scope="session")
def empty_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A new MLflow store: MLflow takes seconds to make a store's tables, which a copy skips."""
    from mlflow import MlflowClient

    path = tmp_path_factory.mktemp("empty-store") / "mlflow.db"
    MlflowClient(f"sqlite:///{path}").search_registered_models()
    return path


@contextmanager
def scratch_project(folder: Path, store: Path) -> Iterator[Path]:
    """Work inside `folder` as a copy of this project: params.yaml, the raw and current data, and
    its own MLflow store (a copy of `store`) and BentoML home."""
    copy_inputs(folder)
    shutil.copy(store, folder / "mlflow.db")
    settings = {
        "MLFLOW_TRACKING_URI": f"sqlite:///{folder / 'mlflow.db'}",
        "BENTOML_HOME": str(folder / ".bentoml"),
    }
    saved = {name: os.environ.get(name) for name in settings}
    before = Path.cwd()
    os.environ.update(settings)
    os.chdir(folder)
    try:
        yield folder
    finally:
        os.chdir(before)
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@pytest.fixture
def workdir(tmp_path: Path, raw_data: pd.DataFrame, empty_store: Path) -> Iterator[Path]:
    """A scratch project with params.yaml, the raw data and an empty MLflow store; the stages run
    inside it."""
    with scratch_project(tmp_path, empty_store) as folder:
        yield folder


@pytest.fixture
def storeless(workdir: Path) -> Path:
    """The scratch project without an MLflow store, to show that a command makes none."""
    (workdir / "mlflow.db").unlink()
    return workdir


@pytest.fixture(scope="session")
def empty_dvc_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A new git + DVC repository whose default remote is the folder `remote` beside its files:
    DVC keeps that path relative, so a copy of the repository has its own remote."""
    folder = tmp_path_factory.mktemp("empty-dvc-repo")
    for command in (
        ["git", "init", "-q"],
        ["dvc", "init", "-q"],
        ["dvc", "remote", "add", "-q", "-d", "storage", "remote"],
    ):
        subprocess.run(command, cwd=folder, check=True, capture_output=True)
    return folder


@pytest.fixture
def dvc_repo(workdir: Path, empty_dvc_repo: Path) -> Path:
    """The scratch project as a git + DVC repository with a folder as its remote: a copy of
    one made once, since each `dvc` command takes most of a second to start."""
    for name in (".git", ".dvc"):
        shutil.copytree(empty_dvc_repo / name, workdir / name, ignore=shutil.ignore_patterns("tmp"))
    shutil.copy(empty_dvc_repo / ".dvcignore", workdir)
    return workdir / "remote"


@pytest.fixture
def s3_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """moto's S3 server on 127.0.0.1, and the environment an S3 client reaches it with."""
    for package in ("s3fs", "moto", "boto3"):
        if find_spec(package) is None:
            pytest.skip(
                f"{package} is not installed: s3fs comes with dvc_remote=s3, moto and boto3 "
                "with the `server` group (`uv sync --group server`)"
            )
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", f"http://{host}:{port}")
    try:
        yield
    finally:
        server.stop()
