"""Time the generated project's DVC pipeline against one plain script that does the same work.

One run bakes the default project into build/bench/, runs `make setup` in it, then measures:

- cold `dvc repro`: every stage runs, nothing restored from DVC's cache or run-cache, MLflow
  starting from an empty store;
- the baseline: the same work (schema check, split, fit, skops save and load, scores, plots,
  MLflow run + model version with alias challenger) in one Python process, calling the baked
  package's own functions, from the same clean state;
- no-op `dvc repro`, when everything is up to date;
- where the time goes: each stage alone, and the import cost of what the stages load.

Cold pipeline and baseline runs alternate, so load from other processes hits both alike.
`dvc` is the project's `.venv/bin/dvc`, with `.venv/bin` first on PATH (what `uv run` does), so
uv's own start-up is not counted; it is measured separately.

Run it from the template repository's root: `make bench`, or
`uv run --locked python benchmarks/pipeline.py` with `uv` on PATH. It rewrites docs/benchmarks.md.
"""

from __future__ import annotations

import json
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import yaml

from _bake import (
    ROOT,
    Project,
    Timing,
    load_average,
    machine,
    parse_command_line,
    run,
    set_up,
    timed,
)

BENCH = ROOT / "build" / "bench"
REPORT = ROOT / "docs" / "benchmarks.md"
ROUNDS = 3
NOOP_RUNS = 5
PROBE_RUNS = 3
GOAL_RATIO = 1.3
GOAL_NOOP_SECONDS = 1.5
# A training-parameter edit to a registered version (`make repro`), and to scored metrics with
# drift cached (`make evaluate`, what a pull request runs).
EDIT_RUNS = 3
GOAL_EDIT_SECONDS = 5.0
# What the pipeline writes; removed before every cold run (relative to the project).
OUTPUTS = ("data/prepared", "models", "reports", "dvc.lock", "mlflow.db", "mlruns", "mlartifacts")
STAGES = ("prepare", "train", "evaluate", "register", "drift")
UP_TO_DATE = "Data and pipelines are up to date."
PACKAGES = ["dvc", "mlflow", "scikit-learn", "pandas", "skops", "evidently"]

# The baseline: the pipeline's five stages in one process, each through the entry point
# `python -m PACKAGE <stage>` calls, so it does exactly the stages' work (the prepared CSV files
# written and read back, the model saved and loaded again) and stays in step with their code.
BASELINE = '''\
"""Every stage of the pipeline in one process: no DVC, one interpreter start."""

import sys

from PACKAGE.__main__ import main

for stage in STAGES:
    if main([stage]) != 0:
        sys.exit(f"baseline: stage {stage} failed")
'''.replace("STAGES", repr(STAGES))

# Fresh-interpreter probes, run in the project: what the stages pay before doing any work.
# key -> (label, code); PACKAGE is replaced by the package name.
START_UP = {
    "python": ("python start-up (`python -c pass`)", "pass"),
    "pandas": ("import pandas", "import pandas"),
    "sklearn": (
        "import scikit-learn (what `train` loads)",
        "import sklearn.ensemble, sklearn.linear_model, sklearn.pipeline, sklearn.preprocessing",
    ),
    "skops": ("import skops.io", "import skops.io"),
    "evidently": (
        "import Evidently (what `drift` loads)",
        "from evidently import Report\nfrom evidently.presets import DataDriftPreset",
    ),
    "mlflow": ("import mlflow (what `register` loads)", "import mlflow, mlflow.sklearn"),
    "new_store": (
        "import mlflow + create an empty SQLite store",
        "import sys, tempfile, mlflow\n"
        "folder = tempfile.mkdtemp(dir=sys.argv[1])\n"
        "mlflow.set_tracking_uri(f'sqlite:///{folder}/mlflow.db')\n"
        "mlflow.set_experiment('probe')",
    ),
    "old_store": (
        "import mlflow + open the project's existing store",
        "import mlflow\n"
        "from PACKAGE.core.config import load_params\n"
        "settings = load_params().mlflow\n"
        "mlflow.set_tracking_uri(settings.tracking_uri)\n"
        "mlflow.set_experiment(settings.experiment)",
    ),
}

