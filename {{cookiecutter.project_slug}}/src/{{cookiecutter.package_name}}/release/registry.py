"""The MLflow side: log a run, register a model version, move the aliases."""

import logging
import os
import re
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import TYPE_CHECKING, Any

import mlflow
from mlflow import MlflowClient
from mlflow.exceptions import ERROR_CODE_TO_HTTP_STATUS, MlflowException

from ..core.config import (
    CHALLENGER,
    CHAMPION,
    PREVIOUS,
    MlflowParams,
    Params,
    tracking_uri,
    without_credentials,
)
from ..core.errors import ModelError, RegistryError
from ..core.estimators import TRUSTED_TYPES
from ..core.model_file import FILE_NAME, MODEL_SHA256, model_from_bytes, sha256
from .lineage import PRODUCTION_IDS_MD5, TRAIN_INPUTS, UNKNOWN
from .verdict import Candidate

if TYPE_CHECKING:
    import pandas as pd
    from mlflow.entities.model_registry import ModelVersion
    from sklearn.pipeline import Pipeline

# Version tags: the md5 of the model file (the hash DVC records; with MODEL_SHA256, the hashes
# of the very file the registry keeps), the champion a version replaced when it was promoted,
# and a rolled-back champion.
MODEL_MD5 = "model_md5"
REPLACED = "replaced_champion"
ROLLED_BACK = "rolled_back"
ROLLBACK_REASON = "rollback_reason"
# What a served model needs. Listing it spares MLflow a slow guess in a subprocess.
MODEL_REQUIREMENTS = ("mlflow", "numpy", "pandas", "scikit-learn", "scipy", "skops")
# MLflow's words (3.18 on) for a 5xx answer, the last one after its retries.
SERVER_ERROR = re.compile(r"failed with error code 5\d\d ")


@contextmanager
def registry_errors(params: MlflowParams) -> Iterator[None]:
    """Turn MLflow failures into one line that says which tracking server failed."""
    # MLflow logs a traceback for a failed SQLite query (a locked database) before it raises;
    # the one line below says the same.
    logging.getLogger("mlflow.store.db.utils").setLevel(logging.CRITICAL)
    try:
        yield
    except MlflowException as error:
        where = without_credentials(tracking_uri(params))
        raise RegistryError(f"MLflow at {where}: {_reason(error)}") from None


def _reason(error: MlflowException) -> str:
    """What went wrong, in one line; for refused credentials, what to set."""
    status = ERROR_CODE_TO_HTTP_STATUS.get(error.error_code)
    if status == 401:
        user = os.environ.get("MLFLOW_TRACKING_USERNAME")
        refused = f"refused the password of {user!r}" if user else "wants a user and password"
        return (
            f"the server {refused} (HTTP 401): set MLFLOW_TRACKING_USERNAME and "
            "MLFLOW_TRACKING_PASSWORD to a user of that server"
        )
    if status == 403:
        user = os.environ.get("MLFLOW_TRACKING_USERNAME", "")
        return (
            f"user {user!r} may not do this (HTTP 403): ask the server's admin for the EDIT "
            "permission on the experiment and the registered model"
        )
    message = str(error.message).strip()
    return _gave_up(message) or message.splitlines()[0]


