"""Every scored row, appended to rotated JSON-lines files: the drift job's real "current" data.

A line is one row: `prediction_id` (the id its answer carries, the key that joins the row's
ground truth later), the row's features, `prediction`, a binary classifier's `probability`,
`model_version` and `time` (seconds since 1970, UTC).

Each service worker writes its own file, `inference-<worker>.jsonl`: a rotating file handler
renames its file when it is full, which is safe only while one process writes to it. The rows
are the data clients send, so the files are readable by their owner and group only, a retention
in days can be set, and `INFERENCE_LOG=off` writes none.

With INFERENCE_LOG_URL (`s3://bucket/inference`, ...), the log leaves the pod: a file is also
closed at the first row of each UTC day and at shutdown, renamed `inference-<worker>.jsonl.<start>`
and copied to the store by `log_shipping`, which deletes it once copied. Until then it stays,
whatever INFERENCE_LOG_BACKUPS says, so an unreachable store loses no row; the retention still
deletes it when it is older than that.

`RotatedLog` is the file machinery (rotation, retention, permissions, shipping) of one worker's
JSON lines; the feedback log (feedback_log.py) is the other log built on it.
"""

import json
import logging
import os
import stat
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from io import TextIOWrapper
from logging.handlers import RotatingFileHandler
from pathlib import Path
from typing import Any, ClassVar, Self

from ..core.errors import ProjectError
from ..core.prediction_ids import PREDICTION_ID
from ..core.scoring import PREDICTION, PROBABILITY
from .log_shipping import STAMP, Shipper, check_url, started

LOG_DIR = Path("logs/inference")
MAX_BYTES = 10 * 1024 * 1024
BACKUPS = 10
# Owner writes, the group (a log shipper, the pod's fsGroup) reads, nobody else: whatever the
# umask, which can only take more away.
FILE_MODE = 0o640
FOLDER_MODE = 0o750
DAY_SECONDS = 24 * 60 * 60
ON = {"on", "1", "true", "yes"}
# One encoder for every line, as `json.dumps(..., separators=(",", ":"))` writes it:
# `json.dumps` with any setting other than the defaults builds a new encoder on every call.
_compact = json.JSONEncoder(separators=(",", ":")).encode
OFF = {"off", "0", "false", "no"}


class InferenceLogError(ProjectError):
    """An INFERENCE_LOG_* setting the service cannot start with."""


@dataclass(frozen=True)
class LogSettings:
    """Where the log goes and how long it is kept; `enabled=False` writes nothing."""

    enabled: bool = True
    folder: Path = LOG_DIR
    max_bytes: int = MAX_BYTES
    backups: int = BACKUPS
    retention_days: int | None = None
    url: str | None = None  # where closed files are copied; None keeps them in `folder` only

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] = os.environ) -> "LogSettings":
        """The defaults, overridden by INFERENCE_LOG (on/off), INFERENCE_LOG_DIR, _MAX_BYTES,
        _BACKUPS, _RETENTION_DAYS and _URL; raises a ProjectError naming a bad one."""
        switch = environ.get("INFERENCE_LOG", "on").strip().lower()
        if switch not in ON | OFF:
            raise InferenceLogError(
                f"INFERENCE_LOG={environ['INFERENCE_LOG']!r}: expected on or off"
            )
        days = _at_least_one(environ, "INFERENCE_LOG_RETENTION_DAYS", 0)
        url = environ.get("INFERENCE_LOG_URL", "").strip()
        return cls(
            enabled=switch in ON,
            folder=Path(environ.get("INFERENCE_LOG_DIR", LOG_DIR)),
            max_bytes=_at_least_one(environ, "INFERENCE_LOG_MAX_BYTES", MAX_BYTES),
            backups=_at_least_one(environ, "INFERENCE_LOG_BACKUPS", BACKUPS),
            retention_days=days or None,
            url=check_url(url) if url else None,
        )


