"""Ground truth: the labels that arrive after the predictions, as CSV, Parquet or JSON-lines files.

A label file has three columns: `prediction_id` (the id the service returned with the prediction),
`label` (the true value of the target) and `time` (when it became known: ISO 8601, or seconds
since 1970, UTC); in JSON lines, each line is an object with those three keys, as the service's
feedback log writes them (POST /feedback, serving/feedback_log.py). `monitor.labels` names a
folder or a store URL (s3://, gs://, azure://); every `*.csv`, `*.parquet` and `*.jsonl` under
it is read (and the feedback log's closed files, `*.jsonl.<number>` or `*.jsonl.<time>`), except
those in a `date=YYYY-MM-DD` folder outside the window. Labels come from other systems and from
people: a bad row or line is skipped and counted, a bad file named and skipped, and one bad
file never hides a week of good ones.
"""

import json
import os
import re
from collections import Counter
from dataclasses import dataclass, field
from datetime import date
from typing import IO, Any

import numpy as np
import pandas as pd

from ..core.errors import DataError
from ..core.prediction_ids import ID_LENGTH, PREDICTION_ID
from ..core.schema import Column
from ..core.stores import fsspec_url
from .shipped_log import PARTITION

LABEL = "label"
TIME = "time"
COLUMNS = (PREDICTION_ID, LABEL, TIME)
# A label file's format by its name: the feedback log's rotated files end `.jsonl.<number>`,
# its closed ones `.jsonl.<first label's time>` (and `.<copy>` when that name was taken).
CLOSED = r"\.\d+|\.\d{8}T\d{6}\.\d{6}Z(?:\.\d+)?"
FORMATS = re.compile(rf".*\.(?:(csv|parquet)|(jsonl)(?:{CLOSED})?)")
HEX = re.compile("[0-9a-f]+")
# Why a label is skipped: the reason's key in reports/monitor.json, and its words.
SKIPPED = {
    "unreadable_files": "label files that cannot be read, or lack a column",
    "malformed_lines": "lines of JSON-lines label files that are not a JSON object",
    "bad_ids": "labels whose prediction_id is not 32 hex characters",
    "invalid_labels": "labels that are not a valid {target} ({allowed})",
    "bad_times": "labels whose time is not a date and time",
    "duplicates": "labels of an id labelled again (the latest is kept)",
    "unknown_ids": "labels of no prediction in the window's log (an unknown id, or one older "
    "than the window)",
    "before_prediction": "labels timed before their prediction (a wrong id or clock)",
}


@dataclass
class Labels:
    """The valid labels: `truth[id] = (label, time in seconds)`; what was skipped, and why."""

    truth: dict[str, tuple[float, float]]
    files: int = 0
    rows: int = 0
    skipped: Counter[str] = field(default_factory=Counter)
    # One example of each reason: the file and the offending value.
    examples: dict[str, str] = field(default_factory=dict)
    unreadable: list[str] = field(default_factory=list)  # each file skipped, and why

    def skip(self, reason: str, count: int, example: str) -> None:
        if count:
            self.skipped[reason] += count
            self.examples.setdefault(reason, example)


def to_fsspec(source: str) -> tuple[Any, str]:
    """The filesystem and path of a folder or a store URL (DVC's azure:// is fsspec's az://)."""
    import fsspec

    fs, path = fsspec.core.url_to_fs(fsspec_url(source))
    return fs, str(path)


def label_files(source: str, first_day: date, last_day: date) -> tuple[Any, list[str]]:
    """The label files under `source`, in name order, without the partitions outside the days;
    none when `source` does not exist. DataError when it cannot be listed."""
    try:
        fs, root = to_fsspec(source)
        found = sorted(path for path in fs.find(root) if file_format(path) is not None)
    except FileNotFoundError:
        return None, []
    except (ImportError, ValueError, OSError) as error:
        reason = " ".join(str(error).split())[:200]
        raise DataError(f"{source}: cannot list the label files ({reason})") from None
    return fs, [path for path in found if _in_days(path, first_day, last_day)]


