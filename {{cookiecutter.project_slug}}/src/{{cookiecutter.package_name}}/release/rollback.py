"""`rollback`: point `champion` back at the version it replaced; repeat to walk further back.

The service picks the new champion up when it next starts (`make serve` fetches it first).
"""

import argparse

from ..core.config import CHAMPION, PREVIOUS, load_params
from .registry import rollback


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="rollback", description=__doc__)
    parser.add_argument("--reason", help="why; recorded on the version rolled back from")
    args = parser.parse_args(argv)
    settings = load_params().mlflow
    was, champion, previous = rollback(settings, args.reason)
    print(f"rollback: {settings.model_name} version {champion} is '{CHAMPION}' again (was {was})")
    if previous is None:
        print(f"rollback: no '{PREVIOUS}' left: version {champion} was the first champion")
    else:
        print(f"rollback: version {previous} is now '{PREVIOUS}'")
    return 0
