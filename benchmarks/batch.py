"""Score 1M rows with the generated `batch` command and set it against `predict` in memory.

One run bakes the default project into build/bench-batch/, runs `make setup`, `make repro` and
`make promote` in it, and writes 1M rows drawn with replacement from the raw data (fixed seed,
features only) as a CSV and a Parquet file. Then, for each estimator in turn (params.yaml's
`train.estimator`, then `make repro` and `make promote` again):

- the baseline: a fresh process loads the champion's estimator, reads the Parquet file into a
  DataFrame and times `predict`, `predict_proba` and the command's own `scoring.predict` on all
  of it, in memory (median of ROUNDS);
- `python -m <package> batch` on the CSV and on the Parquet file, default chunk size, ROUNDS
  times each, alternated: wall time, peak RSS, and the rows/s the command prints for its own
  scoring loop (reading, checking, scoring, writing; no start-up, no model loading);
- the same command on 1,000 rows: the fixed cost of a run, in seconds and memory;
- peak RSS at other chunk sizes, once each, to show that memory follows the chunk size.

Every 1M-row run's predicted classes are counted and checked against the baseline's. The
machine's 1-minute load average must drop below 1 (or 5 minutes pass) before each
estimator's measurements. Peak RSS comes from `/usr/bin/time -v`, or without it from
getrusage(RUSAGE_CHILDREN) in a wrapper process.

Run it from the template repository's root: `make bench-batch`, or
`uv run --locked python benchmarks/batch.py` with `uv` on PATH. It rewrites
docs/benchmarks-batch.md.
"""

from __future__ import annotations

import json
import re
import statistics
import subprocess
import sys
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
import yaml

from _bake import (
    QUIET_LOAD,
    QUIET_WAIT,
    ROOT,
    Project,
    load_average,
    machine,
    parse_command_line,
    run,
    set_up,
    timed,
    wait_for_quiet,
)

BENCH = ROOT / "build" / "bench-batch"
REPORT = ROOT / "docs" / "benchmarks-batch.md"
ROWS = 1_000_000
FEW_ROWS = 1_000
SEED = 42
ROUNDS = 3
DEFAULT_CHUNK = 100_000  # the batch command's own default
OTHER_CHUNKS = (10_000, 1_000_000)
FORMATS = {"csv": "CSV", "parquet": "Parquet"}  # input suffix -> name
ESTIMATORS = ("logistic_regression", "random_forest", "hist_gradient_boosting")
GOAL_RATIO = 0.7
PACKAGES = ["scikit-learn", "numpy", "pandas", "pyarrow", "mlflow", "skops"]
TIME = Path("/usr/bin/time")
# Runs a command and reports its peak RSS as `/usr/bin/time -v` does (Linux: ru_maxrss in KiB).
PEAK_RSS = """\
import resource, subprocess, sys
code = subprocess.call(sys.argv[1:])
peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
print(f"Maximum resident set size (kbytes): {peak}", file=sys.stderr)
sys.exit(code)
"""
PEAK_LINE = re.compile(r"Maximum resident set size \(kbytes\): (\d+)")
RATE_LINE = re.compile(r"\(([\d,]+) rows/s\)")
ESTIMATOR_LINE = re.compile(r"^(  estimator: )(\w+)$", re.MULTILINE)

