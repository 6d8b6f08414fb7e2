"""Time the team's whole cycle against the stack, step by step.

The cycle is tests/test_cycle_slow.py, run as it is (pytest, the slow tier): two pull requests
and their merges with the release job building and pushing real images, the champion served and
scraped by Prometheus, the drift job, a rollback and a push after it. The test records each
step's wall time; with CYCLE_TIMINGS set to a file it writes them there, and this script prints
them as a markdown table with the machine and the load average around the run.

Run it from the template repository's root, as root (podman and buildah run rootful), with the
system tools installed (`make system-tools`): `make bench-cycle`. The figures in docs/team.md
come from one such run.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _bake import load_average, system, wait_for_quiet

ROOT = Path(__file__).resolve().parents[1]
TEST = "tests/test_cycle_slow.py"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    parser.add_argument("--no-wait", action="store_true", help="do not wait for a quiet machine")
    args = parser.parse_args(argv)
    waited = "" if args.no_wait else wait_for_quiet()
    before = load_average()
    with tempfile.TemporaryDirectory() as scratch:
        timings_file = Path(scratch) / "timings.json"
        env = {**os.environ, "CYCLE_TIMINGS": str(timings_file)}
        command = ["uv", "run", "--locked", "pytest", "-m", "slow", "-p", "no:randomly", TEST]
        started = time.monotonic()
        result = subprocess.run(command, cwd=ROOT, env=env, check=False)
        total = time.monotonic() - started
        if result.returncode != 0:
            print(f"{TEST} failed (exit {result.returncode}): no figures", file=sys.stderr)
            return 1
        timings: dict[str, float] = json.loads(timings_file.read_text(encoding="utf-8"))
    figures = {
        **system(),
        "load average before, after": f"{before}; {load_average()}",
        "waited": waited,
        "pytest, total": f"{total:.0f} s",
        "steps": timings,
    }
    print("\n".join(f"- {key}: {value}" for key, value in figures.items() if key != "steps"))
    print("\n| step | seconds |\n|---|---:|")
    for step, seconds in timings.items():
        print(f"| {step} | {seconds:.1f} |")
    print(f"| **the steps together** | **{sum(timings.values()):.1f}** |")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