def _gave_up(message: str) -> str | None:
    """For a request MLflow's client gave up on after its retries, what failed and what to do:
    its own message is a long line of urllib3's reprs that names neither."""
    if not message.startswith("API request to "):
        return None
    if "Connection refused" in message or "Failed to establish a new connection" in message:
        return (
            "nothing answers there (connection refused): start the server (`make stack` starts "
            "the stack's) or point MLFLOW_TRACKING_URI at one that runs, then run this again"
        )
    if "timed out" in message:
        return "the server did not answer in time (retried): see its log, then run this again"
    # The server answered 5xx (urllib3's "too many 500 error responses" before MLflow 3.18, its
    # last answer's code since: 502, 503, 504 alike) or dropped the connection mid-request.
    if "too many 5" in message or SERVER_ERROR.search(message) or "Connection aborted" in message:
        failure = "HTTP 5xx or a dropped connection, retried"
        if "/mlflow-artifacts/" in message:
            return (
                f"the server could not store or read a model's files ({failure}): its artifact "
                "store is down or failing (`make stack` starts the stack's object store again); "
                "see the server's log, then run this again"
            )
        return f"the server kept failing ({failure}): see its log, then run this again"
    return None


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
    typical: "pd.DataFrame",
    tags: dict[str, str],
    plots: Path,
    *,
    model_file: bytes,
) -> "ModelVersion":
    """Log a run with the model, register it as a new version and point `challenger` at it.

    The model's signature is inferred from `typical`, rows of the features' names and types;
    no input example is logged. The version keeps `model_file`, the model's skops file byte for
    byte (MLflow's own copy is written again, and skops never writes the same bytes twice), so
    its hash tags and DVC's hash are those of the file every download gets.
    """
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
                signature=infer_signature(typical, model.predict(typical)),
                pip_requirements=[f"{name}=={version(name)}" for name in MODEL_REQUIREMENTS],
                serialization_format=mlflow.sklearn.SERIALIZATION_FORMAT_SKOPS,
                skops_trusted_types=TRUSTED_TYPES,
            )
            with tempfile.TemporaryDirectory() as folder:
                exact = Path(folder) / FILE_NAME
                exact.write_bytes(model_file)
                client(settings).log_model_artifact(logged.model_id, str(exact))
        registered = mlflow.register_model(
            logged.model_uri, settings.model_name, tags={**tags, "run_id": run.info.run_id}
        )
        client(settings).set_registered_model_alias(
            settings.model_name, CHALLENGER, registered.version
        )
    return registered


def _not_found(error: MlflowException) -> bool:
    """The registry's answer for a version or alias that does not exist."""
    return error.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE")


def version_by_alias(registry: MlflowClient, name: str, alias: str) -> str | None:
    """The version an alias points to, or None when the alias is not set."""
    try:
        return str(registry.get_model_version_by_alias(name, alias).version)
    except MlflowException as error:
        if _not_found(error):
            return None
        raise


def required_version(registry: MlflowClient, name: str, alias: str, missing: str) -> str:
    """The version `alias` points to; RegistryError "<name>: <missing>" when it is not set."""
    version = version_by_alias(registry, name, alias)
    if version is None:
        raise RegistryError(f"{name}: {missing}")
    return version


def _challenger(registry: MlflowClient, name: str, verb: str) -> str:
    """The challenger's version; without one there is nothing to `verb`."""
    missing = f"no challenger to {verb}; run `make repro` first"
    return required_version(registry, name, CHALLENGER, missing)


def _candidate(registry: MlflowClient, name: str, version: str) -> Candidate:
    found = registry.get_model_version(name, version)
    metrics = registry.get_run(found.run_id).data.metrics if found.run_id else {}
    rolled_back = None
    if found.tags.get(ROLLED_BACK) == "true":
        rolled_back = found.tags.get(ROLLBACK_REASON, "")
    return Candidate(
        name,
        str(found.version),
        dict(metrics),
        rolled_back=rolled_back,
        production_ids=found.tags.get(PRODUCTION_IDS_MD5),
    )


def candidates(
    params: MlflowParams, version: str | None = None
) -> tuple[Candidate, Candidate | None]:
    """The version to judge (default: the challenger) and the champion, if there is one."""
    registry = client(params)
    name = params.model_name
    with registry_errors(params):
        challenger = _candidate(registry, name, version or _challenger(registry, name, "judge"))
        return challenger, champion_candidate(params)


def champion_candidate(params: MlflowParams) -> Candidate | None:
    """The champion and its metrics; None before the first promotion."""
    registry = client(params)
    with registry_errors(params):
        champion = version_by_alias(registry, params.model_name, CHAMPION)
        return None if champion is None else _candidate(registry, params.model_name, champion)


