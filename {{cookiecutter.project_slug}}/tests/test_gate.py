"""The release gate: every outcome, the report it writes, and the exit status."""

import json
from pathlib import Path

import pytest

from {{ cookiecutter.package_name }}.core.config import METRICS, PARAMS_FILE, GateParams, load_params
from {{ cookiecutter.package_name }}.core.drift_summary import ColumnTest, DriftSummary, Rows
from {{ cookiecutter.package_name }}.core.errors import ProjectError
from {{ cookiecutter.package_name }}.release.lineage import NO_PRODUCTION_ROWS, UNKNOWN
from {{ cookiecutter.package_name }}.release.verdict import (
    Candidate,
    judge,
    markdown,
    read_drift,
    read_metrics,
)

from .conftest import ROOT

NAME = "model"
ALLOWED = load_params(ROOT / PARAMS_FILE).gate.max_drift_share


@pytest.fixture(scope="module")
def gate() -> GateParams:
    return load_params(ROOT / PARAMS_FILE).gate


def good(gate: GateParams) -> dict[str, float]:
    """Metrics comfortably past every floor, in each metric's direction."""
    metrics = {}
    for name, higher_is_better in METRICS.items():
        floor = gate.floors.get(name, 0.5)
        metrics[name] = floor * 1.1 if higher_is_better else floor * 0.9
    return metrics


def worse(metrics: dict[str, float], name: str, by: float) -> dict[str, float]:
    step = -by if METRICS[name] else by
    return {**metrics, name: metrics[name] + step}


def drift(share: float, columns: int = 10, max_drift_share: float = ALLOWED) -> DriftSummary:
    """What the drift stage writes when `share` of the columns drifted."""
    drifted = round(share * columns)
    tests = [
        ColumnTest(
            f"x{index}", "K-S p_value", 0.05, 0.01 if index < drifted else 0.5, index < drifted
        )
        for index in range(columns)
    ]
    rows = Rows(reference=456, current=300)
    return DriftSummary.of(tests, max_drift_share, "data/current/x.csv", rows, rows)


def test_the_first_model_meets_the_floors_only(gate: GateParams) -> None:
    verdict = judge(gate, Candidate(NAME, "1", good(gate)), None, drift(0.0))
    assert verdict.passed
    report = markdown(verdict, gate)
    assert "Release gate: passed" in report
    assert "no champion yet (floors only)" in report
    assert "**Decision: pass.**" in report
    for name in METRICS:
        assert f"| {name} |" in report or f"| **{name}** |" in report


def test_a_metric_below_its_floor_fails(gate: GateParams) -> None:
    name, floor = next(iter(gate.floors.items()))
    metrics = {**good(gate), name: floor - 0.01 if METRICS[name] else floor + 0.01}
    verdict = judge(gate, Candidate(NAME, "1", metrics), None, drift(0.0))
    assert not verdict.passed
    (reason,) = verdict.reasons
    assert reason.startswith(f"{name} ")
    assert "floor" in reason or "ceiling" in reason
    assert "❌ fail" in markdown(verdict, gate)


def test_a_challenger_that_does_not_beat_the_champion_fails(gate: GateParams) -> None:
    champion = Candidate(NAME, "1", good(gate))
    challenger = Candidate(NAME, "2", worse(champion.metrics, gate.primary, 0.001))
    verdict = judge(gate, challenger, champion, drift(0.0))
    assert not verdict.passed
    (reason,) = verdict.reasons
    assert "does not beat the champion's" in reason
    report = markdown(verdict, gate)
    assert "against champion version 1" in report
    assert "-0.0010" in report or "+0.0010" in report


def test_the_margin_is_required_over_the_champion(gate: GateParams) -> None:
    strict = gate.model_copy(update={"min_improvement": 0.01})
    champion = Candidate(NAME, "1", good(gate))
    slightly = worse(champion.metrics, gate.primary, -0.005)  # better, but by less than 0.01
    assert not judge(strict, Candidate(NAME, "2", slightly), champion, drift(0.0)).passed
    clearly = worse(champion.metrics, gate.primary, -0.02)
    assert judge(strict, Candidate(NAME, "2", clearly), champion, drift(0.0)).passed


