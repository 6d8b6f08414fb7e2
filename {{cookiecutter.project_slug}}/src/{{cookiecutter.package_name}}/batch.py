"""`batch`: score a CSV or Parquet file with a registered model, one chunk of rows at a time.

Each chunk is checked against the schema (the target column may be absent) before it is scored.
The predictions go to a temporary file beside the output, which takes the output's name only once
every row is scored: a bad row leaves no output behind, and an existing output file as it was.
"""

import argparse
import csv
import re
import time
from collections.abc import Callable, Generator, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing, suppress
from dataclasses import dataclass
from itertools import chain
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

# pyarrow ships no type information; `unused-ignore` keeps this line valid once stubs exist.
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from .config import load_params
from .errors import DataError
from .files import write_atomic
from .registry import CHAMPION, RegisteredModel, load_registered
from .schema import Schema, find_problems, load_schema

if TYPE_CHECKING:
    from sklearn.pipeline import Pipeline

FORMATS = {".csv": "CSV", ".parquet": "Parquet"}
DEFAULT_CHUNK_SIZE = 100_000
# Bytes read at a time from a Parquet column.
READ_BUFFER = 1 << 20
# Characters of a reader's complaint an error message quotes.
MAX_REASON = 200
# The output's columns, besides one probability column per class for a multi-class model.
ROW = "row"
PREDICTION = "prediction"
PROBABILITY = "probability"
MODEL_NAME = "model_name"
MODEL_VERSION = "model_version"


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


def does_not_match(path: Path, problems: list[str]) -> DataError:
    """The error `read_table` raises for a file that breaks the schema, in the same words."""
    return DataError(f"{path}: does not match the schema:\n  " + "\n  ".join(problems))


def check_columns(path: Path, names: list[str], schema: Schema) -> None:
    """Every feature is there; the target may be, and is ignored; nothing else may be."""
    known = {*schema.feature_names, schema.target.name}
    missing = [name for name in schema.feature_names if name not in names]
    unexpected = [name for name in names if name not in known]
    problems = []
    if missing:
        problems.append("missing columns: " + ", ".join(missing))
    if unexpected:
        problems.append("unexpected columns: " + ", ".join(unexpected))
    if problems:
        raise does_not_match(path, problems)


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
    tables = _rechunked(reader, chunk_size)
    start = 0
    with reader:
        while True:
            try:
                table = next(tables, None)
            except (OSError, pa.ArrowException) as error:
                raise _csv_error(path, header, schema, start, chunk_size, error) from None
            if table is None:
                return
            frame = table.to_pandas()
            # find_problems names file lines, index + 2: the header is line 1, row 0 on line 2.
            frame.index = pd.RangeIndex(start, start + len(frame))
            yield Chunk(start, _checked(path, frame, schema))
            start += len(frame)


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
                frame.index = frame.index + start
                problems = find_problems(frame[schema.feature_names], schema, target=False)
                if problems:
                    return does_not_match(path, problems)
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
    start = 0
    with file:
        while True:
            try:
                batch = next(batches, None)
            except (OSError, pa.ArrowException) as error:
                raise _unreadable(path, error) from None
            if batch is None:
                return
            frame = batch.select(schema.feature_names).to_pandas()
            # Parquet has rows, not lines: shift the index so that find_problems' line numbers
            # (index + 2) are the rows' positions, counted from 0.
            frame.index = pd.RangeIndex(start - 2, start - 2 + len(frame))
            yield Chunk(start, _checked(path, frame, schema, _lines_to_rows))
            start += len(frame)


def _lines_to_rows(problem: str) -> str:
    return re.sub(r"\bat line(s?) (?=\d)", r"at row\1 ", problem)


def _checked(
    path: Path,
    frame: pd.DataFrame,
    schema: Schema,
    where: Callable[[str], str] = lambda problem: problem,
) -> pd.DataFrame:
    """The chunk's features as numbers; DataError naming every problem in the chunk."""
    problems = find_problems(frame, schema, target=False)
    if problems:
        raise does_not_match(path, [where(problem) for problem in problems])
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