# docs/benchmarks.md; every figure in it comes from one run of this script.
PAGE = """\
# Benchmarks

Written by `make bench` (`benchmarks/pipeline.py`) on {date}. Every figure below is from that
run: rerun it rather than editing this page.

The other benchmarks: [serving](benchmarks-serving.md) (`make bench-serving`),
[batch scoring](benchmarks-batch.md) (`make bench-batch`), [batch scoring on
Spark](benchmarks-spark.md) (`make bench-spark`), [drift](benchmarks-drift.md)
(`make bench-drift`), [monitoring](benchmarks-monitor.md) (`make bench-monitor`) and
[DVC remotes](benchmarks-remotes.md) (`make bench-remotes`).

## What is measured

The default bake in `build/bench/`, after `make setup` (workload below).

- **Cold `dvc repro`**: `.venv/bin/dvc repro`, with `.venv/bin` first on PATH as `uv run` would
  put it, so uv's own start-up is not counted. Before each run the pipeline outputs, `dvc.lock`,
  `.dvc/cache/runs`, the stage outputs in `.dvc/cache`, `mlflow.db` and `mlruns/` are deleted:
  every stage runs and MLflow starts from an empty store.
- **Baseline**: one Python script doing the same work in one process (schema check, split,
  prepared CSVs written and read back, fit, skops save and load, scores, plot CSVs, MLflow run and
  model version with alias `challenger`, drift report) by calling each stage's entry point (what
  `python -m <package> <stage>` runs) in turn, run with the project's `.venv/bin/python` from the
  same clean state. Both give the same metrics (checked); only interpreter start-ups and DVC
  differ.
- {rounds} cold runs of each, alternated, after one uncounted warm-up `dvc repro` that compiles
  the `.pyc` files; medians compared.
- **No-op `dvc repro`**: everything up to date, median of {noop_runs}; also through
  `uv run --locked`, which is what `make repro` calls.
- **Edit-retrain loop**: from an up-to-date project with a registered version, the chosen
  estimator's first hyperparameter changed in params.yaml, then `dvc repro` (train, evaluate and
  register run; drift is cached), {edit_runs} times; and, after another edit each time,
  `dvc repro evaluate drift`, what `make evaluate` (a pull request) runs: train and evaluate.
- **Where the time goes**: each `python -m <package> <stage>` alone, in order, {rounds} times from
  a clean state; start-up costs in a fresh interpreter, {probe_runs} runs each.

## Machine and workload

{machine}

Other jobs may share the machine while this runs (see the load average); the ranges show the
spread.

## Results

{results}

- Cold pipeline / baseline: **{ratio:.2f}x** (goal: at most {goal_ratio}x, {ratio_verdict}).
- No-op `dvc repro`: **{no_op:.2f} s** (goal: at most {goal_noop} s, {noop_verdict}).
- Hyperparameter edit to a registered version (`make repro`): **{edit_repro:.2f} s** (goal: at
  most {goal_edit} s, {edit_repro_verdict}).
- Hyperparameter edit to scored metrics, drift cached (`make evaluate`): **{edit_evaluate:.2f} s**
  (goal: at most {goal_edit} s, {edit_evaluate_verdict}).
- `make setup` (uv sync from uv's cache, sample data written, added and pushed): {setup:.1f} s,
  once.

## Where the pipeline's time goes

{breakdown}

Each stage runs in its own interpreter and pays its own start-up and imports; the baseline pays
each import once. The {stage_count} stages alone add up to {stage_sum:.2f} s ({stage_list}),
{stage_extra:.2f} s more than the baseline's {baseline:.2f} s: that is what separate processes
cost. The cold `dvc repro` takes {pipeline:.2f} s, so about {dvc_overhead:.2f} s go to DVC's
start-up, hashing and caching outputs and the lock file. `dvc --version` exits before reading
the project; the no-op `dvc repro` is the better measure of DVC's own cost.

Each start-up row is one fresh interpreter, start-up included; imports overlap (scikit-learn,
skops and MLflow all load pandas and NumPy), so they do not add up. Creating the empty MLflow
store (its database migrations) costs about {new_store:.2f} s on top of importing MLflow, in both
the pipeline and the baseline; opening an existing store costs about {old_store:.2f} s. On a
project's second and later runs the store exists, so both get shorter by the difference and the
ratio grows to about {ratio_old_store:.2f}x (an estimate from these figures, not a measurement).

## What bounds the edit-retrain loop

A hyperparameter edit re-runs `train`, `evaluate` and `register` ({loop_stages:.2f} s alone), each
in its own interpreter. Each of the three imports skops, to write or read the model file, and
skops builds its lists of trusted types when it is imported by importing every estimator module
of scikit-learn (`sklearn.utils.all_estimators()`): {skops:.2f} s per interpreter,
{skops_total:.2f} s for the three. `register` also imports MLflow and opens the existing store
(MLflow checks the database's schema against its migration scripts): {old_store_probe:.2f} s, about
{mlflow_extra:.2f} s of it beyond the pandas and NumPy the skops import already loaded. Start-up
alone is therefore about {loop_floor:.2f} s of the {edit_repro:.2f} s loop, before any fitting,
scoring or logging; the {goal_edit} s goal is below it. Meeting it takes fewer interpreters (the
three stages in one process, which gives up DVC's per-stage caching) or a cheaper import of skops
and MLflow's store upstream, not faster stages.
"""


