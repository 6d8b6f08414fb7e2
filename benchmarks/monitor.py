"""Time the generated project's `monitor` command against Evidently's report alone.

One run bakes the default project into build/bench-monitor/ and runs `make setup` in it. In the
project's own environment it then writes, with the package's own `InferenceLog` (the lines the
service writes), an inference log of LOG_ROWS predictions spread over the last six days (raw
rows drawn with replacement, their ids from `new_ids`, the truth as the prediction for 90% of
rows), and a CSV label file for LABEL_ROWS of them, arriving 1 to 48 hours later. Then, each
as a fresh process of the project's environment, alternately, ROUNDS times:

- (a) the baseline, the strongest short script for the same report: import Evidently, read the
  joined rows (label, prediction, probability: the very rows the command joins, from a Parquet
  file), `Report([ClassificationPreset()]).run(...)` and write its HTML;
- (b) `python -m <package> monitor`: read the labels and the whole log, join them, measure each
  version, judge, run the same Evidently report and write the HTML and the JSON summary.

Wall seconds and peak RSS (`os.wait4`'s `ru_maxrss`) of each. Then (b) once more with
BIG_LOG_ROWS log lines and the same labels: the peak memory follows the labels, not the log.

Before measuring it waits up to QUIET_WAIT seconds for the 1-minute load average to drop below
QUIET_LOAD, then measures anyway; the load averages are in the output.

Run it from the template repository's root, with `uv` on PATH:
`uv run --locked python benchmarks/monitor.py`. It prints markdown, from which the figures in
docs/benchmarks-monitor.md are written; it writes no page itself.
"""

from __future__ import annotations

import statistics
import sys

from _bake import (
    ROOT,
    Project,
    Timing,
    load_average,
    parse_command_line,
    peak_process,
    run,
    set_up,
    system,
    versions,
    wait_for_quiet,
)

BENCH = ROOT / "build" / "bench-monitor"
LOG_ROWS = 1_000_000
BIG_LOG_ROWS = 3_000_000
LABEL_ROWS = 100_000
ROUNDS = 3
GOAL_RATIO = 1.2
PACKAGES = ["evidently", "pandas", "numpy", "scikit-learn", "pyarrow"]

# Runs inside the baked project: `python write_data.py <log rows> <label rows>`. The log is
# written as the service writes it; the labels and the joined rows (for the baseline) beside it.
WRITE_DATA = """\
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from PACKAGE.core.config import RAW_DATA
from PACKAGE.core.prediction_ids import new_ids
from PACKAGE.core.schema import load_schema
from PACKAGE.serving.inference_log import InferenceLog

log_rows, label_rows = int(sys.argv[1]), int(sys.argv[2])
schema = load_schema()
raw = pd.read_csv(RAW_DATA)
rng = np.random.default_rng(1)
now = time.time()
folder = Path("logs/inference")
for old in folder.glob("inference-*"):
    old.unlink()
chosen = rng.choice(log_rows, label_rows, replace=False)
labelled = np.zeros(log_rows, dtype=bool)
labelled[chosen] = True
ids_kept, truth_kept, predicted_kept, probability_kept, times_kept = [], [], [], [], []
batch = 10_000
for start in range(0, log_rows, batch):
    rows = raw.iloc[rng.integers(0, len(raw), batch)]
    truth = rows[schema.target.name].to_numpy(dtype=float)
    wrong = rng.random(batch) < 0.1
    predicted = np.where(wrong, 1 - truth, truth)
    probability = np.clip(predicted * 0.7 + rng.normal(0.15, 0.1, batch), 0, 1)
    when = now - 6 * 86400 * (1 - start / log_rows)
    log = InferenceLog(folder, max_bytes=10**12, clock=lambda: when)
    ids = new_ids(batch)
    names = schema.feature_names
    records = [dict(zip(names, values)) for values in rows[names].to_numpy().tolist()]
    log.append(records, ids, predicted.tolist(), "1", probability.tolist())
    log.close()
    mask = labelled[start : start + batch]
    ids_kept += [key for key, keep in zip(ids, mask) if keep]
    truth_kept += truth[mask].tolist()
    predicted_kept += predicted[mask].tolist()
    probability_kept += probability[mask].tolist()
    times_kept += [when] * int(mask.sum())
late = rng.uniform(3600, 48 * 3600, len(ids_kept))
labels = pd.DataFrame(
    {"prediction_id": ids_kept, "label": np.array(truth_kept, dtype=int), "time": times_kept + late}
)
Path("data/labels").mkdir(parents=True, exist_ok=True)
labels.to_csv("data/labels/labels.csv", index=False)
pd.DataFrame(
    {"label": truth_kept, "prediction": predicted_kept, "probability": probability_kept}
).astype({"label": int, "prediction": int}).to_parquet("joined.parquet", index=False)
"""