def prefetched(chunks: Iterator[Chunk]) -> Generator[Chunk]:
    """Yield the chunks, reading and checking the next one in a thread while this one is scored."""
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="batch-read") as pool:
        upcoming = pool.submit(next, chunks, None)
        while (chunk := upcoming.result()) is not None:
            upcoming = pool.submit(next, chunks, None)
            yield chunk


def predict(estimator: "Pipeline", features: pd.DataFrame) -> dict[str, Any]:
    """The prediction for each row and, for a classifier, the probabilities of the classes.

    A binary classifier gets one `probability` column, the probability of its second class (the
    positive one, 1 for classes 0 and 1); a multi-class one gets `probability_<class>` for each.
    """
    if not hasattr(estimator, "predict_proba"):
        return {PREDICTION: estimator.predict(features)}
    probabilities = estimator.predict_proba(features)
    classes = estimator.classes_
    # scikit-learn's classifiers predict the most probable class: one pass through the model.
    columns = {PREDICTION: classes[np.argmax(probabilities, axis=1)]}
    if len(classes) == 2:
        columns[PROBABILITY] = probabilities[:, 1]
    else:
        for position, label in enumerate(classes):
            columns[f"{PROBABILITY}_{label}"] = probabilities[:, position]
    return columns


def predictions(model: RegisteredModel, chunk: Chunk) -> Any:
    """The output rows for one chunk, as an Arrow table carrying the model in its metadata."""
    rows = len(chunk.features)
    columns = {
        ROW: np.arange(chunk.start, chunk.start + rows),
        **predict(model.estimator, chunk.features),
        MODEL_NAME: pa.repeat(model.name, rows),
        MODEL_VERSION: pa.repeat(int(model.version), rows),
    }
    metadata = {MODEL_NAME: model.name, MODEL_VERSION: model.version, "model_alias": model.alias}
    return pa.table(columns, metadata=metadata)


def write_tables(path: Path, suffix: str, first: Any, rest: Iterator[Any]) -> int:
    """Write `first`, then the `rest` of the tables, to `path`; return the number of rows."""
    writer = pa_csv.CSVWriter if suffix == ".csv" else pq.ParquetWriter
    rows = 0
    with writer(str(path), first.schema) as file:
        for table in chain([first], rest):
            file.write_table(table)
            rows += table.num_rows
    return rows


def score(chunks: Iterator[Chunk], model: RegisteredModel, source: Path, output: Path) -> int:
    """Score every chunk into `output`, which appears only once all of them are written."""
    suffix = file_format(output, "output")
    rows = 0

    def write(tmp: Path) -> None:
        nonlocal rows
        with closing(prefetched(chunks)) as checked:
            scored = (predictions(model, chunk) for chunk in checked)
            first = next(scored, None)
            if first is None:
                raise does_not_match(source, ["no rows"])
            rows = write_tables(tmp, suffix, first, scored)

    write_atomic(output, write)
    return rows


def chunk_size(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="batch", description=__doc__)
    parser.add_argument("input", type=Path, help="the rows to score: a .csv or .parquet file")
    parser.add_argument("output", type=Path, help="the predictions file to write: .csv or .parquet")
    parser.add_argument(
        "--chunk-size",
        type=chunk_size,
        default=DEFAULT_CHUNK_SIZE,
        help="rows read and scored at a time; memory grows with it (default: %(default)s)",
    )
    parser.add_argument(
        "--alias", default=CHAMPION, help="the registered version to use (default: %(default)s)"
    )
    args = parser.parse_args(argv)
    file_format(args.output, "output")
    if args.output.resolve() == args.input.resolve():
        raise DataError(f"{args.output}: is the input too; write the predictions to another file")
    if args.output.is_dir():
        raise DataError(f"{args.output}: is a folder; name the predictions file")
    # The input's columns are checked before the model is downloaded.
    chunks = open_input(args.input, load_schema(), args.chunk_size)
    model = load_registered(load_params().mlflow, args.alias)
    began = time.perf_counter()
    rows = score(chunks, model, args.input, args.output)
    rate = rows / max(time.perf_counter() - began, 1e-9)
    print(
        f"batch: scored {rows} rows with {model.name} version {model.version} "
        f"('{model.alias}') -> {args.output} ({rate:,.0f} rows/s)"
    )
    return 0