# The baseline, run with the bake's python: argv is the Parquet file and the number of rounds.
BASELINE = '''\
"""The champion on every row of the Parquet file, in memory: seconds, and the classes predicted."""

import time

started = time.perf_counter()

import json
import statistics
import sys

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import skops.io  # what load_registered imports to load the model

from PACKAGE.core.config import load_params
from PACKAGE.core.schema import load_schema
from PACKAGE.core.scoring import predict
from PACKAGE.release.registry import load_registered

imported = time.perf_counter()
model = load_registered(load_params().mlflow)
loaded = time.perf_counter()
estimator = model.estimator
names = load_schema().feature_names
features = pd.read_parquet(sys.argv[1], columns=names).astype("float64")
rounds = int(sys.argv[2])


def read_rows(path):
    """The least any batch job does before scoring: the file's features as one float array."""
    table = pq.read_table(path, columns=names)
    rows = np.empty((table.num_rows, len(names)), order="F")  # one column after another
    for position, column in enumerate(table.columns):
        rows[:, position] = column.to_numpy()
    return rows


calls = {
    "predict": estimator.predict,
    "predict_proba": estimator.predict_proba,
    "batch_predict": lambda frame: predict(estimator, frame),
    "read": lambda _: read_rows(sys.argv[1]),  # the file, not the frame
}
for call in calls.values():  # first-call costs (lazy imports, validation set-up) left out
    call(features.head(10_000))
seconds = {name: [] for name in calls}
for _ in range(rounds):
    for name, call in calls.items():
        start = time.perf_counter()
        call(features)
        seconds[name].append(time.perf_counter() - start)
classes, counts = np.unique(estimator.predict(features), return_counts=True)
print(json.dumps({
    "version": model.version,
    "seconds": {name: statistics.median(values) for name, values in seconds.items()},
    "imports": imported - started,
    "load": loaded - imported,
    "classes": {str(label): int(count) for label, count in zip(classes, counts)},
}))
'''

PAGE = """\
# Batch scoring benchmark

Written by `make bench-batch` (`benchmarks/batch.py`) on {date}. Every figure below is from
that run: rerun it rather than editing this page. To reproduce, from the template repository's
root: `make bench-batch`, or `uv run --locked python benchmarks/batch.py` with uv on PATH (it
bakes into `build/bench-batch/`; about half an hour on 2 cores, waits for a quiet machine
included).

## What is measured

The default bake in `build/bench-batch/` (classification, the breast cancer sample data), after
`make setup`, `make repro` and `make promote`; then the same for each estimator, switched in
`params.yaml` (`train.estimator`) with `make repro` and `make promote` again, so each is the
champion in turn. Its hyperparameters are the generated `params.yaml`'s.

- **Input**: {rows:,} rows drawn with replacement from the {raw_rows} rows of the raw data
  (seed {seed}), the features only, written once with pyarrow as a CSV file ({csv_mb:.0f} MB)
  and a Parquet file ({parquet_mb:.0f} MB, pyarrow's defaults: one row group, dictionary
  encoding, which the repeated rows favour).
- **Baseline**: a fresh process with the bake's Python loads the champion's estimator
  (`registry.load_registered`), reads the Parquet file into a float64 DataFrame, and times
  `predict` and `predict_proba` on all {rows:,} rows at once, median of {rounds}. Its
  throughput is {rows:,} / (`predict` s + `predict_proba` s). The command itself scores
  with `scoring.predict`, one `predict_proba` and an argmax, timed too, about one `predict`'s work:
  the "vs `predict`" column sets the command against `predict` alone. "Reading alone" is the
  floor under any batch job: pyarrow reads the Parquet file's feature columns and stacks them
  into one float64 array, nothing checked, scored or written (median of {rounds}, the file in
  the page cache).
- **`batch`**: `python -m {package} batch INPUT predictions.parquet --chunk-size N` from the
  bake's `.venv`, end to end in a subprocess: interpreter start-up, imports, the registry look-up
  and model load, reading and checking the rows, scoring, writing. {rounds} runs per input at
  the default chunk size ({default_chunk:,} rows), CSV and Parquet alternated; medians, range in
  brackets. "Loop rows/s" is the rate the command prints itself: rows over the time from the
  model loaded to the output written. The output is Parquet for both inputs.
- **Fixed cost**: the same command on the first {few_rows:,} rows (CSV): what a run costs before
  the rows count.
- **Peak RSS**: {rss_source}, of the whole process (the interpreter and every import
  included). Other chunk sizes are run once each.

Every {rows:,}-row run's predicted classes are checked against the baseline's counts.

## Machine

{machine}

Other jobs share the machine: before each estimator the benchmark waits up to {quiet_wait:.0f} s
for the 1-minute load average to drop below {quiet_load}, and measures anyway after that. Under
load every figure is slower and spreads more (see the ranges), and the baseline and the command
are measured minutes apart, so ratios carry that noise too. `hist_gradient_boosting` scores on
every core with OpenMP threads, which makes it the most sensitive to other jobs.

## Throughput

{throughput}

## Memory

Peak RSS in MB by chunk size; "fixed" is the {few_rows:,}-row run, "in memory" the baseline
process holding all {rows:,} rows as one DataFrame.

{memory}

## Against the goal

Goal: batch scoring of {rows:,} rows at no less than {goal}x the throughput of a raw
`model.predict` on the same data already in memory, with peak memory bounded by the chunk size.

{verdicts}

{gaps}
"""


