"""Batch scoring: a file in, the champion's predictions out; a bad file leaves nothing behind."""

import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from {{ cookiecutter.package_name }}.__main__ import main
from {{ cookiecutter.package_name }}.core.config import RAW_DATA, load_params
from {{ cookiecutter.package_name }}.core.prediction_ids import PREDICTION_ID
from {{ cookiecutter.package_name }}.core.schema import Schema
from {{ cookiecutter.package_name }}.core.scoring import PREDICTION, PROBABILITY
from {{ cookiecutter.package_name }}.offline.batch import MODEL_NAME, MODEL_VERSION, ROW
from {{ cookiecutter.package_name }}.release.registry import RegisteredModel, load_registered

from .conftest import PREDICTION_ID_PATTERN, copy_inputs, write_table

SUFFIXES = [".csv", ".parquet"]
# Small chunks, so that the bad rows below sit in a later chunk than the first.
CHUNK = "100"


def use_project(patch: pytest.MonkeyPatch, root: Path) -> None:
    patch.chdir(root)
    patch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{root / 'mlflow.db'}")


@pytest.fixture(scope="module")
def project(
    tmp_path_factory: pytest.TempPathFactory, raw_data: pd.DataFrame, empty_store: Path
) -> tuple[Path, RegisteredModel]:
    """A scratch project whose registry has a champion: the pipeline runs once for the module."""
    root = tmp_path_factory.mktemp("project")
    copy_inputs(root)
    shutil.copy(empty_store, root / "mlflow.db")
    with pytest.MonkeyPatch.context() as patch:
        use_project(patch, root)
        for command in ("prepare", "train", "evaluate", "register", "drift", "promote"):
            assert main([command]) == 0, command
        champion = load_registered(load_params().mlflow)
    return root, champion


@pytest.fixture
def champion(
    project: tuple[Path, RegisteredModel], monkeypatch: pytest.MonkeyPatch
) -> RegisteredModel:
    """The champion, with the scratch project as the working directory."""
    root, model = project
    use_project(monkeypatch, root)
    return model


def read(path: Path) -> pd.DataFrame:
    if path.suffix == ".csv":
        # pandas' default parser drops the last digits of some numbers; the file has them all.
        # An id of digits only would read as a number.
        return pd.read_csv(path, float_precision="round_trip", dtype={PREDICTION_ID: str})
    return pd.read_parquet(path)


def batch(source: Path, output: Path, *options: str) -> int:
    return main(["batch", str(source), str(output), *options])


@pytest.mark.parametrize("output_suffix", SUFFIXES)
@pytest.mark.parametrize("input_suffix", SUFFIXES)
def test_scores_every_row_like_the_estimator(
    tmp_path: Path,
    raw_data: pd.DataFrame,
    schema: Schema,
    champion: RegisteredModel,
    capsys: pytest.CaptureFixture[str],
    input_suffix: str,
    output_suffix: str,
) -> None:
    source = write_table(raw_data, tmp_path / f"rows{input_suffix}")
    output = tmp_path / f"predictions{output_suffix}"
    assert batch(source, output) == 0
    result = read(output)
    features = raw_data[schema.feature_names]
    assert list(result[ROW]) == list(range(len(raw_data)))
    assert list(result.columns[:2]) == [ROW, PREDICTION_ID]
    assert result[PREDICTION_ID].str.fullmatch(PREDICTION_ID_PATTERN).all()
    assert result[PREDICTION_ID].is_unique
    np.testing.assert_allclose(result[PREDICTION], champion.estimator.predict(features), rtol=1e-12)
    if schema.target_is_categorical:
        positive = champion.estimator.predict_proba(features)[:, 1]
        np.testing.assert_allclose(result[PROBABILITY], positive, rtol=1e-12)
    else:
        assert PROBABILITY not in result
    assert set(result[MODEL_NAME]) == {champion.name}
    assert set(result[MODEL_VERSION]) == {int(champion.version)}
    summary = capsys.readouterr().out.splitlines()
    assert len(summary) == 1
    assert summary[0].startswith(
        f"batch: scored {len(raw_data)} rows with {champion.name} version {champion.version} "
        f"('champion') -> {output} ("
    )
    assert summary[0].endswith(" rows/s)")


