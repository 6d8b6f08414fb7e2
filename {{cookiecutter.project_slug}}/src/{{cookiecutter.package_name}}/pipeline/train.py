"""`train`: fit the pipeline chosen in params.yaml on the training set."""

import argparse

from ..core.checks import read_table
from ..core.config import MODEL_FILE, TRAIN_DATA, load_params
from ..core.estimators import build_pipeline
from ..core.model_file import save_model
from ..core.schema import load_schema


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