def file_format(path: str) -> str | None:
    """`csv`, `parquet` or `jsonl` by the file's name; None for a file that is not labels."""
    found = FORMATS.fullmatch(path.rsplit("/", 1)[-1])
    return None if found is None else found[1] or found[2]


def _in_days(path: str, first_day: date, last_day: date) -> bool:
    for part in path.split("/"):
        found = PARTITION.fullmatch(part)
        if found is not None:
            try:
                return first_day <= date.fromisoformat(found[1]) <= last_day
            except ValueError:
                return False
    return True


def read_labels(source: str, target: Column, first_day: date, last_day: date) -> Labels:
    """Every valid label under `source`; for an id labelled more than once, the latest."""
    fs, files = label_files(source, first_day, last_day)
    labels = Labels(truth={}, files=len(files))
    read = (_read_file(fs, file, target, labels) for file in files)
    frames = [frame for frame in read if frame is not None]
    if not frames:
        return labels
    table = pd.concat(frames, ignore_index=True).sort_values(TIME, kind="stable")
    repeated = table.duplicated(PREDICTION_ID, keep="last")
    if repeated.any():
        labels.skip("duplicates", int(repeated.sum()), str(table[PREDICTION_ID][repeated].iloc[0]))
        table = table[~repeated]
    labels.truth = dict(
        zip(
            table[PREDICTION_ID].tolist(),
            zip(table[LABEL].tolist(), table[TIME].tolist(), strict=True),
            strict=True,
        )
    )
    return labels


@dataclass
class Table:
    """A label file as read: its rows, indexed by their number in the file less one (`unit`
    says what is numbered), and (JSON lines) the lines that are not an object."""

    frame: pd.DataFrame
    unit: str = "row"
    malformed: int = 0
    first_malformed: str = ""


def _read_csv(data: IO[bytes]) -> Table:
    return Table(pd.read_csv(data, dtype=str, keep_default_na=False))


def _read_parquet(data: IO[bytes]) -> Table:
    """Arrow reads its own copy of the bytes, never the Python file: given one, it reads on
    its threads and may let go of the file on one as the interpreter exits, which aborts the
    process ("terminate called without an active exception", apache/arrow#34314)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    copy = pa.BufferOutputStream()
    copy.write(data.read())
    frame = pq.read_table(pa.BufferReader(copy.getvalue())).to_pandas()
    return Table(frame.reset_index(drop=True))  # rows numbered from 0


def _read_jsonl(data: IO[bytes]) -> Table:
    """One row per line that is a JSON object, each value as text (numbers as written, so as a
    CSV cell would hold them; anything else as JSON); blank lines are no rows, other lines are
    counted. No line at all is no row; lines without a key are a file without that column."""
    records: list[dict[str, str]] = []
    numbers: list[int] = []
    malformed, first = 0, ""
    for number, line in enumerate(data, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line, parse_float=str, parse_int=str, parse_constant=str)
        except ValueError:
            record = None
        if not isinstance(record, dict):
            malformed += 1
            first = first or f"line {number}: {line[:60].decode('utf-8', 'replace')!r}"
            continue
        records.append(
            {
                name: value if isinstance(value, str) else json.dumps(value)
                for name, value in record.items()
                if name in COLUMNS
            }
        )
        numbers.append(number - 1)
    if not records:
        return Table(pd.DataFrame(columns=COLUMNS), "line", malformed, first)
    frame = pd.DataFrame(records, index=numbers, dtype=object).fillna("")
    return Table(frame, "line", malformed, first)


READERS = {"csv": _read_csv, "parquet": _read_parquet, "jsonl": _read_jsonl}


def _read_file(fs: Any, path: str, target: Column, labels: Labels) -> pd.DataFrame | None:
    """The file's valid rows (id, label as a float, time in seconds); its bad rows counted."""
    shown = _shown(fs, path)
    read = READERS[file_format(path) or ""]
    try:
        with fs.open(path, "rb") as data:
            table = read(data)
    except (ValueError, OSError, ImportError) as error:
        reason = " ".join(str(error).split())[:120]
        _unreadable(labels, f"{shown}: {reason}")
        return None
    frame = table.frame
    missing = [name for name in COLUMNS if name not in frame.columns]
    if missing:
        _unreadable(labels, f"{shown}: no column {', '.join(missing)} (needs {', '.join(COLUMNS)})")
        return None
    labels.rows += len(frame) + table.malformed
    labels.skip("malformed_lines", table.malformed, f"{shown} {table.first_malformed}")
    where = f"{shown} {table.unit}"
    ids = frame[PREDICTION_ID].astype(str).str.strip().str.lower()
    good = ids.str.fullmatch(HEX) & (ids.str.len() == ID_LENGTH)
    _count(labels, "bad_ids", where, frame[PREDICTION_ID], ~good)
    label = pd.to_numeric(frame[LABEL], errors="coerce").astype("float64")
    valid = _valid(label, target) & good
    _count(labels, "invalid_labels", where, frame[LABEL], good & ~valid)
    seconds = _seconds(frame[TIME])
    timed = seconds.notna() & valid
    _count(labels, "bad_times", where, frame[TIME], valid & ~timed)
    return pd.DataFrame({PREDICTION_ID: ids, LABEL: label, TIME: seconds})[timed]