def test_parquet_output_names_the_model_in_its_metadata(
    tmp_path: Path, raw_data: pd.DataFrame, champion: RegisteredModel
) -> None:
    import pyarrow.parquet as pq

    output = tmp_path / "predictions.parquet"
    assert batch(write_table(raw_data, tmp_path / "rows.csv"), output) == 0
    metadata = pq.read_schema(output).metadata
    assert metadata[b"model_name"] == champion.name.encode()
    assert metadata[b"model_version"] == champion.version.encode()
    assert metadata[b"model_alias"] == b"champion"


def test_parquet_output_keeps_dictionaries_for_the_repeating_columns(
    tmp_path: Path, raw_data: pd.DataFrame, champion: RegisteredModel
) -> None:
    import pyarrow.parquet as pq

    output = tmp_path / "predictions.parquet"
    assert batch(write_table(raw_data, tmp_path / "rows.csv"), output) == 0
    row_group = pq.ParquetFile(output).metadata.row_group(0)
    columns = (row_group.column(i) for i in range(row_group.num_columns))
    dictionary = {c.path_in_schema: "RLE_DICTIONARY" in c.encodings for c in columns}
    assert dictionary.pop(MODEL_NAME)
    assert dictionary.pop(MODEL_VERSION)
    assert not dictionary.pop(ROW)
    assert not dictionary.pop(PREDICTION_ID)
    floats = [name for name, kind in read(output).dtypes.items() if kind.kind == "f"]
    assert floats
    assert not any(dictionary[name] for name in floats)


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_small_chunks_give_the_same_predictions_and_new_ids(
    tmp_path: Path, raw_data: pd.DataFrame, champion: RegisteredModel, suffix: str
) -> None:
    """The same rows scored twice, whole and in chunks of 7: the same predictions, and ids
    unique across the chunks and the runs."""
    source = write_table(raw_data, tmp_path / f"rows{suffix}")
    whole, chunked = tmp_path / f"whole{suffix}", tmp_path / f"chunked{suffix}"
    assert batch(source, whole) == 0
    assert batch(source, chunked, "--chunk-size", "7") == 0
    first, second = read(whole), read(chunked)
    pd.testing.assert_frame_equal(
        second.drop(columns=PREDICTION_ID), first.drop(columns=PREDICTION_ID)
    )
    ids = pd.concat([first[PREDICTION_ID], second[PREDICTION_ID]])
    assert ids.str.fullmatch(PREDICTION_ID_PATTERN).all()
    assert ids.is_unique


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_the_target_column_is_optional_and_ignored(
    tmp_path: Path, raw_data: pd.DataFrame, schema: Schema, champion: RegisteredModel, suffix: str
) -> None:
    unlabelled = raw_data.assign(**{schema.target.name: np.nan})
    features_only = raw_data[schema.feature_names]
    inputs = {"labelled": raw_data, "unlabelled": unlabelled, "features": features_only}
    for name, frame in inputs.items():
        source = write_table(frame, tmp_path / f"{name}{suffix}")
        assert batch(source, tmp_path / f"{name}-scored.csv") == 0
    expected = read(tmp_path / "labelled-scored.csv").drop(columns=PREDICTION_ID)
    for name in ("unlabelled", "features"):
        scored = read(tmp_path / f"{name}-scored.csv").drop(columns=PREDICTION_ID)
        pd.testing.assert_frame_equal(scored, expected)


Corruption = Callable[[pd.DataFrame, Schema], pd.DataFrame]


def set_cells(*cells: tuple[int, int, float | str]) -> Corruption:
    """Put `value` in row `row` of feature number `feature`, for each (row, feature, value)."""

    def corrupt(frame: pd.DataFrame, schema: Schema) -> pd.DataFrame:
        for row, feature, value in cells:
            name = schema.features[feature].name
            # A text column, in CSV and in Parquet alike; or a float one that can hold NaN.
            frame[name] = frame[name].astype(str if isinstance(value, str) else float)
            frame.loc[row, name] = value
        return frame

    return corrupt


def where(suffix: str, row: int) -> str:
    """How an error names a row: its line in a CSV file (the header is line 1), else its row."""
    return f"line {row + 2}" if suffix == ".csv" else f"row {row}"


