"""Checked chunked reads: a problem names the row where the file has it, however it is chunked."""

from pathlib import Path

import pandas as pd
import pytest

from {{ cookiecutter.package_name }}.core.checks import find_problems
from {{ cookiecutter.package_name }}.core.errors import DataError
from {{ cookiecutter.package_name }}.core.problems import (
    CSV_LINES,
    JSON_LINES,
    MAX_ROWS_SHOWN,
    ROWS,
    Numbering,
    Problem,
)
from {{ cookiecutter.package_name }}.core.schema import Schema
from {{ cookiecutter.package_name }}.core.tables import open_input

from .conftest import write_table

# Two rows a chunk: row 5 is the second row of the third chunk.
CHUNK = 2
BAD_ROW = 5


def features(raw_data: pd.DataFrame, schema: Schema, rows: int = 8) -> pd.DataFrame:
    # Text columns, so that a cell can hold a word in CSV and in Parquet alike.
    return raw_data[schema.feature_names].head(rows).astype(str).reset_index(drop=True)


def read_error(path: Path, schema: Schema, chunk_size: int = CHUNK) -> str:
    with pytest.raises(DataError) as raised:
        list(open_input(path, schema, chunk_size))  # the chunks are read and checked lazily
    return str(raised.value)


@pytest.mark.parametrize(
    ("suffix", "where"), [(".csv", f"line {BAD_ROW + 2}"), (".parquet", f"row {BAD_ROW}")]
)
@pytest.mark.parametrize("value", ["twelve", "-1000000.0"], ids=["not-a-number", "out-of-range"])
def test_a_bad_row_in_a_later_chunk_is_named_where_the_file_has_it(
    tmp_path: Path, raw_data: pd.DataFrame, schema: Schema, suffix: str, where: str, value: str
) -> None:
    frame = features(raw_data, schema)
    column = schema.features[0]
    frame.loc[BAD_ROW, column.name] = value
    path = write_table(frame, tmp_path / f"rows{suffix}")
    what = "values that are not numbers" if value == "twelve" else f"values not {column.describe()}"
    assert read_error(path, schema) == (
        f"{path}: does not match the schema:\n  column '{column.name}': 1 {what} at {where}"
    )


@pytest.mark.parametrize(
    ("suffix", "numbers"), [(".csv", "lines 3, 4, 5, 6, 7"), (".parquet", "rows 1, 2, 3, 4, 5")]
)
def test_past_the_first_rows_shown_the_rest_are_counted(
    tmp_path: Path, raw_data: pd.DataFrame, schema: Schema, suffix: str, numbers: str
) -> None:
    frame = features(raw_data, schema, rows=10)
    column = schema.features[0]
    frame.loc[1:7, column.name] = "twelve"
    path = write_table(frame, tmp_path / f"rows{suffix}")
    error = read_error(path, schema, chunk_size=100)
    assert MAX_ROWS_SHOWN == 5
    assert error.endswith(
        f"column '{column.name}': 7 values that are not numbers at {numbers} and 2 more"
    )


def test_problems_are_positions_from_the_given_start_whatever_the_index(
    raw_data: pd.DataFrame, schema: Schema
) -> None:
    frame = features(raw_data, schema, rows=4).set_axis([70, 80, 90, 99])
    column = schema.features[0]
    frame.loc[[80, 99], column.name] = "?"
    [problem] = find_problems(frame, schema, target=False, start=1000)
    assert problem == Problem("values that are not numbers", column.name, 2, (1001, 1003))


@pytest.mark.parametrize(
    ("numbering", "words"),
    [
        (CSV_LINES, ["line 2", "lines 2, 4", "lines 2, 3, 4, 5, 6 and 1 more"]),
        (JSON_LINES, ["line 1", "lines 1, 3", "lines 1, 2, 3, 4, 5 and 1 more"]),
        (ROWS, ["row 0", "rows 0, 2", "rows 0, 1, 2, 3, 4 and 1 more"]),
    ],
    ids=["csv-lines", "json-lines", "rows"],
)
def test_each_source_names_the_same_positions_its_own_way(
    numbering: Numbering, words: list[str]
) -> None:
    problems = [
        Problem("missing values", "x", 1, (0,)),
        Problem("missing values", "x", 2, (0, 2)),
        Problem("missing values", "x", 6, (0, 1, 2, 3, 4)),
    ]
    assert [problem.describe(numbering) for problem in problems] == [
        f"column 'x': {problem.count} missing values at {word}"
        for problem, word in zip(problems, words, strict=True)
    ]
    assert Problem("no rows").describe(numbering) == "no rows"
