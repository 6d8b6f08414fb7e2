"""The data contract in schema.yaml, and the check every data file goes through."""

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import yaml

from .errors import DataError
from .problems import CSV_LINES, MAX_ROWS_SHOWN, Problem, does_not_match

if TYPE_CHECKING:
    import pandas as pd

SCHEMA_FILE = Path(__file__).with_name("schema.yaml")
# Rows in one request, to the service or the handler: enough for small batches, small enough
# to keep latency predictable.
MAX_ROWS = 1000


@dataclass(frozen=True)
class Column:
    """One column: its type and either a closed range or a set of allowed values."""

    name: str
    dtype: Literal["int", "float"]
    min: float | None = None
    max: float | None = None
    allowed: tuple[float, ...] | None = None

    def describe(self) -> str:
        if self.allowed is not None:
            return "one of " + ", ".join(str(value) for value in self.allowed)
        return f"between {self.min} and {self.max}"


@dataclass(frozen=True)
class Schema:
    features: tuple[Column, ...]
    target: Column

    @property
    def feature_names(self) -> list[str]:
        return [column.name for column in self.features]

    @property
    def columns(self) -> tuple[Column, ...]:
        return (*self.features, self.target)

    @property
    def target_is_categorical(self) -> bool:
        return self.target.allowed is not None


def _column(name: str, spec: dict[str, Any]) -> Column:
    values = spec.get("values")
    return Column(
        name=name,
        dtype=spec["dtype"],
        min=spec.get("min"),
        max=spec.get("max"),
        allowed=tuple(values) if values is not None else None,
    )


def load_schema(path: Path = SCHEMA_FILE) -> Schema:
    """Read the data contract."""
    spec = yaml.safe_load(path.read_text(encoding="utf-8"))
    target = spec["target"]
    return Schema(
        features=tuple(_column(name, column) for name, column in spec["features"].items()),
        target=_column(target["name"], target),
    )


def read_table(path: Path, schema: Schema) -> "pd.DataFrame":
    """Read a CSV file and check it against the schema; raise DataError listing every problem."""
    # Imported here: the serverless handler reads the schema and must not pay for pandas.
    import pandas as pd

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
    frame: "pd.DataFrame", schema: Schema, *, target: bool = True, start: int = 0
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


def _column_problems(raw: "pd.Series", column: Column, start: int) -> list[Problem]:
    import numpy as np
    import pandas as pd

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
    problems = []
    for mask, what in checks:
        # Nullable columns give <NA> where a value is missing: not an offence of this kind.
        offending = np.flatnonzero(mask.to_numpy(dtype=bool, na_value=False))
        if len(offending):
            shown = tuple(start + int(index) for index in offending[:MAX_ROWS_SHOWN])
            problems.append(Problem(what, column.name, len(offending), shown))
    return problems