# The baseline: what a strong engineer writes to get Evidently's report of the joined rows.
BASELINE = """\
import warnings

import pandas as pd

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from evidently import BinaryClassification, DataDefinition, Dataset, Report
    from evidently.presets import ClassificationPreset

rows = pd.read_parquet("joined.parquet")
definition = DataDefinition(
    numerical_columns=[],
    categorical_columns=[],
    classification=[
        BinaryClassification(
            target="label", prediction_labels="prediction", prediction_probas="probability"
        )
    ],
)
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    snapshot = Report([ClassificationPreset()]).run(
        Dataset.from_pandas(rows, data_definition=definition), None
    )
    html = snapshot.get_html_str(as_iframe=False)
with open("baseline.html", "w", encoding="utf-8") as out:
    out.write(html)
"""


def peak(command: list[str], project: Project) -> tuple[float, float, str]:
    """Wall seconds, peak RSS in MiB and output of one fresh process."""
    seconds, kib, text = peak_process(command, project, BENCH / "run.log")
    return seconds, kib / 1024, text


def write_data(project: Project, log_rows: int) -> None:
    print(f"writing {log_rows:,} logged predictions and {LABEL_ROWS:,} labels ...", flush=True)
    script = BENCH / "write_data.py"
    script.write_text(WRITE_DATA.replace("PACKAGE", project.package), encoding="utf-8")
    run([project.python, str(script), str(log_rows), str(LABEL_ROWS)], project.path, project.env)


def main() -> int:
    parse_command_line(__doc__)
    facts = system()
    facts["load average (1, 5, 15 min) at start"] = load_average()
    project, _ = set_up(BENCH, ["setup"])
    facts |= versions(project, PACKAGES)
    write_data(project, LOG_ROWS)
    baseline_script = BENCH / "baseline.py"
    baseline_script.write_text(BASELINE, encoding="utf-8")
    baseline = [project.python, str(baseline_script)]
    command = [project.python, "-m", project.package, "monitor"]
    facts["load average before measuring"] = wait_for_quiet()
    runs: dict[str, list[tuple[float, float, str]]] = {"a": [], "b": []}
    for round_ in range(ROUNDS):
        print(f"round {round_ + 1} of {ROUNDS} ...", flush=True)
        runs["a"].append(peak(baseline, project))
        runs["b"].append(peak(command, project))
    write_data(project, BIG_LOG_ROWS)
    big = peak(command, project)
    facts["load average (1, 5, 15 min) at end"] = load_average()

    timing_a = Timing("(a) Evidently alone on the joined rows", tuple(r[0] for r in runs["a"]))
    timing_b = Timing("(b) `monitor`", tuple(r[0] for r in runs["b"]))
    ratio = timing_b.median / timing_a.median
    lines = [f"- {name}: {value}" for name, value in facts.items()]
    lines += ["", "| what | median wall s | range s | peak RSS MiB, max | runs |"]
    lines += ["|---|---:|---|---:|---:|"]
    for timing, key in ((timing_a, "a"), (timing_b, "b")):
        lines.append(timing.row(f"{max(r[1] for r in runs[key]):.0f}"))
    lines += [
        "",
        f"- (b)/(a) wall: {ratio:.2f}x (goal <= {GOAL_RATIO}x): "
        f"{'met' if ratio <= GOAL_RATIO else 'NOT met'}",
        f"- (b) at {BIG_LOG_ROWS:,} log lines, same {LABEL_ROWS:,} labels: {big[0]:.2f} s, "
        f"peak RSS {big[1]:.0f} MiB (at {LOG_ROWS:,}: "
        f"{statistics.median(r[1] for r in runs['b']):.0f} MiB)",
        "",
        "`monitor`'s output at the largest log:",
        "",
        "```",
        big[2],
        "```",
    ]
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
