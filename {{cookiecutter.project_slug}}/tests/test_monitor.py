"""Monitoring: labels joined with the logged predictions measure the model in production; bad
labels are skipped, counted and named; too few labels or an empty log give no verdict."""

import io
import json
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from {{ cookiecutter.package_name }}.__main__ import main
from {{ cookiecutter.package_name }}.core.config import (
    MONITOR_REPORT,
    MONITOR_SUMMARY,
)
from {{ cookiecutter.package_name }}.core.drift_summary import DriftSummary, Rows
from {{ cookiecutter.package_name }}.core.errors import DataError
from {{ cookiecutter.package_name }}.core.metrics import measure
from {{ cookiecutter.package_name }}.core.monitor_summary import MonitorSummary
from {{ cookiecutter.package_name }}.core.prediction_ids import new_ids
from {{ cookiecutter.package_name }}.core.schema import Schema
from {{ cookiecutter.package_name }}.pipeline.labels import READERS
from {{ cookiecutter.package_name }}.pipeline.monitor import Scan

from .conftest import write_table
from .production import (
    HOUR,
    LABELS,
    LOG,
    NOW,
    labels_of,
    log_predictions,
    probabilities,
    set_params,
    truth_of,
)


def summary() -> MonitorSummary:
    return MonitorSummary.read()


