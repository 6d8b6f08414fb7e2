"""Batch scoring on Spark (`make batch ENGINE=spark`): the predictions of `batch`, its errors,
and a folder of Parquet files that appears whole or not at all.

These tests run with the `spark` group installed (`uv sync --group spark`) and Java 17 or 21.
"""

import itertools
import os
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from {{ cookiecutter.package_name }}.__main__ import main
from {{ cookiecutter.package_name }}.core.prediction_ids import PREDICTION_ID
from {{ cookiecutter.package_name }}.core.schema import Schema
from {{ cookiecutter.package_name }}.core.scoring import PREDICTION, PROBABILITY
from {{ cookiecutter.package_name }}.offline.spark_batch import SparkError, java_version
from {{ cookiecutter.package_name }}.release.registry import RegisteredModel

from .conftest import PREDICTION_ID_PATTERN, ROOT, write_table
from .test_batch import champion, project  # noqa: F401  (the scratch project with a champion)

pytest.importorskip("pyspark", reason="pyspark comes with the spark group: uv sync --group spark")
try:
    java_version()
except SparkError as error:
    pytest.skip(str(error), allow_module_level=True)


def spark(source: Path | str, output: Path | str, *options: str) -> int:
    return main(["batch-spark", str(source), str(output), *options])


def local(source: Path, output: Path) -> pd.DataFrame:
    assert main(["batch", str(source), str(output)]) == 0
    return pd.read_parquet(output)


def read(folder: Path) -> pd.DataFrame:
    """The folder's Parquet files as one table, in input order."""
    assert (folder / "_SUCCESS").is_file()
    return pd.read_parquet(folder).sort_values("row", ignore_index=True)


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_scores_every_row_as_batch_does(
    tmp_path: Path,
    raw_data: pd.DataFrame,
    champion: RegisteredModel,  # noqa: F811
    capsys: pytest.CaptureFixture[str],
    suffix: str,
) -> None:
    source = write_table(raw_data, tmp_path / f"rows{suffix}")
    expected = local(source, tmp_path / "local.parquet")
    capsys.readouterr()
    assert spark(source, tmp_path / "spark.parquet") == 0
    result = read(tmp_path / "spark.parquet")
    assert list(result.columns) == list(expected.columns)
    assert dict(result.dtypes) == dict(expected.dtypes)
    assert list(result["row"]) == list(range(len(raw_data)))
    assert result[PREDICTION_ID].str.fullmatch(PREDICTION_ID_PATTERN).all()
    assert result[PREDICTION_ID].is_unique
    assert not set(result[PREDICTION_ID]) & set(expected[PREDICTION_ID])
    assert (result[PREDICTION] == expected[PREDICTION]).all()
    if PROBABILITY in expected:
        np.testing.assert_allclose(result[PROBABILITY], expected[PROBABILITY], rtol=1e-12)
    model = ["model_name", "model_version"]
    assert result[model].equals(expected[model])
    (summary,) = capsys.readouterr().out.splitlines()
    assert summary.startswith(
        f"batch-spark: scored {len(raw_data)} rows with {champion.name} version "
        f"{champion.version} ('champion') -> {tmp_path / 'spark.parquet'} ("
    )


def test_a_folder_of_files_is_numbered_in_the_order_spark_reads_it(
    tmp_path: Path,
    raw_data: pd.DataFrame,
    champion: RegisteredModel,  # noqa: F811
) -> None:
    """Each file's rows get consecutive numbers, files in the order Spark reads them."""
    folder = tmp_path / "rows.parquet"
    folder.mkdir()
    bounds = [0, 100, 250, 420, len(raw_data)]
    parts = [raw_data.iloc[start:end] for start, end in itertools.pairwise(bounds)]
    for index, part in enumerate(parts):
        write_table(part, folder / f"part-{index}.parquet")
    assert spark(folder, tmp_path / "spark.parquet") == 0
    result = read(tmp_path / "spark.parquet")
    assert list(result["row"]) == list(range(len(raw_data)))
    names = list(champion.estimator.feature_names_in_)
    orders = [
        np.concatenate([champion.estimator.predict(part[names]) for part in order])
        for order in itertools.permutations(parts)
    ]
    assert any((result[PREDICTION].to_numpy() == order).all() for order in orders)


