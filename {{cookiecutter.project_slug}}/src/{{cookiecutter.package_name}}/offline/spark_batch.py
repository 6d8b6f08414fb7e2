"""`batch-spark`: score a file, a folder of files or an object-store URL with the champion on
Apache Spark (`make batch ENGINE=spark`), with the contract of `batch`.

Every row is checked against the schema first, by Spark: a file that breaks it gets the error
`batch` gives (how many values, which rows) and nothing is written. The registered version is
downloaded and checked against its hash on the driver, then scored on the workers with
`mlflow.pyfunc.spark_udf`. The output has the columns of `batch`, a new prediction id per row,
and is a folder of Parquet files (one per Spark partition) written under a temporary name beside
it and renamed once every row is scored.

Spark runs in local mode on every core (`local[*]`) unless SPARK_MASTER names a master
(README.md, "Batch scoring on Spark").
"""

import argparse
import logging
import os
import re
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from importlib.metadata import version
from itertools import accumulate
from pathlib import Path
from typing import Any

from ..core.config import CHAMPION, DATA_DIR, load_params
from ..core.errors import DataError, ProjectError
from ..core.prediction_ids import PREDICTION_ID
from ..core.problems import MAX_ROWS_SHOWN, Problem, does_not_match
from ..core.schema import Column, Schema, load_schema
from ..core.scoring import PREDICTION, PROBABILITY
from ..core.tables import FORMATS, NUMBERING, check_columns
from ..release.registry import MODEL_REQUIREMENTS, RegisteredModel, load_registered
from . import spark_model
from .batch import DEFAULT_CHUNK_SIZE, MODEL_NAME, MODEL_VERSION, ROW

# Spark 4 runs on Java 17 or 21.
JAVA_VERSIONS = (17, 21)
JAVA_HELP = "install OpenJDK 17 (Debian and Ubuntu: apt-get install openjdk-17-jre-headless)"
# monotonically_increasing_id() puts the partition in the bits above these. The column it goes
# to while the first bad rows are looked up, named as no data set names a column.
ROW_BITS = 33
ROW_ID = "__batch_spark_row_id"
# Spark's own messages: errors only, on stderr.
LOG_CONFIG = Path(__file__).with_name("spark-log4j2.properties")


class SparkError(ProjectError):
    """Spark cannot start or run here."""


def java_version() -> int:
    """The major version of the Java Spark will start (JAVA_HOME's, or the one on PATH)."""
    home = os.environ.get("JAVA_HOME")
    java = shutil.which("java", path=str(Path(home) / "bin") if home else None)
    if java is None:
        where = f"in JAVA_HOME ({home})" if home else "on PATH"
        raise SparkError(f"Spark needs Java 17 or 21: no `java` {where}; {JAVA_HELP}")
    answer = subprocess.run([java, "-version"], capture_output=True, text=True, check=False)
    found = re.search(r'version "(\d+)(?:\.(\d+))?', answer.stderr + answer.stdout)
    if found is None:
        raise SparkError(f"Spark needs Java 17 or 21: `{java} -version` did not say its version")
    major = int(found[1]) if found[1] != "1" else int(found[2] or 0)
    if major not in JAVA_VERSIONS:
        raise SparkError(f"Spark needs Java 17 or 21: {java} is Java {major}; {JAVA_HELP}")
    return major


