"""The gate's models measured on the same rows: this checkout's test split.

A registered version logged its metrics on the test split of its own data. A challenger trained
on fresher data (labelled production rows among it) is evaluated on a newer split, so comparing
its metrics with the champion's logged ones would compare two different exams. The gate scores
each registered version again on the split `evaluate` scored this checkout's model on. When a
version cannot be scored on it, its logged metrics stand and the report says why.
"""

from dataclasses import replace
from pathlib import Path

import pandas as pd

from ..core.checks import read_table
from ..core.config import TEST_DATA, MlflowParams
from ..core.errors import DataError
from ..core.metrics import score
from ..core.schema import load_schema
from .registry import load_version
from .verdict import Candidate

# The held-out rows, or why they cannot be read.
Rows = tuple[pd.DataFrame, pd.Series] | str


def held_out(path: Path = TEST_DATA) -> Rows:
    """This checkout's test split, as features and target; or why it cannot be read."""
    if not path.is_file():
        return f"{path} is missing; `make evaluate` makes it"
    schema = load_schema()
    try:
        frame = read_table(path, schema)
    except DataError as error:
        return str(error)
    return frame[schema.feature_names], frame[schema.target.name]


def rescored(params: MlflowParams, candidate: Candidate, rows: Rows) -> Candidate:
    """`candidate` with its metrics measured on `rows`, if it is a registered version.

    A file that fails its integrity check is refused (ModelError), as every download is: a
    model the registry no longer holds as registered is not judged by its old numbers.
    """
    if candidate.version is None:
        return candidate
    if isinstance(rows, str):
        return replace(candidate, not_scored=rows)
    features, target = rows
    model = load_version(params, candidate.version)
    try:
        metrics = score(model.estimator, features, target)
    except (ValueError, KeyError, TypeError) as error:
        # A model of another schema: a feature this split has no column for, or another type.
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        return replace(candidate, not_scored=f"it cannot score these rows: {reason}")
    return replace(candidate, metrics={**candidate.metrics, **metrics}, scored_rows=len(target))
