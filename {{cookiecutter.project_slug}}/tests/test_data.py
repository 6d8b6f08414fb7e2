"""The data: the tracked raw file meets the schema; bad files are refused with line numbers."""

import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from {{ cookiecutter.package_name }}.__main__ import main
from {{ cookiecutter.package_name }}.core.checks import find_problems, read_table
from {{ cookiecutter.package_name }}.core.config import RAW_DATA, TEST_DATA, TRAIN_DATA, load_params
from {{ cookiecutter.package_name }}.core.errors import DataError
from {{ cookiecutter.package_name }}.core.prediction_ids import PREDICTION_ID
from {{ cookiecutter.package_name }}.core.schema import (
    OUTPUT_NAMES,
    SCHEMA_FILE,
    Schema,
    SchemaError,
    load_schema,
)
from {{ cookiecutter.package_name }}.core.scoring import PREDICTION, PROBABILITY
from {{ cookiecutter.package_name }}.offline.batch import MODEL_VERSION
from {{ cookiecutter.package_name }}.pipeline.data import CURRENT_ROWS, current_sample, sample_frame
from {{ cookiecutter.package_name }}.pipeline.prepare import split
from {{ cookiecutter.package_name }}.release.lineage import pointer

from .conftest import ROOT


def test_raw_data_is_tracked_by_dvc() -> None:
    assert (ROOT / RAW_DATA).with_name(RAW_DATA.name + ".dvc").exists()


def test_raw_data_meets_the_schema(raw_data: pd.DataFrame, schema: Schema) -> None:
    assert list(raw_data.columns) == [column.name for column in schema.columns]
    assert len(raw_data) > 100
    assert not raw_data.isna().any().any()


def test_split_is_reproducible_and_disjoint(raw_data: pd.DataFrame, schema: Schema) -> None:
    params = load_params(ROOT / "params.yaml").prepare
    train, test = split(raw_data, params, schema)
    again, _ = split(raw_data, params, schema)
    assert train.equals(again)
    assert set(train.index).isdisjoint(test.index)
    assert len(train) + len(test) == len(raw_data)
    assert len(test) == pytest.approx(params.test_size * len(raw_data), abs=2)


def first_feature(schema: Schema) -> str:
    return schema.features[0].name


Corruption = Callable[[pd.DataFrame, Schema], pd.DataFrame]


def set_cell(row: int, value: float | str) -> Corruption:
    def corrupt(frame: pd.DataFrame, schema: Schema) -> pd.DataFrame:
        frame = frame.astype({first_feature(schema): object})
        frame.loc[row, first_feature(schema)] = value
        return frame

    return corrupt


CORRUPTIONS: dict[str, tuple[Corruption, str]] = {
    "missing-column": (
        lambda frame, schema: frame.drop(columns=first_feature(schema)),
        "missing columns: ",
    ),
    "unexpected-column": (
        lambda frame, schema: frame.assign(surprise=1.0),
        "unexpected columns: surprise",
    ),
    "missing-value": (set_cell(3, np.nan), "1 missing values at line 5"),
    "not-a-number": (set_cell(0, "twelve"), "1 values that are not numbers at line 2"),
    "out-of-range": (set_cell(9, -1e6), "1 values not between"),
    "infinity": (set_cell(2, np.inf), "1 values not between"),
    "not-whole": (
        lambda frame, schema: frame.assign(
            **{
                next(column.name for column in schema.columns if column.dtype == "int"): 1.5,
            }
        ),
        "values that are not whole numbers",
    ),
    "no-rows": (lambda frame, schema: frame.iloc[0:0], "no rows"),
}


@pytest.mark.parametrize("case", CORRUPTIONS, ids=str)
def test_bad_data_is_refused(
    tmp_path: Path, raw_data: pd.DataFrame, schema: Schema, case: str
) -> None:
    corrupt, expected = CORRUPTIONS[case]
    path = tmp_path / "bad.csv"
    corrupt(raw_data.copy(), schema).to_csv(path, index=False)
    with pytest.raises(DataError, match=expected.replace("(", r"\(")):
        read_table(path, schema)


def test_the_outputs_names_are_reserved() -> None:
    assert {PREDICTION, PROBABILITY, PREDICTION_ID, MODEL_VERSION, "time"} == set(OUTPUT_NAMES)


@pytest.mark.parametrize("role", ["feature", "target"])
def test_a_column_named_like_an_output_is_refused(tmp_path: Path, role: str) -> None:
    """A feature called `prediction_id` would be overwritten in the inference log's lines."""
    spec = yaml.safe_load(SCHEMA_FILE.read_text(encoding="utf-8"))
    if role == "feature":
        spec["features"][PREDICTION_ID] = {"dtype": "float", "min": 0, "max": 1}
    else:
        spec["target"]["name"] = "time"
    path = tmp_path / "schema.yaml"
    path.write_text(yaml.safe_dump(spec), encoding="utf-8")
    taken = PREDICTION_ID if role == "feature" else "time"
    with pytest.raises(SchemaError) as refused:
        load_schema(path)
    assert str(refused.value) == (
        f"{path}: {taken}: a column may not take an output's name "
        f"({', '.join(OUTPUT_NAMES)}); rename it"
    )


@pytest.mark.parametrize(
    ("content", "expected"), [(b"", "not a readable CSV"), (b"\xff\xfe\x00bad", "not a readable")]
)
def test_unreadable_file_is_refused(
    tmp_path: Path, schema: Schema, content: bytes, expected: str
) -> None:
    path = tmp_path / "bad.csv"
    path.write_bytes(content)
    with pytest.raises(DataError, match=expected):
        read_table(path, schema)