def same_model(params: MlflowParams, model_md5: str, inputs: str) -> "ModelVersion | None":
    """The version that is already this model, now the challenger again; None if there is none.

    The same model is the same file (`model_md5`, the hash DVC records) or, since a model
    trained again is a new file, the same training inputs (`inputs`: code, data, parameters).
    So a push that leaves the model alone, and a rolled-back model trained again, add no version.
    """
    registry = client(params)
    with registry_errors(params):
        try:
            versions = registry.search_model_versions(f"name='{params.model_name}'")
        except MlflowException as error:
            if _not_found(error):
                return None
            raise
        by_file = [found for found in versions if found.tags.get(MODEL_MD5) == model_md5]
        by_inputs = [
            found
            for found in versions
            if inputs != UNKNOWN and found.tags.get(TRAIN_INPUTS) == inputs
        ]
        matches = sorted(by_file or by_inputs, key=lambda found: int(found.version))
        if not matches:
            return None
        found = matches[-1]
        registry.set_registered_model_alias(params.model_name, CHALLENGER, found.version)
        return found


def move_aliases(registry: MlflowClient, name: str, moves: Mapping[str, str | None]) -> None:
    """Point each alias at its version (None: remove it), all or none.

    The registry has no transactions across calls: if one move fails, the ones already made
    are put back before the error is raised, so the aliases are never left half-moved.
    """
    before = {alias: version_by_alias(registry, name, alias) for alias in moves}
    done: list[str] = []
    try:
        for alias, version in moves.items():
            if version is not None:
                registry.set_registered_model_alias(name, alias, version)
            elif before[alias] is not None:
                registry.delete_registered_model_alias(name, alias)
            done.append(alias)
    except MlflowException as error:
        stuck = [alias for alias in reversed(done) if not _put_back(registry, name, alias, before)]
        reason = _reason(error)
        if stuck:
            raise RegistryError(
                f"{name}: moving the aliases failed ({reason}) and {', '.join(stuck)} could not "
                f"be put back: check them with `make mlflow-ui`"
            ) from None
        raise RegistryError(
            f"{name}: moving the aliases failed ({reason}); they were left as they were"
        ) from None


def _put_back(registry: MlflowClient, name: str, alias: str, before: dict[str, str | None]) -> bool:
    version = before[alias]
    try:
        if version is None:
            registry.delete_registered_model_alias(name, alias)
        else:
            registry.set_registered_model_alias(name, alias, version)
    except MlflowException:
        return False
    return True


def promote(
    params: MlflowParams,
    version: str | None = None,
    tags: dict[str, str] | None = None,
    *,
    forced: bool = False,
) -> tuple[str, str | None]:
    """Point `champion` at `version` (default: the challenger); keep the old one as `previous`.

    The new champion is tagged with `tags` and with the version it replaces, which `rollback`
    follows; `forced` (past the gate) also lifts a rollback's ban on the version. Returns the
    new champion and the previous one (None for the first champion).
    """
    registry = client(params)
    name = params.model_name
    with registry_errors(params):
        version = version or _challenger(registry, name, "promote")
        version = str(registry.get_model_version(name, version).version)
        current = version_by_alias(registry, name, CHAMPION)
        if current == version:
            return version, None
        for key, value in {**(tags or {}), REPLACED: current or ""}.items():
            registry.set_model_version_tag(name, version, key, value)
        if forced and registry.get_model_version(name, version).tags.get(ROLLED_BACK) == "true":
            # Set, not deleted: deleting a tag takes MANAGE, which the release user lacks.
            registry.set_model_version_tag(name, version, ROLLED_BACK, "false")
        moves = {CHAMPION: version, **({PREVIOUS: current} if current is not None else {})}
        move_aliases(registry, name, moves)
    return version, current