def test_drift_over_the_threshold_fails(gate: GateParams) -> None:
    gate = gate.model_copy(update={"max_drift_share": 0.5})
    at_the_threshold = drift(0.5, max_drift_share=0.5)
    verdict = judge(gate, Candidate(NAME, "1", good(gate)), None, at_the_threshold)
    assert verdict.passed
    assert f"Drift: {at_the_threshold.headline()} ✅" in markdown(verdict, gate)
    summary = drift(0.8, max_drift_share=0.5)
    verdict = judge(gate, Candidate(NAME, "1", good(gate)), None, summary)
    assert not verdict.passed
    (reason,) = verdict.reasons
    assert reason == summary.headline()
    assert reason.startswith(
        "**Drift detected.** 8 of 10 columns drifted (80%; at most 50% allowed)"
    )
    assert f"Drift: {reason} ❌" in markdown(verdict, gate)


def test_no_drift_summary_fails(gate: GateParams, tmp_path: Path) -> None:
    missing = tmp_path / "drift.json"
    verdict = judge(gate, Candidate(NAME, "1", good(gate)), None, read_drift(missing))
    assert verdict.reasons == (f"{missing}: not found; run `make drift` first",)


def test_a_summary_judged_against_another_threshold_fails(gate: GateParams) -> None:
    """params.yaml changed since `drift` ran: its decision no longer answers this gate."""
    other = gate.max_drift_share / 2
    verdict = judge(gate, Candidate(NAME, "1", good(gate)), None, drift(0.0, max_drift_share=other))
    assert verdict.reasons == (
        f"reports/drift.json was judged against max_drift_share {other:g}, params.yaml has "
        f"{gate.max_drift_share:g}; run `make drift`",
    )


def test_an_equal_challenger_passes_and_every_failure_is_listed(gate: GateParams) -> None:
    champion = Candidate(NAME, "1", good(gate))
    assert judge(gate, Candidate(NAME, "2", dict(champion.metrics)), champion, drift(0.0)).passed
    name, floor = next(iter(gate.floors.items()))
    bad = {**champion.metrics, name: floor - 1 if METRICS[name] else floor + 1}
    bad = worse(bad, gate.primary, 0.5)
    verdict = judge(gate, Candidate(NAME, "2", bad), champion, drift(1.0))
    assert len(verdict.reasons) >= 3
    report = markdown(verdict, gate)
    assert all(f"- {reason}" in report for reason in verdict.reasons)


def test_a_missing_metric_fails(gate: GateParams) -> None:
    metrics = good(gate)
    del metrics[gate.primary]
    verdict = judge(gate, Candidate(NAME, "1", metrics), None, drift(0.0))
    assert f"{gate.primary}: the challenger has no value for it" in verdict.reasons


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (None, "not found; run `make evaluate` first"),
        ('{"accuracy": 0.9', "not valid JSON (line 1: "),
        ('{"accuracy": "high"}', "expected an object of metric names and numbers"),
        ('{"accuracy": true}', "expected an object of metric names and numbers"),
        ("[0.9]", "expected an object of metric names and numbers"),
    ],
)
def test_a_bad_metrics_file_is_one_clear_error(
    tmp_path: Path, content: str | None, expected: str
) -> None:
    path = tmp_path / "metrics.json"
    if content is not None:
        path.write_text(content, encoding="utf-8")
    with pytest.raises(ProjectError) as error:
        read_metrics(path)
    assert str(error.value).startswith(f"{path}: ")
    assert expected in str(error.value)


def test_a_rolled_back_version_fails_and_says_how_to_force_it(gate: GateParams) -> None:
    champion = Candidate(NAME, "1", good(gate))
    for reason, shown in (("AUC fell on cohort B", " (AUC fell on cohort B)"), ("", "")):
        challenger = Candidate(NAME, "2", good(gate), rolled_back=reason)
        verdict = judge(gate, challenger, champion, drift(0.0))
        assert verdict.reasons == (
            f"version 2 was rolled back{shown}; only a forced promotion brings it back: "
            '`make promote VERSION=2 REASON="..."`',
        )


def test_the_base_branch_model_is_the_champion_to_beat(gate: GateParams) -> None:
    """A pull request without a registry champion: the metrics committed on the base branch."""
    base = Candidate(NAME, None, good(gate), committed_at="0123456789abcdef0123")
    gate = gate.model_copy(update={"min_improvement": 0.01})
    same = Candidate(NAME, None, dict(base.metrics))
    verdict = judge(gate, same, base, drift(0.0))
    assert not verdict.passed
    report = markdown(verdict, gate)
    assert "against the base branch's model, by the metrics committed at `0123456789ab`" in report
    assert "does not beat the champion's" in report

    # Trained from the very same code, data and parameters: the margin does not apply, the
    # floors still do.
    verdict = judge(gate, same, base, drift(0.0), unchanged=True)
    assert verdict.passed
    assert "so the margin over it does not apply" in markdown(verdict, gate)
    name, floor = next(iter(gate.floors.items()))
    below = {**base.metrics, name: floor - 1 if METRICS[name] else floor + 1}
    assert not judge(gate, Candidate(NAME, None, below), base, drift(0.0), unchanged=True).passed


