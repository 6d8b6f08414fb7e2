"""`drift`: does the current data still look like the training data? Evidently, column by column.

Writes reports/drift.html for people and reports/drift.json (`core/drift_summary.py`, where the
decision is made) for the gate, `ci drift` and `dvc metrics`. Data larger than
`drift.sample_size` rows is sampled uniformly while it is read, so memory stays bounded whatever
the size of the files; the summary says when that happened.
"""

import argparse
import re
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from ..core.checks import find_problems
from ..core.config import (
    DRIFT_REPORT,
    DRIFT_SUMMARY,
    LOG_FILES,
    TRAIN_DATA,
    DriftParams,
    load_params,
)
from ..core.drift_summary import ColumnTest, DriftSummary, Rows
from ..core.errors import DataError, ParamsError
from ..core.files import write_text_atomic
from ..core.problems import JSON_LINES, Problem, does_not_match
from ..core.schema import Schema, load_schema
from ..core.tables import open_input
from .shipped_log import ShippedLog, is_shipped_log

if TYPE_CHECKING:
    from evidently.core.report import Snapshot

# The ids Evidently gives a report's widgets: UUIDs, and the hex name of its data variable.
EVIDENTLY_IDS = re.compile(r"[0-9a-f]{8}(?:-[0-9a-f]{4}){3}-[0-9a-f]{12}|(?<=metric_)[0-9a-f]{32}")
# Rows read at a time.
CHUNK_ROWS = 100_000


@dataclass(frozen=True)
class Sample:
    """The rows compared, and how many rows the source had."""

    frame: pd.DataFrame
    rows: int

    @property
    def sampled(self) -> bool:
        return len(self.frame) < self.rows


def sample_rows(chunks: Iterable[pd.DataFrame], size: int, seed: int) -> Sample:
    """A uniform random sample of at most `size` rows from a stream of chunks, in file order.

    Each row draws a random key and the rows with the `size` smallest keys are kept, so memory
    holds `size` rows and one chunk however long the stream is. A stream that fits is kept whole.
    """
    rng = np.random.default_rng(seed)
    kept: pd.DataFrame | None = None
    keys = np.empty(0)
    rows = 0
    for chunk in chunks:
        rows += len(chunk)
        frame = chunk if kept is None else pd.concat([kept, chunk], ignore_index=True)
        keys = np.concatenate([keys, rng.random(len(chunk))])
        if len(frame) > size:
            best = np.sort(np.argpartition(keys, size)[:size])
            frame, keys = frame.iloc[best].reset_index(drop=True), keys[best]
        kept = frame
    return Sample(pd.DataFrame() if kept is None else kept, rows)


def read_chunks(path: Path, schema: Schema) -> Iterator[pd.DataFrame]:
    """The checked feature columns of a CSV or Parquet file, or of an inference log folder."""
    if path.is_dir():
        return _log_chunks(path, schema)
    return (chunk.features for chunk in open_input(path, schema, CHUNK_ROWS))


def _log_chunks(folder: Path, schema: Schema) -> Iterator[pd.DataFrame]:
    files = sorted(folder.glob(LOG_FILES))
    if not files:
        raise DataError(
            f"{folder}: no inference log ({LOG_FILES}) in it; serve the model (`make serve`) "
            "to collect some, or point drift.current at a data file"
        )
    return (frame for file in files for frame in _log_file_chunks(file, schema))


def _log_file_chunks(path: Path, schema: Schema) -> Iterator[pd.DataFrame]:
    """One log file's rows, features only; problems name the file's lines."""
    start = 0
    try:
        with pd.read_json(path, lines=True, chunksize=CHUNK_ROWS, dtype=False) as reader:
            for frame in reader:
                missing = [name for name in schema.feature_names if name not in frame.columns]
                if missing:
                    problem = Problem("missing fields: " + ", ".join(missing))
                    raise does_not_match(path, [problem], JSON_LINES)
                features = frame[schema.feature_names]
                problems = find_problems(features, schema, target=False, start=start)
                if problems:
                    raise does_not_match(path, problems, JSON_LINES)
                yield features.apply(pd.to_numeric).reset_index(drop=True)
                start += len(frame)
    except ValueError as error:
        reason = " ".join(str(error).split())[:200]
        raise DataError(f"{path}: not a readable JSON-lines file ({reason})") from None


