"""`batch`: score a CSV or Parquet file with a registered model, one chunk of rows at a time.

Each chunk is checked against the schema (the target column may be absent) before it is scored.
The predictions go to a temporary file beside the output, which takes the output's name only once
every row is scored: a bad row leaves no output behind, and an existing output file as it was.
Every output row gets a new `prediction_id`, the key that joins its ground truth later.
"""

import argparse
import time
from collections.abc import Generator, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from itertools import chain
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from ..core.config import CHAMPION, DATA_DIR, load_params
from ..core.errors import DataError
from ..core.files import write_atomic
from ..core.prediction_ids import ID_LENGTH, PREDICTION_ID, id_text
from ..core.problems import Problem, does_not_match
from ..core.schema import load_schema
from ..core.scoring import predict
from ..core.tables import NUMBERING, Chunk, file_format, open_input
from ..release.registry import RegisteredModel, load_registered

DEFAULT_CHUNK_SIZE = 100_000
# The output's columns besides those of `scoring.predict`.
ROW = "row"
MODEL_NAME = "model_name"
MODEL_VERSION = "model_version"


def prefetched(chunks: Iterator[Chunk]) -> Generator[Chunk]:
    """Yield the chunks, reading and checking the next one in a thread while this one is scored."""
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="batch-read") as pool:
        upcoming = pool.submit(next, chunks, None)
        while (chunk := upcoming.result()) is not None:
            upcoming = pool.submit(next, chunks, None)
            yield chunk


def prediction_ids(rows: int) -> Any:
    """`rows` new prediction ids as an Arrow string column, made straight from their text, with
    64-bit offsets: a chunk of more than 67 million ids does not fit 32-bit ones."""
    offsets = np.arange(0, (rows + 1) * ID_LENGTH, ID_LENGTH, dtype=np.int64)
    text = id_text(rows).encode("ascii")
    return pa.LargeStringArray.from_buffers(rows, pa.py_buffer(offsets), pa.py_buffer(text))


def predictions(model: RegisteredModel, chunk: Chunk) -> Any:
    """The output rows for one chunk, as an Arrow table carrying the model in its metadata."""
    rows = len(chunk.features)
    columns = {
        ROW: np.arange(chunk.start, chunk.start + rows),
        PREDICTION_ID: prediction_ids(rows),
        **predict(model.estimator, chunk.features),
        MODEL_NAME: pa.repeat(model.name, rows),
        MODEL_VERSION: pa.repeat(int(model.version), rows),
    }
    metadata = {MODEL_NAME: model.name, MODEL_VERSION: model.version, "model_alias": model.alias}
    return pa.table(columns, metadata=metadata)


def repeating(schema: Any) -> list[str]:
    """The columns worth a Parquet dictionary: all but the row numbers, the ids and the floats.

    pyarrow's default encodes every column with one; for columns whose values hardly repeat that
    makes writing slower and the file larger.
    """
    unique = {ROW, PREDICTION_ID}
    return [f.name for f in schema if f.name not in unique and not pa.types.is_floating(f.type)]


def write_tables(path: Path, suffix: str, first: Any, rest: Iterator[Any]) -> int:
    """Write `first`, then the `rest` of the tables, to `path`; return the number of rows."""
    if suffix == ".csv":
        file = pa_csv.CSVWriter(str(path), first.schema)
    else:
        file = pq.ParquetWriter(str(path), first.schema, use_dictionary=repeating(first.schema))
    rows = 0
    with file:
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
                raise does_not_match(source, [Problem("no rows")], NUMBERING[source.suffix.lower()])
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
    parser.add_argument(
        "--overwrite", action="store_true", help="replace the output file if it exists"
    )
    args = parser.parse_args(argv)
    file_format(args.output, "output")
    if args.output.resolve() == args.input.resolve():
        raise DataError(f"{args.output}: is the input too; write the predictions to another file")
    if args.output.is_dir():
        raise DataError(f"{args.output}: is a folder; name the predictions file")
    if args.output.resolve().is_relative_to(DATA_DIR.resolve()):
        raise DataError(
            f"{args.output}: is inside {DATA_DIR}/, the data DVC tracks; write the predictions "
            "elsewhere (for example predictions/)"
        )
    if args.output.exists() and not args.overwrite:
        raise DataError(
            f"{args.output}: exists; pass --overwrite (make batch ... OVERWRITE=1) to replace it"
        )
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
