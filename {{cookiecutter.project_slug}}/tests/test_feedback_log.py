"""The feedback log: a line per label with the time it came, none for a label sent again, an
error (not a silent loss) when a label cannot be written; its files rotate and ship as the
inference log's do, and `make monitor` reads them, rotated or shipped, as label files."""

import json
import stat
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from {{ cookiecutter.package_name }}.core.schema import Column
from {{ cookiecutter.package_name }}.pipeline.labels import file_format, read_labels
from {{ cookiecutter.package_name }}.serving.feedback_log import (
    FeedbackLog,
    FeedbackLogError,
    feedback_settings,
)
from {{ cookiecutter.package_name }}.serving.inference_log import LogSettings
from {{ cookiecutter.package_name }}.serving.log_shipping import ShippingError

NOW = datetime(2026, 3, 2, 12, tzinfo=UTC).timestamp()
TARGET = Column("outcome", "int", allowed=(0, 1))
MAX_BYTES = 2048  # a few dozen labels a file


def key(number: int) -> str:
    return f"{number:032x}"


def ticking(start: float) -> Callable[[], float]:
    """A clock a millisecond later at each reading: each closed file has its own first time."""
    ticks = [start]

    def clock() -> float:
        ticks[0] += 0.001
        return ticks[0]

    return clock


def lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text("utf-8").splitlines()]


def test_a_line_per_label_with_the_time_it_came(tmp_path: Path) -> None:
    log = FeedbackLog(tmp_path, clock=lambda: NOW)
    assert log.append([(key(1), 1), (key(2), 0)]) == 2
    log.close()
    path = tmp_path / "feedback-1.jsonl"
    # Compact, the id first: the form of the inference log's lines.
    assert path.read_text("utf-8").splitlines() == [
        json.dumps({"prediction_id": key(1), "label": 1, "time": NOW}, separators=(",", ":")),
        json.dumps({"prediction_id": key(2), "label": 0, "time": NOW}, separators=(",", ":")),
    ]
    assert stat.S_IMODE(path.stat().st_mode) == 0o640


def test_a_label_sent_again_adds_no_line_and_a_correction_does(tmp_path: Path) -> None:
    log = FeedbackLog(tmp_path, clock=lambda: NOW)
    log.append([(key(1), 1), (key(2), 0)])
    assert log.append([(key(1), 1), (key(2), 0)]) == 0
    assert log.append([(key(2), 1), (key(3), 0), (key(3), 1)]) == 2  # the last of an id counts
    log.close()
    written = [(line["prediction_id"], line["label"]) for line in lines(log.path)]
    assert written == [(key(1), 1), (key(2), 0), (key(2), 1), (key(3), 1)]


def test_a_worker_remembers_only_the_latest_ids(tmp_path: Path) -> None:
    log = FeedbackLog(tmp_path, clock=lambda: NOW, remembered=3)
    log.append([(key(number), 1) for number in range(5)])
    # Ids 0 and 1 are forgotten: written again (make monitor keeps one); 2 to 4 are not.
    assert log.append([(key(number), 1) for number in range(5)]) == 2
    log.close()
    assert len(lines(log.path)) == 7


def test_a_label_that_cannot_be_written_raises_and_is_written_when_sent_again(
    tmp_path: Path,
) -> None:
    """logging would print the error and drop the line: here the client gets an error instead."""
    log = FeedbackLog(tmp_path, MAX_BYTES, backups=1, clock=lambda: NOW)
    log.append([(key(number), 1) for number in range(20)])
    blocker = tmp_path / "feedback-1.jsonl.1"
    blocker.mkdir()  # the rotation cannot take this name
    with pytest.raises(OSError, match=r"feedback-1\.jsonl\.1"):
        log.append([(key(number), 0) for number in range(20, 40)])
    blocker.rmdir()
    assert log.append([(key(number), 0) for number in range(20, 40)]) == 20
    log.close()
    written = [line["prediction_id"] for file in sorted(tmp_path.iterdir()) for line in lines(file)]
    assert sorted(written) == [key(number) for number in range(40)]


