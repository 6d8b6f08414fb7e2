"""Drift: a shifted copy of the data is caught, a plain sample is not, bad current data stops."""

import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml

from {{ cookiecutter.package_name }}.__main__ import main
from {{ cookiecutter.package_name }}.core.config import (
    DRIFT_REPORT,
    DRIFT_SUMMARY,
    PARAMS_FILE,
    load_params,
)
from {{ cookiecutter.package_name }}.core.drift_summary import DriftSummary, Rows
from {{ cookiecutter.package_name }}.core.schema import Schema
from {{ cookiecutter.package_name }}.pipeline.data import current_sample
from {{ cookiecutter.package_name }}.pipeline.drift import sample_rows, stable_ids


def set_drift_params(**values: Any) -> None:
    params = yaml.safe_load(PARAMS_FILE.read_text(encoding="utf-8"))
    params["drift"].update(values)
    PARAMS_FILE.write_text(yaml.safe_dump(params), encoding="utf-8")


def shifted(frame: pd.DataFrame, schema: Schema) -> pd.DataFrame:
    """Every feature moved by one standard deviation (within the schema's bounds)."""
    moved = frame[schema.feature_names].copy()
    for column in schema.features:
        if column.allowed is not None:
            moved[column.name] = column.allowed[0]
        else:
            values = moved[column.name] + moved[column.name].std()
            moved[column.name] = values.clip(column.min, column.max)
    return moved


def summary() -> DriftSummary:
    return DriftSummary.read(DRIFT_SUMMARY)


@pytest.fixture
def prepared(workdir: Path) -> Path:
    """The scratch project, split; returns the current data's path, as params.yaml names it."""
    assert main(["prepare"]) == 0
    return Path(load_params().drift.current)


def test_the_sample_current_data_does_not_drift(prepared: Path, schema: Schema) -> None:
    assert main(["drift"]) == 0
    result = summary()
    assert result.drift is False
    assert result.drifted_share <= load_params().gate.max_drift_share
    assert result.columns == len(schema.features)
    assert set(result.scores) == set(schema.feature_names)
    assert result.sampled is False
    assert "<html" in DRIFT_REPORT.read_text(encoding="utf-8").lower()


def test_the_same_data_gives_the_same_report_byte_for_byte(prepared: Path) -> None:
    assert main(["drift"]) == 0
    first = DRIFT_REPORT.read_bytes()
    assert main(["drift"]) == 0
    # Under the hash dvc.lock records, so a fresh checkout restores it from the DVC cache.
    assert DRIFT_REPORT.read_bytes() == first


def test_stable_ids_number_each_id_the_same_way_everywhere() -> None:
    widget, data = "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b", "4fd5e6a7b8c94d0e9f1a2b3c4d5e6f70"
    page = "var metric_{data} = ({widget}, [{widget}]); draw(metric_{data})"
    html = page.format(data=data, widget=widget)
    one, two = "0" * 31 + "1", "00000000-0000-0000-0000-000000000002"
    assert stable_ids(html) == page.format(data=one, widget=two)


def test_a_shifted_copy_drifts(prepared: Path, raw_data: pd.DataFrame, schema: Schema) -> None:
    shifted(current_sample(raw_data, schema), schema).to_csv(prepared, index=False)
    assert main(["drift"]) == 0
    result = summary()
    assert result.drift is True
    assert result.drifted_share > load_params().gate.max_drift_share
    assert set(result.drifted) <= set(schema.feature_names)


