"""The inference log leaves the pod: closed files land in their day's partition of the store,
whole, and one the store refused stays on disk until a later try copies it."""

import json
import socket
import time
from collections.abc import Callable
from datetime import UTC, datetime
from importlib.util import find_spec
from pathlib import Path

import pytest

from {{ cookiecutter.package_name }}.serving.inference_log import InferenceLog, LogSettings
from {{ cookiecutter.package_name }}.serving.log_shipping import SCHEMES, ShippingError

MAX_BYTES = 4096  # a few dozen rows a file
DAY_ONE = datetime(2026, 3, 1, 23, 59, tzinfo=UTC).timestamp()
DAY_TWO = datetime(2026, 3, 2, 0, 1, tzinfo=UTC).timestamp()


class Clock:
    """The log's time, set by the test."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def until(condition: Callable[[], bool], seconds: float = 20) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "the shipper did not get there in time"
        time.sleep(0.05)


def shipped(store: Path) -> dict[str, list[dict[str, object]]]:
    """Each partition's rows, file by file in name order."""
    return {
        folder.name: [
            json.loads(line)
            for file in sorted(folder.iterdir())
            for line in file.read_text("utf-8").splitlines()
        ]
        for folder in sorted(store.iterdir())
    }


def key(number: int) -> str:
    return f"{number:032x}"


def test_full_files_and_the_last_one_are_copied_at_rotation_and_shutdown(tmp_path: Path) -> None:
    folder, store = tmp_path / "logs", tmp_path / "store"
    log = InferenceLog(folder, MAX_BYTES, 2, worker=3, url=f"file://{store}")
    for number in range(300):
        log.append([{"number": number}], [key(number)], [0.0], "1")
    log.close()
    partitions = shipped(store)
    today = f"date={datetime.now(UTC):%Y-%m-%d}"
    assert list(partitions) == [today]
    assert [row["prediction_id"] for row in partitions[today]] == [key(n) for n in range(300)]
    names = [file.name for file in (store / today).iterdir()]
    assert len(names) > 2, "expected the log to rotate, and every file (not only 2) shipped"
    assert all(name.startswith(f"{socket.gethostname()}-3-") for name in names)
    assert all(name.endswith(".jsonl") for name in names)
    assert not list(folder.iterdir()), "every file, the last one too, is copied and removed"


def test_files_whose_first_rows_share_a_time_are_all_shipped(tmp_path: Path) -> None:
    """Files named alike on disk (the same first-row time: a clock that did not move, or a
    coarse one) get their own objects in the store; none replaces another."""
    folder, store = tmp_path / "logs", tmp_path / "store"
    log = InferenceLog(folder, MAX_BYTES, 100, url=f"file://{store}", clock=Clock(DAY_ONE))
    for number in range(300):
        log.append([{"number": number}], [key(number)], [0.0], "1")
    log.close()
    names = sorted(file.name for file in (store / "date=2026-03-01").iterdir())
    assert len(names) > 2, "expected the log to rotate"
    assert all(name.endswith(".jsonl") for name in names)
    numbers = [int(str(row["number"])) for row in shipped(store)["date=2026-03-01"]]
    assert sorted(numbers) == list(range(300))


def test_a_new_utc_day_closes_the_file_and_ships_it_to_its_day(tmp_path: Path) -> None:
    folder, store = tmp_path / "logs", tmp_path / "store"
    clock = Clock(DAY_ONE)
    log = InferenceLog(folder, url=f"file://{store}", clock=clock)
    log.append([{"number": 1}, {"number": 2}], [key(1), key(2)], [0.0, 1.0], "1")
    clock.now = DAY_TWO
    log.append([{"number": 3}], [key(3)], [0.0], "1")
    until(lambda: (store / "date=2026-03-01").exists() and not list(folder.glob("*.jsonl.*")))
    assert [row["number"] for row in shipped(store)["date=2026-03-01"]] == [1, 2]
    log.close()
    partitions = shipped(store)
    assert list(partitions) == ["date=2026-03-01", "date=2026-03-02"]
    assert [row["number"] for row in partitions["date=2026-03-02"]] == [3]
    assert partitions["date=2026-03-02"][0]["time"] == DAY_TWO