def test_rotated_and_shipped_files_are_read_as_labels(tmp_path: Path) -> None:
    folder, store = tmp_path / "feedback", tmp_path / "store"
    rotated = FeedbackLog(folder, MAX_BYTES, backups=100, clock=ticking(NOW))
    shipping = FeedbackLog(
        tmp_path / "pod", MAX_BYTES, worker=2, url=f"file://{store}", clock=ticking(NOW)
    )
    for log in (rotated, shipping):
        for number in range(100):
            log.append([(key(number), number % 2)])
    rotated.append([(key(7), 0)])  # a correction: the latest is kept
    rotated.close()
    shipping.close()
    assert len(list(folder.glob("feedback-1.jsonl.*"))) > 2, "expected the log to rotate"
    shipped = list(store.glob("date=2026-03-02/*.jsonl"))
    assert len(shipped) > 2, "expected every closed file in its day's partition"
    day = date(2026, 3, 2)

    for source in (folder, store):
        labels = read_labels(str(source), TARGET, day - timedelta(days=6), day)
        assert len(labels.truth) == 100, source
        assert labels.truth[key(3)][0] == 1.0
        assert NOW < labels.truth[key(3)][1] < NOW + 1
    labels = read_labels(str(folder), TARGET, day, day)
    assert labels.truth[key(7)][0] == 0.0
    assert labels.skipped == {"duplicates": 1}
    # A window that ends before the labels came: their partition is not read.
    before = read_labels(str(store), TARGET, day - timedelta(days=7), day - timedelta(days=1))
    assert before.rows == 0


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("labels.csv", "csv"),
        ("labels.parquet", "parquet"),
        ("feedback-1.jsonl", "jsonl"),
        ("feedback-1.jsonl.3", "jsonl"),
        ("feedback-1.jsonl.20260302T120000.000000Z", "jsonl"),
        ("feedback-1.jsonl.20260302T120000.000000Z.2", "jsonl"),
        ("host-1-20260302T120000.000000Z.jsonl", "jsonl"),
        ("labels.json", None),
        ("feedback-1.jsonl.tmp", None),
        ("labels.csv.bak", None),
    ],
)
def test_label_files_are_known_by_their_names(name: str, expected: str | None) -> None:
    assert file_format(f"store/date=2026-03-02/{name}") == expected


def test_settings_follow_the_inference_log_in_a_folder_of_their_own(tmp_path: Path) -> None:
    inference = LogSettings(True, tmp_path / "inference", 1000, 3, 30)
    assert feedback_settings(inference, {}) == LogSettings(True, Path("logs/feedback"), 1000, 3, 30)
    environ = {"FEEDBACK_LOG_DIR": str(tmp_path / "labels"), "FEEDBACK_LOG_URL": "file:///x/"}
    settings = feedback_settings(inference, environ)
    assert (settings.folder, settings.url) == (tmp_path / "labels", "file:///x")
    off = LogSettings(enabled=False)
    assert feedback_settings(off, {}).enabled is False
    assert FeedbackLog.from_settings(feedback_settings(off, {})) is None


@pytest.mark.parametrize(
    ("environ", "error"),
    [
        ({"FEEDBACK_LOG_URL": "ftp://host/labels"}, ShippingError),
        ({"FEEDBACK_LOG_URL": "file:///store/inference/"}, FeedbackLogError),
        ({"FEEDBACK_LOG_DIR": "logs/inference/"}, FeedbackLogError),
    ],
)
def test_a_setting_the_feedback_log_cannot_keep_to_is_refused_in_one_line(
    environ: dict[str, str], error: type[Exception]
) -> None:
    inference = LogSettings(folder=Path("logs/inference"), url="file:///store/inference")
    with pytest.raises(error) as refused:
        feedback_settings(inference, environ)
    ((name, value),) = environ.items()
    message = str(refused.value)
    assert message.startswith(f"{name}={value!r}: expected ")
    assert "\n" not in message