# case -> (corruption, what the error says, with the bad row, if any, to name after each part)
BAD_FILES: dict[str, tuple[Corruption, list[tuple[str, int | None]]]] = {
    "missing-column": (
        lambda frame, schema: frame.drop(columns=schema.features[0].name),
        [("missing columns: ", None)],
    ),
    "unexpected-column": (
        lambda frame, schema: frame.assign(surprise=1.0),
        [("unexpected columns: surprise", None)],
    ),
    "not-a-number-in-a-later-chunk": (
        set_cells((250, 0, "twelve")),
        [("1 values that are not numbers at ", 250)],
    ),
    "out-of-range-in-a-later-chunk": (
        set_cells((260, 0, -1e6)),
        [("1 values not between ", None), (" at ", 260)],
    ),
    "every-problem-of-the-bad-chunk": (
        set_cells((250, 0, "twelve"), (255, 1, np.nan), (260, 2, -1e6)),
        [
            ("1 values that are not numbers at ", 250),
            ("1 missing values at ", 255),
            (" at ", 260),
        ],
    ),
}


@pytest.mark.parametrize("suffix", SUFFIXES)
@pytest.mark.parametrize("case", BAD_FILES)
def test_bad_file_stops_with_the_rows_and_writes_nothing(
    tmp_path: Path,
    raw_data: pd.DataFrame,
    schema: Schema,
    champion: RegisteredModel,
    capsys: pytest.CaptureFixture[str],
    case: str,
    suffix: str,
) -> None:
    corrupt, expected = BAD_FILES[case]
    source = write_table(corrupt(raw_data.copy(), schema), tmp_path / f"rows{suffix}")
    output = tmp_path / "predictions.csv"
    assert batch(source, output, "--chunk-size", CHUNK) == 1
    error = capsys.readouterr().err
    assert error.startswith(f"ERROR: {source}: does not match the schema:\n")
    for text, row in expected:
        assert text + (where(suffix, row) if row is not None else "") in error
    assert [path.name for path in tmp_path.iterdir()] == [source.name]


@pytest.mark.parametrize("output_suffix", SUFFIXES)
def test_bad_file_leaves_an_existing_output_as_it_was(
    tmp_path: Path,
    raw_data: pd.DataFrame,
    schema: Schema,
    champion: RegisteredModel,
    output_suffix: str,
) -> None:
    source = write_table(set_cells((260, 0, -1e6))(raw_data.copy(), schema), tmp_path / "rows.csv")
    output = tmp_path / f"predictions{output_suffix}"
    output.write_bytes(b"yesterday's predictions")
    assert batch(source, output, "--chunk-size", CHUNK, "--overwrite") == 1
    assert output.read_bytes() == b"yesterday's predictions"
    assert sorted(path.name for path in tmp_path.iterdir()) == sorted([source.name, output.name])


def test_an_existing_output_is_replaced_only_when_asked(
    tmp_path: Path,
    raw_data: pd.DataFrame,
    champion: RegisteredModel,
    capsys: pytest.CaptureFixture[str],
) -> None:
    source = write_table(raw_data.head(50), tmp_path / "rows.csv")
    output = tmp_path / "predictions.csv"
    output.write_bytes(b"yesterday's predictions")
    assert batch(source, output) == 1
    assert capsys.readouterr().err == (
        f"ERROR: {output}: exists; pass --overwrite (make batch ... OVERWRITE=1) to replace it\n"
    )
    assert output.read_bytes() == b"yesterday's predictions"
    assert batch(source, output, "--overwrite") == 0
    assert len(read(output)) == 50


def test_predictions_never_land_in_the_tracked_data(
    tmp_path: Path,
    raw_data: pd.DataFrame,
    champion: RegisteredModel,
    capsys: pytest.CaptureFixture[str],
) -> None:
    source = write_table(raw_data.head(50), tmp_path / "rows.csv")
    tracked = Path.cwd() / RAW_DATA
    before = tracked.read_bytes()
    for output in (RAW_DATA, Path("data/predictions.parquet"), tracked.parent / "p.csv"):
        assert batch(source, output, "--overwrite") == 1
        assert "is inside data/, the data DVC tracks" in capsys.readouterr().err
        assert output == RAW_DATA or not output.exists()
    assert tracked.read_bytes() == before


def header_only(path: Path, raw_data: pd.DataFrame) -> None:
    write_table(raw_data.iloc[0:0], path)


