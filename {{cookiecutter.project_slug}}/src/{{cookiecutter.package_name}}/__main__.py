"""Command line: `python -m {{ cookiecutter.package_name }} <command>`, one command per pipeline stage."""

import importlib
import os
import sys

from .core.errors import ProjectError

# command -> (module, what it does). Modules load only when their command runs.
COMMANDS = {
    "data": ("pipeline.data", "get the raw data (from the DVC remote, or the bundled sample)"),
    "prepare": ("pipeline.prepare", "check the raw data against the schema and split it"),
    "train": ("pipeline.train", "fit the estimator chosen in params.yaml"),
    "evaluate": ("pipeline.evaluate", "score the model on the test set: metrics and plots"),
    "register": ("pipeline.register", "log the model to MLflow and register it as the challenger"),
    "drift": ("pipeline.drift", "compare the current data with the training data (Evidently)"),
    "monitor": (
        "pipeline.monitor",
        "measure the model in production: labels joined with its logged predictions",
    ),
    "refresh": (
        "pipeline.refresh",
        "add production's labelled rows to the training data, for retraining",
    ),
    "gate": ("release.gate", "judge the challenger: metric floors, the champion to beat, drift"),
    "promote": ("release.promote", "make a model version the champion, through the gate"),
    "rollback": ("release.rollback", "point the champion back at the version it replaced"),
    "batch": ("offline.batch", "score a CSV or Parquet file with the champion model"),
    "batch-spark": (
        "offline.spark_batch",
        "score files or object-store URLs with the champion on Apache Spark",
    ),
    "onnx": (
        "offline.onnx",
        "export the champion to models/model.onnx, checked against scikit-learn",
    ),
    "champion": ("release.champion", "copy the champion into BentoML's model store, for serving"),
    "bento": ("release.bento", "build the service's bento with the champion pinned in it"),
    "mlflow-ui": ("ops.mlflow_ui", "browse the embedded MLflow store"),
    "mlflow-server": (
        "ops.mlflow_server",
        "start or stop a shared MLflow server (PostgreSQL, basic auth)",
    ),
    "stack": (
        "ops.stack",
        "start or stop the shared stack: MLflow, object store, registry, Prometheus",
    ),
    "mlflow-users": (
        "ops.mlflow_users",
        "create or renew the workflows' MLflow users: reader, release",
    ),
    "ci": ("ops.ci", "what the GitHub workflows need: remotes, report, drift, image"),
}
# Commands that load a model file with skops. skops.io, as it loads, looks for each scipy ufunc
# in every module already imported: it takes about 0.4 s before MLflow brings in its 2,000
# modules and 2.5 s after, so these commands import it first (the gate, and promote through it,
# score the registered versions again).
LOAD_MODELS = {
    "evaluate",
    "register",
    "gate",
    "promote",
    "batch",
    "batch-spark",
    "onnx",
    "champion",
    "bento",
}
# Defaults for the tools this project drives; the environment wins. No usage reports leave
# the machine, and MLflow keeps its INFO chatter and its progress bars to itself.
TOOL_DEFAULTS = {
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "DO_NOT_TRACK": "1",
    "DVC_NO_ANALYTICS": "1",
    "MLFLOW_LOGGING_LEVEL": "WARNING",
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
}


def usage() -> str:
    lines = [f"usage: python -m {__package__} <command> [options]", "", "commands:"]
    lines += [f"  {name:<10} {help}" for name, (_, help) in COMMANDS.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] in ("-h", "--help"):
        print(usage())
        return 0
    if args[0] not in COMMANDS:
        print(f"ERROR: unknown command {args[0]!r}\n{usage()}", file=sys.stderr)
        return 2
    for name, value in TOOL_DEFAULTS.items():
        os.environ.setdefault(name, value)
    if args[0] in LOAD_MODELS:
        importlib.import_module("skops.io")
    module = importlib.import_module(f"{__package__}.{COMMANDS[args[0]][0]}")
    try:
        code: int = module.main(args[1:])
    except ProjectError as error:
        print(f"ERROR: {error}", file=sys.stderr)
        return 1
    return code


if __name__ == "__main__":
    sys.exit(main())
