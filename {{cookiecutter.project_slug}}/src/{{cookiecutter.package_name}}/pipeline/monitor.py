"""`monitor`: how good is the model in production? Labels joined with the logged predictions.

The service logs every prediction with its id (serving/inference_log.py); the truth arrives
later, as label files keyed by that id (pipeline/labels.py). This joins the two over the last
`monitor.window_days` days and measures each model version on its labelled predictions, with
the metrics `evaluate` reports, and how late the labels came. reports/monitor.json is for
machines (`ci monitor`, the monitoring issue), reports/monitor.html, Evidently's classification
or regression report of the judged version, for people.

Only the log lines whose id has a label are parsed: the service writes each line as compact JSON
that starts with the prediction id, so the id sits at a fixed place and is looked up before
anything else is read. Memory holds the labels and their predictions, not the log. The reading
runs in a second process while this one imports Evidently (docs/benchmarks-monitor.md).

It is a command, not a DVC stage: its inputs are a moving window over live data, which DVC
cannot see change.
"""

import argparse
import html
import importlib
import json
import math
import multiprocessing
import os
import warnings
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import IO, Any

import numpy as np
import pandas as pd

from ..core.config import LOG_FILES, MONITOR_REPORT, MONITOR_SUMMARY, MonitorParams, load_params
from ..core.files import write_text_atomic
from ..core.metrics import measure
from ..core.monitor_summary import Lateness, MonitorSummary, VersionQuality, judge
from ..core.prediction_ids import ID_LENGTH, PREDICTION_ID
from ..core.schema import Column, Schema, load_schema
from ..core.scoring import PREDICTION, PROBABILITY
from .drift import stable_ids
from .labels import LABEL, Labels, describe_skipped, read_labels
from .shipped_log import ShippedLog, is_shipped_log

DAY = 24 * 60 * 60
# How the service starts each line (compact JSON, the id first): the id's bytes are at a fixed
# place. A line that starts otherwise is parsed whole.
PREFIX = b'{"' + PREDICTION_ID.encode() + b'":"'
ID_START = len(PREFIX)
ID_END = ID_START + ID_LENGTH
TAIL = b',"' + PREDICTION.encode() + b'":'


@dataclass(frozen=True)
class Window:
    """The days from `first_day` to `last_day` (UTC), both whole."""

    first_day: date
    last_day: date

    @classmethod
    def ending_today(cls, days: int) -> "Window":
        today = datetime.now(UTC).date()
        return cls(today - timedelta(days=days - 1), today)

    @property
    def days(self) -> int:
        return (self.last_day - self.first_day).days + 1

    @property
    def start(self) -> float:
        return datetime(*self.first_day.timetuple()[:3], tzinfo=UTC).timestamp()

    @property
    def end(self) -> float:
        return self.start + self.days * DAY

    def __contains__(self, seconds: float) -> bool:
        return self.start <= seconds < self.end


@dataclass
class Joined:
    """The labelled predictions: one entry per id in each list."""

    lines: int = 0
    malformed: int = 0
    versions: list[str] = field(default_factory=list)
    times: list[float] = field(default_factory=list)
    predictions: list[float] = field(default_factory=list)
    probabilities: list[float] = field(default_factory=list)
    labels: list[float] = field(default_factory=list)
    label_times: list[float] = field(default_factory=list)
    # With `join(..., features=...)`: each row's id and features, as logged.
    ids: list[str] = field(default_factory=list)
    rows: list[dict[str, Any]] = field(default_factory=list)

    def add(
        self,
        version: str,
        seconds: float,
        prediction: float,
        probability: float | None,
        label: float,
        label_time: float,
    ) -> None:
        self.versions.append(version)
        self.times.append(seconds)
        self.predictions.append(prediction)
        if probability is not None:
            self.probabilities.append(probability)
        self.labels.append(label)
        self.label_times.append(label_time)

    def frame(self) -> pd.DataFrame:
        columns: dict[str, Any] = {
            "model_version": self.versions,
            "time": self.times,
            LABEL: self.labels,
            PREDICTION: self.predictions,
            "label_time": self.label_times,
        }
        if len(self.probabilities) == len(self.predictions):
            columns[PROBABILITY] = self.probabilities
        return pd.DataFrame(columns)


