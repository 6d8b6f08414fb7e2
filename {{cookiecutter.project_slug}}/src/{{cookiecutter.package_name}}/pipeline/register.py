"""`register`: log the evaluated model to MLflow and register it as the challenger.

A model is registered once. When the registry already holds it (the same file, or a model
trained from the same code, data and parameters), that version becomes the challenger again and
nothing new is logged: a push that leaves the model alone, or trains a rolled-back model again,
adds no version. Pull requests stop before this step (`make evaluate`): only merged models reach
the registry.
"""

import argparse
import json
from typing import TYPE_CHECKING

from ..core.config import (
    CHALLENGER,
    METRICS_FILE,
    MODEL_FILE,
    MODEL_VERSION_FILE,
    PLOTS_DIR,
    load_params,
)
from ..core.errors import ProjectError
from ..core.files import write_text_atomic
from ..core.model_file import MODEL_SHA256, model_from_bytes, sha256
from ..core.schema import Schema, load_schema
from ..release.lineage import lineage_tags, md5, train_inputs
from ..release.registry import MODEL_MD5, log_and_register, same_model
from ..release.verdict import read_metrics

if TYPE_CHECKING:
    import pandas as pd


def made_up_row(schema: Schema) -> "pd.DataFrame":
    """One row of the schema's columns and types, every feature in the middle of its range (or
    its first allowed value): what the model's signature is inferred from. No row of the data
    goes to MLflow, whose every user may read it."""
    import pandas as pd

    row: dict[str, float | int] = {}
    for column in schema.features:
        if column.allowed is not None:
            row[column.name] = column.allowed[0]
        else:
            middle = ((column.min or 0) + (column.max or 0)) / 2
            row[column.name] = int(middle) if column.dtype == "int" else float(middle)
    return pd.DataFrame([row]).astype({column.name: column.dtype for column in schema.features})


def main(argv: list[str] | None = None) -> int:
    argparse.ArgumentParser(prog="register", description=__doc__).parse_args(argv)
    params = load_params()
    metrics = read_metrics(METRICS_FILE)
    if not MODEL_FILE.is_file():
        raise ProjectError(f"{MODEL_FILE}: not found; run `make evaluate` first")
    # Read once: the hashes, the model logged and the file the registry keeps are these bytes.
    model_file = MODEL_FILE.read_bytes()
    model_md5 = md5(model_file)

    registered = same_model(params.mlflow, model_md5, train_inputs())
    if registered is not None:
        print(f"register: {MODEL_FILE} is already version {registered.version}")
    else:
        tags = {**lineage_tags(), MODEL_MD5: model_md5, MODEL_SHA256: sha256(model_file)}
        registered = log_and_register(
            model_from_bytes(model_file, str(MODEL_FILE)),
            params,
            metrics,
            made_up_row(load_schema()),
            tags,
            PLOTS_DIR,
            model_file=model_file,
        )

    record = {
        "name": registered.name,
        "version": int(registered.version),
        "alias": CHALLENGER,
        "run_id": registered.run_id,
        MODEL_MD5: model_md5,
    }
    write_text_atomic(MODEL_VERSION_FILE, json.dumps(record, indent=2) + "\n")
    print(f"register: {registered.name} version {registered.version} is the '{CHALLENGER}'")
    return 0
