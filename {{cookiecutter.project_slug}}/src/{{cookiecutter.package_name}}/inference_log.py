"""Every scored row, appended to rotated JSON-lines files: the drift job's real "current" data.

Each service worker writes its own file, `inference-<worker>.jsonl`: a rotating file handler
renames its file when it is full, which is safe only while one process writes to it.
"""

import json
import logging
import os
import time
from logging.handlers import RotatingFileHandler
from pathlib import Path
from typing import Any

LOG_DIR = Path("logs/inference")
# Every worker's file and its rotated copies (`inference-1.jsonl`, `inference-1.jsonl.1`, ...).
LOG_FILES = "inference-*.jsonl*"
MAX_BYTES = 10 * 1024 * 1024
BACKUPS = 10


class InferenceLog:
    """One worker's append-only, size-rotated log (thread-safe through logging's handler lock)."""

    def __init__(
        self,
        folder: Path = LOG_DIR,
        max_bytes: int = MAX_BYTES,
        backups: int = BACKUPS,
        worker: int = 1,
    ) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.path = folder / f"inference-{worker}.jsonl"
        handler = RotatingFileHandler(
            self.path, maxBytes=max_bytes, backupCount=backups, encoding="utf-8"
        )
        handler.setFormatter(logging.Formatter("%(message)s"))
        self._logger = logging.getLogger(f"{__name__}.{id(self)}")
        self._logger.propagate = False
        self._logger.setLevel(logging.INFO)
        self._logger.addHandler(handler)

    @classmethod
    def from_environment(cls, worker: int = 1) -> "InferenceLog":
        """Worker `worker`'s log: the defaults, overridden by INFERENCE_LOG_DIR, _MAX_BYTES and
        _BACKUPS."""
        return cls(
            Path(os.environ.get("INFERENCE_LOG_DIR", LOG_DIR)),
            int(os.environ.get("INFERENCE_LOG_MAX_BYTES", MAX_BYTES)),
            int(os.environ.get("INFERENCE_LOG_BACKUPS", BACKUPS)),
            worker,
        )

    def append(self, rows: list[dict[str, Any]], predictions: list[float], version: str) -> None:
        """One line per row: its features, the prediction and the model version, written for the
        whole batch at once."""
        now = time.time()
        lines = [
            json.dumps(
                {**row, "prediction": prediction, "model_version": version, "time": now},
                separators=(",", ":"),
            )
            for row, prediction in zip(rows, predictions, strict=True)
        ]
        self._logger.info("\n".join(lines))

    def close(self) -> None:
        for handler in list(self._logger.handlers):
            handler.close()
            self._logger.removeHandler(handler)
