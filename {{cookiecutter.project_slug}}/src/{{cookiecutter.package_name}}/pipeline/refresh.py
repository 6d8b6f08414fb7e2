"""`refresh`: add production's labelled rows to the training data, for a retraining pull request.

The rows `monitor` measures (the logged predictions of the last `monitor.window_days` days that
have a label) become training rows: their features as the service logged them, their label as
the target. Each is checked against the data contract; a row an earlier refresh added (its
prediction id is in data/raw/production_ids.txt) is not added again; at most `refresh.max_rows`
are added, a uniform sample (`refresh.seed`) when there are more. The raw data and the id list
are then tracked with DVC and pushed. Commit their pointers on a branch and open a pull
request: its train job shows the model trained on the new data against the champion, and
nothing reaches `champion` without the gate.
"""

import argparse
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ..core.checks import read_table, valid_rows
from ..core.config import (
    PRODUCTION_IDS,
    RAW_DATA,
    REFRESH_REPORT,
    RefreshParams,
    load_params,
)
from ..core.files import write_atomic, write_csv_atomic, write_text_atomic
from ..core.prediction_ids import PREDICTION_ID
from ..core.schema import Schema, load_schema
from ..release.lineage import pointer
from .data import pull, track
from .labels import read_labels
from .monitor import Window, join, log_streams


@dataclass(frozen=True)
class Selection:
    """The rows to add, and how many of the labelled rows were left out, and why."""

    rows: pd.DataFrame
    labelled: int
    invalid: int
    known: int
    sampled_out: int

    def markdown(self, window: Window) -> str:
        lines = [
            "## Production data for retraining",
            "",
            f"{len(self.rows):,} labelled production rows added to `{RAW_DATA}`, from the "
            f"predictions of {window.first_day} to {window.last_day} (UTC) that have a label "
            f"({self.labelled:,}).",
        ]
        left_out = [
            (self.invalid, "break the data contract (schema.yaml)"),
            (self.known, "were added by an earlier refresh"),
            (self.sampled_out, "were left out by the sample (`refresh.max_rows`)"),
        ]
        lines += [f"- {count:,} {why}" for count, why in left_out if count]
        return "\n".join(lines) + "\n"


def known_ids(path: Path = PRODUCTION_IDS) -> set[str]:
    """The ids an earlier refresh added (pulled from the DVC remote when only tracked)."""
    if not path.exists() and pointer(path).exists():
        pull(path)
    if not path.exists():
        return set()
    return set(path.read_text(encoding="utf-8").split())


def select(
    frame: pd.DataFrame, known: set[str], params: RefreshParams, schema: Schema
) -> Selection:
    """The labelled rows (`prediction_id`, the features and the target) fit to add."""
    valid = valid_rows(frame, schema)
    new = ~frame[PREDICTION_ID].isin(known).to_numpy()
    rows = frame[valid & new]
    sampled_out = max(len(rows) - params.max_rows, 0)
    if sampled_out:
        rows = rows.sample(n=params.max_rows, random_state=params.seed).sort_index()
    return Selection(
        rows=rows,
        labelled=len(frame),
        invalid=int((~valid).sum()),
        known=int((valid & ~new).sum()),
        sampled_out=sampled_out,
    )


def append(selection: Selection, schema: Schema) -> None:
    """Add the rows to the raw data and their ids to the list; track and push both."""
    raw = read_table(RAW_DATA, schema)
    added = selection.rows[[column.name for column in schema.columns]]
    dtypes = {column.name: column.dtype for column in schema.columns}
    write_csv_atomic(RAW_DATA, pd.concat([raw, added.astype(dtypes)], ignore_index=True))
    ids = "".join(f"{key}\n" for key in selection.rows[PREDICTION_ID])
    before = PRODUCTION_IDS.read_text(encoding="utf-8") if PRODUCTION_IDS.exists() else ""
    write_atomic(PRODUCTION_IDS, lambda tmp: tmp.write_text(before + ids, encoding="utf-8"))
    track(RAW_DATA, must_push=True)
    track(PRODUCTION_IDS, must_push=True)


def main(argv: list[str] | None = None) -> int:
    argparse.ArgumentParser(prog="refresh", description=__doc__).parse_args(argv)
    params = load_params()
    schema = load_schema()
    window = Window.ending_today(params.monitor.window_days)
    labels = read_labels(params.monitor.labels, schema.target, window.first_day, window.last_day)
    streams = log_streams(params.monitor.predictions, window)
    joined = join(streams, labels, window, schema.feature_names)
    frame = pd.DataFrame(joined.rows, columns=schema.feature_names)
    frame[schema.target.name] = np.asarray(joined.labels, dtype=float)
    frame.insert(0, PREDICTION_ID, joined.ids)
    selection = select(frame, known_ids(), params.refresh, schema)
    report = selection.markdown(window)
    write_text_atomic(REFRESH_REPORT, report)
    if selection.rows.empty:
        print(
            f"refresh: nothing to add: {selection.labelled:,} labelled predictions in the window, "
            f"{selection.invalid:,} of them breaking the contract, {selection.known:,} added before"
        )
        return 0
    append(selection, schema)
    print(f"refresh: added {len(selection.rows):,} rows to {RAW_DATA}; commit the pointers:")
    print(f"refresh:   git add {pointer(RAW_DATA)} {pointer(PRODUCTION_IDS)}")
    return 0