@contextmanager
def spark_session() -> Iterator[Any]:
    """A Spark session on SPARK_MASTER, the master `spark-submit` gave, or `local[*]`."""
    try:
        from pyspark.sql import SparkSession
    except ImportError:
        raise SparkError(
            "pyspark is not installed: `make batch ENGINE=spark` installs the spark group "
            "(uv sync --group spark)"
        ) from None
    java_version()
    builder = SparkSession.builder.appName("{{ cookiecutter.project_slug }} batch")
    master = os.environ.get("SPARK_MASTER")
    if master:
        builder = builder.master(master)
    if not master or master.startswith("local"):
        # Spark's default master is local[*]: on one machine, it listens on the loopback only
        # and logs errors only.
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
        builder = builder.config(
            "spark.driver.extraJavaOptions", f"-Dlog4j2.configurationFile={LOG_CONFIG.as_uri()}"
        )
    spark = (
        builder.config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
        # The model scores `batch`'s chunk of rows at a time, not Spark's default of 10,000: a
        # call to the model has a fixed cost (scoring 1M rows took half the time).
        .config("spark.sql.execution.arrow.maxRecordsPerBatch", str(DEFAULT_CHUNK_SIZE))
        .config("spark.ui.showConsoleProgress", "false")
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("ERROR")
    try:
        yield spark
    finally:
        spark.stop()


def suffix_of(location: str, role: str) -> str:
    """`.csv` or `.parquet`, from the name of the file or folder `location` ends with."""
    suffix = Path(location.rstrip("/")).suffix.lower()
    if suffix not in FORMATS:
        raise DataError(
            f"{location}: cannot tell the {role} format from the name "
            f"(got {suffix or 'no suffix'!r}); use .csv or .parquet"
        )
    return suffix


def read(spark: Any, source: str, schema: Schema) -> Any:
    """The input as Spark reads it: CSV as text (the checks parse it), Parquet as it is typed.
    Object-store URLs are read on the workers through fsspec (`spark_store`)."""
    from pyspark.errors import AnalysisException

    from . import spark_store

    suffix = suffix_of(source, "input")
    if spark_store.in_store(source):
        frame = spark_store.read(spark, source, suffix)
    else:
        reader = spark.read
        try:
            if suffix == ".csv":
                frame = reader.option("header", True).option("encoding", "UTF-8").csv(source)
            else:
                frame = reader.parquet(source)
        except AnalysisException as error:
            reason = str(error).splitlines()[0]
            raise DataError(f"{source}: cannot be read ({reason})") from None
    check_columns(source, frame.columns, schema)
    return frame


def checks(column: Column, nulls: list[str], typed: bool) -> list[tuple[Any, str]]:
    """Each way a value can break the column's contract, as Spark conditions: the checks of
    `core.checks`, and the same words. A `typed` column (Parquet's numbers) holds no text: only
    text columns (CSV's) are parsed, and only they can hold values that are not numbers."""
    from pyspark.sql import functions as F

    raw = F.col(column.name)
    if typed:
        value = raw.cast("double")
        missing = raw.isNull() | F.isnan(value)
        found = [(missing, "missing values")]
    else:
        value = raw.try_cast("double")
        missing = raw.isNull() | raw.isin(nulls) | F.isnan(value)
        found = [
            (missing, "missing values"),
            (~missing & value.isNull(), "values that are not numbers"),
        ]
    present = ~missing & value.isNotNull()
    if column.dtype == "int":
        found.append((present & (value % 1 != 0), "values that are not whole numbers"))
    if column.allowed is not None:
        outside = present & ~value.isin(list(column.allowed))
    else:
        outside = present & ((value < F.lit(column.min)) | (value > F.lit(column.max)))
    found.append((outside, f"values not {column.describe()}"))
    return found


def checked(frame: Any, source: str, schema: Schema) -> list[int]:
    """Check every row; return each partition's row count, or raise DataError naming the rows
    that break the contract as `batch` would."""
    import pyarrow.csv as pa_csv
    from pyspark.sql import functions as F
    from pyspark.sql.types import BooleanType, NumericType

    nulls = list(pa_csv.ConvertOptions().null_values)
    types = {field.name: field.dataType for field in frame.schema.fields}
    conditions = [
        (column.name, what, condition)
        for column in schema.features
        for condition, what in checks(
            column, nulls, isinstance(types[column.name], NumericType | BooleanType)
        )
    ]
    part = F.spark_partition_id().alias("part")
    # A sum of ones, not count_if: Spark runs it about three times faster on CSV text.
    counts = [
        F.sum(F.when(condition, 1).otherwise(0)).alias(f"c{index}")
        for index, (_, _, condition) in enumerate(conditions)
    ]
    rows = frame.groupBy(part).agg(F.count(F.lit(1)).alias("rows"), *counts).collect()
    sizes = [0] * (max((row["part"] for row in rows), default=-1) + 1)
    for row in rows:
        sizes[row["part"]] = row["rows"]
    offsets = starts(sizes)
    numbering = NUMBERING[suffix_of(source, "input")]
    if not sum(sizes):
        raise does_not_match(source, [Problem("no rows")], numbering)
    problems = []
    for index, (name, what, condition) in enumerate(conditions):
        count = sum(row[f"c{index}"] for row in rows)
        if count:
            ids = [
                row[ROW_ID]
                for row in frame.withColumn(ROW_ID, F.monotonically_increasing_id())
                .where(condition)
                .select(ROW_ID)
                .orderBy(ROW_ID)
                .limit(MAX_ROWS_SHOWN)
                .collect()
            ]
            problems.append(Problem(what, name, count, tuple(position(offsets, id) for id in ids)))
    if problems:
        raise does_not_match(source, problems, numbering)
    return sizes


def starts(sizes: list[int]) -> list[int]:
    """The position in the input of each partition's first row."""
    return [0, *accumulate(sizes)][:-1]


def position(offsets: list[int], row_id: int) -> int:
    """The position in the input of the row monotonically_increasing_id() numbered `row_id`."""
    return offsets[row_id >> ROW_BITS] + (row_id & ((1 << ROW_BITS) - 1))


def result_type(model: RegisteredModel) -> Any:
    """The Spark type of what `scoring.predict` returns for this model: one field per column."""
    from pyspark.sql.types import DoubleType, LongType, StructField, StructType

    estimator = model.estimator
    if not hasattr(estimator, "predict_proba"):
        return StructType([StructField(PREDICTION, DoubleType())])
    classes = list(estimator.classes_)
    label = LongType() if all(float(c).is_integer() for c in classes) else DoubleType()
    fields = [StructField(PREDICTION, label)]
    if len(classes) == 2:
        fields.append(StructField(PROBABILITY, DoubleType()))
    else:
        fields += [StructField(f"{PROBABILITY}_{c}", DoubleType()) for c in classes]
    return StructType(fields)


def scored(
    spark: Any, frame: Any, sizes: list[int], schema: Schema, model: RegisteredModel, folder: Path
) -> Any:
    """The output rows: `batch`'s columns, scored by spark_udf over the model's checked file."""
    import mlflow.pyfunc
    from pyspark.sql import functions as F

    skops_file = folder / "model.skops"
    skops_file.write_bytes(model.model_file)
    # The package's code goes with the model to the workers, without its compiled files.
    package = Path(spark_model.__file__).parents[1]
    code = folder / "code" / package.name
    shutil.copytree(package, code, ignore=shutil.ignore_patterns("__pycache__"))
    # uv environments have no pip, which MLflow would warn about while saving the model. The model
    # has no signature: Spark checked the rows against the schema before they reach it.
    logging.getLogger("mlflow.utils.environment").setLevel(logging.ERROR)
    # The workers score in this project's environment (or the cluster's, which must have the
    # same packages): MLflow's advice to rebuild the training environment with conda is moot.
    logging.getLogger("mlflow.pyfunc").setLevel(logging.ERROR)
    mlflow.pyfunc.save_model(
        folder / "pyfunc",
        python_model=spark_model.__file__,
        artifacts={spark_model.ARTIFACT: str(skops_file)},
        code_paths=[str(code)],
        pip_requirements=[f"{name}=={version(name)}" for name in MODEL_REQUIREMENTS],
    )
    returned = result_type(model)
    udf = mlflow.pyfunc.spark_udf(
        spark, str(folder / "pyfunc"), result_type=returned, env_manager="local"
    )
    offsets = starts(sizes)
    row_id = F.monotonically_increasing_id()
    part = F.shiftright(row_id, ROW_BITS)
    row = F.element_at(F.array(*[F.lit(o) for o in offsets]), (part + 1).cast("int")) + (
        row_id.bitwiseAND((1 << ROW_BITS) - 1)
    )
    features = [F.col(c.name).try_cast("double").alias(c.name) for c in schema.features]
    out = udf(F.struct(*features))
    prediction_fields = [field.name for field in returned.fields]
    return frame.select(
        row.alias(ROW),
        F.regexp_replace(F.expr("uuid()"), "-", "").alias(PREDICTION_ID),
        *[out[name].alias(name) for name in prediction_fields],
        F.lit(model.name).alias(MODEL_NAME),
        F.lit(int(model.version)).cast("long").alias(MODEL_VERSION),
    )


def hadoop_path(spark: Any, location: str) -> tuple[Any, Any]:
    """The Hadoop FileSystem holding `location`, and its Path."""
    jvm = spark.sparkContext._jvm
    path = jvm.org.apache.hadoop.fs.Path(location)
    return path.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration()), path


