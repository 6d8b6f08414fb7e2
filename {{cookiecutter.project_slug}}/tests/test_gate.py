"""The release gate: every outcome, the report it writes, and the exit status."""

from pathlib import Path
from typing import Any

import pytest

from {{ cookiecutter.package_name }}.core.config import METRICS, PARAMS_FILE, GateParams, load_params
from {{ cookiecutter.package_name }}.core.errors import ProjectError
from {{ cookiecutter.package_name }}.release.verdict import Candidate, judge, markdown, read_metrics

from .conftest import ROOT

NAME = "model"


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


def drift(share: float, columns: int = 10) -> dict[str, Any]:
    return {"drifted_share": share, "drifted_columns": round(share * columns), "columns": columns}


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
    verdict = judge(gate, Candidate(NAME, "1", good(gate)), None, drift(0.8))
    assert not verdict.passed
    (reason,) = verdict.reasons
    assert reason == "8 of 10 columns drifted (80%; at most 50% allowed)"
    assert "Drift: 8 of 10 columns drifted" in markdown(verdict, gate)


def test_no_drift_summary_fails(gate: GateParams) -> None:
    verdict = judge(gate, Candidate(NAME, "1", good(gate)), None, None)
    assert verdict.reasons == ("no drift summary (reports/drift.json); run `make drift`",)


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


@pytest.mark.parametrize("share", [float("nan"), float("inf"), "0.1", None, True])
def test_a_drift_summary_without_a_valid_share_fails(gate: GateParams, share: object) -> None:
    summary = {"drifted_share": share, "drifted_columns": 0, "columns": 10}
    verdict = judge(gate, Candidate(NAME, "1", good(gate)), None, summary)
    assert verdict.reasons == (
        f"the drift summary gives no share of drifted columns "
        f"({round(gate.max_drift_share * 100)}% allowed)",
    )
    assert "Drift: the drift summary gives no share" in markdown(verdict, gate)
