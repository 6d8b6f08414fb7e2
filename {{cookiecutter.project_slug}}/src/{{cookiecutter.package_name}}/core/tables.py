"""Reading CSV and Parquet files in checked chunks of rows, for batch scoring and drift checks.

Every chunk is checked against the schema (the target column may be absent, and is not read)
before anyone sees it. Problems carry the rows' positions in the file; the errors name them as
the file's lines (CSV) or rows (Parquet).
"""

import csv
from collections.abc import Callable, Iterable, Iterator
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from .checks import find_problems
from .errors import DataError
from .problems import CSV_LINES, ROWS, Numbering, Problem, does_not_match
from .schema import Schema

FORMATS = {".csv": "CSV", ".parquet": "Parquet"}
# How each format's errors name a row: a CSV file has lines (its header is line 1), Parquet rows.
NUMBERING = {".csv": CSV_LINES, ".parquet": ROWS}
# Bytes read at a time from a Parquet column.
READ_BUFFER = 1 << 20
# Characters of a reader's complaint an error message quotes.
MAX_REASON = 200


@dataclass(frozen=True)
class Chunk:
    """Checked feature values of consecutive input rows; `start` is the first one's position."""

    start: int
    features: pd.DataFrame


def file_format(path: Path, role: str) -> str:
    """The file's suffix when it names a supported format; DataError otherwise."""
    suffix = path.suffix.lower()
    if suffix not in FORMATS:
        raise DataError(
            f"{path}: cannot tell the {role} format from the name "
            f"(got {path.suffix or 'no suffix'!r}); use .csv or .parquet"
        )
    return suffix


def check_columns(path: Path | str, names: list[str], schema: Schema) -> None:
    """Every feature is there; the target may be, and is ignored; nothing else may be. `path`
    is the file's, or a folder's or URL's (for Spark), named after its format."""
    known = {*schema.feature_names, schema.target.name}
    missing = [name for name in schema.feature_names if name not in names]
    unexpected = [name for name in names if name not in known]
    problems = []
    if missing:
        problems.append(Problem("missing columns: " + ", ".join(missing)))
    if unexpected:
        problems.append(Problem("unexpected columns: " + ", ".join(unexpected)))
    if problems:
        raise does_not_match(path, problems, NUMBERING[Path(path).suffix.lower()])


def open_input(path: Path, schema: Schema, chunk_size: int) -> Iterator[Chunk]:
    """Check that the file opens and has the schema's columns; then read it lazily, checked."""
    suffix = file_format(path, "input")
    if not path.is_file():
        raise DataError(f"{path}: not found")
    if suffix == ".csv":
        return _open_csv(path, schema, chunk_size)
    return _open_parquet(path, schema, chunk_size)


def _unreadable(path: Path, error: Exception) -> DataError:
    kind = FORMATS[path.suffix.lower()]
    reason = " ".join(str(error).split()) or type(error).__name__
    # Arrow quotes the offending row, which can be long.
    if len(reason) > MAX_REASON:
        reason = reason[: MAX_REASON - 3] + "..."
    return DataError(f"{path}: not a readable {kind} file ({reason})")


def _open_csv(path: Path, schema: Schema, chunk_size: int) -> Iterator[Chunk]:
    try:
        with path.open(encoding="utf-8-sig", newline="") as file:
            header = next(csv.reader(file), None)
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise _unreadable(path, error) from None
    if header is None:
        raise DataError(f"{path}: not a readable CSV file (it is empty)")
    check_columns(path, header, schema)
    names = schema.feature_names
    # Arrow parses the features straight into numbers, on every core; the target is not read.
    options = pa_csv.ConvertOptions(
        include_columns=names, column_types=dict.fromkeys(names, pa.float64())
    )
    try:
        reader = pa_csv.open_csv(path, convert_options=options)
    except (OSError, pa.ArrowException) as error:
        raise _csv_error(path, header, schema, 0, chunk_size, error) from None
    return _read_csv(path, header, reader, schema, chunk_size)