def read_sample(path: Path, schema: Schema, params: DriftParams, role: str) -> Sample:
    """A checked, bounded sample of the features in `path`; DataError naming the file otherwise."""
    sample = sample_rows(read_chunks(path, schema), params.sample_size, params.seed)
    if sample.rows == 0:
        raise DataError(f"{path}: the {role} data has no rows")
    return sample


def read_current(schema: Schema, params: DriftParams) -> Sample:
    """The current data: `drift.current`'s file or folder, or the days of `drift.window_days`
    of the log the service shipped to a store (shipped_log.py), whose bad lines are counted."""
    if not is_shipped_log(params.current):
        return read_sample(Path(params.current), schema, params, "current")
    log = ShippedLog.of(params.current, params.window_days)
    sample = sample_rows(log.chunks(schema), params.sample_size, params.seed)
    if log.malformed:
        print(
            f"drift: ignored {log.malformed:,} malformed of {log.lines:,} lines in "
            f"{params.current} (not a JSON row with every feature as a number)"
        )
    if sample.rows == 0:
        raise DataError(
            f"{params.current}: no row in {log.describe_window()}, only malformed lines; "
            "no drift report is made from nothing"
        )
    return sample


def compare(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    schema: Schema,
    params: DriftParams,
    share: float,
) -> "Snapshot":
    """Evidently's data drift preset over the features, numerical or categorical per the schema."""
    # Importing Evidently warns about its dependencies' deprecations: nothing to act on here.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from evidently import DataDefinition, Dataset, Report
        from evidently.presets import DataDriftPreset

    definition = DataDefinition(
        numerical_columns=[column.name for column in schema.features if column.allowed is None],
        categorical_columns=[
            column.name for column in schema.features if column.allowed is not None
        ],
    )
    report = Report(
        [DataDriftPreset(drift_share=share, method=params.method, threshold=params.threshold)],
        include_tests=True,
    )
    try:
        return report.run(
            Dataset.from_pandas(current, data_definition=definition),
            Dataset.from_pandas(reference, data_definition=definition),
        )
    except ValueError as error:
        if params.method is not None and params.method in str(error):
            raise ParamsError(
                f"drift.method: Evidently has no test {params.method!r} for these columns ({error})"
            ) from None
        raise


def column_tests(snapshot: "Snapshot") -> list[ColumnTest]:
    """Each column's drift test: Evidently's method and threshold, the score, and the result."""
    result = snapshot.dict()
    failed = {
        test["metric_config"]["metric_id"] for test in result["tests"] if test["status"] == "FAIL"
    }
    return [
        ColumnTest(
            column=metric["config"]["column"],
            method=metric["config"]["method"],
            threshold=float(metric["config"]["threshold"]),
            score=float(metric["value"]),
            drifted=metric["id"] in failed,
        )
        for metric in result["metrics"]
        if metric["config"]["type"].endswith(":ValueDrift")
    ]


def stable_ids(html: str) -> str:
    """The report with Evidently's random ids numbered in order of first appearance.

    The same data then gives the same file, byte for byte, so the DVC cache holds it under the
    hash dvc.lock records and a fresh checkout restores it instead of running the stage again.
    """
    numbers: dict[str, str] = {}

    def number(found: re.Match[str]) -> str:
        digits = numbers.setdefault(found[0].replace("-", ""), f"{len(numbers) + 1:032x}")
        if "-" not in found[0]:
            return digits
        return "-".join([digits[:8], digits[8:12], digits[12:16], digits[16:20], digits[20:]])

    return EVIDENTLY_IDS.sub(number, html)


def main(argv: list[str] | None = None) -> int:
    argparse.ArgumentParser(prog="drift", description=__doc__).parse_args(argv)
    params = load_params()
    schema = load_schema()
    # Both sides are read and checked before Evidently (slow to import) is loaded.
    reference = read_sample(TRAIN_DATA, schema, params.drift, "reference")
    current = read_current(schema, params.drift)
    share = params.gate.max_drift_share
    snapshot = compare(reference.frame, current.frame, schema, params.drift, share)
    summary = DriftSummary.of(
        column_tests(snapshot),
        share,
        params.drift.current,
        rows=Rows(reference=reference.rows, current=current.rows),
        compared=Rows(reference=len(reference.frame), current=len(current.frame)),
    )
    write_text_atomic(DRIFT_REPORT, stable_ids(snapshot.get_html_str(as_iframe=False)))
    write_text_atomic(DRIFT_SUMMARY, summary.to_json())
    print(f"drift: {summary.headline()}")
    print(f"drift: report in {DRIFT_REPORT}, summary in {DRIFT_SUMMARY}")
    return 0