@dataclass(frozen=True)
class Figures:
    """Everything one benchmark run measured."""

    facts: dict[str, str]
    setup_seconds: float
    warm_up: Timing
    pipeline: Timing
    baseline: Timing
    noop: Timing
    noop_uv: Timing
    edit_repro: Timing
    edit_evaluate: Timing
    stages: dict[str, Timing]
    start_up: dict[str, Timing]

    def extra(self, key: str) -> float:
        """Seconds a start-up probe costs beyond importing MLflow."""
        return self.start_up[key].median - self.start_up["mlflow"].median


def cache_files(project: Project) -> frozenset[Path]:
    return frozenset(p for p in (project.path / ".dvc" / "cache").rglob("*") if p.is_file())


def reset(project: Project, kept_cache: frozenset[Path]) -> None:
    """Back to a freshly set-up project: no outputs, no lock, no run-cache, empty MLflow store."""
    for relative in OUTPUTS:
        path = project.path / relative
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)
    shutil.rmtree(project.path / ".dvc" / "cache" / "runs", ignore_errors=True)
    for path in cache_files(project) - kept_cache:
        path.unlink()


def metrics_of(project: Project) -> dict[str, float]:
    scores: dict[str, float] = json.loads(
        (project.path / "reports" / "metrics.json").read_text(encoding="utf-8")
    )
    return scores


def cold_pipeline(project: Project, kept: frozenset[Path]) -> float:
    reset(project, kept)
    seconds, output = timed([project.tool("dvc"), "repro"], project.path, project.env)
    if "Running stage 'register'" not in output or "version 1 is the 'challenger'" not in output:
        sys.exit(f"ERROR: the cold `dvc repro` did not run every stage from scratch:\n{output}")
    return seconds


def cold_baseline(project: Project, kept: frozenset[Path], script: Path) -> float:
    reset(project, kept)
    seconds, output = timed([project.python, str(script)], project.path, project.env)
    if "version 1" not in output:
        sys.exit(f"ERROR: the baseline did not register version 1:\n{output}")
    return seconds