def exists(spark: Any, output: str) -> bool:
    from . import spark_store

    if spark_store.in_store(output):
        return spark_store.exists(output)
    fs, final = hadoop_path(spark, output)
    return bool(fs.exists(final))


def write(spark: Any, rows: Any, output: str, overwrite: bool) -> None:
    """Write `rows` under a temporary name beside `output`, then rename it `output`: a failed
    job leaves no output, and an existing output (with `overwrite`) as it was until the end.
    Object-store URLs are written by the workers through fsspec (`spark_store`)."""
    from . import spark_store

    if spark_store.in_store(output):
        spark_store.write(spark, rows, output, overwrite)
        return
    jvm = spark.sparkContext._jvm
    fs, final = hadoop_path(spark, output)
    tag = uuid.uuid4().hex[:12]
    temporary = jvm.org.apache.hadoop.fs.Path(final.getParent(), f".{final.getName()}.{tag}.tmp")
    previous = jvm.org.apache.hadoop.fs.Path(final.getParent(), f".{final.getName()}.{tag}.old")
    try:
        rows.write.parquet(temporary.toString())
        if fs.exists(final):
            if not overwrite:
                raise DataError(f"{output}: appeared while scoring; nothing replaced it")
            if not fs.rename(final, previous):
                raise DataError(f"{output}: could not be moved aside to replace it")
        if not fs.rename(temporary, final):
            if fs.exists(previous):
                fs.rename(previous, final)
            raise DataError(f"{output}: could not be renamed from {temporary.toString()}")
        fs.delete(previous, True)
    finally:
        fs.delete(temporary, True)


