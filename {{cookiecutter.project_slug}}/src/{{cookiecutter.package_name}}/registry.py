"""The MLflow side: log a run, register a model version, move the aliases."""

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import TYPE_CHECKING, Any

import mlflow
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from .config import MlflowParams, Params
from .errors import RegistryError
from .estimators import TRUSTED_TYPES
from .train import load_model

if TYPE_CHECKING:
    import pandas as pd
    from mlflow.entities.model_registry import ModelVersion
    from sklearn.pipeline import Pipeline

CHAMPION = "champion"
CHALLENGER = "challenger"
PREVIOUS = "previous"
# What a served model needs. Listing it spares MLflow a slow guess in a subprocess.
MODEL_REQUIREMENTS = ("mlflow", "numpy", "pandas", "scikit-learn", "scipy", "skops")


def tracking_uri(params: MlflowParams) -> str:
    """MLFLOW_TRACKING_URI when set, otherwise params.yaml's mlflow.tracking_uri."""
    return os.environ.get("MLFLOW_TRACKING_URI") or params.tracking_uri


@contextmanager
def registry_errors(params: MlflowParams) -> Iterator[None]:
    """Turn MLflow failures into one line that says which tracking server failed."""
    try:
        yield
    except MlflowException as error:
        message = str(error.message).strip().splitlines()[0]
        raise RegistryError(f"MLflow at {_safe(tracking_uri(params))}: {message}") from None


def _safe(uri: str) -> str:
    """The URI without credentials, fit for a log line."""
    scheme, sep, rest = uri.partition("://")
    return f"{scheme}{sep}{rest.rpartition('@')[2]}" if sep else uri


def client(params: MlflowParams) -> MlflowClient:
    return MlflowClient(tracking_uri=tracking_uri(params))


def run_params(params: Params) -> dict[str, Any]:
    """The parameters that shaped this model, flat, for the MLflow run."""
    chosen = {f"train.{key}": value for key, value in params.train.hyperparameters().items()}
    prepare = {f"prepare.{key}": value for key, value in params.prepare.model_dump().items()}
    return {
        **prepare,
        "train.estimator": params.train.estimator,
        "train.seed": params.train.seed,
        **chosen,
    }


def log_and_register(
    model: "Pipeline",
    params: Params,
    metrics: dict[str, float],
    example: "pd.DataFrame",
    tags: dict[str, str],
    plots: Path,
) -> "ModelVersion":
    """Log a run with the model, register it as a new version and point `challenger` at it."""
    from mlflow.models import infer_signature

    settings = params.mlflow
    # uv environments have no pip, and MLflow warns about that for every model it logs; the
    # model's requirements are listed explicitly, so the warning says nothing useful here.
    logging.getLogger("mlflow.utils.environment").setLevel(logging.ERROR)
    with registry_errors(settings):
        mlflow.set_tracking_uri(tracking_uri(settings))
        mlflow.set_experiment(settings.experiment)
        with mlflow.start_run() as run:
            mlflow.set_tags(tags)
            mlflow.log_params(run_params(params))
            mlflow.log_metrics(metrics)
            mlflow.log_artifacts(str(plots), artifact_path="plots")
            logged = mlflow.sklearn.log_model(
                model,
                name="model",
                signature=infer_signature(example, model.predict(example)),
                input_example=example,
                pip_requirements=[f"{name}=={version(name)}" for name in MODEL_REQUIREMENTS],
                skops_trusted_types=TRUSTED_TYPES,
            )
        registered = mlflow.register_model(
            logged.model_uri, settings.model_name, tags={**tags, "run_id": run.info.run_id}
        )
        client(settings).set_registered_model_alias(
            settings.model_name, CHALLENGER, registered.version
        )
    return registered


def version_by_alias(registry: MlflowClient, name: str, alias: str) -> str | None:
    """The version an alias points to, or None when the alias is not set."""
    try:
        return str(registry.get_model_version_by_alias(name, alias).version)
    except MlflowException as error:
        if error.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            return None
        raise


def promote(params: MlflowParams, version: str | None = None) -> tuple[str, str | None]:
    """Point `champion` at `version` (default: the challenger); keep the old one as `previous`.

    Returns the new champion and the previous one (None for the first champion).
    """
    registry = client(params)
    name = params.model_name
    with registry_errors(params):
        if version is None:
            version = version_by_alias(registry, name, CHALLENGER)
            if version is None:
                raise RegistryError(f"{name}: no challenger to promote; run `make repro` first")
        registry.get_model_version(name, version)
        current = version_by_alias(registry, name, CHAMPION)
        if current is not None and current != version:
            registry.set_registered_model_alias(name, PREVIOUS, current)
        registry.set_registered_model_alias(name, CHAMPION, version)
    return version, current if current != version else None


@dataclass(frozen=True)
class RegisteredModel:
    """A model version taken from the registry, ready to score."""

    name: str
    version: str
    alias: str
    estimator: "Pipeline"


def load_registered(params: MlflowParams, alias: str = CHAMPION) -> RegisteredModel:
    """Download the version behind `alias` and load its scikit-learn estimator.

    The estimator comes straight from the model's skops file, with this project's trusted
    types: no pickle, and no MLflow wrapper between the caller and `predict`.
    """
    from mlflow.artifacts import download_artifacts

    registry = client(params)
    name = params.model_name
    with registry_errors(params):
        version = version_by_alias(registry, name, alias)
        if version is None:
            raise RegistryError(f"{name}: no version is '{alias}' yet; run `make promote` first")
        folder = download_artifacts(
            artifact_uri=f"models:/{name}/{version}", tracking_uri=tracking_uri(params)
        )
    return RegisteredModel(name, version, alias, load_model(Path(folder) / "model.skops"))
