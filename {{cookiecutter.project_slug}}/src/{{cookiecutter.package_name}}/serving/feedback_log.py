"""Ground truth sent to POST /feedback, appended to rotated JSON-lines files: monitor's labels.

A line is one label: `{"prediction_id": ..., "label": ..., "time": <seconds since 1970, UTC>}`,
the time being when the service received it. That is the JSON-lines form of the label files
`make monitor` reads (pipeline/labels.py): point `monitor.labels` at the folder, or at
FEEDBACK_LOG_URL.

Each worker writes its own `feedback-<worker>.jsonl` with the inference log's machinery
(inference_log.RotatedLog): the same rotation, permissions and retention (INFERENCE_LOG_MAX_BYTES,
_BACKUPS, _RETENTION_DAYS), in FEEDBACK_LOG_DIR (`logs/feedback`), and with FEEDBACK_LOG_URL
closed files are shipped to `<url>/date=YYYY-MM-DD/...jsonl` as the inference log's are.
INFERENCE_LOG=off turns this log off too: a label is only of use joined with its logged
prediction, and the service then refuses labels (503) rather than take and drop them.

A label sent again with the same value adds no line: each worker remembers the last labels it
wrote (REMEMBERED ids). Another worker, or a restart, may write it again; `make monitor` keeps
one label per id (the latest), so the result is the same. A different value for an id is a
correction, and is written.
"""

import json
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import replace
from pathlib import Path

from ..core.errors import ProjectError
from ..core.prediction_ids import PREDICTION_ID
from .inference_log import BACKUPS, MAX_BYTES, LogSettings, RotatedLog
from .log_shipping import check_url

FEEDBACK_DIR = Path("logs/feedback")
LABEL = "label"
# Ids whose last label each worker remembers: about 11 MB (measured with tracemalloc).
REMEMBERED = 100_000


class FeedbackLogError(ProjectError):
    """A FEEDBACK_LOG_* setting the service cannot start with."""


def feedback_settings(
    inference: LogSettings, environ: Mapping[str, str] = os.environ
) -> LogSettings:
    """The inference log's switch, sizes and retention, in FEEDBACK_LOG_DIR, shipped to
    FEEDBACK_LOG_URL; a FeedbackLogError naming a bad setting."""
    named = environ.get("FEEDBACK_LOG_DIR", "").strip()
    folder = Path(named or FEEDBACK_DIR)
    if folder.resolve() == inference.folder.resolve():
        raise FeedbackLogError(
            f"FEEDBACK_LOG_DIR={named or str(folder)!r}: expected a folder other than the "
            "inference log's (monitor.labels reads every file of its folder)"
        )
    text = environ.get("FEEDBACK_LOG_URL", "").strip()
    url = check_url(text, "FEEDBACK_LOG_URL") if text else None
    if url is not None and url == inference.url:
        raise FeedbackLogError(
            f"FEEDBACK_LOG_URL={text!r}: expected a location other than INFERENCE_LOG_URL "
            "(monitor reads every file under each)"
        )
    return replace(inference, folder=folder, url=url)


class FeedbackLog(RotatedLog):
    """One worker's labels. A label that cannot be written raises: the client then gets an
    error and sends it again, where the inference log would report the error and go on."""

    name = "feedback"
    kind = "feedback log"
    raise_errors = True

    def __init__(
        self,
        folder: Path,
        max_bytes: int = MAX_BYTES,
        backups: int = BACKUPS,
        worker: int = 1,
        retention_days: int | None = None,
        url: str | None = None,
        clock: Callable[[], float] = time.time,
        remembered: int = REMEMBERED,
    ) -> None:
        super().__init__(folder, max_bytes, backups, worker, retention_days, url, clock)
        self.remembered = remembered
        self._recent: OrderedDict[str, float] = OrderedDict()
        self._lock = threading.Lock()

    def append(self, labels: list[tuple[str, float]]) -> int:
        """A line per (prediction id, label) not written with that label before (among the
        last `remembered` ids), all with the time now; how many lines were written. An id
        twice in `labels` counts as its last label."""
        with self._lock:
            now = self.clock()
            latest = dict(labels)
            new = {key: label for key, label in latest.items() if self._recent.get(key) != label}
            if new:
                self.write(
                    [
                        json.dumps(
                            {PREDICTION_ID: key, LABEL: label, "time": now}, separators=(",", ":")
                        )
                        for key, label in new.items()
                    ]
                )
            # Only once written: a label that failed is not taken for one already written.
            for key, label in new.items():
                self._recent[key] = label
                self._recent.move_to_end(key)
            while len(self._recent) > self.remembered:
                self._recent.popitem(last=False)
            return len(new)