def _at_least_one(environ: Mapping[str, str], name: str, default: int) -> int:
    # Python's rotating handler takes 0 for "never rotate": the file would grow without bound.
    text = environ.get(name, "").strip()
    if not text:
        return default
    if not (text.isascii() and text.isdigit()) or int(text) < 1:
        raise InferenceLogError(f"{name}={text!r}: expected a whole number of at least 1")
    return int(text)


class RetainingFileHandler(RotatingFileHandler):
    """A size-rotated file, created with FILE_MODE. With `retention_days`, it also rotates at
    its first record of each UTC day and deletes its files last written more than that many
    days ago, when it opens and at each rotation: a row is kept at most one day longer.

    With a `shipper`, it rotates at each new UTC day too, and a closed file is not numbered
    but named by its first row's time and handed to the shipper, at each rotation, when the
    handler opens (a file a stopped worker left) and when it closes.

    With `raise_errors`, a record that cannot be written (a full disk, a failed rotation) raises
    in the writer's thread instead of being reported on stderr and dropped, as logging does."""

    def __init__(
        self,
        path: Path,
        max_bytes: int,
        backups: int,
        retention_days: int | None,
        shipper: Shipper | None = None,
        clock: Callable[[], float] = time.time,
        raise_errors: bool = False,
    ):
        self.raise_errors = raise_errors
        self.retention = None if retention_days is None else retention_days * DAY_SECONDS
        self.path = path
        self.shipper = shipper
        self.clock = clock
        self.remove_expired()
        if shipper is not None:
            self.seal()
        self.day = _day(path.stat().st_mtime) if _has_rows(path) else _day(clock())
        super().__init__(path, maxBytes=max_bytes, backupCount=backups, encoding="utf-8")
        for file in self.files():
            _tighten(file, FILE_MODE)
        if shipper is not None:
            shipper.ship(self.closed_files())

    def files(self) -> list[Path]:
        """This handler's file and its rotated copies."""
        return [self.path, *self.closed_files()]

    def closed_files(self) -> list[Path]:
        return sorted(self.path.parent.glob(f"{self.path.name}.*"))

    def seal(self) -> None:
        """Rename the file, if it has rows, to its closed name (the stream must be closed)."""
        if not _has_rows(self.path):
            return
        name = f"{self.path.name}.{started(self.path):{STAMP}}"
        closed = self.path.with_name(name)
        copy = 1
        while closed.exists():  # never replace a file not yet shipped
            copy += 1
            closed = self.path.with_name(f"{name}.{copy}")
        self.path.rename(closed)

    def remove_expired(self) -> None:
        if self.retention is None:
            return
        oldest = self.clock() - self.retention
        for file in self.files():
            try:
                if file.stat().st_mtime < oldest:
                    file.unlink()
            except FileNotFoundError:
                pass

    def shouldRollover(self, record: logging.LogRecord) -> int:
        daily = self.retention is not None or self.shipper is not None
        if daily and _day(self.clock()) != self.day and _has_rows(self.path):
            return True
        return super().shouldRollover(record)

    def doRollover(self) -> None:
        if self.shipper is None:
            super().doRollover()
        else:
            if self.stream:
                self.stream.close()
            self.seal()
            self.stream = self._open()
        self.day = _day(self.clock())
        self.remove_expired()
        if self.shipper is not None:
            self.shipper.ship(self.closed_files())

    def close(self) -> None:
        """Close the file; with a shipper, ship it and what is left, and wait for the copies.
        (logging calls this again at exit: the second time there is nothing left to do.)"""
        super().close()
        shipper, self.shipper = self.shipper, None
        if shipper is not None:
            self.acquire()
            try:
                self.seal()
            finally:
                self.release()
            shipper.close(self.closed_files())

    def handleError(self, record: logging.LogRecord) -> None:
        if self.raise_errors:
            raise  # logging calls this inside its `except` block: the error goes on up
        super().handleError(record)

    def _open(self) -> TextIOWrapper:
        descriptor = os.open(self.baseFilename, os.O_WRONLY | os.O_APPEND | os.O_CREAT, FILE_MODE)
        _tighten(descriptor, FILE_MODE)
        return open(descriptor, "a", encoding=self.encoding, errors=self.errors)