def log_streams(source: str, window: Window) -> Iterator[IO[bytes]]:
    """The inference log's files, open: a shipped log's days of the window, or a folder's files
    (`make serve`'s logs/inference) or one file whole; none when the source does not exist."""
    if is_shipped_log(source):
        fs, files = ShippedLog(source, window.days, window.last_day).files()
        for name in files:
            with fs.open(name, "rb") as stream:
                yield stream
        return
    path = Path(source)
    local = sorted(path.glob(LOG_FILES)) if path.is_dir() else [path] if path.is_file() else []
    for file in local:
        with file.open("rb") as stream:
            yield stream


@dataclass
class Scan:
    """Counts the lines of a log that are not blank, and hands on those that may be labelled."""

    wanted: set[bytes]
    lines: int = 0

    def candidates(self, stream: IO[bytes]) -> Iterator[bytes]:
        """The lines whose id is wanted, and those not written the service's way."""
        wanted, lines = self.wanted, 0
        for line in stream:
            if line.startswith(PREFIX):
                lines += 1
                if line[ID_START:ID_END] in wanted and line[ID_END : ID_END + 1] == b'"':
                    yield line
            elif line.strip():
                lines += 1
                yield line
        self.lines += lines


def join(
    streams: Iterable[IO[bytes]],
    labels: Labels,
    window: Window,
    features: Sequence[str] = (),
) -> Joined:
    """The window's predictions that have a label, each id once; the rest is only counted.
    With `features`, each joined line is parsed whole and its id and features kept too."""
    truth = labels.truth
    scan = Scan({key.encode() for key in truth})
    joined = Joined()
    seen: set[str] = set()
    early: set[str] = set()
    for stream in streams:
        for line in scan.candidates(stream):
            record = _prediction(line)
            if record is None:
                joined.malformed += 1
                continue
            key, version, seconds, prediction, probability = record
            if key not in truth or key in seen or seconds not in window:
                continue
            label, label_time = truth[key]
            if label_time < seconds:
                labels.skip("before_prediction", 1, f"id {key}")
                early.add(key)
                continue
            seen.add(key)
            joined.add(version, seconds, prediction, probability, label, label_time)
            if features:
                logged = json.loads(line)
                joined.ids.append(key)
                joined.rows.append({name: logged.get(name) for name in features})
    joined.lines = scan.lines
    unknown = [key for key in truth if key not in seen and key not in early]
    labels.skip("unknown_ids", len(unknown), _first(unknown))
    return joined


def _first(keys: list[str]) -> str:
    return f"id {keys[0]}" if keys else ""


def _prediction(line: bytes) -> tuple[str, str, float, float, float | None] | None:
    """A log line's id, model version, time, prediction and probability; None if it has none.

    A line written the service's way ends with its outputs, from `"prediction":` on (no feature
    may take that name, core/schema.py): only that tail is parsed, a third of the time of the
    whole line. Any other line is parsed whole."""
    try:
        at = line.rfind(TAIL) if line.startswith(PREFIX) else -1
        if at > 0:
            record = json.loads(b"{" + line[at + 1 :])
            key = line[ID_START:ID_END].decode("ascii")
        else:
            record = json.loads(line)
            key = record[PREDICTION_ID]
        version, seconds = record["model_version"], record["time"]
        prediction, probability = record[PREDICTION], record.get(PROBABILITY)
    except (ValueError, TypeError, KeyError):
        return None
    values = (seconds, prediction) if probability is None else (seconds, prediction, probability)
    if not (isinstance(key, str) and isinstance(version, str | int)) or not all(
        isinstance(value, int | float) and math.isfinite(value) for value in values
    ):
        return None
    return key, str(version), float(seconds), float(prediction), probability


def qualities(rows: pd.DataFrame) -> list[VersionQuality]:
    """Each version's labelled count and metrics, the latest version first."""
    found = []
    latest = rows.groupby("model_version")["time"].max().sort_values(ascending=False)
    for version in latest.index:
        mine = rows[rows["model_version"] == version]
        probability = mine.get(PROBABILITY)
        metrics = measure(mine[LABEL], mine[PREDICTION], probability)
        found.append(VersionQuality(version=version, labelled=len(mine), metrics=metrics))
    return found


def lateness(rows: pd.DataFrame) -> Lateness | None:
    if rows.empty:
        return None
    hours = (rows["label_time"] - rows["time"]).to_numpy() / 3600
    median, p90, latest = np.percentile(hours, [50, 90, 100])
    return Lateness(median=float(median), p90=float(p90), max=float(latest))


