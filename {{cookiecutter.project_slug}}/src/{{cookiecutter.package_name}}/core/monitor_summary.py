"""The monitor summary: the model's quality in production, for every reader of reports/monitor.json.

`pipeline/monitor.py` measures it and decides the verdict once (`judge`); `ci monitor` (the job
summary and the monitoring issue) reads it back and words it (`markdown`).
"""

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from .config import METRICS, MONITOR_SUMMARY
from .errors import DataError

Verdict = Literal["ok", "below_floor", "too_few_labels", "no_predictions"]
HEADLINES: dict[str, str] = {
    "ok": "**Production quality holds.**",
    "below_floor": "**Production quality fell below its floor.**",
    "too_few_labels": "**No verdict: too few labelled predictions.**",
    "no_predictions": "**No verdict: no prediction was logged in the window.**",
}
AGAIN = "run `make monitor` to write it again"


class Record(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class VersionQuality(Record):
    """One model version's labelled predictions in the window, and their metrics."""

    version: str
    labelled: int
    metrics: dict[str, float]


class Lateness(Record):
    """How long after its prediction a label arrived, in hours."""

    median: float
    p90: float
    max: float


class MonitorSummary(Record):
    """reports/monitor.json."""

    verdict: Verdict
    reasons: list[str]
    version: str | None  # the version judged: the one with the latest labelled prediction
    first_day: str
    last_day: str
    predictions: int  # log lines read
    malformed: int  # of them, not a prediction
    labels: int  # label rows read
    labelled: int  # predictions joined with a valid label
    skipped: dict[str, int]
    lateness_hours: Lateness | None
    versions: list[VersionQuality]
    min_labelled: int
    floors: dict[str, float]

    @property
    def alert(self) -> bool:
        return self.verdict == "below_floor"

    def judged(self) -> VersionQuality | None:
        return next((found for found in self.versions if found.version == self.version), None)

    def headline(self) -> str:
        window = f"{self.first_day} to {self.last_day} (UTC)"
        judged = self.judged()
        about = (
            f"version {self.version}, {judged.labelled:,} labelled predictions"
            if judged is not None
            else f"{self.labelled:,} labelled predictions"
        )
        return f"{HEADLINES[self.verdict]} {about} of {self.predictions:,} logged, {window}."

    def markdown(self) -> str:
        lines = ["## Production quality", "", self.headline()]
        if self.reasons:
            lines += ["", *[f"- {reason}" for reason in self.reasons]]
        names = sorted({name for found in self.versions for name in found.metrics}, key=_order)
        if self.versions:
            lines += ["", "| version | labelled | " + " | ".join(names) + " |"]
            lines += ["|---|---:|" + "---:|" * len(names)]
            for found in self.versions:
                values = [_number(found.metrics.get(name)) for name in names]
                lines += [f"| {found.version} | {found.labelled:,} | " + " | ".join(values) + " |"]
        floors = ", ".join(
            f"{name} {'≥' if METRICS[name] else '≤'} {value:g}"
            for name, value in self.floors.items()
        )
        lines += ["", f"Floors: {floors}; at least {self.min_labelled:,} labelled predictions."]
        if self.lateness_hours is not None:
            late = self.lateness_hours
            lines += [
                f"Labels arrived {late.median:.1f} h after their prediction (median; 90% within "
                f"{late.p90:.1f} h, the latest {late.max:.1f} h)."
            ]
        if self.skipped:
            counts = ", ".join(
                f"{reason.replace('_', ' ')} {count:,}" for reason, count in self.skipped.items()
            )
            lines += [f"Labels skipped: {counts}."]
        if self.malformed:
            lines += [f"Log lines that are not a prediction: {self.malformed:,}."]
        return "\n".join(lines) + "\n"

    def to_json(self) -> str:
        return self.model_dump_json(indent=2) + "\n"

    @classmethod
    def read(cls, path: Path = MONITOR_SUMMARY) -> "MonitorSummary":
        """The summary `monitor` wrote; DataError, one line, when it is missing or wrong."""
        try:
            return cls.model_validate_json(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise DataError(f"{path}: not found; run `make monitor` first") from None
        except ValidationError as error:
            first = error.errors()[0]
            key = ".".join(str(part) for part in first["loc"]) or "the file"
            raise DataError(f"{path}: {key}: {first['msg']}; {AGAIN}") from None


def judge(
    version: VersionQuality | None, floors: Mapping[str, float], min_labelled: int, logged: int
) -> tuple[Verdict, list[str]]:
    """The verdict on the judged version's metrics, and its reasons."""
    if logged == 0:
        return "no_predictions", ["the inference log has no prediction in the window"]
    if version is None or version.labelled < min_labelled:
        labelled = 0 if version is None else version.labelled
        which = "" if version is None else f" of version {version.version}"
        return "too_few_labels", [
            f"{labelled:,} labelled predictions{which}; monitor.min_labelled asks for "
            f"{min_labelled:,} before judging"
        ]
    below, unmeasured = [], []
    for name, floor in floors.items():
        value = version.metrics.get(name)
        if value is None or not math.isfinite(value):
            unmeasured.append(f"{name}: not measured (the labels hold one class only)")
        elif (value < floor) if METRICS[name] else (value > floor):
            word = "floor" if METRICS[name] else "ceiling"
            below.append(f"{name} {value:.4f} is worse than its {word} {floor:g}")
    return ("below_floor" if below else "ok"), below + unmeasured


def _order(name: str) -> int:
    return list(METRICS).index(name) if name in METRICS else len(METRICS)


def _number(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"