@dataclass(frozen=True)
class Run:
    """One `batch` command: wall seconds, peak RSS and the rate it printed for its loop."""

    seconds: float
    peak_mb: float
    loop_rate: float


@dataclass(frozen=True)
class Baseline:
    """The champion on all rows in memory: median seconds per call, and the classes predicted."""

    version: str
    seconds: dict[str, float]
    imports: float
    load: float
    classes: dict[str, int]
    peak_mb: float

    @property
    def rate(self) -> float:
        return ROWS / (self.seconds["predict"] + self.seconds["predict_proba"])

    @property
    def predict_rate(self) -> float:
        return ROWS / self.seconds["predict"]


@dataclass(frozen=True)
class Scored:
    """Everything measured with one estimator as the champion."""

    estimator: str
    baseline: Baseline
    few: Run
    runs: dict[tuple[str, int], list[Run]]

    def median(self, kind: str, chunk: int = DEFAULT_CHUNK) -> Run:
        runs = self.runs[kind, chunk]
        return Run(
            statistics.median(run.seconds for run in runs),
            statistics.median(run.peak_mb for run in runs),
            statistics.median(run.loop_rate for run in runs),
        )


@dataclass(frozen=True)
class Inputs:
    """The files the command reads, and facts about them for the page."""

    files: dict[str, Path]
    few: Path
    raw_rows: int