def _day(seconds: float) -> int:
    return int(seconds // DAY_SECONDS)


def _has_rows(path: Path) -> bool:
    try:
        return path.stat().st_size > 0
    except FileNotFoundError:
        return False


def _tighten(file: Path | int, allowed: int) -> None:
    """Take away the permission bits beyond `allowed` from a file or folder of ours (one made by
    an earlier version with the umask's); leave another user's alone."""
    try:
        info = os.stat(file)
        if info.st_uid == os.geteuid() and stat.S_IMODE(info.st_mode) & ~allowed:
            os.chmod(file, stat.S_IMODE(info.st_mode) & allowed)
    except FileNotFoundError:
        pass


class RotatedLog:
    """One worker's append-only, rotated file of JSON lines, `<name>-<worker>.jsonl` in `folder`
    (thread-safe through logging's handler lock)."""

    name: ClassVar[str]  # of the files
    kind: ClassVar[str]  # what the service's warnings call it
    raise_errors: ClassVar[bool] = False  # see RetainingFileHandler

    def __init__(
        self,
        folder: Path,
        max_bytes: int = MAX_BYTES,
        backups: int = BACKUPS,
        worker: int = 1,
        retention_days: int | None = None,
        url: str | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        folder.mkdir(mode=FOLDER_MODE, parents=True, exist_ok=True)
        _tighten(folder, FOLDER_MODE)
        self.path = folder / f"{self.name}-{worker}.jsonl"
        self.shipper = None if url is None else Shipper(url, worker, kind=self.kind)
        handler = RetainingFileHandler(
            self.path,
            max_bytes,
            backups,
            retention_days,
            self.shipper,
            clock,
            self.raise_errors,
        )
        self.clock = clock
        handler.setFormatter(logging.Formatter("%(message)s"))
        self._logger = logging.getLogger(f"{__name__}.{id(self)}")
        self._logger.propagate = False
        self._logger.setLevel(logging.INFO)
        self._logger.addHandler(handler)

    @classmethod
    def from_settings(cls, settings: LogSettings, worker: int = 1) -> Self | None:
        """Worker `worker`'s log as `settings` say; None when the log is off."""
        if not settings.enabled:
            return None
        return cls(
            settings.folder,
            settings.max_bytes,
            settings.backups,
            worker,
            settings.retention_days,
            settings.url,
        )

    @property
    def shipping_failures(self) -> int:
        """How many copies to the store failed so far (each failed file is tried again)."""
        return 0 if self.shipper is None else self.shipper.failures

    def write(self, lines: list[str]) -> None:
        """Append `lines` (each one JSON object, no newline) in one write."""
        self._logger.info("\n".join(lines))

    def close(self) -> None:
        for handler in list(self._logger.handlers):
            handler.close()
            self._logger.removeHandler(handler)


class InferenceLog(RotatedLog):
    """Every scored row: its id, features, outputs, model version and time."""

    name = "inference"
    kind = "inference log"

    def append(
        self,
        rows: list[dict[str, Any]],
        ids: list[str],
        predictions: list[float],
        version: str,
        probabilities: list[float] | None = None,
    ) -> None:
        """One line per row: its prediction id (the key its ground truth joins on later), its
        features, the prediction, a binary classifier's probability of the positive class (for
        the production ROC AUC), the model version and the time, written for the whole batch at
        once."""
        now = self.clock()
        if probabilities is None:
            lines = [
                _compact(
                    {
                        PREDICTION_ID: key,
                        **row,
                        PREDICTION: value,
                        "model_version": version,
                        "time": now,
                    }
                )
                for key, row, value in zip(ids, rows, predictions, strict=True)
            ]
        else:
            lines = [
                _compact(
                    {
                        PREDICTION_ID: key,
                        **row,
                        PREDICTION: value,
                        PROBABILITY: probability,
                        "model_version": version,
                        "time": now,
                    }
                )
                for key, row, value, probability in zip(
                    ids, rows, predictions, probabilities, strict=True
                )
            ]
        self.write(lines)
