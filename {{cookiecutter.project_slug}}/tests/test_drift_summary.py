"""The drift summary: the decision at its threshold, the most drifted columns first, the file
read back as written, and every kind of broken file refused in one line."""

import json
from pathlib import Path
from typing import Any

import pytest

from {{ cookiecutter.package_name }}.core.drift_summary import (
    MAX_COLUMNS,
    ColumnTest,
    DriftSummary,
    Rows,
)
from {{ cookiecutter.package_name }}.core.errors import DataError

WHOLE = Rows(reference=456, current=300)


def column_tests(drifted: int, columns: int = 10) -> list[ColumnTest]:
    """`columns` K-S tests, of which the first `drifted` failed."""
    return [
        ColumnTest(
            f"x{index}", "K-S p_value", 0.05, 0.01 if index < drifted else 0.5, index < drifted
        )
        for index in range(columns)
    ]


def summary(drifted: int, columns: int = 10, share: float = 0.5) -> DriftSummary:
    return DriftSummary.of(
        column_tests(drifted, columns), share, "data/current/x.csv", WHOLE, WHOLE
    )


@pytest.mark.parametrize(
    ("drifted", "share", "drift"),
    [(5, 0.5, False), (6, 0.5, True), (0, 0.0, False), (1, 0.0, True), (10, 1.0, False)],
)
def test_drift_is_a_share_over_the_threshold_not_at_it(
    drifted: int, share: float, drift: bool
) -> None:
    result = summary(drifted, share=share)
    assert result.drift is drift
    assert result.drifted_share == drifted / 10
    decision = "**Drift detected.**" if drift else "**No drift beyond the threshold.**"
    assert result.headline().startswith(f"{decision} {drifted} of 10 columns drifted")


def test_the_headline_says_what_was_compared_and_sampled() -> None:
    assert summary(6).headline() == (
        "**Drift detected.** 6 of 10 columns drifted (60%; at most 50% allowed), comparing 300 "
        "rows of `data/current/x.csv` with 456 training rows."
    )
    sampled = DriftSummary.of(
        column_tests(0), 0.5, "logs/inference", Rows(1000, 200_000), Rows(1000, 100_000)
    )
    assert sampled.sampled
    assert sampled.headline().endswith(
        "comparing a sample of 100,000 of 200,000 rows of `logs/inference` with 1,000 "
        "training rows."
    )


def test_the_most_drifted_columns_come_first() -> None:
    # A p-value drifts below its threshold, a distance above it: the further, the earlier.
    tests = [
        ColumnTest("p_near", "K-S p_value", 0.05, 0.04, True),
        ColumnTest("p_far", "K-S p_value", 0.05, 1e-9, True),
        ColumnTest("p_none", "K-S p_value", 0.05, 0.6, False),
        ColumnTest("d_near", "Wasserstein distance (normed)", 0.1, 0.15, True),
        ColumnTest("d_far", "Wasserstein distance (normed)", 0.1, 0.9, True),
        ColumnTest("p_zero", "K-S p_value", 0.05, 0.0, True),
    ]
    result = DriftSummary.of(tests, 0.5, "data/current/x.csv", WHOLE, WHOLE)
    assert result.drifted == ("p_zero", "p_far", "d_far", "d_near", "p_near")
    assert result.methods == {"K-S p_value": 0.05, "Wasserstein distance (normed)": 0.1}
    assert result.columns == 6


def test_the_markdown_lists_the_most_drifted_columns_and_the_tests() -> None:
    report = summary(MAX_COLUMNS + 3, columns=MAX_COLUMNS + 5).markdown()
    assert report.startswith(
        f"## Data drift\n\n{summary(MAX_COLUMNS + 3, MAX_COLUMNS + 5).headline()}\n"
    )
    assert report.count("| x") == MAX_COLUMNS
    assert "and 3 more." in report
    assert report.endswith("Tests: K-S p_value (threshold 0.05).\n")
    assert "| column |" not in summary(0).markdown()


def test_a_summary_reads_back_as_it_was_written(tmp_path: Path) -> None:
    written = DriftSummary.of(
        column_tests(3), 0.25, "logs/inference", Rows(1000, 200_000), Rows(1000, 100_000)
    )
    path = tmp_path / "drift.json"
    path.write_text(written.to_json(), encoding="utf-8")
    assert DriftSummary.read(path) == written
    # The keys `dvc metrics` shows and the summaries of earlier versions hold.
    data = json.loads(path.read_text(encoding="utf-8"))
    assert list(data) == [
        "drift", "drifted_share", "drifted_columns", "columns", "max_drift_share", "methods",
        "drifted", "scores", "current", "rows", "compared", "sampled",
    ]  # fmt: skip
    assert (data["drift"], data["drifted_share"], data["drifted_columns"]) == (True, 0.3, 3)
    assert data["sampled"] is True


def valid() -> dict[str, Any]:
    """A summary as the drift stage writes it: two columns, one drifted."""
    return {
        "drift": False,
        "drifted_share": 0.5,
        "drifted_columns": 1,
        "columns": 2,
        "max_drift_share": 0.5,
        "methods": {"K-S p_value": 0.05},
        "drifted": ["a"],
        "scores": {"a": 0.001, "b": 0.4},
        "current": "data/current/x.csv",
        "rows": {"reference": 456, "current": 300},
        "compared": {"reference": 456, "current": 300},
        "sampled": False,
    }


def changed(**values: Any) -> str:
    data = {**valid(), **values}
    return json.dumps({key: value for key, value in data.items() if value is not ...})


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (None, "not found; run `make drift` first"),
        ('{"drift": ', "not valid JSON (line 1: "),
        ("[]", "expected a JSON object"),
        (changed(drift=...), "drift: missing"),
        (changed(drift="yes"), "drift: expected true or false, got 'yes'"),
        (changed(max_drift_share=float("nan")), "max_drift_share: expected a share from 0 to 1"),
        (changed(max_drift_share=1.5), "max_drift_share: expected a share from 0 to 1, got 1.5"),
        (changed(columns=True), "columns: expected a count, got True"),
        (
            changed(scores={"a": "low", "b": 0.4}),
            "scores: expected an object of columns and numbers",
        ),
        (changed(rows={"reference": 456}), "rows: expected reference and current counts"),
        (changed(drifted=["c"]), "drifted: 'c' has no score"),
        (changed(drifted=["a", "a"]), "drifted: a column is listed twice"),
        (changed(columns=3), "columns: 3, but scores has 2"),
        (changed(drifted_share=0.0), "drifted_share: 0.0, but the rest of the file gives 0.5"),
        (changed(sampled=True), "sampled: True, but the rest of the file gives False"),
        (changed(sampled=...), "sampled: missing"),
        (changed(colour="red"), "colour: unknown key"),
    ],
)
def test_a_broken_summary_is_one_line_naming_the_file_and_key(
    tmp_path: Path, content: str | None, expected: str
) -> None:
    path = tmp_path / "drift.json"
    if content is not None:
        path.write_text(content, encoding="utf-8")
    with pytest.raises(DataError) as error:
        DriftSummary.read(path)
    message = str(error.value)
    assert message.startswith(f"{path}: {expected}")
    assert "\n" not in message
    assert "`make drift`" in message


def test_the_valid_example_reads() -> None:
    assert DriftSummary.from_dict(valid()).drifted == ("a",)
