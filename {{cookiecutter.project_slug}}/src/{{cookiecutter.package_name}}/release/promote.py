"""`promote`: make a registered model version the champion, if it passes the release gate.

`--force` skips the gate, and needs a `--reason`; both the gate's verdict and a forced reason are
recorded as tags of the version.
"""

import argparse

from ..core.config import CHAMPION, GATE_REPORT, PREVIOUS, load_params
from .gate import run_gate
from .registry import promote


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="promote", description=__doc__)
    parser.add_argument(
        "--version", help="the model version to promote (default: the current challenger)"
    )
    parser.add_argument("--force", action="store_true", help="promote even if the gate fails")
    parser.add_argument("--reason", help="why the gate is skipped (required with --force)")
    args = parser.parse_args(argv)
    if args.force and not (args.reason or "").strip():
        parser.error("--force needs a --reason, which is recorded on the version")
    settings = load_params().mlflow

    if args.force:
        tags = {"gate": "forced", "gate_reason": args.reason.strip()}
    else:
        verdict, report = run_gate(args.version)
        print(report)
        if not verdict.passed:
            print(f"promote: refused by the gate (report in {GATE_REPORT}); '{CHAMPION}' unchanged")
            return 1
        args.version = verdict.challenger.version
        tags = {"gate": "passed"}

    champion, previous = promote(settings, args.version, tags, forced=args.force)
    print(f"promote: {settings.model_name} version {champion} is now '{CHAMPION}'")
    if previous is not None:
        print(f"promote: version {previous} is kept as '{PREVIOUS}'")
    return 0