def test_the_inference_log_can_be_the_current_data(
    prepared: Path, raw_data: pd.DataFrame, schema: Schema
) -> None:
    log = Path("logs/inference")
    log.mkdir(parents=True)
    rows = current_sample(raw_data, schema)
    records = [
        {
            "prediction_id": f"{number:032x}",
            **row,
            "prediction": 1,
            "model_version": "1",
            "time": 0.0,
        }
        for number, row in enumerate(rows.to_dict(orient="records"))
    ]
    half = len(records) // 2
    # A rotated file of worker 1 and the current file of worker 2.
    parts = {"inference-1.jsonl.1": records[:half], "inference-2.jsonl": records[half:]}
    for name, part in parts.items():
        (log / name).write_text("".join(json.dumps(record) + "\n" for record in part))
    set_drift_params(current=str(log))
    assert main(["drift"]) == 0
    assert summary().rows.current == len(rows)
    assert summary().drift is False


def write_partitions(store: Path, days: dict[date, list[str]]) -> None:
    """A shipped log: one file of `lines` in each `date=` partition."""
    for day, lines in days.items():
        partition = store / f"date={day:%Y-%m-%d}"
        partition.mkdir(parents=True)
        (partition / "pod-1-0.jsonl").write_text("".join(line + "\n" for line in lines))


def log_lines(frame: pd.DataFrame) -> list[str]:
    return [
        json.dumps({"prediction_id": "0" * 32, **row, "prediction": 1, "time": 0.0})
        for row in frame.to_dict(orient="records")
    ]


def test_the_shipped_log_is_read_within_the_window_and_bad_lines_are_counted(
    prepared: Path, raw_data: pd.DataFrame, schema: Schema, capsys: pytest.CaptureFixture[str]
) -> None:
    store = Path("shipped")
    today = datetime.now(UTC).date()
    rows = log_lines(current_sample(raw_data, schema))
    half = len(rows) // 2
    shifted_rows = log_lines(shifted(current_sample(raw_data, schema), schema))
    write_partitions(
        store,
        {
            today: [*rows[:half], '{"cut short', "[1, 2]"],
            today - timedelta(days=6): [*rows[half:], json.dumps({"prediction": 1})],
            today - timedelta(days=7): shifted_rows,  # outside the window: never read
        },
    )
    set_drift_params(current=f"file://{store.resolve()}", window_days=7)
    assert main(["drift"]) == 0
    assert summary().rows.current == len(rows)
    assert summary().drift is False
    out = capsys.readouterr().out
    assert f"drift: ignored 3 malformed of {len(rows) + 3:,} lines in file://" in out


def test_an_empty_window_makes_no_report(
    prepared: Path, raw_data: pd.DataFrame, schema: Schema, capsys: pytest.CaptureFixture[str]
) -> None:
    store = Path("shipped")
    old = datetime.now(UTC).date() - timedelta(days=3)
    write_partitions(store, {old: log_lines(current_sample(raw_data, schema))})
    set_drift_params(current=str(store), window_days=3)
    assert main(["drift"]) == 1
    error = capsys.readouterr().err
    assert error.startswith(f"ERROR: {store}: no inference log in the last 3 days (")
    assert error.count("\n") == 1
    assert not DRIFT_SUMMARY.exists()


def test_large_data_is_sampled_and_says_so(
    prepared: Path, raw_data: pd.DataFrame, schema: Schema
) -> None:
    many = pd.concat([current_sample(raw_data, schema, seed) for seed in range(5)])
    many.to_csv(prepared, index=False)
    set_drift_params(sample_size=200)
    assert main(["drift"]) == 0
    result = summary()
    assert result.sampled is True
    assert result.compared == Rows(reference=200, current=200)
    assert result.rows.current == len(many)


def test_sampling_keeps_a_stream_that_fits_whole_and_in_order() -> None:
    frame = pd.DataFrame({"x": np.arange(250.0)})
    chunks = [frame.iloc[start : start + 100] for start in range(0, 250, 100)]
    sample = sample_rows(chunks, size=1000, seed=0)
    assert sample.rows == 250
    assert not sample.sampled
    pd.testing.assert_frame_equal(sample.frame.reset_index(drop=True), frame)


