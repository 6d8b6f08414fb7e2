"""The gate's judging: a candidate's metrics against the floors, the champion to beat and drift.

Functions of numbers and of the files `evaluate` and `drift` write, without MLflow: the registry
builds candidates with it and the gate judges them, so the registry never imports the gate.
"""

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from ..core.config import DRIFT_SUMMARY, METRICS, PRODUCTION_IDS, TEST_DATA, GateParams
from ..core.drift_summary import DriftSummary
from ..core.errors import DataError, ProjectError
from .lineage import NO_PRODUCTION_ROWS, UNKNOWN


@dataclass(frozen=True)
class Candidate:
    """A model and its metrics: a registered version, or (version None) one not registered.

    `rolled_back` is the reason a registered version was rolled back ("" when none was given);
    `committed_at` the git revision of a base branch's model, judged by its committed metrics.
    A registered version's metrics are measured again on this checkout's test split:
    `scored_rows` is how many rows, `not_scored` why they could not be (its logged ones stand).
    `production_ids` is which labelled production rows trained it (lineage.PRODUCTION_IDS_MD5;
    None when unknown).
    """

    name: str
    version: str | None
    metrics: dict[str, float]
    rolled_back: str | None = None
    committed_at: str | None = None
    scored_rows: int | None = None
    not_scored: str | None = None
    production_ids: str | None = None

    @property
    def title(self) -> str:
        return f"Version {self.version}" if self.version else "The model of this branch"


@dataclass(frozen=True)
class Row:
    """One metric of the table: both models' values, the floor and this metric's verdict."""

    metric: str
    challenger: float | None
    champion: float | None
    floor: float | None
    primary: bool
    problems: tuple[str, ...]

    @property
    def delta(self) -> float | None:
        if self.challenger is None or self.champion is None:
            return None
        return self.challenger - self.champion


@dataclass(frozen=True)
class Verdict:
    challenger: Candidate
    champion: Candidate | None
    rows: tuple[Row, ...]
    # The drift summary, or why it could not be read.
    drift: DriftSummary | DataError
    reasons: tuple[str, ...] = field(default=())
    unchanged: bool = False
    # The challenger was trained on production rows the champion was not: drift does not block.
    learned_drift: bool = False

    @property
    def passed(self) -> bool:
        return not self.reasons


def _better(metric: str, value: float, than: float, by: float = 0.0) -> bool:
    """`value` is at least `by` better than `than`, in the metric's direction."""
    gain = value - than if METRICS[metric] else than - value
    return gain >= by - 1e-12


def judge_metric(
    metric: str,
    gate: GateParams,
    challenger: Candidate,
    champion: Candidate | None,
    unchanged: bool = False,
) -> Row:
    value = challenger.metrics.get(metric)
    before = champion.metrics.get(metric) if champion is not None else None
    floor = gate.floors.get(metric)
    primary = metric == gate.primary
    problems = []
    if value is None or not math.isfinite(value):
        if floor is not None or primary:
            problems.append(f"{metric}: the challenger has no value for it")
    else:
        if floor is not None and not _better(metric, value, floor):
            word = "floor" if METRICS[metric] else "ceiling"
            problems.append(f"{metric} {value:.4f} is worse than its {word} {floor:g}")
        if (
            primary
            and before is not None
            and not unchanged
            and not _better(metric, value, before, gate.min_improvement)
        ):
            problems.append(
                f"{metric} {value:.4f} does not beat the champion's {before:.4f} "
                f"by at least {gate.min_improvement:g}"
            )
    return Row(metric, value, before, floor, primary, tuple(problems))


def learned_drift(challenger: Candidate, champion: Candidate | None) -> bool:
    """Whether the challenger was trained on labelled production rows that the champion was not
    (`make refresh` added them): it has learned from the traffic that drifted, which is what
    retraining answers, so drift is reported but does not hold it back. Unknown lineage on
    either side (a version registered before versions recorded it) is not enough."""
    if champion is None:
        return False
    ours, theirs = challenger.production_ids, champion.production_ids
    return (
        ours not in (None, UNKNOWN, NO_PRODUCTION_ROWS)
        and theirs not in (None, UNKNOWN)
        and ours != theirs
    )


def judge_drift(
    gate: GateParams, drift: DriftSummary | DataError, learned: bool = False
) -> list[str]:
    """The drift stage's decision, made against this gate's `max_drift_share`; a summary that
    cannot be read, or was judged against another threshold, fails like drift does. Drift does
    not fail a challenger that `learned` from it (see `learned_drift`)."""
    if isinstance(drift, DataError):
        return [str(drift)]
    if drift.max_drift_share != gate.max_drift_share:
        return [
            f"{DRIFT_SUMMARY} was judged against max_drift_share {drift.max_drift_share:g}, "
            f"params.yaml has {gate.max_drift_share:g}; run `make drift`"
        ]
    return [drift.headline()] if drift.drift and not learned else []


def judge_rollback(challenger: Candidate) -> list[str]:
    if challenger.rolled_back is None:
        return []
    why = f" ({challenger.rolled_back})" if challenger.rolled_back else ""
    return [
        f"version {challenger.version} was rolled back{why}; only a forced promotion brings it "
        f'back: `make promote VERSION={challenger.version} REASON="..."`'
    ]