def rollback(params: MlflowParams, reason: str | None = None) -> tuple[str, str, str | None]:
    """Point `champion` back at `previous`, and `previous` at the one before it.

    Returns the version that was the champion, the champion now and the new `previous` (None
    when the history ends there). Repeated, it walks further back. Where the history ends,
    `previous` stays on the new champion itself rather than being removed: removing an alias
    takes MANAGE on the model, and the release user has EDIT only (ops/mlflow_users.py).
    """
    registry = client(params)
    name = params.model_name
    with registry_errors(params):
        current = required_version(registry, name, CHAMPION, "no champion to roll back")
        missing = f"version {current} has no '{PREVIOUS}' champion to roll back to"
        target = required_version(registry, name, PREVIOUS, missing)
        if target == current:  # the end of the history, as an earlier rollback left it
            raise RegistryError(f"{name}: {missing}")
        before = registry.get_model_version(name, target).tags.get(REPLACED) or None
        further = before if before not in (None, target) else None
        move_aliases(registry, name, {CHAMPION: target, PREVIOUS: further or target})
        registry.set_model_version_tag(name, current, ROLLED_BACK, "true")
        if reason:
            registry.set_model_version_tag(name, current, ROLLBACK_REASON, reason)
    return current, target, further


@dataclass(frozen=True)
class RegisteredModel:
    """A model version taken from the registry, ready to score."""

    name: str
    version: str
    alias: str
    estimator: "Pipeline"
    # The skops file, as checked against the version's MODEL_SHA256 tag, and the version's tags.
    model_file: bytes
    tags: dict[str, str]


def checked_file(name: str, version: str, tags: Mapping[str, str], data: bytes) -> None:
    """Refuse a downloaded model file that is not the one registered as `version`."""
    actual = sha256(data)
    expected = tags.get(MODEL_SHA256)
    if expected is None:
        raise ModelError(
            f"{name} version {version}: refused: the version has no {MODEL_SHA256} tag (it was "
            "registered before versions recorded their file's hash), so its file cannot be "
            f"checked; if you trust the file the registry holds, tag the version "
            f"{MODEL_SHA256}={actual} (see docs: Serving, model integrity)"
        )
    if actual != expected:
        raise ModelError(
            f"{name} version {version}: refused: the downloaded {FILE_NAME} has sha256 {actual}, "
            f"but the version was registered with {MODEL_SHA256} {expected}; the registry's "
            "artifact was changed after registration"
        )


def load_registered(params: MlflowParams, alias: str = CHAMPION) -> RegisteredModel:
    """Download the version behind `alias`, check its file and load its scikit-learn estimator.

    The file must have the sha256 recorded at registration (ModelError otherwise). The estimator
    comes straight from the model's skops file, with this project's trusted types: no pickle,
    and no MLflow wrapper between the caller and `predict`.
    """
    registry = client(params)
    with registry_errors(params):
        missing = f"no version is '{alias}' yet; run `make promote` first"
        version = required_version(registry, params.model_name, alias, missing)
    return load_version(params, version, alias)


def load_version(params: MlflowParams, version: str, alias: str = "") -> RegisteredModel:
    """Download model version `version`, check its file and load it, as `load_registered`."""
    from mlflow.artifacts import download_artifacts

    registry = client(params)
    name = params.model_name
    with registry_errors(params):
        tags = dict(registry.get_model_version(name, version).tags)
        # Where the version's files are, asked of this registry: a `models:/` URI would be
        # resolved against MLflow's default registry (./mlflow.db) unless MLFLOW_TRACKING_URI
        # is set, not against params.yaml's server.
        folder = download_artifacts(
            artifact_uri=registry.get_model_version_download_uri(name, version),
            tracking_uri=tracking_uri(params),
        )
    data = (Path(folder) / FILE_NAME).read_bytes()
    checked_file(name, version, tags, data)
    estimator = model_from_bytes(data, f"{name} version {version}")
    return RegisteredModel(name, version, alias, estimator, data, tags)
