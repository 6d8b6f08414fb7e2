"""A table's problems with the schema as records, and the words an error gives them.

Checks find problems at row positions, counted from 0 in the source; only the error, at the
edge, turns positions into the numbers a person looks for, by the source's Numbering: a CSV
file's lines, a JSON-lines file's lines, or rows.
"""

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from .errors import DataError

# How many offending rows a problem keeps, and an error lists, before it summarises.
MAX_ROWS_SHOWN = 5


@dataclass(frozen=True)
class Numbering:
    """How a source numbers its rows for people: `first` is the number of the row at position 0."""

    noun: str
    first: int

    def name_rows(self, positions: tuple[int, ...], count: int) -> str:
        """`lines 4, 7 and 2 more`: the rows at these positions, of `count` in all."""
        numbers = [str(self.first + position) for position in positions]
        more = count - len(numbers)
        noun = self.noun if len(numbers) == 1 else self.noun + "s"
        return f"{noun} " + ", ".join(numbers) + (f" and {more} more" if more else "")


# A CSV file's lines: the header is line 1, the row at position 0 is on line 2.
CSV_LINES = Numbering("line", 2)
# A JSON-lines file's lines: no header, the row at position 0 is on line 1.
JSON_LINES = Numbering("line", 1)
# Rows without lines (Parquet, a frame in memory): their positions, from 0.
ROWS = Numbering("row", 0)


@dataclass(frozen=True)
class Problem:
    """One way a table breaks the schema.

    Without a `column` it is about the whole table (`what` says all). With one, `count` values
    of the column are `what`, and `positions` are where the first MAX_ROWS_SHOWN of them are,
    counted from 0 in the source: the source's Numbering turns them into words.
    """

    what: str
    column: str | None = None
    count: int = 0
    positions: tuple[int, ...] = ()

    def describe(self, numbering: Numbering) -> str:
        if self.column is None:
            return self.what
        where = numbering.name_rows(self.positions, self.count)
        return f"column '{self.column}': {self.count} {self.what} at {where}"


def does_not_match(
    path: Path | str, problems: Iterable[Problem], numbering: Numbering
) -> DataError:
    """The one error for a file that breaks the schema, its rows named as the file numbers them."""
    described = "\n  ".join(problem.describe(numbering) for problem in problems)
    return DataError(f"{path}: does not match the schema:\n  {described}")
