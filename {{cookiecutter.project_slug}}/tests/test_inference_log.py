"""The inference log: workers writing at once, with rotation, lose no row; the files are
private, kept no longer than asked, and not written at all when the log is off."""

import json
import multiprocessing
import os
import stat
import time
from pathlib import Path

import pytest

from {{ cookiecutter.package_name }}.serving.inference_log import (
    DAY_SECONDS,
    InferenceLog,
    InferenceLogError,
    LogSettings,
)

ROWS_PER_WORKER = 400
MAX_BYTES = 4096  # a few dozen rows a file, so both workers rotate many times
BACKUPS = 1000


def write_rows(folder: Path, worker: int) -> None:
    log = InferenceLog(folder, MAX_BYTES, BACKUPS, worker)
    for number in range(ROWS_PER_WORKER):
        log.append([{"worker": worker, "number": number}], ["0" * 32], [0.0], "1")
    log.close()


def test_each_worker_keeps_every_row_through_rotation(tmp_path: Path) -> None:
    workers = [
        multiprocessing.Process(target=write_rows, args=(tmp_path, worker)) for worker in (1, 2)
    ]
    for process in workers:
        process.start()
    for process in workers:
        process.join(timeout=60)
        assert process.exitcode == 0
    for worker in (1, 2):
        files = sorted(tmp_path.glob(f"inference-{worker}.jsonl*"))
        assert len(files) > 2, "expected the log to rotate"
        records = [
            json.loads(line) for file in files for line in file.read_text("utf-8").splitlines()
        ]
        assert {record["worker"] for record in records} == {worker}
        assert sorted(record["number"] for record in records) == list(range(ROWS_PER_WORKER))


def test_a_line_is_the_id_the_features_the_prediction_the_version_and_the_time(
    tmp_path: Path,
) -> None:
    log = InferenceLog(tmp_path)
    before = time.time()
    log.append([{"a": 1.5, "b": 2}, {"a": 0.5, "b": 3}], ["1" * 32, "2" * 32], [1, 0], "7")
    log.close()
    lines = (tmp_path / "inference-1.jsonl").read_text("utf-8").splitlines()
    records = [json.loads(line) for line in lines]
    assert [list(record) for record in records] == [
        ["prediction_id", "a", "b", "prediction", "model_version", "time"]
    ] * 2
    assert [record["prediction_id"] for record in records] == ["1" * 32, "2" * 32]
    assert [(record["a"], record["b"], record["prediction"]) for record in records] == [
        (1.5, 2, 1),
        (0.5, 3, 0),
    ]
    assert {record["model_version"] for record in records} == {"7"}
    assert before <= records[0]["time"] == records[1]["time"] <= time.time()


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_files_and_folder_are_private_whatever_the_umask(tmp_path: Path) -> None:
    folder = tmp_path / "logs" / "inference"
    previous = os.umask(0)
    try:
        log = InferenceLog(folder, MAX_BYTES, BACKUPS)
        for number in range(ROWS_PER_WORKER):
            log.append([{"number": number}], ["0" * 32], [0.0], "1")
        log.close()
    finally:
        os.umask(previous)
    files = list(folder.iterdir())
    assert len(files) > 2, "expected the log to rotate"
    assert mode(folder) == 0o750
    assert {mode(file) for file in files} == {0o640}


def test_files_an_earlier_version_left_readable_to_all_are_made_private(tmp_path: Path) -> None:
    (tmp_path / "inference-1.jsonl").write_text('{"number": 0}\n', encoding="utf-8")
    (tmp_path / "inference-1.jsonl.1").write_text('{"number": -1}\n', encoding="utf-8")
    for file in (tmp_path, *tmp_path.iterdir()):
        file.chmod(0o777 if file.is_dir() else 0o666)
    InferenceLog(tmp_path).close()
    assert mode(tmp_path) == 0o750
    assert {mode(file) for file in tmp_path.iterdir()} == {0o640}


def write(path: Path, days_ago: float, *rows: int) -> None:
    lines = [json.dumps({"number": number}) + "\n" for number in rows]
    path.write_text("".join(lines), encoding="utf-8")
    then = time.time() - days_ago * DAY_SECONDS
    os.utime(path, (then, then))


