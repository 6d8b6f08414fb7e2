"""`register`: log the evaluated model to MLflow and register it as the challenger.

A model file is registered once. When reports/model_version.json says this very file (its md5,
the hash DVC records) is a version of this registry, that version becomes the challenger again
and nothing new is logged. Pull requests stop before this step (`make evaluate`): only merged
models reach the registry.
"""

import argparse
import json
from pathlib import Path
from typing import Any

from .config import (
    CHALLENGER,
    METRICS_FILE,
    MODEL_FILE,
    MODEL_VERSION_FILE,
    PLOTS_DIR,
    TEST_DATA,
    load_params,
)
from .errors import ProjectError
from .files import write_text_atomic
from .gate import read_metrics
from .lineage import file_md5, lineage_tags
from .model_file import load_model
from .registry import MODEL_MD5, log_and_register, registered_as
from .schema import load_schema, read_table


def read_record(path: Path = MODEL_VERSION_FILE) -> dict[str, Any]:
    """What the last registration wrote; empty when there is none or it cannot be read."""
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError):
        return {}
    return record if isinstance(record, dict) else {}


def recorded_version(record: dict[str, Any], name: str, model_md5: str) -> int | None:
    """The version the record gives this model file under this name, if it gives one."""
    version = record.get("version")
    if record.get("name") != name or record.get(MODEL_MD5) != model_md5:
        return None
    return version if isinstance(version, int) else None


def main(argv: list[str] | None = None) -> int:
    argparse.ArgumentParser(prog="register", description=__doc__).parse_args(argv)
    params = load_params()
    metrics = read_metrics(METRICS_FILE)
    if not MODEL_FILE.is_file():
        raise ProjectError(f"{MODEL_FILE}: not found; run `make evaluate` first")
    md5 = file_md5(MODEL_FILE)

    version = recorded_version(read_record(), params.mlflow.model_name, md5)
    registered = None if version is None else registered_as(params.mlflow, version, md5)
    if registered is not None:
        print(f"register: {MODEL_FILE} is already version {registered.version}")
    else:
        schema = load_schema()
        example = read_table(TEST_DATA, schema)[schema.feature_names].head(5)
        tags = {**lineage_tags(), MODEL_MD5: md5}
        registered = log_and_register(
            load_model(MODEL_FILE), params, metrics, example, tags, PLOTS_DIR
        )

    record = {
        "name": registered.name,
        "version": int(registered.version),
        "alias": CHALLENGER,
        "run_id": registered.run_id,
        MODEL_MD5: md5,
    }
    write_text_atomic(MODEL_VERSION_FILE, json.dumps(record, indent=2) + "\n")
    print(f"register: {registered.name} version {registered.version} is the '{CHALLENGER}'")
    return 0
