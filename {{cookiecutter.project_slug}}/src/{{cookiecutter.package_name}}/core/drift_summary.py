"""The drift summary: what `drift` found and decided, typed, for every reader of reports/drift.json.

`pipeline/drift.py` builds it from Evidently's per-column tests and writes it; the gate and
`ci drift` (the job summary and the drift issue) read it back. Whether the data drifted is
decided once, when the summary is built (`DriftSummary.of`), and worded once (`headline`).
"""

import json
import math
import reprlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TypeGuard

from .config import DRIFT_SUMMARY
from .errors import DataError

# Drifted columns the markdown account lists, the most drifted first.
MAX_COLUMNS = 10
AGAIN = "run `make drift` to write it again"


@dataclass(frozen=True)
class ColumnTest:
    """One column's drift test: the method Evidently used, its threshold, the score, the result."""

    column: str
    method: str
    threshold: float
    score: float
    drifted: bool

    @property
    def past_threshold(self) -> float:
        """How many times past its threshold a drifted column's score is. A p-value drifts below
        the threshold and a distance above it, so a drifted score under its threshold is a
        p-value: a p-value of a tenth of it and a distance of ten times it are both 10."""
        low, high = sorted((self.score, self.threshold))
        return high / low if low > 0 else math.inf


@dataclass(frozen=True)
class Rows:
    """Rows of the reference (training) and the current data."""

    reference: int
    current: int