def compare(project: Project, kept: frozenset[Path], script: Path) -> tuple[Timing, Timing]:
    """Alternate cold pipeline and baseline runs; the last run is the pipeline's."""
    pipeline: list[float] = []
    baseline: list[float] = []
    metrics: list[dict[str, float]] = []
    for round_ in range(ROUNDS):
        baseline_first = (ROUNDS - 1 - round_) % 2 == 0
        for which in ("baseline", "pipeline") if baseline_first else ("pipeline", "baseline"):
            if which == "pipeline":
                seconds = cold_pipeline(project, kept)
                pipeline.append(seconds)
            else:
                seconds = cold_baseline(project, kept, script)
                baseline.append(seconds)
            metrics.append(metrics_of(project))
            print(f"  round {round_ + 1}, {which}: {seconds:.2f} s")
    if any(scores != metrics[0] for scores in metrics):
        sys.exit(f"ERROR: the pipeline and the baseline scored differently: {metrics}")
    return Timing("cold `dvc repro`", tuple(pipeline)), Timing("baseline script", tuple(baseline))


def repeat(label: str, command: list[str], project: Project, runs: int = PROBE_RUNS) -> Timing:
    return Timing(label, tuple(timed(command, project.path, project.env)[0] for _ in range(runs)))


def noop(project: Project) -> tuple[Timing, Timing]:
    """`dvc repro` with everything up to date, directly and through `uv run` as `make repro`."""
    output = run([project.tool("dvc"), "repro"], project.path, project.env)
    if UP_TO_DATE not in output or "Running stage" in output:
        sys.exit(f"ERROR: `dvc repro` was expected to have nothing to do:\n{output}")
    uv_dvc = ["uv", "run", "--locked", "dvc", "repro"]
    return (
        repeat("no-op `dvc repro`", [project.tool("dvc"), "repro"], project, NOOP_RUNS),
        repeat("no-op `uv run --locked dvc repro`", uv_dvc, project, NOOP_RUNS),
    )


def edited(text: str, step: int) -> str:
    """params.yaml's `text` with the chosen estimator's first float hyperparameter (C, alpha,
    ...) changed, differently for each `step`: what a user tuning the model edits."""
    params = yaml.safe_load(text)
    chosen = params["train"][params["train"]["estimator"]]
    key = next(name for name, value in chosen.items() if isinstance(value, float))
    chosen[key] = round(chosen[key] * (1 + 0.1 * step), 6)
    return yaml.safe_dump(params, sort_keys=False)


def ran(output: str, expected: set[str]) -> None:
    """Stop unless the `dvc repro` that printed `output` ran exactly the `expected` stages."""
    done = {stage for stage in STAGES if f"Running stage '{stage}'" in output}
    if done != expected:
        sys.exit(f"ERROR: expected stages {sorted(expected)} to run, not {sorted(done)}:\n{output}")


def edit_loop(project: Project) -> tuple[Timing, Timing]:
    """A hyperparameter edit, then `dvc repro` (`make repro`: train, evaluate and register run
    again, drift is cached); another edit, then `dvc repro evaluate drift` (`make evaluate`: train
    and evaluate). The project starts up to date, with its MLflow store and a version in it;
    params.yaml is put back afterwards."""
    params = project.path / "params.yaml"
    original = params.read_text(encoding="utf-8")
    dvc = project.tool("dvc")
    repro: list[float] = []
    evaluate: list[float] = []
    try:
        for run_ in range(EDIT_RUNS):
            params.write_text(edited(original, 2 * run_ + 1), encoding="utf-8")
            seconds, output = timed([dvc, "repro"], project.path, project.env)
            ran(output, {"train", "evaluate", "register"})
            repro.append(seconds)
            params.write_text(edited(original, 2 * run_ + 2), encoding="utf-8")
            seconds, output = timed([dvc, "repro", "evaluate", "drift"], project.path, project.env)
            ran(output, {"train", "evaluate"})
            evaluate.append(seconds)
    finally:
        params.write_text(original, encoding="utf-8")
    return (
        Timing("hyperparameter edit, then `dvc repro` (`make repro`)", tuple(repro)),
        Timing(
            "hyperparameter edit, then `dvc repro evaluate drift` (`make evaluate`)",
            tuple(evaluate),
        ),
    )


