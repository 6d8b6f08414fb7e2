"""Where things live, and params.yaml read once into typed settings."""

import os
import re
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
)
from pydantic_core import ErrorDetails

from .errors import ParamsError
from .estimators import TrainParams
from .model_file import FILE_NAME

PARAMS_FILE = Path("params.yaml")
# What DVC tracks and the pipeline reads: nothing else writes under it.
DATA_DIR = Path("data")
RAW_DATA = Path("data/raw/{{ cookiecutter.__dataset }}.csv")
TRAIN_DATA = Path("data/prepared/train.csv")
TEST_DATA = Path("data/prepared/test.csv")
MODEL_FILE = Path("models") / FILE_NAME
METRICS_FILE = Path("reports/metrics.json")
PLOTS_DIR = Path("reports/plots")
MODEL_VERSION_FILE = Path("reports/model_version.json")
DRIFT_REPORT = Path("reports/drift.html")
DRIFT_SUMMARY = Path("reports/drift.json")
GATE_REPORT = Path("reports/gate.md")
MONITOR_REPORT = Path("reports/monitor.html")
MONITOR_SUMMARY = Path("reports/monitor.json")
# The prediction ids of the production rows `refresh` added to the raw data, one per line.
PRODUCTION_IDS = Path("data/raw/production_ids.txt")
REFRESH_REPORT = Path("reports/refresh.md")
# The service's inference log, as `drift` reads it: every worker's file and its rotated copies
# (`inference-1.jsonl`, `inference-1.jsonl.1`, ...).
LOG_FILES = "inference-*.jsonl*"

# The registry's aliases: the version being judged, the one served, the one it replaced.
CHALLENGER = "challenger"
CHAMPION = "champion"
PREVIOUS = "previous"

# Each metric `evaluate` reports, and whether a higher value is better.
{%- if cookiecutter.task == "classification" %}
METRICS = {"accuracy": True, "precision": True, "recall": True, "f1": True, "roc_auc": True}
{%- else %}
METRICS = {"rmse": False, "mae": False, "r2": True}
{%- endif %}


class Section(BaseModel):
    """A params.yaml section: unknown keys and loose types are errors, not surprises."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class PrepareParams(Section):
    test_size: float = Field(gt=0, lt=1)
    seed: int = Field(ge=0)
    stratify: bool


# The registered model's name also names its image (ghcr.io/<owner>/<model_name>).
MODEL_NAME = re.compile(r"[a-z0-9]+(?:[._-][a-z0-9]+)*")


class MlflowParams(Section):
    tracking_uri: str = Field(min_length=1)
    experiment: str = Field(min_length=1)
    model_name: str = Field(min_length=1, max_length=128)

    @field_validator("model_name")
    @classmethod
    def _names_an_image(cls, name: str) -> str:
        if not MODEL_NAME.fullmatch(name):
            raise ValueError(
                f"{name!r}: use lowercase letters and digits, with single '.', '_' or '-' "
                "between them (it also names the service's image)"
            )
        return name


class DriftParams(Section):
    current: str = Field(min_length=1)
    window_days: int = Field(ge=1)
    method: str | None
    threshold: float | None = Field(gt=0)
    sample_size: int = Field(ge=100)
    seed: int = Field(ge=0)


def _known_metric(name: str) -> str:
    if name not in METRICS:
        raise ValueError(f"unknown metric {name!r}; one of {', '.join(METRICS)}")
    return name


def _floors_name_metrics(floors: dict[str, float]) -> dict[str, float]:
    for name in floors:
        _known_metric(name)
    return floors


# The worst acceptable value of each metric it names.
Floors = Annotated[dict[str, float], AfterValidator(_floors_name_metrics)]


class GateParams(Section):
    floors: Floors
    primary: str
    min_improvement: float = Field(ge=0)
    max_drift_share: float = Field(ge=0, le=1)

    @field_validator("primary")
    @classmethod
    def _primary_is_a_metric(cls, primary: str) -> str:
        return _known_metric(primary)


class MonitorParams(Section):
    predictions: str = Field(min_length=1)
    labels: str = Field(min_length=1)
    window_days: int = Field(ge=1)
    min_labelled: int = Field(ge=1)
    floors: Floors


class RefreshParams(Section):
    max_rows: int = Field(ge=1)
    seed: int = Field(ge=0)


class Params(Section):
    prepare: PrepareParams
    train: TrainParams
    mlflow: MlflowParams
    drift: DriftParams
    gate: GateParams
    monitor: MonitorParams
    refresh: RefreshParams


def tracking_uri(params: MlflowParams) -> str:
    """MLFLOW_TRACKING_URI when set, otherwise params.yaml's mlflow.tracking_uri."""
    return os.environ.get("MLFLOW_TRACKING_URI") or params.tracking_uri


def embedded_store(uri: str) -> Path | None:
    """The SQLite file of an embedded store (`sqlite:///<path>`); None for a server."""
    scheme = "sqlite:///"
    return Path(uri.removeprefix(scheme)) if uri.startswith(scheme) else None


def without_credentials(uri: str) -> str:
    """The URI without credentials, fit for a log line."""
    scheme, sep, rest = uri.partition("://")
    return f"{scheme}{sep}{rest.rpartition('@')[2]}" if sep else uri


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
    if error["type"] == "value_error":
        return f"{path}: {key}: {error.get('ctx', {}).get('error', error['msg'])}"
    return f"{path}: {key}: {error['msg']} (got {_show(error['input'])})"


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