def judge(
    gate: GateParams,
    challenger: Candidate,
    champion: Candidate | None,
    drift: DriftSummary | DataError,
    unchanged: bool = False,
) -> Verdict:
    """Every check at once, so that a failing gate lists all of its reasons. `unchanged`: the
    challenger was trained from the champion's very inputs, so the margin does not apply."""
    names = [*METRICS, *(name for name in challenger.metrics if name not in METRICS)]
    rows = tuple(judge_metric(name, gate, challenger, champion, unchanged) for name in names)
    learned = learned_drift(challenger, champion)
    reasons = judge_rollback(challenger)
    reasons += [problem for row in rows for problem in row.problems]
    reasons += judge_drift(gate, drift, learned)
    return Verdict(challenger, champion, rows, drift, tuple(reasons), unchanged, learned)


def _described(candidate: Candidate) -> str:
    if candidate.version is None:
        return "the model of this branch (evaluated, not registered)"
    return f"{candidate.name} version {candidate.version}"


def _measured(challenger: Candidate, champion: Candidate | None) -> list[str]:
    """Which rows the metrics were measured on, when a registered version is involved."""
    notes = []
    if champion is not None and champion.scored_rows is not None:
        notes.append(
            f"Both models are measured on the same rows, this checkout's test split "
            f"(`{TEST_DATA}`, {champion.scored_rows} rows): the champion was scored on it again "
            "rather than judged by the metrics it logged on the test split of its own data."
        )
    for role, candidate in (("challenger", challenger), ("champion", champion)):
        if candidate is not None and candidate.not_scored is not None:
            notes.append(
                f"The {role}'s metrics are those version {candidate.version} logged on the test "
                f"split of its own data: it was not scored on this checkout's "
                f"({candidate.not_scored})."
            )
    return [line for note in notes for line in (note, "")]


def _drift_line(verdict: Verdict, gate: GateParams) -> str:
    drift = verdict.drift
    if isinstance(drift, DataError):
        return f"Drift: {drift} ❌"
    blocked = judge_drift(gate, drift, verdict.learned_drift)
    if drift.drift and not blocked:
        return (
            f"Drift: {drift.headline()} ⚠️ Not blocking: this model was trained on labelled "
            f"production rows the champion was not (`{PRODUCTION_IDS}` changed), from the "
            "traffic that drifted; the metrics above decide."
        )
    return f"Drift: {drift.headline()} {'❌' if blocked else '✅'}"


def _number(value: float | None, signed: bool = False) -> str:
    if value is None:
        return "—"
    return f"{value:+.4f}" if signed else f"{value:.4f}"


def markdown(verdict: Verdict, gate: GateParams) -> str:
    """The table, the drift line and the decision with its reasons."""
    challenger, champion = verdict.challenger, verdict.champion
    title = "passed" if verdict.passed else "failed"
    if champion is None:
        against = "no champion yet (floors only)"
    elif champion.committed_at is not None:
        against = (
            f"the base branch's model, by the metrics committed at `{champion.committed_at[:12]}` "
            "(the registry has no champion)"
        )
    else:
        against = f"champion version {champion.version}"
    lines = [
        f"## Release gate: {title}",
        "",
        f"Challenger: {_described(challenger)}; against {against}.",
        "",
        *_measured(challenger, champion),
        "| metric | champion | challenger | delta | floor | status |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for row in verdict.rows:
        bound = "—"
        if row.floor is not None:
            bound = f"{'≥' if METRICS.get(row.metric, True) else '≤'} {row.floor:g}"
        if row.problems:
            status = "❌ fail"
        elif row.floor is not None or row.primary:
            status = "✅ pass"
        else:
            status = ""
        name = f"**{row.metric}**" if row.primary else row.metric
        lines.append(
            f"| {name} | {_number(row.champion)} | {_number(row.challenger)} | "
            f"{_number(row.delta, signed=True)} | {bound} | {status} |"
        )
    lines.append("")
    if champion is not None and verdict.unchanged:
        lines.append(
            "The model was trained from the same code, data and parameters as the base "
            "branch's, so the margin over it does not apply."
        )
        lines.append("")
    elif champion is not None:
        lines.append(
            f"The primary metric (bold) must beat the champion's by at least "
            f"{gate.min_improvement:g}."
        )
        lines.append("")
    lines.append(_drift_line(verdict, gate))
    lines.append("")
    if verdict.passed:
        lines.append(f"**Decision: pass.** {challenger.title} may become the champion.")
    else:
        lines.append(f"**Decision: fail.** {challenger.title} stays out, because:")
        lines += [f"- {reason}" for reason in verdict.reasons]
    return "\n".join(lines) + "\n"


def read_drift(path: Path = DRIFT_SUMMARY) -> DriftSummary | DataError:
    """The drift summary, or the one-line error reading it: the gate lists it among its reasons."""
    try:
        return DriftSummary.read(path)
    except DataError as error:
        return error


def read_metrics(path: Path) -> dict[str, float]:
    """The metrics `evaluate` wrote to `path`."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ProjectError(f"{path}: not found; run `make evaluate` first") from None
    return parse_metrics(text, str(path))


def parse_metrics(text: str, path: str) -> dict[str, float]:
    """Metrics as `evaluate` writes them, read from `text` (the file `path`)."""
    try:
        metrics = json.loads(text)
    except json.JSONDecodeError as error:
        raise ProjectError(f"{path}: not valid JSON (line {error.lineno}: {error.msg})") from None
    numbers = isinstance(metrics, dict) and all(
        isinstance(value, int | float) and not isinstance(value, bool) for value in metrics.values()
    )
    if not numbers:
        raise ProjectError(f"{path}: expected an object of metric names and numbers")
    return {str(name): float(value) for name, value in metrics.items()}