def test_a_copy_that_failed_is_kept_and_tried_again(tmp_path: Path) -> None:
    folder, store = tmp_path / "logs", tmp_path / "store"
    store.write_text("not a folder: every copy fails", encoding="utf-8")
    clock = Clock(DAY_ONE)
    log = InferenceLog(folder, url=f"file://{store}", clock=clock)
    log.append([{"number": 1}], [key(1)], [0.0], "1")
    clock.now = DAY_TWO
    log.append([{"number": 2}], [key(2)], [0.0], "1")
    until(lambda: log.shipping_failures > 0)
    kept = list(folder.glob("inference-1.jsonl.*"))
    assert len(kept) == 1, "the file the store refused stays on disk"
    assert kept[0].stat().st_mode & 0o777 == 0o640
    store.unlink()  # the store is back
    log.close()
    partitions = shipped(store)
    assert [row["number"] for row in partitions["date=2026-03-01"]] == [1]
    assert [row["number"] for row in partitions["date=2026-03-02"]] == [2]
    assert not list(folder.glob("inference-1.jsonl.*"))


def test_a_file_a_stopped_worker_left_is_shipped_at_the_next_start(tmp_path: Path) -> None:
    folder, store = tmp_path / "logs", tmp_path / "store"
    InferenceLog(folder).append([{"number": 1}], [key(1)], [0.0], "1")  # never closed: a crash
    InferenceLog(folder, url=f"file://{store}").close()
    assert [row["number"] for rows in shipped(store).values() for row in rows] == [1]


def missing_backend() -> str | None:
    """A scheme whose fsspec backend this environment lacks, if any."""
    for scheme, package in SCHEMES.items():
        if package and find_spec(package) is None:
            return scheme
    return None


@pytest.mark.parametrize(
    "url", ["ftp://host/inference", "s3://", "inference", "file:///", "s3://bucket/a b"]
)
def test_a_url_the_log_cannot_ship_to_is_refused_in_one_line(url: str) -> None:
    with pytest.raises(ShippingError) as refused:
        LogSettings.from_environment({"INFERENCE_LOG_URL": url})
    assert str(refused.value).startswith(f"INFERENCE_LOG_URL={url!r}: expected ")
    assert "\n" not in str(refused.value)


def test_a_store_whose_backend_is_not_installed_is_refused_in_one_line() -> None:
    scheme = missing_backend()
    if scheme is None:
        pytest.skip("every fsspec backend is installed here")
    url = f"{scheme}://bucket/inference"
    with pytest.raises(ShippingError) as refused:
        LogSettings.from_environment({"INFERENCE_LOG_URL": url})
    assert str(refused.value) == (
        f"INFERENCE_LOG_URL={url!r}: {scheme}:// needs the {SCHEMES[scheme]} package, "
        "which this image does not install"
    )


@pytest.fixture
def s3_store(s3_server: None) -> str:
    """A bucket on moto's S3 server, and the log's URL in it."""
    import boto3

    boto3.client("s3").create_bucket(Bucket="logs")
    return "s3://logs/inference"


def test_the_log_ships_to_s3(tmp_path: Path, s3_store: str) -> None:
    import fsspec

    log = InferenceLog.from_settings(
        LogSettings.from_environment(
            {"INFERENCE_LOG_DIR": str(tmp_path), "INFERENCE_LOG_URL": s3_store}
        )
    )
    assert log is not None
    log.append([{"number": 1}, {"number": 2}], [key(1), key(2)], [0.0, 1.0], "1")
    log.close()
    fs = fsspec.filesystem("s3", skip_instance_cache=True)
    files = fs.glob("logs/inference/date=*/*.jsonl")
    assert len(files) == 1
    assert files[0].startswith(f"logs/inference/date={datetime.now(UTC):%Y-%m-%d}/")
    rows = [json.loads(line) for line in fs.cat_file(files[0]).decode().splitlines()]
    assert [row["prediction_id"] for row in rows] == [key(1), key(2)]