def stages(project: Project, kept: frozenset[Path]) -> dict[str, Timing]:
    """Each `python -m <package> <stage>` alone, in order, from a clean state, ROUNDS times."""
    seconds: dict[str, list[float]] = {stage: [] for stage in STAGES}
    for _ in range(ROUNDS):
        reset(project, kept)
        for stage in STAGES:
            command = [project.python, "-m", project.package, stage]
            seconds[stage].append(timed(command, project.path, project.env)[0])
    return {stage: Timing(f"stage `{stage}` alone", tuple(seconds[stage])) for stage in STAGES}


def start_up(project: Project) -> dict[str, Timing]:
    """Start-up costs: the interpreter, the imports the stages need, MLflow's store, dvc, uv."""
    scratch = BENCH / "probes"
    scratch.mkdir(exist_ok=True)
    timings = {
        key: repeat(
            label,
            [project.python, "-c", code.replace("PACKAGE", project.package), str(scratch)],
            project,
        )
        for key, (label, code) in START_UP.items()
    }
    timings["dvc"] = repeat("`dvc --version`", [project.tool("dvc"), "--version"], project)
    uv_python = ["uv", "run", "--locked", "python", "-c", "pass"]
    timings["uv"] = repeat("`uv run --locked python -c pass`", uv_python, project)
    return timings


def workload(project: Project) -> dict[str, str]:
    """The data and the model the pipeline works on, as baked."""
    params = yaml.safe_load((project.path / "params.yaml").read_text(encoding="utf-8"))
    data = next((project.path / "data" / "raw").glob("*.csv"))
    lines = data.read_text(encoding="utf-8").splitlines()
    columns = len(lines[0].split(","))
    return {
        "data": f"{data.name}, {len(lines) - 1} rows x {columns} columns",
        "estimator": params["train"]["estimator"],
        "MLflow tracking URI": params["mlflow"]["tracking_uri"],
    }


def table(timings: list[Timing]) -> list[str]:
    return [
        "| what | median s | range s | runs |",
        "|---|---:|---|---:|",
        *(timing.row(between=" to ") for timing in timings),
    ]


def verdict(value: float, goal: float) -> str:
    return "met" if value <= goal else "NOT met"


def report(figures: Figures) -> str:
    """docs/benchmarks.md, from this run's figures."""
    pipeline, baseline = figures.pipeline.median, figures.baseline.median
    ratio = pipeline / baseline
    no_op = figures.noop.median
    stage = {name: timing.median for name, timing in figures.stages.items()}
    stage_sum = sum(stage.values())
    store_saving = figures.extra("new_store") - figures.extra("old_store")
    results = [
        figures.pipeline,
        figures.baseline,
        figures.warm_up,
        figures.noop,
        figures.noop_uv,
        figures.edit_repro,
        figures.edit_evaluate,
    ]
    edit_repro, edit_evaluate = figures.edit_repro.median, figures.edit_evaluate.median
    return PAGE.format(
        date=figures.facts["date"],
        rounds=ROUNDS,
        noop_runs=NOOP_RUNS,
        probe_runs=PROBE_RUNS,
        machine="\n".join(f"- {name}: {value}" for name, value in figures.facts.items()),
        results="\n".join(table(results)),
        ratio=ratio,
        goal_ratio=GOAL_RATIO,
        ratio_verdict=verdict(ratio, GOAL_RATIO),
        no_op=no_op,
        goal_noop=GOAL_NOOP_SECONDS,
        noop_verdict=verdict(no_op, GOAL_NOOP_SECONDS),
        edit_runs=EDIT_RUNS,
        edit_repro=edit_repro,
        edit_evaluate=edit_evaluate,
        goal_edit=GOAL_EDIT_SECONDS,
        edit_repro_verdict=verdict(edit_repro, GOAL_EDIT_SECONDS),
        edit_evaluate_verdict=verdict(edit_evaluate, GOAL_EDIT_SECONDS),
        setup=figures.setup_seconds,
        breakdown="\n".join(table([*figures.stages.values(), *figures.start_up.values()])),
        baseline=baseline,
        stage_count=len(stage),
        stage_sum=stage_sum,
        stage_list=", ".join(f"`{name}` {seconds:.2f} s" for name, seconds in stage.items()),
        stage_extra=stage_sum - baseline,
        pipeline=pipeline,
        dvc_overhead=pipeline - stage_sum,
        new_store=figures.extra("new_store"),
        old_store=figures.extra("old_store"),
        ratio_old_store=(pipeline - store_saving) / (baseline - store_saving),
        **loop_bounds(figures),
    )