def test_prepare_stops_on_bad_data_and_writes_nothing(
    workdir: Path, raw_data: pd.DataFrame, schema: Schema, capsys: pytest.CaptureFixture[str]
) -> None:
    set_cell(4, "n/a")(raw_data.copy(), schema).to_csv(workdir / RAW_DATA, index=False)
    assert main(["prepare"]) == 1
    error = capsys.readouterr().err
    assert error.startswith(f"ERROR: {RAW_DATA}: does not match the schema")
    assert "line 6" in error
    assert not (workdir / TRAIN_DATA).exists()
    assert not (workdir / TEST_DATA).exists()


def test_prepare_writes_both_splits(workdir: Path, schema: Schema) -> None:
    assert main(["prepare"]) == 0
    train = read_table(workdir / TRAIN_DATA, schema)
    test = read_table(workdir / TEST_DATA, schema)
    assert len(train) > len(test) > 0


def test_data_on_a_new_project_writes_tracks_and_pushes_the_sample(
    workdir: Path, dvc_repo: Path, schema: Schema
) -> None:
    current = workdir / load_params().drift.current
    (workdir / RAW_DATA).unlink()
    current.unlink()
    assert main(["data"]) == 0
    pd.testing.assert_frame_equal(read_table(workdir / RAW_DATA, schema), sample_frame(schema))
    assert (workdir / pointer(RAW_DATA)).exists()
    assert (workdir / pointer(current)).exists()
    assert len(pd.read_csv(current)) == CURRENT_ROWS
    assert any(path.is_file() for path in dvc_repo.rglob("*"))


def test_the_sample_current_data_is_raw_rows_with_noise_within_the_schema(
    raw_data: pd.DataFrame, schema: Schema
) -> None:
    current = current_sample(raw_data, schema)
    assert list(current.columns) == schema.feature_names
    assert not find_problems(current, schema, target=False)
    pd.testing.assert_frame_equal(current, current_sample(raw_data, schema))
    assert not current.isin(raw_data[schema.feature_names]).all().all()


def test_data_tracks_an_existing_file_instead_of_replacing_it(
    workdir: Path, dvc_repo: Path, raw_data: pd.DataFrame
) -> None:
    raw_data.head(50).to_csv(workdir / RAW_DATA, index=False)
    own = (workdir / RAW_DATA).read_bytes()
    current = workdir / load_params().drift.current
    raw_data.tail(20).to_csv(current, index=False)
    own_current = current.read_bytes()
    assert main(["data"]) == 0
    assert (workdir / RAW_DATA).read_bytes() == own
    assert (workdir / pointer(RAW_DATA)).exists()
    assert current.read_bytes() == own_current
    assert (workdir / pointer(current)).exists()


def test_data_pulls_the_tracked_file_back(workdir: Path, dvc_repo: Path) -> None:
    assert main(["data"]) == 0
    tracked = (workdir / RAW_DATA).read_bytes()
    (workdir / RAW_DATA).unlink()
    shutil.rmtree(workdir / ".dvc" / "cache")  # only the remote has it now
    assert main(["data"]) == 0
    assert (workdir / RAW_DATA).read_bytes() == tracked


def test_data_reports_an_unreachable_remote(
    workdir: Path, dvc_repo: Path, raw_data: pd.DataFrame, capsys: pytest.CaptureFixture[str]
) -> None:
    raw_data.head(50).to_csv(workdir / RAW_DATA, index=False)  # not the sample: cannot rebuild
    assert main(["data"]) == 0
    (workdir / RAW_DATA).unlink()
    shutil.rmtree(workdir / ".dvc" / "cache")
    shutil.rmtree(dvc_repo)
    assert main(["data"]) == 1
    error = capsys.readouterr().err
    assert error.startswith(f"ERROR: {RAW_DATA}: could not pull it from the DVC remote: ")
    # DVC's reason, not the line asking to contact its support that ends its output.
    assert "support" not in error, error
    assert error.count("\n") == 1


def test_data_warns_with_dvc_s_reason_when_the_push_fails(
    workdir: Path, dvc_repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (workdir / RAW_DATA).unlink()
    dvc_repo.write_text("a file where the remote's folder should be\n", encoding="utf-8")
    assert main(["data"]) == 0  # the data is tracked; only sharing it waits
    warnings = [line for line in capsys.readouterr().err.splitlines() if "could not push" in line]
    assert warnings
    assert all("Having any troubles" not in line for line in warnings), warnings


def test_without_the_remote_the_tracked_sample_is_rebuilt(
    workdir: Path, dvc_repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A CI runner cannot reach a remote on your laptop; the bundled sample needs none."""
    current = workdir / load_params().drift.current
    for path in (workdir / RAW_DATA, current):
        path.unlink()
    assert main(["data"]) == 0
    tracked = {path: path.read_bytes() for path in (workdir / RAW_DATA, current)}
    for path in tracked:
        path.unlink()
    shutil.rmtree(workdir / ".dvc" / "cache")
    shutil.rmtree(dvc_repo)
    capsys.readouterr()
    assert main(["data"]) == 0
    assert "rebuilt the bundled sample" in capsys.readouterr().out
    assert {path: path.read_bytes() for path in tracked} == tracked
    status = subprocess.run(
        ["dvc", "status", str(pointer(RAW_DATA)), str(pointer(current))],
        cwd=workdir,
        capture_output=True,
        text=True,
        check=True,
    )
    assert "changed" not in status.stdout
