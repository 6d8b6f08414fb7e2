"""Time the generated project's `drift` command against Evidently's `Report.run` alone.

One run bakes the default project into build/bench-drift/, runs `make setup` and `make repro` in
it, then writes 100,000-row reference (data/prepared/train.csv) and current (the file
`params.yaml: drift.current` names) data: raw rows drawn with replacement, every feature value
times a factor drawn from N(1, 0.01), clipped to the schema's bounds. Then:

- in one process of the project's own environment (`uv run --locked python`), Evidently and the
  package imported and warmed up first, alternately: (a) `Report([DataDriftPreset(drift_share=
  0.5)], include_tests=True).run(current, reference)` on DataFrames already in memory, the very
  ones the command compares; (b) `drift.main([])`: read, check, sample, report, write the HTML
  and the JSON. Each of (b)'s steps is timed by wrapping drift.py's own functions;
- `python -m <package> drift` in a subprocess, at 100,000 and at 1,000,000 current rows: wall
  time and peak RSS (`os.wait4`'s `ru_maxrss`, the figure `/usr/bin/time -v` prints).

Before measuring it waits up to QUIET_WAIT seconds for the 1-minute load average to drop below
QUIET_LOAD, then measures anyway; the load averages are in the output.

Run it from the template repository's root, with `uv` on PATH:
`uv run --locked python benchmarks/drift.py`. It prints markdown tables, from which
docs/benchmarks-drift.md is written; it writes no page itself.
"""

from __future__ import annotations

import json
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from _bake import (
    ROOT,
    Project,
    Timing,
    load_average,
    parse_command_line,
    peak_process,
    quiet_env,
    run,
    set_up,
    system,
    versions,
    wait_for_quiet,
)

BENCH = ROOT / "build" / "bench-drift"
ROWS = 100_000
BIG_ROWS = 1_000_000
NOISE = 0.01
REFERENCE_SEED = 1
CURRENT_SEED = 2
ROUNDS = 7
PEAK_RUNS = 3
GOAL_RATIO = 1.2
GOAL_PEAK_GIB = 4.0
TRAIN_DATA = Path("data/prepared/train.csv")
PACKAGES = ["evidently", "pandas", "numpy", "scipy", "pyarrow", "plotly"]

# Runs inside the baked project: `python in_process.py <results.json> <rounds>`.
IN_PROCESS = '''\
"""Evidently's Report.run alone, then the drift command in-process, alternately, warm."""

import gc
import json
import sys
import time
import warnings
from collections import defaultdict
from collections.abc import Callable
from contextlib import redirect_stdout
from io import StringIO
from types import ModuleType
from typing import Any

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from evidently import Report
    from evidently.presets import DataDriftPreset

from PACKAGE.core import tables
from PACKAGE.core.config import DRIFT_SUMMARY
from PACKAGE.pipeline import drift

SHARE = 0.5
# (module, function) -> what it does in the command; every call is timed.
STEPS = {
    (drift, "read_sample"): "read",
    (tables, "find_problems"): "schema check",
    (drift, "compare"): "compare",
    (drift, "column_tests"): "summarise",
    (drift, "stable_ids"): "html",
    # Both files go through it: the HTML report, then the JSON summary.
    (drift, "write_text_atomic"): "write",
}
spent: defaultdict[str, float] = defaultdict(float)
frames: dict[str, Any] = {}


def timed(module: ModuleType, name: str, step: str) -> None:
    function = getattr(module, name)

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            result = function(*args, **kwargs)
        finally:
            spent[step] += time.perf_counter() - start
        if step == "read":
            frames[args[3]] = result.frame
        return result

    setattr(module, name, wrapper)


def clock(action: Callable[[], object]) -> tuple[float, float]:
    """Wall and CPU seconds of one call, after a full collection."""
    gc.collect()
    wall, cpu = time.perf_counter(), time.process_time()
    action()
    return time.perf_counter() - wall, time.process_time() - cpu


def baseline() -> Any:
    return Report([DataDriftPreset(drift_share=SHARE)], include_tests=True).run(
        frames["current"], frames["reference"]
    )


def command() -> None:
    with redirect_stdout(StringIO()):
        drift.main([])


for (module, name), step in STEPS.items():
    timed(module, name, step)
# Warm-up, not counted; the command's run also hands its DataFrames to the baseline.
command()
clock(baseline)
runs: dict[str, Any] = {"baseline": [], "command": [], "steps": []}
for _ in range(int(sys.argv[2])):
    runs["baseline"].append(clock(baseline))
    spent.clear()
    runs["command"].append(clock(command))
    runs["steps"].append(dict(spent))
summary = json.loads(DRIFT_SUMMARY.read_text(encoding="utf-8"))
plain = drift.column_tests(baseline())
runs["same_tests"] = (
    len(plain) == summary["columns"]
    and {test.method: test.threshold for test in plain} == summary["methods"]
    and {test.column for test in plain if test.drifted} == set(summary["drifted"])
)
runs["summary"] = {key: summary[key] for key in ("columns", "methods", "drifted_share", "rows")}
runs["compared"] = {role: list(frame.shape) for role, frame in frames.items()}
with open(sys.argv[1], "w", encoding="utf-8") as file:
    json.dump(runs, file)
'''