def _read_csv(
    path: Path, header: list[str], reader: Any, schema: Schema, chunk_size: int
) -> Iterator[Chunk]:
    def failed(start: int, error: Exception) -> DataError:
        return _csv_error(path, header, schema, start, chunk_size, error)

    return _read_chunks(path, reader, _rechunked(reader, chunk_size), schema, failed, CSV_LINES)


def _csv_error(
    path: Path, header: list[str], schema: Schema, start: int, chunk_size: int, error: Exception
) -> DataError:
    """Why Arrow could not read the rows from `start` on.

    Arrow stops at the first cell that is not a number. To name every bad cell of that chunk,
    as for any other schema problem, pandas reads the rows again: slower, but only on the way
    to an error.
    """
    if isinstance(error, pa.ArrowInvalid):
        # As text, for the schema to judge; all columns, so that pandas too refuses a row with
        # too many cells. If pandas cannot read it either, Arrow's reason is as good.
        with (
            suppress(ValueError),
            pd.read_csv(
                path,
                skiprows=start + 1,
                header=None,
                names=header,
                dtype=str,
                chunksize=chunk_size,
            ) as again,
        ):
            for frame in again:
                features = frame[schema.feature_names]
                problems = find_problems(features, schema, target=False, start=start)
                if problems:
                    return does_not_match(path, problems, CSV_LINES)
                start += len(frame)
    return _unreadable(path, error)


def _open_parquet(path: Path, schema: Schema, chunk_size: int) -> Iterator[Chunk]:
    try:
        # Buffered, unprefetched reads: memory follows the chunk size, not the row group size.
        file = pq.ParquetFile(path, buffer_size=READ_BUFFER, pre_buffer=False)
    except (OSError, pa.ArrowException) as error:
        raise _unreadable(path, error) from None
    check_columns(path, file.schema_arrow.names, schema)
    return _read_parquet(path, file, schema, chunk_size)


def _read_parquet(path: Path, file: Any, schema: Schema, chunk_size: int) -> Iterator[Chunk]:
    batches = iter(file.iter_batches(chunk_size, columns=schema.feature_names))

    def failed(_: int, error: Exception) -> DataError:
        return _unreadable(path, error)

    return _read_chunks(path, file, batches, schema, failed, ROWS)


def _read_chunks(
    path: Path,
    source: Any,
    tables: Iterator[Any],
    schema: Schema,
    failed: Callable[[int, Exception], DataError],
    numbering: Numbering,
) -> Iterator[Chunk]:
    """Checked chunks of the Arrow `tables` read from `source`, which is closed at the end.

    `failed(start, error)` says why the rows from `start` on could not be read; errors name
    rows by the file's `numbering`.
    """
    start = 0
    with source:
        while True:
            try:
                table = next(tables, None)
            except (OSError, pa.ArrowException) as error:
                raise failed(start, error) from None
            if table is None:
                return
            frame = table.select(schema.feature_names).to_pandas()
            yield Chunk(start, _checked(path, frame, schema, start, numbering))
            start += len(frame)


def _checked(
    path: Path, frame: pd.DataFrame, schema: Schema, start: int, numbering: Numbering
) -> pd.DataFrame:
    """The features of the rows from `start` on, as numbers; DataError naming every problem."""
    problems = find_problems(frame, schema, target=False, start=start)
    if problems:
        raise does_not_match(path, problems, numbering)
    numeric = all(pd.api.types.is_numeric_dtype(dtype) for dtype in frame.dtypes)
    return frame if numeric else frame.apply(pd.to_numeric)


def _rechunked(batches: Iterable[Any], rows: int) -> Iterator[Any]:
    """Tables of `rows` rows (the last one shorter) from record batches of any size."""
    pending: list[Any] = []
    count = 0
    for batch in batches:
        pending.append(batch)
        count += batch.num_rows
        while count >= rows:
            table = pa.Table.from_batches(pending)
            yield table.slice(0, rows)
            rest = table.slice(rows)
            pending, count = rest.to_batches(), rest.num_rows
    if count:
        yield pa.Table.from_batches(pending)