def test_labelled_predictions_are_measured_as_evaluate_measures(
    workdir: Path, raw_data: pd.DataFrame, schema: Schema, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = raw_data.iloc[:300]
    truth = truth_of(rows, schema)
    # A model that is right on the first 250 rows and answers another row's truth on the rest.
    predicted = truth.copy()
    predicted[250:] = truth[::-1][250:]
    ids = log_predictions(rows, schema, predicted)
    LABELS.mkdir(parents=True)
    write_table(labels_of(ids[:200], truth[:200], NOW), LABELS / "monday.csv")
    write_table(labels_of(ids[200:], truth[200:], NOW - HOUR / 2), LABELS / "tuesday.parquet")

    assert main(["monitor"]) == 0

    found = summary()
    assert (found.predictions, found.labels, found.labelled, found.skipped) == (300, 300, 300, {})
    assert found.version == "1"
    expected = measure(truth, predicted, probabilities(predicted, schema))
    assert found.versions[0].metrics == pytest.approx(expected)
    assert found.lateness_hours is not None
    assert (found.lateness_hours.median, found.lateness_hours.max) == pytest.approx((1.0, 1.0))
    assert found.lateness_hours.p90 == pytest.approx(1.0)
    assert "Precision" in MONITOR_REPORT.read_text(encoding="utf-8")  # Evidently's report
    assert "monitor: report in reports/monitor.html" in capsys.readouterr().out


def test_a_model_worse_than_its_floors_is_flagged_and_a_good_one_is_not(
    workdir: Path, raw_data: pd.DataFrame, schema: Schema
) -> None:
    rows = raw_data.iloc[:200]
    truth = truth_of(rows, schema)
    LABELS.mkdir(parents=True)
    write_table(labels_of(log_predictions(rows, schema, truth), truth), LABELS / "good.csv")
    assert main(["monitor"]) == 0
    assert (summary().verdict, summary().alert, summary().reasons) == ("ok", False, [])

    # The same rows scored again by version 2, which answers the truth of other rows: the
    # latest version is the one judged, and both are measured.
    wrong = np.roll(truth, 37)
    ids = log_predictions(rows, schema, wrong, version="2", when=NOW - HOUR / 2)
    write_table(labels_of(ids, truth), LABELS / "bad.csv")
    assert main(["monitor"]) == 0
    found = summary()
    assert (found.verdict, found.version, found.alert) == ("below_floor", "2", True)
    assert [version.version for version in found.versions] == ["2", "1"]
    assert any("is worse than its" in reason for reason in found.reasons)


def test_each_kind_of_bad_label_is_skipped_counted_and_named_in_one_line(
    workdir: Path, raw_data: pd.DataFrame, schema: Schema, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = raw_data.iloc[:150]
    truth = truth_of(rows, schema)
    ids = log_predictions(rows, schema, truth)
    good = labels_of(ids[:140], truth[:140])
    bad = pd.DataFrame(
        {
            "prediction_id": [
                "not-an-id",  # bad id
                ids[140],  # a label of the wrong type
                ids[141],  # a time that is not one
                ids[142],  # timed before its prediction
                "f" * 32,  # no such prediction
                ids[0],  # labelled again, later: this one is kept
            ],
            "label": [truth[0], "yes", truth[141], truth[142], truth[0], truth[0]],
            "time": [NOW, NOW, "last tuesday", NOW - 2 * HOUR, NOW, NOW + 1],
        }
    )
    LABELS.mkdir(parents=True)
    write_table(good, LABELS / "good.csv")
    write_table(bad, LABELS / "bad.csv")
    (LABELS / "other.csv").write_text("id,truth\n1,0\n", encoding="utf-8")
    (LABELS / "broken.parquet").write_bytes(b"not parquet")

    assert main(["monitor"]) == 0

    found = summary()
    assert found.skipped == {
        "unreadable_files": 2,
        "bad_ids": 1,
        "invalid_labels": 1,
        "bad_times": 1,
        "duplicates": 1,
        "unknown_ids": 1,
        "before_prediction": 1,
    }
    assert found.labels == 140 + 6  # the rows of the files that could be read
    assert found.labelled == 140
    out = capsys.readouterr().out
    skipped = [line for line in out.splitlines() if line.startswith("monitor: skipped")]
    assert len(skipped) == 8  # one per file, one per other reason
    assert any("'not-an-id'" in line and "32 hex" in line for line in skipped)
    assert any("'yes'" in line and schema.target.name in line for line in skipped)
    assert any("'last tuesday'" in line for line in skipped)
    assert any("other.csv: no column prediction_id, label, time (needs" in line for line in skipped)
    assert any("broken.parquet: " in line for line in skipped)
    assert any("f" * 32 in line for line in skipped)


def test_a_json_lines_label_file_is_read_and_its_bad_lines_counted(
    workdir: Path, raw_data: pd.DataFrame, schema: Schema, capsys: pytest.CaptureFixture[str]
) -> None:
    """The form the service's feedback log writes, and the lines a crash or a person leaves."""
    rows = raw_data.iloc[:30]
    truth = truth_of(rows, schema)
    ids = log_predictions(rows, schema, truth)
    good = [
        json.dumps({"prediction_id": key, "label": label, "time": NOW})
        for key, label in zip(ids[:25], truth[:25].tolist(), strict=True)
    ]
    bad = [
        '{"prediction_id": "' + ids[25],  # cut short
        "[1, 2]",  # not an object
        json.dumps({"prediction_id": ids[26], "label": True, "time": NOW}),  # not a number
        json.dumps({"prediction_id": "abc", "label": truth[0], "time": NOW}),
        json.dumps({"prediction_id": ids[27], "label": truth[27]}),  # no time
        json.dumps({"prediction_id": ids[28], "label": None, "time": NOW}),
    ]
    LABELS.mkdir(parents=True)
    text = "\n".join([*good[:10], "", bad[0], *good[10:], *bad[1:]]) + "\n"
    (LABELS / "feedback-1.jsonl.3").write_text(text, encoding="utf-8")
    (LABELS / "feedback-2.jsonl").write_text("", encoding="utf-8")  # a worker's empty file
    log_lines = (LOG / "inference-1.jsonl").read_text(encoding="utf-8")
    (LABELS / "inference-1.jsonl").write_text(log_lines, encoding="utf-8")  # not labels

    assert main(["monitor"]) == 0

    found = summary()
    assert found.skipped == {
        "unreadable_files": 1,
        "malformed_lines": 2,
        "invalid_labels": 2,
        "bad_ids": 1,
        "bad_times": 1,
    }
    assert (found.labels, found.labelled) == (31, 25)  # every line but the blank one
    out = capsys.readouterr().out
    skipped = [line for line in out.splitlines() if line.startswith("monitor: skipped")]
    assert any(
        "2 lines of JSON-lines label files that are not a JSON object" in line
        and "feedback-1.jsonl.3 line 12: " in line
        for line in skipped
    )
    assert any("feedback-1.jsonl.3 line 29: 'true'" in line for line in skipped)
    assert any("feedback-1.jsonl.3 line 30: 'abc'" in line for line in skipped)
    assert any("feedback-1.jsonl.3 line 31: ''" in line for line in skipped)
    assert any("inference-1.jsonl: no column label (needs" in line for line in skipped)


class NotedReads(io.BytesIO):
    """A file that notes which threads read it."""

    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self.readers: set[str] = set()

    def read(self, size: int | None = -1, /) -> bytes:
        self.readers.add(threading.current_thread().name)
        return super().read(size)


def test_a_parquet_label_file_is_read_on_the_monitor_s_own_thread(tmp_path: Path) -> None:
    """Arrow's threads never touch the file: one they hold may be let go of on their thread as
    the interpreter exits, which aborts `make monitor` after its work (apache/arrow#34314)."""
    labels = labels_of(new_ids(3), np.array([0.0, 1.0, 1.0]))
    labels.index = pd.Index([7, 8, 9])
    stream = NotedReads(write_table(labels, tmp_path / "labels.parquet").read_bytes())

    table = READERS["parquet"](stream)

    assert stream.readers == {threading.current_thread().name}
    pd.testing.assert_frame_equal(table.frame, labels.reset_index(drop=True))


def test_too_few_labels_give_no_verdict_and_say_so(
    workdir: Path, raw_data: pd.DataFrame, schema: Schema
) -> None:
    rows = raw_data.iloc[:100]
    truth = truth_of(rows, schema)
    ids = log_predictions(rows, schema, np.roll(truth, 11))
    LABELS.mkdir(parents=True)
    write_table(labels_of(ids[:20], truth[:20]), LABELS / "few.csv")
    set_params("monitor", min_labelled=50)

    assert main(["monitor"]) == 0

    found = summary()
    assert (found.verdict, found.alert, found.labelled) == ("too_few_labels", False, 20)
    assert found.reasons == [
        "20 labelled predictions of version 1; monitor.min_labelled asks for 50 before judging"
    ]
    assert "No verdict" in MONITOR_REPORT.read_text(encoding="utf-8")


def test_an_empty_log_gives_no_verdict(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["monitor"]) == 0
    found = summary()
    assert (found.verdict, found.predictions, found.labels) == ("no_predictions", 0, 0)
    out = capsys.readouterr().out
    assert "no prediction was logged in the window" in out
    assert "no labels in data/labels" in out


def test_a_shipped_log_and_label_partitions_are_read_within_the_window(
    workdir: Path, raw_data: pd.DataFrame, schema: Schema
) -> None:
    store, labels = Path("store/inference"), Path("store/labels")
    rows = raw_data.iloc[:120]
    truth = truth_of(rows, schema)
    today = datetime.now(UTC).date()
    for days_ago, part in ((0, slice(0, 60)), (3, slice(60, 100)), (10, slice(100, 120))):
        day = today - timedelta(days=days_ago)
        when = datetime(day.year, day.month, day.day, 1, tzinfo=UTC).timestamp()
        folder = workdir / "shipping" / str(days_ago)
        ids = log_predictions(rows.iloc[part], schema, truth[part], when=when, folder=folder)
        # What the shipper leaves in the store: the day's partition of closed files.
        partition = store / f"date={day}"
        partition.mkdir(parents=True)
        for file in folder.glob("inference-*.jsonl*"):
            (partition / f"{file.name}.jsonl").write_bytes(file.read_bytes())
        labelled = labels / f"date={day}"
        labelled.mkdir(parents=True)
        write_table(labels_of(ids, truth[part], when + HOUR), labelled / "labels.csv")
    set_params("monitor", predictions=str(store), labels=str(labels), window_days=7)

    assert main(["monitor"]) == 0

    found = summary()
    # The day 10 days ago is outside the window: neither its log nor its labels are read.
    assert (found.predictions, found.labels, found.labelled) == (100, 100, 100)
    assert found.first_day == str(today - timedelta(days=6))


def test_a_label_for_a_prediction_older_than_the_window_is_counted_not_used(
    workdir: Path, raw_data: pd.DataFrame, schema: Schema
) -> None:
    rows = raw_data.iloc[:10]
    truth = truth_of(rows, schema)
    ids = log_predictions(rows, schema, truth, when=NOW - 30 * 24 * HOUR)
    LABELS.mkdir(parents=True)
    write_table(labels_of(ids, truth), LABELS / "late.csv")

    assert main(["monitor"]) == 0
    found = summary()
    assert (found.labelled, found.skipped) == (0, {"unknown_ids": 10})


def test_the_job_summary_says_whether_to_alert(
    workdir: Path, raw_data: pd.DataFrame, schema: Schema, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = raw_data.iloc[:200]
    truth = truth_of(rows, schema)
    ids = log_predictions(rows, schema, np.roll(truth, 53))
    LABELS.mkdir(parents=True)
    write_table(labels_of(ids, truth), LABELS / "labels.csv")
    assert main(["monitor"]) == 0
    capsys.readouterr()

    assert main(["ci", "monitor"]) == 0

    # Quality fell and 200 labelled rows are enough to learn from: retraining is due.
    assert capsys.readouterr().out == "alert=true\nretrain=true\n"
    markdown = Path("reports/monitor.md").read_text(encoding="utf-8")
    assert markdown.startswith("## Production quality\n\n**Production quality fell below")
    assert "| 1 | 200 |" in markdown
    assert "`monitor-report` artifact" in markdown


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("{", "Invalid JSON"),
        ('{"verdict": "fine"}', "verdict: Input should be"),
    ],
)
def test_a_damaged_summary_is_refused_in_one_line(workdir: Path, text: str, problem: str) -> None:
    MONITOR_SUMMARY.parent.mkdir(parents=True, exist_ok=True)
    MONITOR_SUMMARY.write_text(text, encoding="utf-8")
    with pytest.raises(DataError) as refused:
        MonitorSummary.read()
    assert problem in str(refused.value)
    assert "make monitor" in str(refused.value)
    assert "\n" not in str(refused.value)


def test_log_lines_that_are_not_predictions_are_counted(
    workdir: Path, raw_data: pd.DataFrame, schema: Schema
) -> None:
    rows = raw_data.iloc[:5]
    truth = truth_of(rows, schema)
    ids = log_predictions(rows, schema, truth)
    with (LOG / "inference-1.jsonl").open("a", encoding="utf-8") as log:
        log.write('{"cut short\n')
        log.write(json.dumps({"prediction_id": ids[0], "time": "soon"}) + "\n")
    LABELS.mkdir(parents=True)
    write_table(labels_of(ids, truth), LABELS / "labels.csv")

    assert main(["monitor"]) == 0
    found = summary()
    assert (found.predictions, found.malformed, found.labelled) == (7, 2, 5)


def test_only_labelled_lines_and_lines_written_another_way_are_parsed() -> None:
    ids = new_ids(4)
    served = [json.dumps({"prediction_id": key, "x": 1}, separators=(",", ":")) for key in ids]
    other = json.dumps({"prediction_id": ids[3]})  # spaces: not the service's way
    lines = [*served, "", "  ", "short", other]
    log = io.BytesIO("".join(line + "\n" for line in lines).encode())
    scan = Scan({ids[1].encode(), ids[2].encode()})

    found = list(scan.candidates(log))

    assert scan.lines == 6  # eight lines, two of them blank
    expected = [served[1], served[2], "short", other]
    assert found == [(line + "\n").encode() for line in expected]


def test_retraining_is_due_on_drift_only_with_enough_labelled_rows(
    workdir: Path, raw_data: pd.DataFrame, schema: Schema, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = raw_data.iloc[:120]
    truth = truth_of(rows, schema)
    ids = log_predictions(rows, schema, truth)
    LABELS.mkdir(parents=True)
    write_table(labels_of(ids, truth), LABELS / "labels.csv")
    drift = Path("reports/drift.json")
    drift.parent.mkdir(parents=True, exist_ok=True)
    for min_labelled, retrain in ((100, "true"), (500, "false")):
        set_params("monitor", min_labelled=min_labelled)
        assert main(["monitor"]) == 0
        drifted = DriftSummary(
            drift=True,
            max_drift_share=0.5,
            columns=0,
            drifted=(),
            scores={},
            methods={},
            current="data/current.csv",
            rows=Rows(reference=1, current=1),
            compared=Rows(reference=1, current=1),
        )
        drift.write_text(drifted.to_json(), encoding="utf-8")
        capsys.readouterr()
        assert main(["ci", "monitor"]) == 0
        assert capsys.readouterr().out == f"alert=false\nretrain={retrain}\n"