def loop_bounds(figures: Figures) -> dict[str, float]:
    """What the edit-retrain loop pays before any work: each stage's skops import, and MLflow's
    import and store opening in `register` (less the pandas both load)."""
    probe = {key: timing.median for key, timing in figures.start_up.items()}
    loop = ("train", "evaluate", "register")
    skops_total = len(loop) * probe["skops"]
    mlflow_extra = max(0.0, probe["old_store"] - probe["pandas"])
    return {
        "loop_stages": sum(figures.stages[stage].median for stage in loop),
        "skops": probe["skops"],
        "skops_total": skops_total,
        "old_store_probe": probe["old_store"],
        "mlflow_extra": mlflow_extra,
        "loop_floor": skops_total + mlflow_extra,
    }


def show(timings: list[Timing]) -> None:
    width = max(len(timing.label) for timing in timings)
    for timing in timings:
        runs = len(timing.seconds)
        print(f"  {timing.label:<{width}}  {timing.median:7.2f} s  ({timing.spread()}, n={runs})")


def measure() -> Figures:
    project, setup_seconds = set_up(BENCH, ["setup"])
    kept = cache_files(project)
    facts = machine(project, PACKAGES)
    facts["load average (1, 5, 15 min) at start"] = load_average()
    facts |= workload(project)
    script = BENCH / "baseline.py"
    script.write_text(BASELINE.replace("PACKAGE", project.package), encoding="utf-8")

    print("warm-up: one cold `dvc repro`, not counted (compiles the .pyc files) ...")
    warm_up = Timing(
        "first cold `dvc repro` (warm-up, not counted)", (cold_pipeline(project, kept),)
    )
    print(f"  {warm_up.median:.2f} s")
    print(f"cold pipeline and baseline, {ROUNDS} rounds, alternated ...")
    pipeline, baseline = compare(project, kept, script)
    print("no-op `dvc repro` ...")
    noop_direct, noop_uv = noop(project)
    print(f"the edit-retrain loop, {EDIT_RUNS} edits each ...")
    edit_repro, edit_evaluate = edit_loop(project)
    print("each stage alone, start-up costs ...")
    by_stage = stages(project, kept)
    probes = start_up(project)
    facts["load average (1, 5, 15 min) at end"] = load_average()
    return Figures(
        facts,
        setup_seconds,
        warm_up,
        pipeline,
        baseline,
        noop_direct,
        noop_uv,
        edit_repro,
        edit_evaluate,
        by_stage,
        probes,
    )


def main() -> int:
    parse_command_line(__doc__)
    figures = measure()
    print()
    show(
        [
            figures.pipeline,
            figures.baseline,
            figures.noop,
            figures.noop_uv,
            figures.edit_repro,
            figures.edit_evaluate,
            *figures.stages.values(),
            *figures.start_up.values(),
        ]
    )
    print(f"\n  cold pipeline / baseline: {figures.pipeline.median / figures.baseline.median:.2f}x")
    REPORT.write_text(report(figures), encoding="utf-8")
    print(f"\nwrote {REPORT.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