def numbers(path: Path) -> list[int]:
    return [json.loads(line)["number"] for line in path.read_text("utf-8").splitlines()]


def test_files_last_written_before_the_retention_are_removed(tmp_path: Path) -> None:
    """At opening, then at each rotation; and a new UTC day starts a new file, so that no file
    holds rows much older than its last write."""
    current = tmp_path / "inference-1.jsonl"
    write(current, 1, 10)  # yesterday's rows: kept, but rotated at the first row of today
    write(tmp_path / "inference-1.jsonl.1", 2, 9)
    write(tmp_path / "inference-1.jsonl.2", 4, 8)  # past the retention
    write(tmp_path / "inference-2.jsonl", 9, 7)  # another worker's file: its own to clean
    log = InferenceLog(tmp_path, MAX_BYTES, BACKUPS, worker=1, retention_days=3)
    assert not (tmp_path / "inference-1.jsonl.2").exists()
    log.append([{"number": 11}], ["0" * 32], [0.0], "1")
    assert numbers(current) == [11]
    assert numbers(tmp_path / "inference-1.jsonl.1") == [10]
    assert numbers(tmp_path / "inference-1.jsonl.2") == [9]
    # Days pass: the oldest file ages past the retention, and goes at the next rotation.
    then = time.time() - 4 * DAY_SECONDS
    os.utime(tmp_path / "inference-1.jsonl.2", (then, then))
    for number in range(12, ROWS_PER_WORKER):
        log.append([{"number": number}], ["0" * 32], [0.0], "1")
    log.close()
    kept = [number for file in tmp_path.glob("inference-1.jsonl*") for number in numbers(file)]
    assert sorted(kept) == list(range(10, ROWS_PER_WORKER))
    assert numbers(tmp_path / "inference-2.jsonl") == [7]


def test_without_a_retention_old_files_stay(tmp_path: Path) -> None:
    write(tmp_path / "inference-1.jsonl", 400, 1)
    write(tmp_path / "inference-1.jsonl.1", 500, 0)
    log = InferenceLog(tmp_path, MAX_BYTES, BACKUPS)
    log.append([{"number": 2}], ["0" * 32], [0.0], "1")
    log.close()
    assert numbers(tmp_path / "inference-1.jsonl") == [1, 2]
    assert numbers(tmp_path / "inference-1.jsonl.1") == [0]


def test_settings_come_from_the_environment(tmp_path: Path) -> None:
    environ = {
        "INFERENCE_LOG_DIR": str(tmp_path),
        "INFERENCE_LOG_MAX_BYTES": "1000",
        "INFERENCE_LOG_BACKUPS": "3",
        "INFERENCE_LOG_RETENTION_DAYS": "30",
    }
    assert LogSettings.from_environment(environ) == LogSettings(True, tmp_path, 1000, 3, 30)
    assert LogSettings.from_environment({}) == LogSettings()
    assert LogSettings().retention_days is None


@pytest.mark.parametrize("switch", ["off", "OFF", "0", "false", "no"])
def test_the_log_can_be_turned_off(tmp_path: Path, switch: str) -> None:
    folder = tmp_path / "inference"
    environ = {"INFERENCE_LOG": switch, "INFERENCE_LOG_DIR": str(folder)}
    assert InferenceLog.from_settings(LogSettings.from_environment(environ)) is None
    assert not folder.exists()


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("INFERENCE_LOG_MAX_BYTES", "0"),
        ("INFERENCE_LOG_MAX_BYTES", "10MB"),
        ("INFERENCE_LOG_MAX_BYTES", "-5"),
        ("INFERENCE_LOG_BACKUPS", "0"),
        ("INFERENCE_LOG_BACKUPS", "1.5"),
        ("INFERENCE_LOG_RETENTION_DAYS", "0"),
        ("INFERENCE_LOG_RETENTION_DAYS", "²"),
        ("INFERENCE_LOG", "maybe"),
    ],
)
def test_a_setting_the_log_cannot_keep_to_is_refused_in_one_line(name: str, value: str) -> None:
    """0 would turn rotation off in Python's handler: one file growing without bound."""
    with pytest.raises(InferenceLogError) as refused:
        LogSettings.from_environment({name: value})
    message = str(refused.value)
    assert message.startswith(f"{name}={value!r}: expected ")
    assert "\n" not in message
