"""`mlflow-ui`: browse runs and registered models of the embedded MLflow store."""

import argparse
import os

from ..core.config import load_params, tracking_uri
from ..core.errors import ProjectError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="mlflow-ui", description=__doc__)
    parser.add_argument("--port", type=int, default=5000)
    args = parser.parse_args(argv)
    uri = tracking_uri(load_params().mlflow)
    if uri.startswith(("http://", "https://", "databricks")):
        raise ProjectError(f"MLflow runs on a server here: open {uri} in a browser instead")
    # One worker and no background job runners: a local browser needs no more.
    os.environ.setdefault("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")
    command = ["mlflow", "ui", "--backend-store-uri", uri, "--host", "127.0.0.1", "--workers", "1"]
    os.execvp("mlflow", [*command, "--port", str(args.port)])  # noqa: S606, S607 - mlflow from the venv
