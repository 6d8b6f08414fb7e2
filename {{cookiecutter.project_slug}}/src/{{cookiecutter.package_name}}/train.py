"""`train`: fit the pipeline chosen in params.yaml on the training set."""

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from .config import MODEL_FILE, TRAIN_DATA, load_params
from .estimators import TRUSTED_TYPES, build_pipeline
from .files import write_atomic
from .schema import load_schema, read_table

if TYPE_CHECKING:
    from sklearn.pipeline import Pipeline


def save_model(model: "Pipeline", path: Path) -> None:
    """Save with skops: loading it back never runs code from the file."""
    import skops.io

    write_atomic(path, lambda tmp: skops.io.dump(model, tmp))


def load_model(path: Path) -> "Pipeline":
    """Load a model saved by `save_model`."""
    import skops.io

    model: Pipeline = skops.io.load(path, trusted=TRUSTED_TYPES)
    return model


def main(argv: list[str] | None = None) -> int:
    argparse.ArgumentParser(prog="train", description=__doc__).parse_args(argv)
    params = load_params().train
    schema = load_schema()
    frame = read_table(TRAIN_DATA, schema)
    model = build_pipeline(params)
    model.fit(frame[schema.feature_names], frame[schema.target.name])
    save_model(model, MODEL_FILE)
    print(f"train: fitted {params.estimator} on {len(frame)} rows -> {MODEL_FILE}")
    return 0
