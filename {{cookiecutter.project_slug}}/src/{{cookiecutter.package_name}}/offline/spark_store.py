"""Object-store files (s3://, gs://, azure://) for `batch-spark`, read and written by Spark's
workers through fsspec.

Spark reads a store itself only through the store's Hadoop connector (`hadoop-aws` for s3a://),
which pyspark does not ship; fsspec and the store's backend (s3fs, gcsfs, adlfs) are what DVC's
remote and the inference log use already. A Python data source (Spark 4) puts them on the
workers:

- reading, each file is one partition, in name order, read with pyarrow in batches of rows: CSV
  as text (the schema checks judge each value), Parquet as written;
- writing, each Spark task writes one Parquet file under a hidden prefix beside the output; once
  every task succeeded the driver moves them under the output's prefix and writes `_SUCCESS`
  (an object store has no rename: each move is a copy, then a delete); a failed job's files are
  deleted, and nothing appears under the output.
"""

import csv
import io
import json
import posixpath
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import fsspec
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
from pyspark.sql.datasource import (
    DataSource,
    DataSourceArrowWriter,
    DataSourceReader,
    InputPartition,
    WriterCommitMessage,
)

from ..core.errors import DataError
from ..core.stores import fsspec_url
from ..serving.log_shipping import SCHEMES

NAME = "store_files"
SUCCESS = "_SUCCESS"
# Rows a worker reads at a time from one file.
BATCH_ROWS = 65_536


def in_store(location: str) -> bool:
    """Whether `location` is an object-store URL this module reads and writes (not file://,
    and not a scheme of Spark's own connectors such as s3a://)."""
    scheme, separator, _ = location.partition("://")
    return bool(separator) and scheme in SCHEMES and scheme != "file"


def filesystem(url: str) -> tuple[Any, str]:
    """fsspec's file system for `url`, and the path in it."""
    return fsspec.core.url_to_fs(fsspec_url(url))  # type: ignore[no-any-return]


def input_files(url: str, suffix: str) -> list[str]:
    """The file at `url`, or the `suffix` files under it (not hidden ones), in name order."""
    fs, path = filesystem(url)
    if fs.isfile(path):
        found = [path]
    else:
        found = sorted(
            name
            for name in fs.find(path)
            if name.lower().endswith(suffix)
            and not any(part.startswith((".", "_")) for part in name[len(path) :].split("/"))
        )
    if not found:
        raise DataError(f"{url}: not found, or no {suffix} file under it")
    return [fs.unstrip_protocol(name) for name in found]


def header(url: str) -> list[str]:
    """The column names on a CSV file's first line."""
    fs, path = filesystem(url)
    with fs.open(path, "rb") as raw, io.TextIOWrapper(raw, encoding="utf-8-sig") as text:
        names = next(csv.reader(text), None)
    if names is None:
        raise DataError(f"{url}: not a readable CSV file (it is empty)")
    return names


def arrow_schema(files: list[str], suffix: str) -> Any:
    """The input's columns, from its first file: CSV's as text, Parquet's as written."""
    if suffix == ".csv":
        return pa.schema([(name, pa.string()) for name in header(files[0])])
    fs, path = filesystem(files[0])
    with fs.open(path, "rb") as file:
        return pq.read_schema(file)


def read(spark: Any, url: str, suffix: str) -> Any:
    """The files at `url` as a DataFrame, read on the workers."""
    from pyspark.sql.pandas.types import from_arrow_schema

    files = input_files(url, suffix)
    spark.dataSource.register(StoreFiles)
    return (
        spark.read.format(NAME)
        .schema(from_arrow_schema(arrow_schema(files, suffix)))
        .option("files", json.dumps(files))
        .option("suffix", suffix)
        .load()
    )


def exists(url: str) -> bool:
    fs, path = filesystem(url)
    return bool(fs.exists(path))


def write(spark: Any, rows: Any, url: str, overwrite: bool) -> None:
    """Write `rows` as Parquet files under `url`, all of them or none."""
    spark.dataSource.register(StoreFiles)
    mode = "overwrite" if overwrite else "append"
    rows.write.format(NAME).mode(mode).option("path", url.rstrip("/")).save()


# The classes below subclass pyspark's: typed where the spark group is installed, unknown to
# mypy where it is not (`make typecheck` runs either way), hence their `type: ignore`s.


class StoreFiles(DataSource):  # type: ignore[misc, unused-ignore]
    """`spark.read.format("store_files")` and `DataFrame.write.format("store_files")`."""

    @classmethod
    def name(cls) -> str:
        return NAME

    def reader(self, schema: Any) -> "FileReader":
        return FileReader(json.loads(self.options["files"]), self.options["suffix"], schema)

    def writer(self, schema: Any, overwrite: bool) -> "StagedWriter":
        return StagedWriter(self.options["path"], overwrite)


class FileReader(DataSourceReader):  # type: ignore[misc, unused-ignore]
    def __init__(self, files: list[str], suffix: str, schema: Any) -> None:
        self.files = files
        self.suffix = suffix
        self.names = schema.fieldNames()

    def partitions(self) -> list[InputPartition]:
        return [InputPartition(url) for url in self.files]

    def read(self, partition: InputPartition) -> Iterator[Any]:
        fs, path = filesystem(partition.value)
        with fs.open(path, "rb") as file:
            if self.suffix == ".parquet":
                yield from pq.ParquetFile(file).iter_batches(BATCH_ROWS, columns=self.names)
                return
            options = pa_csv.ConvertOptions(
                include_columns=self.names,
                column_types=dict.fromkeys(self.names, pa.string()),
            )
            yield from pa_csv.open_csv(file, convert_options=options)


@dataclass
class Written(WriterCommitMessage):  # type: ignore[misc, unused-ignore]
    """The file one task wrote, under the hidden prefix; None if its partition was empty."""

    url: str | None


class StagedWriter(DataSourceArrowWriter):  # type: ignore[misc, unused-ignore]
    def __init__(self, url: str, overwrite: bool) -> None:
        self.url = url
        self.overwrite = overwrite
        parent, name = posixpath.split(url)
        self.staging = f"{parent}/.{name}.{uuid.uuid4().hex[:12]}.tmp"

    def write(self, iterator: Iterator[Any]) -> Written:
        from pyspark import TaskContext

        context = TaskContext.get()
        part = context.partitionId() if context else 0
        attempt = context.attemptNumber() if context else 0
        url = f"{self.staging}/part-{part:05d}-{attempt}.parquet"
        fs, path = filesystem(url)
        batches = iter(iterator)
        first = next(batches, None)
        if first is None:
            return Written(None)
        with fs.open(path, "wb") as file, pq.ParquetWriter(file, first.schema) as parquet:
            parquet.write_batch(first)
            for batch in batches:
                parquet.write_batch(batch)
        return Written(url)

    def commit(self, messages: list[Any]) -> None:
        fs, final = filesystem(self.url)
        if fs.exists(final):
            if not self.overwrite:
                raise DataError(f"{self.url}: appeared while scoring; nothing replaced it")
            fs.rm(final, recursive=True)
        for message in messages:
            if message is not None and message.url is not None:
                _, staged = filesystem(message.url)
                fs.mv(staged, f"{final}/{posixpath.basename(staged)}")
        fs.pipe(f"{final}/{SUCCESS}", b"")
        self.remove_staging()

    def abort(self, messages: list[Any]) -> None:
        self.remove_staging()

    def remove_staging(self) -> None:
        fs, staging = filesystem(self.staging)
        if fs.exists(staging):
            fs.rm(staging, recursive=True)