def import_evidently() -> None:
    """Load Evidently (2-3 s): importing it warns about its dependencies' deprecations, nothing
    to act on here."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        importlib.import_module("evidently.presets")


def report_html(rows: pd.DataFrame, schema: Schema, summary: MonitorSummary) -> str:
    """Evidently's classification or regression report of the judged version's rows; a short
    page saying why when there is no verdict."""
    if summary.verdict in {"too_few_labels", "no_predictions"}:
        headline = html.escape(summary.headline().replace("**", ""))
        reasons = "".join(f"<li>{html.escape(reason)}</li>" for reason in summary.reasons)
        return f"<!doctype html><title>monitor</title><p>{headline}</p><ul>{reasons}</ul>\n"
    import_evidently()
    from evidently import BinaryClassification, DataDefinition, Dataset, Regression, Report
    from evidently.presets import ClassificationPreset, RegressionPreset

    mine = rows[rows["model_version"] == summary.version]
    if schema.target_is_categorical:
        data = mine[[LABEL, PREDICTION, PROBABILITY]].astype({LABEL: int, PREDICTION: int})
        task: dict[str, Any] = {
            "classification": [
                BinaryClassification(
                    target=LABEL, prediction_labels=PREDICTION, prediction_probas=PROBABILITY
                )
            ]
        }
        preset: Any = ClassificationPreset()
    else:
        data = mine[[LABEL, PREDICTION]]
        task = {"regression": [Regression(target=LABEL, prediction=PREDICTION)]}
        preset = RegressionPreset()
    definition = DataDefinition(numerical_columns=[], categorical_columns=[], **task)
    # Evidently's widgets measure small slices of the rows too (the error's extremes), where
    # scikit-learn warns that a metric is not well defined: nothing to act on here.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dataset = Dataset.from_pandas(data, data_definition=definition)
        snapshot = Report([preset]).run(dataset, None)
        return stable_ids(snapshot.get_html_str(as_iframe=False))


def read_window(params: MonitorParams, target: Column, window: Window) -> tuple[Labels, Joined]:
    """The labels and the window's predictions joined with them."""
    labels = read_labels(params.labels, target, window.first_day, window.last_day)
    return labels, join(log_streams(params.predictions, window), labels, window)


def _cores() -> int:
    """The cores this process may run on (all of the machine's where that cannot be asked)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def read_window_beside_evidently(
    params: MonitorParams, target: Column, window: Window
) -> tuple[Labels, Joined]:
    """`read_window` in a second process while this one imports Evidently, which the report
    needs next: the two take about as long, and overlap on a machine with two cores or more
    (docs/benchmarks-monitor.md). On one core, one after the other."""
    if _cores() < 2:
        return read_window(params, target, window)
    spawn = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=1, mp_context=spawn) as pool:
        reading = pool.submit(read_window, params, target, window)
        import_evidently()
        return reading.result()


def monitor(params: MonitorParams, schema: Schema, window: Window) -> tuple[MonitorSummary, str]:
    """The summary and the HTML report of the window."""
    labels, joined = read_window_beside_evidently(params, schema.target, window)
    rows = joined.frame()
    found = qualities(rows)
    judged = found[0] if found else None
    verdict, reasons = judge(judged, params.floors, params.min_labelled, joined.lines)
    summary = MonitorSummary(
        verdict=verdict,
        reasons=reasons,
        version=None if judged is None else judged.version,
        first_day=window.first_day.isoformat(),
        last_day=window.last_day.isoformat(),
        predictions=joined.lines,
        malformed=joined.malformed,
        labels=labels.rows,
        labelled=len(rows),
        skipped=dict(labels.skipped),
        lateness_hours=lateness(rows),
        versions=found,
        min_labelled=params.min_labelled,
        floors=params.floors,
    )
    for line in describe_skipped(labels, schema.target):
        print(f"monitor: skipped {line}")
    if joined.malformed:
        print(f"monitor: ignored {joined.malformed:,} log lines that are not a prediction")
    return summary, report_html(rows, schema, summary)


def main(argv: list[str] | None = None) -> int:
    argparse.ArgumentParser(prog="monitor", description=__doc__).parse_args(argv)
    params = load_params().monitor
    schema = load_schema()
    summary, html = monitor(params, schema, Window.ending_today(params.window_days))
    write_text_atomic(MONITOR_REPORT, html)
    write_text_atomic(MONITOR_SUMMARY, summary.to_json())
    print(f"monitor: {summary.headline().replace('**', '')}")
    for reason in summary.reasons:
        print(f"monitor: {reason}")
    print(f"monitor: report in {MONITOR_REPORT}, summary in {MONITOR_SUMMARY}")
    if not summary.labels:
        print(
            f"monitor: no labels in {params.labels} "
            "(CSV, Parquet or JSON lines: prediction_id, label, time)"
        )
    return 0