def row_too_long(path: Path, raw_data: pd.DataFrame) -> None:
    write_table(raw_data.head(20), path)
    with path.open("a", encoding="utf-8") as file:
        file.write(",".join(["1"] * (len(raw_data.columns) + 1)) + "\n")


UNREADABLE: dict[str, tuple[str, Callable[[Path, pd.DataFrame], object], str]] = {
    "empty-csv": (".csv", lambda path, _: path.write_bytes(b""), "not a readable CSV file"),
    "not-utf8-csv": (
        ".csv",
        lambda path, _: path.write_bytes(b"\xff\xfe\x00bad"),
        "not a readable CSV file",
    ),
    "row-too-long-csv": (".csv", row_too_long, "not a readable CSV file"),
    "header-only-csv": (".csv", header_only, "does not match the schema:\n  no rows"),
    "empty-parquet": (".parquet", lambda path, _: path.write_bytes(b""), "not a readable Parquet"),
    "not-parquet": (
        ".parquet",
        lambda path, _: path.write_bytes(b"PAR1 is not enough"),
        "not a readable Parquet file",
    ),
    "no-rows-parquet": (".parquet", header_only, "does not match the schema:\n  no rows"),
}


@pytest.mark.parametrize("case", UNREADABLE)
def test_unreadable_file_is_refused(
    tmp_path: Path,
    raw_data: pd.DataFrame,
    champion: RegisteredModel,
    capsys: pytest.CaptureFixture[str],
    case: str,
) -> None:
    suffix, make, expected = UNREADABLE[case]
    source = tmp_path / f"rows{suffix}"
    make(source, raw_data)
    assert batch(source, tmp_path / "predictions.csv") == 1
    error = capsys.readouterr().err
    assert error.startswith(f"ERROR: {source}: ")
    assert expected in error
    assert [path.name for path in tmp_path.iterdir()] == [source.name]


@pytest.mark.parametrize(
    ("source", "output", "expected"),
    [
        ("rows.json", "predictions.csv", "rows.json: cannot tell the input format"),
        ("rows", "predictions.csv", "rows: cannot tell the input format"),
        ("rows.csv", "predictions.xlsx", "predictions.xlsx: cannot tell the output format"),
        ("missing.csv", "predictions.csv", "missing.csv: not found"),
        ("rows.csv", "rows.csv", "rows.csv: is the input too"),
    ],
)
def test_unusable_file_names_are_refused(
    tmp_path: Path,
    raw_data: pd.DataFrame,
    champion: RegisteredModel,
    capsys: pytest.CaptureFixture[str],
    source: str,
    output: str,
    expected: str,
) -> None:
    for name in ("rows.json", "rows", "rows.csv"):
        raw_data.to_csv(tmp_path / name, index=False)
    before = {path: path.read_bytes() for path in tmp_path.iterdir()}
    assert batch(tmp_path / source, tmp_path / output) == 1
    assert f"{tmp_path / expected}" in capsys.readouterr().err
    assert {path: path.read_bytes() for path in tmp_path.iterdir()} == before


def test_a_missing_alias_is_refused(
    tmp_path: Path,
    raw_data: pd.DataFrame,
    champion: RegisteredModel,
    capsys: pytest.CaptureFixture[str],
) -> None:
    source = write_table(raw_data, tmp_path / "rows.csv")
    assert batch(source, tmp_path / "predictions.csv", "--alias", "nobody") == 1
    assert "no version is 'nobody' yet" in capsys.readouterr().err
    assert [path.name for path in tmp_path.iterdir()] == [source.name]


def test_no_champion_yet(
    workdir: Path, raw_data: pd.DataFrame, capsys: pytest.CaptureFixture[str]
) -> None:
    source = write_table(raw_data, workdir / "rows.csv")
    assert batch(source, workdir / "predictions.csv") == 1
    assert "no version is 'champion' yet; run `make promote` first" in capsys.readouterr().err
    assert not (workdir / "predictions.csv").exists()


def test_chunk_size_must_be_positive(tmp_path: Path, raw_data: pd.DataFrame) -> None:
    source = write_table(raw_data, tmp_path / "rows.csv")
    with pytest.raises(SystemExit) as stopped:
        batch(source, tmp_path / "predictions.csv", "--chunk-size", "0")
    assert stopped.value.code == 2