def _shown(fs: Any, path: str) -> str:
    """A local file relative to the project, a store's with its scheme."""
    protocol = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
    if protocol in {"file", "local"}:
        relative = os.path.relpath(path)
        return path if relative.startswith("..") else relative
    return f"{protocol}://{path}"


def _unreadable(labels: Labels, why: str) -> None:
    labels.skip("unreadable_files", 1, why)
    labels.unreadable.append(why)


def _count(labels: Labels, reason: str, where: str, values: pd.Series, bad: pd.Series) -> None:
    """Count the bad values; the first is the example, `<where> <number>: <value>`."""
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        example = f"{where} {values.index[row] + 1}: {values.iloc[row]!r}"
        labels.skip(reason, int(bad.sum()), example)


def _valid(label: pd.Series, target: Column) -> pd.Series:
    """Whether each label is a value the target may take (schema.yaml)."""
    if target.allowed is not None:
        return label.isin([float(value) for value in target.allowed])
    values = label.to_numpy(dtype=float)
    valid = np.isfinite(values)
    if target.min is not None:
        valid &= values >= target.min
    if target.max is not None:
        valid &= values <= target.max
    return pd.Series(valid, index=label.index)


def _seconds(times: pd.Series) -> pd.Series:
    """Seconds since 1970 (UTC) from timestamps, numbers or ISO 8601 text; NaN for the rest."""
    epoch = pd.Timestamp(0, tz="UTC")
    if pd.api.types.is_datetime64_any_dtype(times):
        return (pd.to_datetime(times, utc=True) - epoch).dt.total_seconds()
    numbers = pd.to_numeric(times, errors="coerce").astype("float64")
    text = times.where(numbers.isna()).astype("string")
    stamps = pd.to_datetime(text, utc=True, errors="coerce", format="ISO8601")
    return numbers.where(numbers.notna(), (stamps - epoch).dt.total_seconds())


def describe_skipped(labels: Labels, target: Column) -> list[str]:
    """One line per label file skipped, and per reason a label was skipped: how many, why, and
    an example."""
    words = {"columns": ", ".join(COLUMNS), "target": target.name, "allowed": target.describe()}
    return [f"a label file: {why}" for why in labels.unreadable] + [
        f"{count:,} {SKIPPED[reason].format(**words)}; e.g. {labels.examples[reason]}"
        for reason, count in labels.skipped.items()
        if reason != "unreadable_files"
    ]