def refused_as_batch_refuses_it(
    source: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> str:
    """`batch` and `batch-spark` both refuse `source`; Spark's error, which ends with batch's."""
    assert main(["batch", str(source), str(tmp_path / "local.parquet")]) == 1
    expected = capsys.readouterr().err
    assert spark(source, tmp_path / "out" / "spark.parquet") == 1
    error = capsys.readouterr().err
    assert error.endswith(expected)
    return error


def test_a_file_that_breaks_the_schema_gets_the_errors_of_batch_and_writes_nothing(
    tmp_path: Path,
    raw_data: pd.DataFrame,
    schema: Schema,
    champion: RegisteredModel,  # noqa: F811
    capsys: pytest.CaptureFixture[str],
) -> None:
    first, second = schema.feature_names[:2]
    bad = raw_data.astype({second: object})
    bad.loc[3, first] = -1.0
    bad.loc[40, first] = -2.0
    bad.loc[7, second] = "twelve"
    bad.loc[9, second] = None
    error = refused_as_batch_refuses_it(write_table(bad, tmp_path / "rows.csv"), tmp_path, capsys)
    assert f"column '{first}': 2 values not" in error
    assert "at lines 5, 42" in error
    assert f"column '{second}': 1 values that are not numbers at line 9" in error
    assert f"column '{second}': 1 missing values at line 11" in error
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_a_parquet_file_is_checked_by_its_types_as_batch_checks_it(
    tmp_path: Path,
    raw_data: pd.DataFrame,
    schema: Schema,
    champion: RegisteredModel,  # noqa: F811
    capsys: pytest.CaptureFixture[str],
) -> None:
    first, second, third = schema.feature_names[:3]
    bad = raw_data.astype({third: str})
    bad.loc[3, first] = float("nan")
    bad.loc[5, second] = 1e9
    bad.loc[8, third] = "twelve"
    source = write_table(bad, tmp_path / "rows.parquet")
    error = refused_as_batch_refuses_it(source, tmp_path, capsys)
    assert f"column '{first}': 1 missing values at row 3" in error
    assert f"column '{second}': 1 values not" in error
    assert f"column '{third}': 1 values that are not numbers at row 8" in error
    assert not (tmp_path / "out").exists()


def test_an_existing_output_stays_unless_overwritten(
    tmp_path: Path,
    raw_data: pd.DataFrame,
    champion: RegisteredModel,  # noqa: F811
) -> None:
    source = write_table(raw_data, tmp_path / "rows.parquet")
    output = tmp_path / "spark.parquet"
    output.mkdir()
    (output / "kept").write_text("earlier predictions")
    assert spark(source, output) == 1
    assert (output / "kept").read_text() == "earlier predictions"
    assert spark(source, output, "--overwrite") == 0
    assert not (output / "kept").exists()
    assert len(read(output)) == len(raw_data)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["rows.parquet", "spark.parquet"]


@pytest.mark.parametrize(
    ("output", "message"),
    [
        ("predictions.csv", "the Spark engine writes a folder of Parquet files"),
        ("data/predictions.parquet", "the data DVC tracks"),
        ("rows.parquet", "is the input too"),
        ("predictions", "cannot tell the output format"),
    ],
)
def test_outputs_it_cannot_write_are_refused_before_spark_starts(
    tmp_path: Path,
    raw_data: pd.DataFrame,
    champion: RegisteredModel,  # noqa: F811
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    output: str,
    message: str,
) -> None:
    write_table(raw_data, tmp_path / "rows.parquet")
    monkeypatch.chdir(tmp_path)
    assert spark("rows.parquet", output) == 1
    assert message in capsys.readouterr().err


def test_spark_submit_runs_the_same_command_on_its_master(
    tmp_path: Path,
    raw_data: pd.DataFrame,
    project: tuple[Path, RegisteredModel],  # noqa: F811
    champion: RegisteredModel,  # noqa: F811
) -> None:
    """scripts/batch_spark.py under `spark-submit`, which names the master: `batch`'s rows."""
    root, _ = project
    source = write_table(raw_data, tmp_path / "rows.parquet")
    submit = Path(sys.executable).with_name("spark-submit")
    script = ROOT / "scripts" / "batch_spark.py"
    env = {**os.environ, "PYSPARK_PYTHON": sys.executable}
    env.pop("SPARK_MASTER", None)
    output = tmp_path / "spark.parquet"
    command = [str(submit), "--master", "local[1]", str(script), str(source), str(output)]
    done = subprocess.run(command, cwd=root, env=env, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert f"-> {output} (" in done.stdout
    assert "on local[1])" in done.stdout
    expected = local(source, tmp_path / "local.parquet")
    assert (read(output)[PREDICTION] == expected[PREDICTION]).all()


def fake_java(folder: Path, says: str) -> Path:
    """A JAVA_HOME whose `java -version` says `says`, as a JDK does, on stderr."""
    java = folder / "bin" / "java"
    java.parent.mkdir(parents=True)
    java.write_text(f"#!/bin/sh\necho '{says}' >&2\n")
    java.chmod(java.stat().st_mode | stat.S_IXUSR)
    return folder


@pytest.mark.parametrize(
    ("says", "major"),
    [('openjdk version "17.0.15" 2025-04-15', 17), ('openjdk version "21" 2023-09-19', 21)],
)
def test_java_17_and_21_are_taken(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, says: str, major: int
) -> None:
    monkeypatch.setenv("JAVA_HOME", str(fake_java(tmp_path, says)))
    assert java_version() == major


@pytest.mark.parametrize(
    ("says", "message"),
    [
        ('java version "1.8.0_392"', "is Java 8; install OpenJDK 17"),
        ('openjdk version "11.0.21" 2023-10-17', "is Java 11; install OpenJDK 17"),
        ("Error: could not open jvm.cfg", "did not say its version"),
    ],
)
def test_a_java_spark_cannot_run_on_is_one_clear_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, says: str, message: str
) -> None:
    monkeypatch.setenv("JAVA_HOME", str(fake_java(tmp_path, says)))
    with pytest.raises(SparkError, match=r"^Spark needs Java 17 or 21: ") as error:
        java_version()
    assert message in str(error.value)
    assert "\n" not in str(error.value)


def test_no_java_at_all_says_where_it_looked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JAVA_HOME", str(tmp_path))
    with pytest.raises(SparkError, match=f"no `java` in JAVA_HOME \\({tmp_path}\\)"):
        java_version()


@pytest.fixture
def s3_bucket(s3_server: None) -> None:
    """A bucket, `rows`, on moto's S3 server."""
    import boto3

    boto3.client("s3").create_bucket(Bucket="rows")


def batch_spark(root: Path, *arguments: str) -> subprocess.CompletedProcess[str]:
    """`batch-spark` as a user runs it, in its own process: Spark's workers get the store's
    settings from the environment the command starts with."""
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{root / 'mlflow.db'}"}
    command = [sys.executable, "-m", "{{ cookiecutter.package_name }}", "batch-spark", *arguments]
    return subprocess.run(command, cwd=root, env=env, capture_output=True, text=True, check=False)


@pytest.mark.usefixtures("s3_bucket")
def test_reads_from_and_writes_to_an_object_store(
    tmp_path: Path,
    raw_data: pd.DataFrame,
    schema: Schema,
    project: tuple[Path, RegisteredModel],  # noqa: F811
    champion: RegisteredModel,  # noqa: F811
) -> None:
    """s3:// in and out, read and written by Spark's workers: a folder of Parquet files gets
    `batch`'s predictions, its files in name order; a bad CSV file leaves nothing in the store."""
    import fsspec

    root, _ = project
    fs = fsspec.filesystem("s3", skip_instance_cache=True)
    source = write_table(raw_data, tmp_path / "rows.parquet")
    for name, part in (("part-0", raw_data.iloc[:300]), ("part-1", raw_data.iloc[300:])):
        file = write_table(part, tmp_path / f"{name}.parquet")
        fs.put_file(str(file), f"rows/in/rows.parquet/{name}.parquet")
    output = "s3://rows/out/predictions.parquet"
    done = batch_spark(root, "s3://rows/in/rows.parquet", output)
    assert done.returncode == 0, done.stderr
    assert f"-> {output} (" in done.stdout
    files = sorted(fs.ls("rows/out/predictions.parquet"))
    assert "rows/out/predictions.parquet/_SUCCESS" in files
    parts = [pd.read_parquet(fs.open(name, "rb")) for name in files if name.endswith(".parquet")]
    result = pd.concat(parts).sort_values("row", ignore_index=True)
    expected = local(source, tmp_path / "local.parquet")
    assert list(result.columns) == list(expected.columns)
    assert list(result["row"]) == list(range(len(raw_data)))
    assert (result[PREDICTION] == expected[PREDICTION]).all()
    if PROBABILITY in expected:
        np.testing.assert_allclose(result[PROBABILITY], expected[PROBABILITY], rtol=1e-12)

    first = schema.feature_names[0]
    bad = raw_data.copy()
    bad.loc[5, first] = -1.0
    fs.pipe("rows/in/bad.csv", bad.to_csv(index=False).encode())
    refused = batch_spark(root, "s3://rows/in/bad.csv", "s3://rows/out/bad.parquet")
    assert refused.returncode == 1
    assert f"column '{first}': 1 values not" in refused.stderr
    assert "at line 7" in refused.stderr
    assert sorted(fs.ls("rows/out")) == ["rows/out/predictions.parquet"]