# Labels of the command's steps, in the order they run; "schema check" is part of "read".
STEP_LABELS = {
    "read": "read, check and sample both files (`read_sample` x2)",
    "schema check": "of which the schema check (`find_problems`)",
    "compare": "Evidently: `Dataset.from_pandas` + `Report.run` (`compare`)",
    "summarise": "column tests from `snapshot.dict()` (`column_tests`)",
    "html": "HTML report: fixed element ids (`stable_ids`; rendering is in the overhead)",
    "write": "HTML report and JSON summary, atomic writes (`write_text_atomic` x2)",
}


@dataclass(frozen=True)
class PeakRun:
    """One `python -m <package> drift` subprocess."""

    seconds: float
    peak_kib: int
    output: str

    @property
    def peak_mib(self) -> float:
        return self.peak_kib / 1024


@dataclass(frozen=True)
class Figures:
    """Everything one benchmark run measured."""

    facts: dict[str, str]
    wall: tuple[Timing, Timing]
    cpu: tuple[Timing, Timing]
    steps: list[Timing]
    overhead: Timing
    checks: dict[str, Any]
    peaks: dict[int, list[PeakRun]]


def current_path(project: Project) -> Path:
    params = yaml.safe_load((project.path / "params.yaml").read_text(encoding="utf-8"))
    return project.path / str(params["drift"]["current"])


def noisy_rows(project: Project, rows: int, seed: int) -> pd.DataFrame:
    """Raw rows drawn with replacement, each feature value times N(1, NOISE), within bounds."""
    schema_file = project.path / "src" / project.package / "core" / "schema.yaml"
    features = yaml.safe_load(schema_file.read_text(encoding="utf-8"))["features"]
    raw = pd.read_csv(next((project.path / "data" / "raw").glob("*.csv")))
    rng = np.random.default_rng(seed)
    frame = raw.iloc[rng.integers(0, len(raw), rows)].reset_index(drop=True)
    names = list(features)
    values = frame[names].to_numpy() * rng.normal(1, NOISE, (rows, len(names)))
    low = [features[name]["min"] for name in names]
    high = [features[name]["max"] for name in names]
    frame[names] = np.clip(values, low, high).round(6)
    return frame


def write_reference(project: Project) -> None:
    """The training data, target column included: drift reads the features only."""
    noisy_rows(project, ROWS, REFERENCE_SEED).to_csv(project.path / TRAIN_DATA, index=False)


def write_current(project: Project, rows: int) -> None:
    """Current data as production sends it: features only."""
    schema_file = project.path / "src" / project.package / "core" / "schema.yaml"
    names = list(yaml.safe_load(schema_file.read_text(encoding="utf-8"))["features"])
    frame = noisy_rows(project, rows, CURRENT_SEED)[names]
    frame.to_csv(current_path(project), index=False)


def in_process(project: Project) -> dict[str, Any]:
    """Run the in-process script in the project's environment; return what it measured."""
    script = BENCH / "in_process.py"
    script.write_text(IN_PROCESS.replace("PACKAGE", project.package), encoding="utf-8")
    results = BENCH / "in_process.json"
    command = ["uv", "run", "--locked", "python", str(script), str(results), str(ROUNDS)]
    run(command, project.path, quiet_env())
    figures: dict[str, Any] = json.loads(results.read_text(encoding="utf-8"))
    return figures


def peak_run(project: Project) -> PeakRun:
    """`python -m <package> drift` in a subprocess: wall seconds and the peak RSS of the process."""
    command = [project.python, "-m", project.package, "drift"]
    return PeakRun(*peak_process(command, project, BENCH / "drift.log"))


def peak_runs(project: Project, rows: int) -> list[PeakRun]:
    print(f"`python -m {project.package} drift` at {rows} rows, {PEAK_RUNS} runs ...", flush=True)
    return [peak_run(project) for _ in range(PEAK_RUNS)]


def timings(runs: dict[str, Any], index: int, what: str) -> tuple[Timing, Timing]:
    """The baseline's and the command's seconds, wall (index 0) or CPU (index 1)."""
    return (
        Timing(f"(a) `Report.run` alone, {what}", tuple(r[index] for r in runs["baseline"])),
        Timing(f"(b) drift command in-process, {what}", tuple(r[index] for r in runs["command"])),
    )


def steps(runs: dict[str, Any]) -> list[Timing]:
    """Wall seconds of each of the command's steps, per run; the rest is what no step covers."""
    found = [
        Timing(label, tuple(run.get(step, 0.0) for run in runs["steps"]))
        for step, label in STEP_LABELS.items()
    ]
    covered = [sum(v for k, v in run.items() if k != "schema check") for run in runs["steps"]]
    whole = [seconds for seconds, _ in runs["command"]]
    rest = tuple(total - part for total, part in zip(whole, covered, strict=True))
    return [*found, Timing("the rest (params, schema, printing)", rest)]


