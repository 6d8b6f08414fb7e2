"""The inference log the service shipped (INFERENCE_LOG_URL): the days of a window.

The service copies each closed file to `<url>/date=YYYY-MM-DD/*.jsonl` (serving/log_shipping.py),
so a window of days is a listing of the root and of the partitions in it: nothing outside the
window is read. A line is one scored row; only the features are kept. A line that is not a
JSON object with every feature as a number (a file cut short by a crash, a row from before a
schema change) is skipped and counted, not fatal: one bad line must not stop the drift check of
a week of traffic.
"""

import json
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import fsspec
import pandas as pd

from ..core.errors import DataError
from ..core.schema import Schema
from ..core.stores import fsspec_url

URL = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*)://")
PARTITION = re.compile(r"date=(\d{4}-\d{2}-\d{2})")
CHUNK_ROWS = 100_000


def is_shipped_log(source: str) -> bool:
    """A URL, or a local folder of `date=YYYY-MM-DD` partitions (a mounted copy of the store)."""
    if URL.match(source):
        return True
    folder = Path(source)
    return folder.is_dir() and any(
        child.is_dir() and PARTITION.fullmatch(child.name) for child in folder.iterdir()
    )


@dataclass
class ShippedLog:
    """The partitions of `source` from `window_days - 1` days before `today` to `today` (UTC)."""

    source: str
    window_days: int
    today: date
    lines: int = 0
    malformed: int = 0

    @classmethod
    def of(cls, source: str, window_days: int) -> "ShippedLog":
        return cls(source, window_days, datetime.now(UTC).date())

    @property
    def first_day(self) -> date:
        return self.today - timedelta(days=self.window_days - 1)

    def describe_window(self) -> str:
        return f"the last {self.window_days} days ({self.first_day} to {self.today}, UTC)"

    def files(self) -> tuple[Any, list[str]]:
        """The store's filesystem and the window's files in day and name order (none when the
        window holds none); DataError in one line when the store cannot be listed."""
        try:
            fs, root = fsspec.core.url_to_fs(fsspec_url(self.source))
            days = sorted(
                entry.rstrip("/")
                for entry in fs.ls(root, detail=False)
                if self._in_window(entry.rstrip("/").rsplit("/", 1)[-1])
            )
            files = [file for day in days for file in sorted(fs.glob(f"{day}/*.jsonl"))]
        except FileNotFoundError:
            files = []
        except (ImportError, ValueError, OSError) as error:
            reason = " ".join(str(error).split())[:200]
            raise DataError(f"{self.source}: cannot list the inference log ({reason})") from None
        return fs, files

    def _in_window(self, name: str) -> bool:
        found = PARTITION.fullmatch(name)
        if found is None:
            return False
        try:
            day = date.fromisoformat(found[1])
        except ValueError:
            return False
        return self.first_day <= day <= self.today

    def _lines(self, fs: Any, files: list[str]) -> Iterator[str]:
        for file in files:
            with fs.open(file, "rt", encoding="utf-8", errors="replace") as text:
                for line in text:
                    if line.strip():
                        self.lines += 1
                        yield line

    def chunks(self, schema: Schema) -> Iterator[pd.DataFrame]:
        """The window's rows, features only, CHUNK_ROWS at a time; counts lines and bad ones.
        DataError when the window holds no file."""
        fs, files = self.files()
        if not files:
            raise DataError(
                f"{self.source}: no inference log in {self.describe_window()}; no drift report "
                "is made from nothing (serve the model with INFERENCE_LOG_URL pointing here, or "
                "widen drift.window_days)"
            )
        names = schema.feature_names
        rows: list[list[float]] = []
        for line in self._lines(fs, files):
            values = _features(line, names)
            if values is None:
                self.malformed += 1
                continue
            rows.append(values)
            if len(rows) == CHUNK_ROWS:
                yield pd.DataFrame(rows, columns=names)
                rows = []
        if rows:
            yield pd.DataFrame(rows, columns=names)


def _features(line: str, names: list[str]) -> list[float] | None:
    """The line's features in schema order, or None if it is not a row of them."""
    try:
        record = json.loads(line)
    except ValueError:
        return None
    if not isinstance(record, dict):
        return None
    values = []
    for name in names:
        value = record.get(name)
        if not isinstance(value, int | float) or isinstance(value, bool):
            return None
        if not math.isfinite(value):
            return None
        values.append(float(value))
    return values
