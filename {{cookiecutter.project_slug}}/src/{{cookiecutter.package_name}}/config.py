"""Where things live, and params.yaml read once into typed settings."""

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic_core import ErrorDetails

from .errors import ParamsError
from .estimators import TrainParams

PARAMS_FILE = Path("params.yaml")
RAW_DATA = Path("data/raw/{{ cookiecutter.__dataset }}.csv")
TRAIN_DATA = Path("data/prepared/train.csv")
TEST_DATA = Path("data/prepared/test.csv")
MODEL_FILE = Path("models/model.skops")
METRICS_FILE = Path("reports/metrics.json")
PLOTS_DIR = Path("reports/plots")
MODEL_VERSION_FILE = Path("reports/model_version.json")


class Section(BaseModel):
    """A params.yaml section: unknown keys and loose types are errors, not surprises."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class PrepareParams(Section):
    test_size: float = Field(gt=0, lt=1)
    seed: int = Field(ge=0)
    stratify: bool


class MlflowParams(Section):
    tracking_uri: str = Field(min_length=1)
    experiment: str = Field(min_length=1)
    model_name: str = Field(min_length=1, max_length=256)


class Params(Section):
    prepare: PrepareParams
    train: TrainParams
    mlflow: MlflowParams


def load_params(path: Path = PARAMS_FILE) -> Params:
    """Read and validate params.yaml; raise ParamsError naming the first bad key."""
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ParamsError(f"{path}: not found; run the command from the project root") from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark else ""
        problem = getattr(error, "problem", None) or "cannot be parsed"
        raise ParamsError(f"{path}: {where}not valid YAML ({problem})") from None
    if not isinstance(raw, dict):
        raise ParamsError(f"{path}: expected a mapping of stage names to settings")
    try:
        return Params.model_validate(raw)
    except ValidationError as error:
        raise ParamsError(describe(path, error.errors()[0])) from None


def describe(path: Path, error: ErrorDetails) -> str:
    """One line that names the key, says what is wrong and shows what was given."""
    key = ".".join(str(part) for part in error["loc"])
    if error["type"] == "missing":
        return f"{path}: {key}: missing; add it (see the comments in params.yaml)"
    if error["type"] == "extra_forbidden":
        return f"{path}: {key}: unknown key; check its spelling and its section"
    return f"{path}: {key}: {error['msg']} (got {_show(error['input'])})"


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
