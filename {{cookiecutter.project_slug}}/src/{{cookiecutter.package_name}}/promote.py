"""`promote`: make a registered model version the champion."""

import argparse

from .config import load_params
from .registry import CHAMPION, PREVIOUS, promote


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="promote", description=__doc__)
    parser.add_argument(
        "--version", help="the model version to promote (default: the current challenger)"
    )
    args = parser.parse_args(argv)
    settings = load_params().mlflow
    champion, previous = promote(settings, args.version)
    print(f"promote: {settings.model_name} version {champion} is now '{CHAMPION}'")
    if previous is not None:
        print(f"promote: version {previous} is kept as '{PREVIOUS}'")
    return 0