@dataclass(frozen=True)
class DriftSummary:
    """reports/drift.json. `drifted` lists the drifted columns, the most drifted first."""

    drift: bool
    max_drift_share: float
    columns: int
    drifted: tuple[str, ...]
    scores: Mapping[str, float]
    # Each test Evidently chose and its threshold.
    methods: Mapping[str, float]
    current: str
    rows: Rows
    compared: Rows

    @classmethod
    def of(
        cls,
        tests: Iterable[ColumnTest],
        max_drift_share: float,
        current: str,
        rows: Rows,
        compared: Rows,
    ) -> "DriftSummary":
        """The summary of the column tests, with the decision: drift when the share of drifted
        columns is over `max_drift_share` (a share equal to it is not drift)."""
        tests = list(tests)
        drifted = sorted(
            (test for test in tests if test.drifted), key=lambda test: -test.past_threshold
        )
        share = len(drifted) / len(tests) if tests else 0.0
        return cls(
            drift=share > max_drift_share,
            max_drift_share=max_drift_share,
            columns=len(tests),
            drifted=tuple(test.column for test in drifted),
            scores={test.column: test.score for test in tests},
            methods={test.method: test.threshold for test in tests},
            current=current,
            rows=rows,
            compared=compared,
        )

    @property
    def drifted_share(self) -> float:
        return len(self.drifted) / self.columns if self.columns else 0.0

    @property
    def sampled(self) -> bool:
        return self.compared != self.rows

    def headline(self) -> str:
        """The decision and what it rests on, in one markdown sentence: the gate's drift line
        and the first line of the drift report and issue."""
        decision = "**Drift detected.**" if self.drift else "**No drift beyond the threshold.**"
        share, allowed = round(self.drifted_share * 100), round(self.max_drift_share * 100)
        current = _rows(self.compared.current, self.rows.current, "rows")
        reference = _rows(self.compared.reference, self.rows.reference, "training rows")
        return (
            f"{decision} {len(self.drifted)} of {self.columns} columns drifted ({share}%; at "
            f"most {allowed}% allowed), comparing {current} of `{self.current}` with {reference}."
        )

    def markdown(self) -> str:
        """The headline, the most drifted columns with their scores, and the tests used."""
        lines = ["## Data drift", "", self.headline()]
        if self.drifted:
            lines += ["", "| column | score |", "|---|---:|"]
            lines += [
                f"| {name} | {self.scores[name]:.4g} |" for name in self.drifted[:MAX_COLUMNS]
            ]
            if len(self.drifted) > MAX_COLUMNS:
                lines += ["", f"and {len(self.drifted) - MAX_COLUMNS} more."]
        tests = ", ".join(
            f"{method} (threshold {value:g})" for method, value in self.methods.items()
        )
        lines += ["", f"Tests: {tests or 'none'}."]
        return "\n".join(lines) + "\n"

    def to_dict(self) -> dict[str, Any]:
        """The JSON object, with the share and count of drifted columns for `dvc metrics`."""
        return {
            "drift": self.drift,
            "drifted_share": self.drifted_share,
            "drifted_columns": len(self.drifted),
            "columns": self.columns,
            "max_drift_share": self.max_drift_share,
            "methods": dict(self.methods),
            "drifted": list(self.drifted),
            "scores": dict(self.scores),
            "current": self.current,
            "rows": asdict(self.rows),
            "compared": asdict(self.compared),
            "sampled": self.sampled,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2) + "\n"

    @classmethod
    def read(cls, path: Path = DRIFT_SUMMARY) -> "DriftSummary":
        """The summary `drift` wrote to `path`; DataError, one line, when it is missing or wrong."""
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise DataError(f"{path}: not found; run `make drift` first") from None
        try:
            data = json.loads(text)
        except json.JSONDecodeError as error:
            raise DataError(
                f"{path}: not valid JSON (line {error.lineno}: {error.msg}); {AGAIN}"
            ) from None
        if not isinstance(data, dict):
            raise DataError(f"{path}: expected a JSON object; {AGAIN}")
        return cls.from_dict(data, path)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], path: Path = DRIFT_SUMMARY) -> "DriftSummary":
        """The summary in `data` (the JSON object of `path`), every key checked."""
        summary = cls(
            drift=_get(data, "drift", path, "true or false", _is_bool),
            max_drift_share=float(
                _get(data, "max_drift_share", path, "a share from 0 to 1", _is_share)
            ),
            columns=_get(data, "columns", path, "a count", _is_count),
            drifted=tuple(_get(data, "drifted", path, "a list of column names", _is_names)),
            scores=_get(data, "scores", path, "an object of columns and numbers", _is_numbers),
            methods=_get(data, "methods", path, "an object of tests and numbers", _is_numbers),
            current=_get(data, "current", path, "a path", _is_text),
            rows=Rows(**_get(data, "rows", path, "reference and current counts", _is_rows)),
            compared=Rows(**_get(data, "compared", path, "reference and current counts", _is_rows)),
        )
        unscored = sorted(set(summary.drifted) - set(summary.scores))
        if unscored or len(set(summary.drifted)) < len(summary.drifted):
            problem = f"{unscored[0]!r} has no score" if unscored else "a column is listed twice"
            raise DataError(f"{path}: drifted: {problem}; {AGAIN}")
        if summary.columns != len(summary.scores):
            raise DataError(
                f"{path}: columns: {summary.columns}, but scores has {len(summary.scores)}; {AGAIN}"
            )
        # The rest follows from the keys above; a file that disagrees was edited by hand.
        expected = summary.to_dict()
        for key, value in data.items():
            if key not in expected:
                raise DataError(f"{path}: {key}: unknown key; {AGAIN}")
            if value != expected[key] or isinstance(value, bool) != isinstance(expected[key], bool):
                raise DataError(
                    f"{path}: {key}: {_show(value)}, but the rest of the file gives "
                    f"{_show(expected[key])}; {AGAIN}"
                )
        missing = [key for key in expected if key not in data]
        if missing:
            raise DataError(f"{path}: {missing[0]}: missing; {AGAIN}")
        return summary


def _rows(compared: int, rows: int, noun: str) -> str:
    return (
        f"{compared:,} {noun}"
        if compared == rows
        else f"a sample of {compared:,} of {rows:,} {noun}"
    )


def _show(value: object) -> str:
    return reprlib.repr(value)


def _get(
    data: Mapping[str, Any], key: str, path: Path, what: str, valid: Callable[[Any], bool]
) -> Any:
    if key not in data:
        raise DataError(f"{path}: {key}: missing; {AGAIN}")
    if not valid(data[key]):
        raise DataError(f"{path}: {key}: expected {what}, got {_show(data[key])}; {AGAIN}")
    return data[key]


def _is_bool(value: object) -> bool:
    return isinstance(value, bool)


def _is_number(value: object) -> TypeGuard[float]:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _is_share(value: object) -> bool:
    return _is_number(value) and 0 <= value <= 1


def _is_count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _is_text(value: object) -> bool:
    return isinstance(value, str)


def _is_names(value: object) -> bool:
    return isinstance(value, list) and all(isinstance(name, str) for name in value)


def _is_numbers(value: object) -> bool:
    return isinstance(value, dict) and all(_is_number(number) for number in value.values())


def _is_rows(value: object) -> bool:
    return (
        isinstance(value, dict)
        and set(value) == {"reference", "current"}
        and all(_is_count(count) for count in value.values())
    )
