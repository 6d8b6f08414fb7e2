"""`evaluate`: score the model on the test set, then register it in MLflow as the challenger."""

import argparse
import json

from .config import METRICS_FILE, MODEL_FILE, MODEL_VERSION_FILE, PLOTS_DIR, TEST_DATA, load_params
from .files import write_text_atomic
from .lineage import lineage_tags
from .metrics import score, write_plots
from .registry import CHALLENGER, log_and_register
from .schema import load_schema, read_table
from .train import load_model


def main(argv: list[str] | None = None) -> int:
    argparse.ArgumentParser(prog="evaluate", description=__doc__).parse_args(argv)
    params = load_params()
    schema = load_schema()
    frame = read_table(TEST_DATA, schema)
    features, target = frame[schema.feature_names], frame[schema.target.name]
    model = load_model(MODEL_FILE)

    metrics = score(model, features, target)
    write_text_atomic(METRICS_FILE, json.dumps(metrics, indent=2) + "\n")
    write_plots(model, features, target, PLOTS_DIR)

    registered = log_and_register(
        model, params, metrics, features.head(5), lineage_tags(), PLOTS_DIR
    )
    record = {
        "name": registered.name,
        "version": int(registered.version),
        "alias": CHALLENGER,
        "run_id": registered.run_id,
    }
    write_text_atomic(MODEL_VERSION_FILE, json.dumps(record, indent=2) + "\n")

    shown = ", ".join(f"{name} {value:.4f}" for name, value in metrics.items())
    print(f"evaluate: {shown}")
    print(f"evaluate: registered {registered.name} version {registered.version} as '{CHALLENGER}'")
    return 0
