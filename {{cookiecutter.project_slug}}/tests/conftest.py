"""Shared fixtures: the project's real data and a scratch copy of the project to run stages in."""

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pandas as pd
import pytest

from {{ cookiecutter.package_name }}.config import PARAMS_FILE, RAW_DATA, load_params
from {{ cookiecutter.package_name }}.schema import Schema, load_schema, read_table

ROOT = Path(__file__).resolve().parents[1]


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


def copy_inputs(folder: Path) -> None:
    """Copy params.yaml, the raw data and the current data of this project into `folder`."""
    shutil.copy(ROOT / PARAMS_FILE, folder / PARAMS_FILE)
    for data in (RAW_DATA, Path(load_params(ROOT / PARAMS_FILE).drift.current)):
        (folder / data).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / data, folder / data)


@contextmanager
def scratch_project(folder: Path) -> Iterator[Path]:
    """Work inside `folder` as a copy of this project: params.yaml, the raw and current data, and
    its own MLflow store and BentoML home."""
    copy_inputs(folder)
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
def workdir(tmp_path: Path, raw_data: pd.DataFrame) -> Iterator[Path]:
    """A scratch project with params.yaml and the raw data; the stages run inside it."""
    with scratch_project(tmp_path) as folder:
        yield folder