def overhead(runs: dict[str, Any]) -> Timing:
    """Wall seconds of (b) beyond its own `Report.run`: (b) minus its `compare` step, per run."""
    whole = [seconds for seconds, _ in runs["command"]]
    compare = [run["compare"] for run in runs["steps"]]
    extra = tuple(total - part for total, part in zip(whole, compare, strict=True))
    return Timing("(b) minus its `compare` step", extra)


def measure() -> Figures:
    facts = system()
    facts["load average (1, 5, 15 min) at start"] = load_average()
    project, _ = set_up(BENCH, ["setup", "repro"])
    print(f"writing {ROWS} reference and current rows ...", flush=True)
    write_reference(project)
    write_current(project, ROWS)
    facts["load average before measuring"] = wait_for_quiet()
    print(f"in-process: Report.run alone and the command, {ROUNDS} rounds each ...", flush=True)
    runs = in_process(project)
    facts |= versions(project, PACKAGES)
    peaks = {ROWS: peak_runs(project, ROWS)}
    print(f"writing {BIG_ROWS} current rows ...", flush=True)
    write_current(project, BIG_ROWS)
    peaks[BIG_ROWS] = peak_runs(project, BIG_ROWS)
    facts["load average (1, 5, 15 min) at end"] = load_average()
    checks = {key: runs[key] for key in ("same_tests", "summary", "compared")}
    wall, cpu = timings(runs, 0, "wall"), timings(runs, 1, "CPU")
    return Figures(facts, wall, cpu, steps(runs), overhead(runs), checks, peaks)


def verdict(value: float, goal: float) -> str:
    return "met" if value <= goal else "NOT met"


def timing_table(rows: list[Timing], whole: float | None = None) -> list[str]:
    return [
        "| what | median s | range s | share of (b) | runs |",
        "|---|---:|---|---:|---:|",
        *(timing.row(f"{timing.median / whole:.0%}" if whole else "") for timing in rows),
    ]


def peak_table(peaks: dict[int, list[PeakRun]]) -> list[str]:
    lines = ["| current rows | median wall s | range s | peak RSS MiB, max | range MiB | runs |"]
    lines.append("|---:|---:|---|---:|---|---:|")
    for rows, found in peaks.items():
        seconds = [peak.seconds for peak in found]
        mib = [peak.peak_mib for peak in found]
        lines.append(
            f"| {rows:,} | {statistics.median(seconds):.2f} | {min(seconds):.2f}-{max(seconds):.2f}"
            f" | {max(mib):.0f} | {min(mib):.0f}-{max(mib):.0f} | {len(found)} |"
        )
    return lines


def report(figures: Figures) -> str:
    """The figures as markdown: machine, timings, steps, peaks and the verdicts."""
    (wall_a, wall_b), (cpu_a, cpu_b) = figures.wall, figures.cpu
    ratio, cpu_ratio = wall_b.median / wall_a.median, cpu_b.median / cpu_a.median
    peak_gib = max(peak.peak_mib for peak in figures.peaks[BIG_ROWS]) / 1024
    lines = [f"- {name}: {value}" for name, value in figures.facts.items()]
    lines += [f"- {name}: {value}" for name, value in figures.checks.items()]
    lines += ["", *timing_table([wall_a, wall_b, cpu_a, cpu_b])]
    steps = [*figures.steps, figures.overhead]
    lines += ["", "Steps of (b), wall:", "", *timing_table(steps, wall_b.median)]
    lines += ["", *peak_table(figures.peaks), ""]
    lines.append(
        f"- (b)/(a) wall: {ratio:.2f}x (goal <= {GOAL_RATIO}x): {verdict(ratio, GOAL_RATIO)}"
    )
    paired = [b / a for a, b in zip(wall_a.seconds, wall_b.seconds, strict=True)]
    lines.append(
        f"- (b)/(a) wall, round by round: median {statistics.median(paired):.2f}x, "
        f"range {min(paired):.2f}-{max(paired):.2f}x"
    )
    lines.append(f"- (b)/(a) CPU: {cpu_ratio:.2f}x")
    # (b)'s `compare` is (a)'s work (same tests, same frames): what (b) adds is the rest.
    added = (wall_a.median + figures.overhead.median) / wall_a.median
    lines.append(f"- ((a) + (b)'s work beyond `compare`) / (a), wall: {added:.2f}x")
    lines.append(
        f"- peak RSS at {BIG_ROWS:,} rows: {peak_gib:.2f} GiB (goal <= {GOAL_PEAK_GIB} GiB): "
        f"{verdict(peak_gib, GOAL_PEAK_GIB)}"
    )
    lines += ["", "Command output at the largest size:", "", "```"]
    lines += [figures.peaks[BIG_ROWS][-1].output, "```"]
    return "\n".join(lines)


def main() -> int:
    parse_command_line(__doc__)
    print(report(measure()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
