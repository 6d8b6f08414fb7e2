"""The inference log: workers writing at once, with rotation, lose no row."""

import json
import multiprocessing
from pathlib import Path

from {{ cookiecutter.package_name }}.inference_log import InferenceLog

ROWS_PER_WORKER = 400
MAX_BYTES = 4096  # a few dozen rows a file, so both workers rotate many times
BACKUPS = 1000


def write_rows(folder: Path, worker: int) -> None:
    log = InferenceLog(folder, MAX_BYTES, BACKUPS, worker)
    for number in range(ROWS_PER_WORKER):
        log.append([{"worker": worker, "number": number}], [0.0], "1")
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