def test_drift_does_not_block_a_challenger_trained_on_the_drifted_traffic(gate: GateParams) -> None:
    """`make refresh` added labelled production rows the champion never saw: the challenger has
    learned from the traffic that drifted. Drift is reported, the metrics decide."""
    champion = Candidate(NAME, "1", good(gate), production_ids=NO_PRODUCTION_ROWS)
    retrained = Candidate(NAME, None, good(gate), production_ids="0f" * 16)
    summary = drift(0.8)
    verdict = judge(gate, retrained, champion, summary)
    assert verdict.passed, verdict.reasons
    assert (
        f"Drift: {summary.headline()} ⚠️ Not blocking: this model was trained on labelled "
        "production rows the champion was not (`data/raw/production_ids.txt` changed)"
    ) in markdown(verdict, gate)
    # The metrics still decide: a retrained model that does not beat the champion stays out.
    weaker = Candidate(NAME, None, worse(good(gate), gate.primary, 0.05), production_ids="0f" * 16)
    verdict = judge(gate, weaker, champion, summary)
    assert [reason for reason in verdict.reasons if "does not beat" in reason]
    assert summary.headline() not in verdict.reasons
    # A summary judged against another threshold still fails, whatever trained the model.
    other = drift(0.8, max_drift_share=ALLOWED / 2)
    assert not judge(gate, retrained, champion, other).passed


@pytest.mark.parametrize(
    ("challenger", "champion"),
    [
        ("0f" * 16, "0f" * 16),  # the same production rows as the champion
        (NO_PRODUCTION_ROWS, NO_PRODUCTION_ROWS),  # none at all
        ("0f" * 16, None),  # a champion registered before versions recorded theirs
        (UNKNOWN, NO_PRODUCTION_ROWS),  # an unreadable pointer in this checkout
    ],
)
def test_drift_blocks_a_challenger_not_trained_on_new_production_rows(
    gate: GateParams, challenger: str, champion: str | None
) -> None:
    summary = drift(0.8)
    verdict = judge(
        gate,
        Candidate(NAME, None, good(gate), production_ids=challenger),
        Candidate(NAME, "1", good(gate), production_ids=champion),
        summary,
    )
    assert verdict.reasons == (summary.headline(),)
    assert f"Drift: {summary.headline()} ❌" in markdown(verdict, gate)


def test_the_report_says_on_which_rows_the_models_were_measured(gate: GateParams) -> None:
    challenger = Candidate(NAME, None, good(gate))
    rescored = Candidate(NAME, "1", good(gate), scored_rows=114)
    report = markdown(judge(gate, challenger, rescored, drift(0.0)), gate)
    assert (
        "Both models are measured on the same rows, this checkout's test split "
        "(`data/prepared/test.csv`, 114 rows): the champion was scored on it again"
    ) in report
    logged = Candidate(NAME, "1", good(gate), not_scored="data/prepared/test.csv is missing")
    report = markdown(judge(gate, challenger, logged, drift(0.0)), gate)
    assert "Both models are measured" not in report
    assert (
        "The champion's metrics are those version 1 logged on the test split of its own data: "
        "it was not scored on this checkout's (data/prepared/test.csv is missing)."
    ) in report


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("drifted_share", float("nan"), "drifted_share: nan, but the rest of the file gives 0.0"),
        ("drifted_share", "0.1", "drifted_share: '0.1', but the rest of the file gives 0.0"),
        ("drifted_share", None, "drifted_share: None, but the rest of the file gives 0.0"),
        ("sampled", 0, "sampled: 0, but the rest of the file gives False"),
        ("max_drift_share", float("inf"), "max_drift_share: expected a share from 0 to 1, got inf"),
        ("drift", None, "drift: expected true or false, got None"),
    ],
)
def test_a_broken_drift_summary_fails_with_its_one_line(
    gate: GateParams, tmp_path: Path, key: str, value: object, expected: str
) -> None:
    path = tmp_path / "drift.json"
    path.write_text(json.dumps({**drift(0.0).to_dict(), key: value}), encoding="utf-8")
    error = read_drift(path)
    assert isinstance(error, ProjectError)
    verdict = judge(gate, Candidate(NAME, "1", good(gate)), None, error)
    assert verdict.reasons == (f"{path}: {expected}; run `make drift` to write it again",)
    assert f"Drift: {verdict.reasons[0]} ❌" in markdown(verdict, gate)