def output_problems(source: str, output: str, overwrite: bool) -> None:
    """Refuse an output that is the input, inside the DVC-tracked data, a CSV, or exists."""
    if suffix_of(output, "output") != ".parquet":
        raise DataError(
            f"{output}: the Spark engine writes a folder of Parquet files; name it *.parquet"
        )
    if output.rstrip("/") == source.rstrip("/"):
        raise DataError(f"{output}: is the input too; write the predictions elsewhere")
    if "://" not in output and Path(output).resolve().is_relative_to(DATA_DIR.resolve()):
        raise DataError(
            f"{output}: is inside {DATA_DIR}/, the data DVC tracks; write the predictions "
            "elsewhere (for example predictions/)"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="batch-spark", description=__doc__)
    parser.add_argument("input", help="the rows: a .csv or .parquet file or folder, or its URL")
    parser.add_argument("output", help="the predictions: a .parquet folder to write, or its URL")
    parser.add_argument(
        "--alias", default=CHAMPION, help="the registered version to use (default: %(default)s)"
    )
    parser.add_argument(
        "--overwrite", action="store_true", help="replace the output folder if it exists"
    )
    args = parser.parse_args(argv)
    source, output = args.input, args.output
    suffix_of(source, "input")
    output_problems(source, output, args.overwrite)
    schema = load_schema()
    with spark_session() as spark:
        if exists(spark, output) and not args.overwrite:
            raise DataError(
                f"{output}: exists; pass --overwrite (make batch ... OVERWRITE=1) to replace it"
            )
        began = time.perf_counter()
        frame = read(spark, source, schema)
        sizes = checked(frame, source, schema)
        model = load_registered(load_params().mlflow, args.alias)
        with tempfile.TemporaryDirectory(prefix="batch-spark-") as folder:
            predictions = scored(spark, frame, sizes, schema, model, Path(folder))
            write(spark, predictions, output, args.overwrite)
        rows = sum(sizes)
        rate = rows / max(time.perf_counter() - began, 1e-9)
        where = f"Spark {spark.version} on {spark.sparkContext.master}"
    print(
        f"batch-spark: scored {rows} rows with {model.name} version {model.version} "
        f"('{model.alias}') -> {output} ({rate:,.0f} rows/s, {where})"
    )
    return 0
