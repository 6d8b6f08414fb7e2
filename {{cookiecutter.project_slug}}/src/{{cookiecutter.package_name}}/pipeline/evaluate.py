"""`evaluate`: score the model on the test set; write the metrics and the plots."""

import argparse
import json

from ..core.checks import read_table
from ..core.config import METRICS_FILE, MODEL_FILE, PLOTS_DIR, TEST_DATA
from ..core.files import write_text_atomic
from ..core.metrics import score, write_plots
from ..core.model_file import load_model
from ..core.schema import load_schema


def main(argv: list[str] | None = None) -> int:
    argparse.ArgumentParser(prog="evaluate", description=__doc__).parse_args(argv)
    schema = load_schema()
    frame = read_table(TEST_DATA, schema)
    features, target = frame[schema.feature_names], frame[schema.target.name]
    model = load_model(MODEL_FILE)

    metrics = score(model, features, target)
    write_text_atomic(METRICS_FILE, json.dumps(metrics, indent=2) + "\n")
    write_plots(model, features, target, PLOTS_DIR)

    shown = ", ".join(f"{name} {value:.4f}" for name, value in metrics.items())
    print(f"evaluate: {shown}")
    return 0
