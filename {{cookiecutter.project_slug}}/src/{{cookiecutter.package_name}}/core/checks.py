"""The check every data file goes through: a pandas frame against the data contract."""

from pathlib import Path

import numpy as np
import pandas as pd

from .errors import DataError
from .problems import CSV_LINES, MAX_ROWS_SHOWN, Problem, does_not_match
from .schema import Column, Schema


def read_table(path: Path, schema: Schema) -> pd.DataFrame:
    """Read a CSV file and check it against the schema; raise DataError listing every problem."""
    try:
        frame = pd.read_csv(path)
    except FileNotFoundError:
        raise DataError(
            f"{path}: not found; `make setup` fetches the raw data, `make repro` makes the rest"
        ) from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as error:
        raise DataError(f"{path}: not a readable CSV file ({error})") from None
    problems = find_problems(frame, schema)
    if problems:
        raise does_not_match(path, problems, CSV_LINES)
    return frame.astype({column.name: column.dtype for column in schema.columns})


def find_problems(
    frame: pd.DataFrame, schema: Schema, *, target: bool = True, start: int = 0
) -> list[Problem]:
    """Every way the frame breaks the schema; its rows are at positions `start` on in the source.

    The frame's index plays no part. With `target=False` only the features are expected: rows
    to score need not carry the answer.
    """
    checked = schema.columns if target else schema.features
    expected = [column.name for column in checked]
    missing = [name for name in expected if name not in frame.columns]
    unexpected = [name for name in frame.columns if name not in expected]
    problems = []
    if missing:
        problems.append(Problem("missing columns: " + ", ".join(missing)))
    if unexpected:
        problems.append(Problem("unexpected columns: " + ", ".join(map(str, unexpected))))
    if frame.empty:
        problems.append(Problem("no rows"))
    if problems:
        return problems
    for column in checked:
        problems.extend(_column_problems(frame[column.name], column, start))
    return problems


def _column_problems(raw: pd.Series, column: Column, start: int) -> list[Problem]:
    problems = []
    for mask, what in _column_checks(raw, column):
        offending = np.flatnonzero(mask)
        if len(offending):
            shown = tuple(start + int(index) for index in offending[:MAX_ROWS_SHOWN])
            problems.append(Problem(what, column.name, len(offending), shown))
    return problems


def _column_checks(raw: pd.Series, column: Column) -> list[tuple[np.ndarray, str]]:
    """Each way a value can break the column's contract: which rows do, and how to say it."""
    values = pd.to_numeric(raw, errors="coerce")
    checks = [
        (raw.isna(), "missing values"),
        (values.isna() & raw.notna(), "values that are not numbers"),
    ]
    present = values.notna()
    if column.dtype == "int":
        checks.append((present & (values % 1 != 0), "values that are not whole numbers"))
    if column.allowed is not None:
        outside = present & ~values.isin(column.allowed)
    else:
        outside = present & ((values < column.min) | (values > column.max))
    checks.append((outside, f"values not {column.describe()}"))
    # Nullable columns give <NA> where a value is missing: not an offence of this kind.
    return [(mask.to_numpy(dtype=bool, na_value=False), what) for mask, what in checks]


def valid_rows(frame: pd.DataFrame, schema: Schema) -> np.ndarray:
    """Which rows keep the contract in every column (features and target): the rows one may
    add to data that must pass `read_table`."""
    valid = np.ones(len(frame), dtype=bool)
    for column in schema.columns:
        for mask, _ in _column_checks(frame[column.name], column):
            valid &= ~mask
    return valid
