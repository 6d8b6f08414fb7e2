"""The closed files of the inference and feedback logs, copied to object storage: what the drift
and monitoring jobs read there.

A closed file goes to `<url>/date=YYYY-MM-DD/<host>-<worker>-<start>-<digest>.jsonl`: the UTC
day and the time of its first row, the pod (host) and the worker that wrote it, and 12 hex
digits of its content's sha256, so names never clash and the drift job lists only the days it
wants. Copies run in a background thread, so no
request waits for the store; a file is deleted only once its copy is complete, and one that
failed stays on disk and is tried again at the next rotation and at shutdown.
"""

import hashlib
import json
import logging
import re
import socket
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import fsspec
from fsspec.implementations.local import LocalFileSystem

from ..core.errors import ProjectError
from ..core.stores import FSSPEC_SCHEMES, fsspec_url

# The schemes fsspec reads and the backends the project can depend on (`file` for tests and
# for a mounted volume). `azure` is DVC's spelling, accepted so that the drift stage's
# `drift.current` (a DVC dependency) and this URL can be the same string.
SCHEMES = {
    "s3": "s3fs",
    "gs": "gcsfs",
    "gcs": "gcsfs",
    "az": "adlfs",
    "azure": "adlfs",
    "abfs": "adlfs",
    "file": "",
}
URL = re.compile(r"(?P<scheme>[a-z0-9]+)://(?P<rest>[^\s]+)")
# How each closed file's start time reads in its name.
STAMP = "%Y%m%dT%H%M%S.%fZ"
# Hex digits of the content's sha256 in each shipped file's name.
DIGEST = 12
LOGGER = logging.getLogger(__name__)


class ShippingError(ProjectError):
    """An INFERENCE_LOG_URL or FEEDBACK_LOG_URL the service cannot ship to."""


def check_url(url: str, setting: str = "INFERENCE_LOG_URL") -> str:
    """The URL without a trailing slash; ShippingError in one line, naming `setting`, when
    fsspec cannot write there with what is installed."""
    found = URL.fullmatch(url.strip())
    if found is None or found["scheme"] not in SCHEMES or not found["rest"].strip("/"):
        raise ShippingError(
            f"{setting}={url!r}: expected s3://, gs://, azure:// or file:// and a location"
        )
    try:
        fsspec.get_filesystem_class(FSSPEC_SCHEMES.get(found["scheme"], found["scheme"]))
    except ImportError:
        raise ShippingError(
            f"{setting}={url!r}: {found['scheme']}:// needs the "
            f"{SCHEMES[found['scheme']]} package, which this image does not install"
        ) from None
    return url.strip().rstrip("/")


def started(file: Path) -> datetime:
    """When a log file's first row was written, or when the file was, if that row is broken."""
    try:
        with file.open(encoding="utf-8") as text:
            return datetime.fromtimestamp(float(json.loads(text.readline())["time"]), UTC)
    except (ValueError, KeyError, TypeError):
        return datetime.fromtimestamp(file.stat().st_mtime, UTC)


class Shipper:
    """Copies one worker's closed files to `url` in a background thread; `close` stops it and
    makes a last attempt in the caller's thread. `kind` names the log in its warnings."""

    def __init__(
        self, url: str, worker: int, host: str | None = None, kind: str = "inference log"
    ) -> None:
        self.url = check_url(url)
        self.kind = kind
        self.fs: Any
        self.fs, self.root = fsspec.core.url_to_fs(fsspec_url(self.url))
        self.name = f"{host or socket.gethostname()}-{worker}"
        self.failures = 0
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._pending: list[Path] = []
        # Held only to swap the list, so a rotation never waits for a copy in progress.
        self._lock = threading.Lock()
        self._copying = threading.Lock()  # one copy pass at a time, whichever thread runs it
        self._thread = threading.Thread(
            target=self._run, name=f"{kind.replace(' ', '-')}-shipper", daemon=True
        )
        self._thread.start()

    def target(self, file: Path) -> str:
        """Where `file` goes: its day's partition, named by pod, worker, first row and content.

        The content's digest keeps apart files whose first rows share a time (a clock that did
        not move between rotations), which would otherwise replace one another in the store,
        and makes a copy sent again (its deletion failed) land on the same object.
        """
        start = started(file)
        with file.open("rb") as content:
            digest = hashlib.file_digest(content, "sha256").hexdigest()[:DIGEST]
        return f"{self.root}/date={start:%Y-%m-%d}/{self.name}-{start:{STAMP}}-{digest}.jsonl"

    def ship(self, files: list[Path]) -> None:
        """Copy these closed files (and any that failed before) soon, without waiting."""
        with self._lock:
            self._pending = files
        self._wake.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait()
            self._wake.clear()
            if not self._stop.is_set():
                self.copy_pending()

    def copy_pending(self) -> int:
        """Copy each pending file and delete it once copied; the number that failed. A file
        that failed stays on disk, and the next rotation lists it again."""
        with self._copying:
            with self._lock:
                pending = self._pending
            failed = sum(1 for file in pending if file.exists() and not self._copy(file))
            self.failures += failed
            return failed

    def _copy(self, file: Path) -> bool:
        try:
            target = self.target(file)
            if isinstance(self.fs, LocalFileSystem):  # an object store has no folders to make
                self.fs.makedirs(target.rsplit("/", 1)[0], exist_ok=True)
            self.fs.put_file(str(file), target)
        except FileNotFoundError:
            return True  # the retention removed it meanwhile: nothing left to copy
        except Exception as error:  # any failure of the store: keep the file
            LOGGER.warning(
                "%s: %s not copied to %s, kept for the next try (%s: %s)",
                self.kind,
                file.name,
                self.url,
                type(error).__name__,
                " ".join(str(error).split())[:200],
            )
            return False
        file.unlink(missing_ok=True)
        return True

    def close(self, files: list[Path]) -> int:
        """Stop the thread, then copy `files` here and now; the number that failed."""
        self._stop.set()
        self._wake.set()
        self._thread.join()
        with self._lock:
            self._pending = files
        return self.copy_pending()
