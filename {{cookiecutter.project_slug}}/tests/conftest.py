"""Shared fixtures: the project's real data and a scratch copy of the project to run stages in."""

import shutil
from pathlib import Path

import pandas as pd
import pytest

from {{ cookiecutter.package_name }}.config import PARAMS_FILE, RAW_DATA
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


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, raw_data: pd.DataFrame) -> Path:
    """A scratch project with params.yaml and the raw data; the stages run inside it."""
    shutil.copy(ROOT / PARAMS_FILE, tmp_path / PARAMS_FILE)
    (tmp_path / RAW_DATA).parent.mkdir(parents=True)
    shutil.copy(ROOT / RAW_DATA, tmp_path / RAW_DATA)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    return tmp_path