def test_sampling_is_uniform_bounded_and_repeatable() -> None:
    frame = pd.DataFrame({"x": np.arange(100_000.0)})
    chunks = [frame.iloc[start : start + 7_000] for start in range(0, len(frame), 7_000)]
    sample = sample_rows(chunks, size=5_000, seed=1)
    assert sample.rows == len(frame)
    assert len(sample.frame) == 5_000
    values = sample.frame["x"]
    assert values.is_unique
    assert values.is_monotonic_increasing  # file order is kept
    # Uniform: each tenth of the stream holds about a tenth of the sample.
    counts = np.histogram(values, bins=10, range=(0, len(frame)))[0]
    assert counts.min() > 400
    assert counts.max() < 600
    again = sample_rows(
        [frame.iloc[start : start + 7_000] for start in range(0, len(frame), 7_000)], 5_000, 1
    )
    pd.testing.assert_frame_equal(sample.frame, again.frame)


def header_only(frame: pd.DataFrame) -> str:
    return ",".join(frame.columns) + "\n"


@pytest.mark.parametrize(
    ("write", "expected"),
    [
        (lambda rows: rows.drop(columns=rows.columns[0]).to_csv(index=False), "missing columns"),
        (lambda rows: rows.assign(**{rows.columns[1]: "abc"}).to_csv(index=False), "lines 2, 3"),
        (header_only, "has no rows"),
        (lambda rows: "", "it is empty"),
    ],
    ids=["missing-column", "text-in-a-number-column", "no-rows", "empty-file"],
)
def test_bad_current_data_stops_and_writes_nothing(
    prepared: Path,
    raw_data: pd.DataFrame,
    schema: Schema,
    capsys: pytest.CaptureFixture[str],
    write: Any,
    expected: str,
) -> None:
    prepared.write_text(write(current_sample(raw_data, schema)), encoding="utf-8")
    assert main(["drift"]) == 1
    error = capsys.readouterr().err
    assert error.startswith(f"ERROR: {prepared}: ")
    assert expected in error
    assert not DRIFT_SUMMARY.exists()
    assert not DRIFT_REPORT.exists()


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (None, "no inference log"),
        ('{"rows": 1}\n{"broken\n', "not a readable JSON-lines file"),
        ('{"prediction": 1}\n', "missing fields"),
    ],
    ids=["empty-folder", "broken-json", "missing-fields"],
)
def test_a_bad_inference_log_stops_with_its_name(
    prepared: Path, capsys: pytest.CaptureFixture[str], content: str | None, expected: str
) -> None:
    log = Path("logs/inference")
    log.mkdir(parents=True)
    if content is not None:
        (log / "inference-1.jsonl").write_text(content, encoding="utf-8")
    set_drift_params(current=str(log))
    assert main(["drift"]) == 1
    error = capsys.readouterr().err
    assert error.startswith(f"ERROR: {log}")
    assert expected in error
    assert not DRIFT_SUMMARY.exists()


def test_a_bad_value_in_the_inference_log_names_its_line(
    prepared: Path, raw_data: pd.DataFrame, schema: Schema, capsys: pytest.CaptureFixture[str]
) -> None:
    log = Path("logs/inference")
    log.mkdir(parents=True)
    records = current_sample(raw_data, schema).head(4).to_dict(orient="records")
    name = schema.features[0].name
    records[2][name] = "twelve"
    (log / "inference-1.jsonl").write_text("".join(json.dumps(row) + "\n" for row in records))
    set_drift_params(current=str(log))
    assert main(["drift"]) == 1
    # A log has no header: its third row is on line 3.
    assert f"column '{name}': 1 values that are not numbers at line 3" in capsys.readouterr().err
    assert not DRIFT_SUMMARY.exists()


def test_an_unknown_method_names_the_parameter(
    prepared: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    set_drift_params(method="no_such_test")
    assert main(["drift"]) == 1
    assert capsys.readouterr().err.startswith("ERROR: drift.method: Evidently has no test")
    assert not DRIFT_SUMMARY.exists()
