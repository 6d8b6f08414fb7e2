"""Production, as the tests play it: predictions logged the way the service logs them, and the
labels that arrive for them later."""

import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from {{ cookiecutter.package_name }}.core.config import PARAMS_FILE
from {{ cookiecutter.package_name }}.core.prediction_ids import new_ids
from {{ cookiecutter.package_name }}.core.schema import Schema
from {{ cookiecutter.package_name }}.serving.inference_log import InferenceLog

HOUR = 3600.0
NOW = time.time()
LOG = Path("logs/inference")
LABELS = Path("data/labels")


def set_params(section: str, **values: Any) -> None:
    params = yaml.safe_load(PARAMS_FILE.read_text(encoding="utf-8"))
    params[section].update(values)
    PARAMS_FILE.write_text(yaml.safe_dump(params), encoding="utf-8")


def truth_of(frame: pd.DataFrame, schema: Schema) -> np.ndarray:
    return frame[schema.target.name].to_numpy(dtype=float)


def probabilities(predicted: np.ndarray, schema: Schema) -> list[float] | None:
    """A binary classifier's probability of the positive class, for its predicted class."""
    return (predicted * 0.8 + 0.1).tolist() if schema.target_is_categorical else None


def log_predictions(
    frame: pd.DataFrame,
    schema: Schema,
    predicted: np.ndarray,
    version: str = "1",
    when: float = NOW - HOUR,
    folder: Path = LOG,
) -> list[str]:
    """The rows scored as the service logs them, at `when`; their prediction ids."""
    log = InferenceLog(folder, clock=lambda: when)
    ids = new_ids(len(frame))
    names = schema.feature_names
    rows = [dict(zip(names, values, strict=True)) for values in frame[names].to_numpy().tolist()]
    log.append(rows, ids, predicted.tolist(), version, probabilities(predicted, schema))
    log.close()
    return ids


def labels_of(ids: list[str], truth: np.ndarray, when: float = NOW) -> pd.DataFrame:
    """A label file's rows: each prediction's id, its true value and when it became known."""
    return pd.DataFrame({"prediction_id": ids, "label": truth, "time": when})