def promote(project: Project) -> None:
    """Make the challenger the champion, past a promotion gate with `--force` if there is one."""
    result = subprocess.run(
        ["make", "promote"],
        cwd=project.path,
        env=project.env,
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode == 0:
        lines = result.stdout.splitlines()
        print("\n".join(f"  {line}" for line in lines if line.startswith("promote:")))
        return
    command = [project.python, "-m", project.package, "promote"]
    if "--force" not in run([*command, "--help"], project.path, project.env):
        sys.exit(f"ERROR: make promote failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    forced = run([*command, "--force", "--reason", "benchmark"], project.path, project.env)
    print(f"  `make promote` refused; forced: {forced.strip()}")


def champion_estimator(project: Project, estimator: str) -> None:
    """Make `estimator` the champion: params.yaml's train.estimator, `make repro`, promote."""
    params = project.path / "params.yaml"
    text = params.read_text(encoding="utf-8")
    found = ESTIMATOR_LINE.findall(text)
    if len(found) != 1:
        sys.exit(f"ERROR: expected one `train.estimator` line in {params}, found {len(found)}")
    if found[0][1] == estimator:
        return
    params.write_text(ESTIMATOR_LINE.sub(rf"\g<1>{estimator}", text), encoding="utf-8")
    print(f"  {estimator}: make repro ...")
    run(["make", "repro"], project.path, project.env)
    promote(project)


def write_inputs(project: Project) -> Inputs:
    """ROWS raw rows drawn with replacement, features only, as CSV and Parquet; FEW_ROWS as CSV."""
    raw = next((project.path / "data" / "raw").glob("*.csv"))
    schema = project.path / "src" / project.package / "core" / "schema.yaml"
    target = yaml.safe_load(schema.read_text(encoding="utf-8"))["target"]["name"]
    frame = pd.read_csv(raw).drop(columns=target)
    rows = np.random.default_rng(SEED).integers(0, len(frame), ROWS)
    table = pa.Table.from_pandas(frame.iloc[rows], preserve_index=False)
    files = {"csv": BENCH / "rows.csv", "parquet": BENCH / "rows.parquet"}
    pa_csv.write_csv(table, files["csv"])
    pq.write_table(table, files["parquet"])
    few = BENCH / f"rows-{FEW_ROWS}.csv"
    pa_csv.write_csv(table.slice(0, FEW_ROWS), few)
    return Inputs(files, few, len(frame))


def with_peak_rss(command: list[str]) -> list[str]:
    if TIME.exists():
        return [str(TIME), "-v", *command]
    return [sys.executable, "-c", PEAK_RSS, *command]


def peak_mb(output: str) -> float:
    found = PEAK_LINE.findall(output)
    if not found:
        sys.exit(f"ERROR: no peak RSS in the output:\n{output[-3000:]}")
    return int(found[-1]) / 1024


def measure_baseline(project: Project, parquet: Path) -> Baseline:
    script = BENCH / "baseline.py"
    script.write_text(BASELINE.replace("PACKAGE", project.package), encoding="utf-8")
    command = with_peak_rss([project.python, str(script), str(parquet), str(ROUNDS)])
    output = run(command, project.path, project.env)
    answer = json.loads(next(line for line in output.splitlines() if line.startswith("{")))
    return Baseline(
        answer["version"],
        answer["seconds"],
        answer["imports"],
        answer["load"],
        answer["classes"],
        peak_mb(output),
    )


def score(project: Project, source: Path, chunk: int = DEFAULT_CHUNK) -> Run:
    """`batch` on `source` into BENCH/predictions.parquet, timed and measured."""
    output = BENCH / "predictions.parquet"
    output.unlink(missing_ok=True)
    command = [project.python, "-m", project.package, "batch", str(source), str(output)]
    command += ["--chunk-size", str(chunk)]
    seconds, text = timed(with_peak_rss(command), project.path, project.env)
    rate = RATE_LINE.search(text)
    if rate is None:
        sys.exit(f"ERROR: `batch` printed no rate:\n{text[-3000:]}")
    return Run(seconds, peak_mb(text), float(rate.group(1).replace(",", "")))


def predicted_classes(output: Path) -> dict[str, int]:
    counts = pd.read_parquet(output, columns=["prediction"])["prediction"].value_counts()
    return {str(label): int(count) for label, count in counts.items()}


def check(output: Path, baseline: Baseline) -> None:
    """The command predicted the classes the baseline did, as often."""
    found = predicted_classes(output)
    if found != baseline.classes:
        sys.exit(f"ERROR: `batch` predicted {found}, the baseline {baseline.classes}")


def progress(label: str, scored: Run) -> None:
    print(f"    {label}: {scored.seconds:.2f} s, {scored.peak_mb:.0f} MB")


def measure_estimator(project: Project, estimator: str, inputs: Inputs) -> Scored:
    print(f"  {estimator}: baseline in memory ...")
    baseline = measure_baseline(project, inputs.files["parquet"])
    few = score(project, inputs.few)
    runs: dict[tuple[str, int], list[Run]] = {}
    for round_ in range(ROUNDS):
        order = list(FORMATS) if round_ % 2 == 0 else list(FORMATS)[::-1]
        for kind in order:
            scored = score(project, inputs.files[kind])
            check(BENCH / "predictions.parquet", baseline)
            runs.setdefault((kind, DEFAULT_CHUNK), []).append(scored)
            progress(f"{kind}, round {round_ + 1}", scored)
    for chunk in OTHER_CHUNKS:
        for kind in FORMATS:
            scored = score(project, inputs.files[kind], chunk)
            check(BENCH / "predictions.parquet", baseline)
            runs[kind, chunk] = [scored]
            progress(f"{kind}, {chunk:,}-row chunks", scored)
    return Scored(estimator, baseline, few, runs)


def spread(runs: list[Run]) -> str:
    seconds = [run.seconds for run in runs]
    return f" ({min(seconds):.2f}-{max(seconds):.2f})" if len(runs) > 1 else ""


def throughput_table(results: list[Scored]) -> str:
    lines = [
        "| estimator (version) | what | wall s | rows/s | vs `predict` + `predict_proba` "
        "| vs `predict` | loop rows/s | peak RSS MB |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for result in results:
        base = result.baseline
        name = f"`{result.estimator}` ({base.version})"
        seconds = base.seconds
        both = seconds["predict"] + seconds["predict_proba"]
        lines += [
            f"| {name} | in memory: `predict` + `predict_proba` | {both:.3f} | {base.rate:,.0f} "
            f"| 1.00x | {base.rate / base.predict_rate:.2f}x | | {base.peak_mb:.0f} |",
            f"| {name} | in memory: `predict` | {seconds['predict']:.3f} "
            f"| {base.predict_rate:,.0f} | | 1.00x | | |",
            f"| {name} | in memory: `scoring.predict` (`predict_proba` + argmax) "
            f"| {seconds['batch_predict']:.3f} | {ROWS / seconds['batch_predict']:,.0f} | | | | |",
            f"| {name} | reading alone: the Parquet file's features into a float array "
            f"| {seconds['read']:.3f} | {ROWS / seconds['read']:,.0f} | | | | |",
        ]
        for kind, label in FORMATS.items():
            run_ = result.median(kind)
            rate = ROWS / run_.seconds
            lines.append(
                f"| {name} | `batch`, {label}, "
                f"{DEFAULT_CHUNK:,}-row chunks | {run_.seconds:.2f}"
                f"{spread(result.runs[kind, DEFAULT_CHUNK])} | {rate:,.0f} "
                f"| {rate / base.rate:.2f}x | {rate / base.predict_rate:.2f}x "
                f"| {run_.loop_rate:,.0f} | {run_.peak_mb:.0f} |"
            )
        lines.append(
            f"| {name} | `batch`, {FEW_ROWS:,} rows (fixed cost) | {result.few.seconds:.2f} "
            f"| | | | | {result.few.peak_mb:.0f} |"
        )
    return "\n".join(lines)


def chunk_sizes() -> list[int]:
    return sorted([DEFAULT_CHUNK, *OTHER_CHUNKS])


def memory_table(results: list[Scored]) -> str:
    chunks = chunk_sizes()
    lines = [
        "| estimator | input | fixed | "
        + " | ".join(f"{chunk:,}-row chunks" for chunk in chunks)
        + " | in memory |",
        "|---|---|---:|" + "---:|" * (len(chunks) + 1),
    ]
    for result in results:
        for kind, label in FORMATS.items():
            peaks = " | ".join(f"{result.median(kind, chunk).peak_mb:.0f}" for chunk in chunks)
            lines.append(
                f"| `{result.estimator}` | {label} | {result.few.peak_mb:.0f} | {peaks} "
                f"| {result.baseline.peak_mb:.0f} |"
            )
    return "\n".join(lines)


def follows(result: Scored) -> bool:
    """Whether peak RSS grows with the chunk size, for every input format."""
    for kind in FORMATS:
        peaks = [result.median(kind, chunk).peak_mb for chunk in chunk_sizes()]
        if any(small >= large for small, large in pairwise(peaks)):
            return False
    return True


def goal_met(result: Scored) -> str:
    """The verdict on throughput, against both baselines, and on memory."""
    ends = [ROWS / result.median(kind).seconds for kind in FORMATS]
    base = result.baseline
    if all(rate >= GOAL_RATIO * base.rate for rate in ends):
        against = "throughput goal **met** against `predict` + `predict_proba`" + (
            " and against `predict` alone"
            if all(rate >= GOAL_RATIO * base.predict_rate for rate in ends)
            else ", **NOT met** against `predict` alone"
        )
    else:
        against = "throughput goal **NOT met**"
    memory = "memory follows the chunk size" if follows(result) else "memory does NOT follow it"
    return f"{against}; {memory}"


def rows_needed(outside: float, loop_rate: float, baseline: float) -> float | None:
    """Rows from which the end-to-end rate reaches the goal, the time outside the loop fixed."""
    target = GOAL_RATIO * baseline
    if loop_rate <= target:
        return None
    # rows / (outside + rows / loop_rate) >= target, solved for rows.
    return target * outside / (1 - target / loop_rate)


def format_line(result: Scored, kind: str) -> str:
    base, run_ = result.baseline, result.median(kind)
    rate = ROWS / run_.seconds
    loop = ROWS / run_.loop_rate
    outside = run_.seconds - loop
    needed = rows_needed(outside, run_.loop_rate, base.rate)
    reach = (
        "so the goal is out of reach at any number of rows"
        if needed is None
        else f"so with the same {outside:.1f} s outside it the goal would be reached from "
        f"about {needed:,.0f} rows"
    )
    return (
        f"{FORMATS[kind]}: {rate:,.0f} rows/s end to end, **{rate / base.rate:.2f}x** the "
        f"baseline and {rate / base.predict_rate:.2f}x `predict` alone. Of its "
        f"{run_.seconds:.1f} s, {outside:.1f} s are outside the scoring loop and {loop:.1f} s in "
        f"it; the loop alone runs at {run_.loop_rate:,.0f} rows/s, "
        f"{run_.loop_rate / base.rate:.2f}x the baseline, {reach}."
    )


def reading_floor(base: Baseline) -> str:
    """What the goal leaves for the whole run, against reading and scoring the rows alone."""
    budget = ROWS / (GOAL_RATIO * base.rate)
    alone = ROWS / (GOAL_RATIO * base.predict_rate)
    read, model = base.seconds["read"], base.seconds["batch_predict"]
    floor = read + model
    outcome = (
        "no batch job that reads its rows from a file and scores them can meet it with this model"
        if floor >= budget
        else f"{budget - floor:.2f} s would be left to start, check and write"
    )
    return (
        f"The goal leaves {budget:.2f} s for the whole run ({alone:.2f} s against `predict` "
        f"alone). Reading the Parquet file's rows into a float array, nothing else, took "
        f"{read:.2f} s and scoring them in memory {model:.2f} s: {floor:.2f} s before the "
        f"interpreter starts or a row is checked or written, so {outcome}."
    )


def gaps(result: Scored) -> dict[str, float]:
    """Seconds each loop takes beyond scoring every row in memory, by input format."""
    model = result.baseline.seconds["batch_predict"]
    return {kind: ROWS / result.median(kind).loop_rate - model for kind in FORMATS}


def time_line(result: Scored) -> str:
    """Where the time outside the loop goes, and what the loop adds to the model's own time."""
    base = result.baseline
    model = base.seconds["batch_predict"]
    extra = gaps(result)
    return (
        f"Outside the loop: in the baseline process, importing what the command needs (pandas, "
        f"pyarrow, MLflow, scikit-learn, skops) took {base.imports:.1f} s and the registry "
        f"look-up and model load {base.load:.1f} s; the whole {FEW_ROWS:,}-row run took "
        f"{result.few.seconds:.1f} s. In memory, `scoring.predict` scores every row in "
        f"{model:.2f} s; the loops take "
        + " and ".join(f"{extra[kind]:.2f} s more ({label})" for kind, label in FORMATS.items())
        + "."
    )


def gaps_note(results: list[Scored]) -> str:
    """What each loop adds to its model's time, set against the cheapest model's loop."""
    cheapest = min(results, key=lambda result: result.baseline.seconds["batch_predict"])
    reading = gaps(cheapest)
    lines = [
        f"With `{cheapest.estimator}`, whose model scores every row in "
        f"{cheapest.baseline.seconds['batch_predict']:.2f} s, the loop is nearly all reading, "
        f"parsing, checking and writing: about "
        + " and ".join(f"{reading[kind]:.2f} s ({label})" for kind, label in FORMATS.items())
        + f" for {ROWS:,} rows. The command reads the next chunk in a thread while it scores "
        "one, so behind a slower model that work can hide."
    ]
    for result in results:
        if result is cheapest:
            continue
        extra = gaps(result)
        shown = " and ".join(f"{extra[kind]:.2f} s ({label})" for kind, label in FORMATS.items())
        if all(extra[kind] > 2 * reading[kind] for kind in FORMATS):
            meaning = "far more than reading costs: its model ran slower inside the command"
        elif all(extra[kind] < reading[kind] for kind in FORMATS):
            meaning = "less than reading costs: part of the reading hid behind scoring"
        else:
            meaning = "about what reading costs"
        lines.append(f"`{result.estimator}`'s loops add {shown} to its model's time, {meaning}.")
    return " ".join(lines)


def memory_line(result: Scored) -> str:
    peaks = {
        kind: " / ".join(f"{result.median(kind, chunk).peak_mb:.0f}" for chunk in chunk_sizes())
        for kind in FORMATS
    }
    return (
        "Peak RSS "
        + " and ".join(f"{peaks[kind]} MB ({label})" for kind, label in FORMATS.items())
        + " at "
        + " / ".join(f"{chunk:,}" for chunk in chunk_sizes())
        + f"-row chunks; {result.few.peak_mb:.0f} MB for {FEW_ROWS:,} rows, "
        f"{result.baseline.peak_mb:.0f} MB for the baseline holding every row."
    )


def verdict(result: Scored) -> str:
    """The goal against one estimator's figures, and where the command's time went."""
    details = [format_line(result, kind) for kind in FORMATS]
    details += [reading_floor(result.baseline), time_line(result), memory_line(result)]
    return "\n".join(
        [
            f"- **`{result.estimator}`** (version {result.baseline.version}): {goal_met(result)}.",
            *(f"  - {line}" for line in details),
        ]
    )


def report(results: list[Scored], facts: dict[str, str], inputs: Inputs, package: str) -> str:
    """docs/benchmarks-batch.md, from this run's figures."""
    return PAGE.format(
        date=facts["date"],
        rows=ROWS,
        raw_rows=inputs.raw_rows,
        seed=SEED,
        csv_mb=inputs.files["csv"].stat().st_size / 1e6,
        parquet_mb=inputs.files["parquet"].stat().st_size / 1e6,
        rounds=ROUNDS,
        package=package,
        default_chunk=DEFAULT_CHUNK,
        few_rows=FEW_ROWS,
        rss_source="`/usr/bin/time -v`" if TIME.exists() else "getrusage(RUSAGE_CHILDREN)",
        machine="\n".join(f"- {name}: {value}" for name, value in facts.items()),
        throughput=throughput_table(results),
        memory=memory_table(results),
        goal=GOAL_RATIO,
        quiet_wait=QUIET_WAIT,
        quiet_load=QUIET_LOAD,
        verdicts="\n".join(verdict(result) for result in results),
        gaps=gaps_note(results),
    )


def measure() -> tuple[list[Scored], dict[str, str], Inputs, str]:
    project, _ = set_up(BENCH, ["setup", "repro"])
    promote(project)
    print(f"writing {ROWS:,} rows as CSV and Parquet ...")
    inputs = write_inputs(project)
    facts = machine(project, PACKAGES)
    results = []
    for estimator in ESTIMATORS:
        champion_estimator(project, estimator)
        print("  waiting for a quiet machine ...")
        facts[f"load average (1, 5, 15 min) before `{estimator}`"] = wait_for_quiet()
        results.append(measure_estimator(project, estimator, inputs))
    facts["load average (1, 5, 15 min) at end"] = load_average()
    return results, facts, inputs, project.package


def main() -> int:
    parse_command_line(__doc__)
    results, facts, inputs, package = measure()
    page = report(results, facts, inputs, package)
    print()
    print(page.partition("## Machine\n\n")[2])
    REPORT.write_text(page, encoding="utf-8")
    print(f"wrote {REPORT.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
