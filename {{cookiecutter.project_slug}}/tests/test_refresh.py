"""Refresh: production's labelled rows join the training data once each, checked, capped, and
tracked and pushed with DVC."""

import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from {{ cookiecutter.package_name }}.__main__ import main
from {{ cookiecutter.package_name }}.core.checks import read_table
from {{ cookiecutter.package_name }}.core.config import PRODUCTION_IDS, RAW_DATA, REFRESH_REPORT
from {{ cookiecutter.package_name }}.core.schema import Schema
from {{ cookiecutter.package_name }}.release.lineage import pointer

from .conftest import write_table
from .production import LABELS, labels_of, log_predictions, set_params, truth_of


@pytest.fixture
def tracked_raw(dvc_repo: Path) -> pd.DataFrame:
    """The raw data tracked with DVC, as `make setup` leaves it."""
    subprocess.run(["dvc", "add", "-q", str(RAW_DATA)], check=True, capture_output=True)
    return pd.read_csv(RAW_DATA)


def production(rows: pd.DataFrame, schema: Schema, labelled: int) -> list[str]:
    """The rows scored and logged; the first `labelled` of them labelled later."""
    truth = truth_of(rows, schema)
    ids = log_predictions(rows, schema, truth)
    LABELS.mkdir(parents=True, exist_ok=True)
    write_table(labels_of(ids[:labelled], truth[:labelled]), LABELS / f"{ids[0]}.csv")
    return ids


def test_labelled_rows_are_added_once_tracked_and_pushed(
    tracked_raw: pd.DataFrame, dvc_repo: Path, schema: Schema
) -> None:
    rows = tracked_raw.sample(n=150, random_state=1)
    ids = production(rows, schema, labelled=120)

    assert main(["refresh"]) == 0

    raw = read_table(RAW_DATA, schema)  # still within the contract
    assert len(raw) == len(tracked_raw) + 120
    added = raw.tail(120).reset_index(drop=True)
    expected = rows.head(120).reset_index(drop=True).astype(raw.dtypes.to_dict())
    pd.testing.assert_frame_equal(added, expected, check_exact=False, rtol=1e-12)
    assert PRODUCTION_IDS.read_text(encoding="utf-8").split() == ids[:120]
    assert pointer(RAW_DATA).exists()
    assert pointer(PRODUCTION_IDS).exists()
    status = subprocess.run(
        ["dvc", "status", "--cloud", "--json"], capture_output=True, text=True, check=True
    )
    assert status.stdout.strip() == "{}", "everything is on the remote"
    assert "120 labelled production rows added" in REFRESH_REPORT.read_text(encoding="utf-8")

    # The next week: the same labels are not added again; a new one is.
    more = production(tracked_raw.sample(n=5, random_state=2), schema, labelled=5)
    assert main(["refresh"]) == 0
    assert len(pd.read_csv(RAW_DATA)) == len(tracked_raw) + 125
    assert PRODUCTION_IDS.read_text(encoding="utf-8").split() == ids[:120] + more
    assert "120 were added by an earlier refresh" in REFRESH_REPORT.read_text(encoding="utf-8")


def test_a_refresh_is_capped_by_a_uniform_sample(tracked_raw: pd.DataFrame, schema: Schema) -> None:
    production(tracked_raw.sample(n=200, random_state=3), schema, labelled=200)
    set_params("refresh", max_rows=50)

    assert main(["refresh"]) == 0

    assert len(pd.read_csv(RAW_DATA)) == len(tracked_raw) + 50
    assert "150 were left out by the sample" in REFRESH_REPORT.read_text(encoding="utf-8")


def test_rows_that_break_the_contract_are_left_out(
    tracked_raw: pd.DataFrame, schema: Schema
) -> None:
    rows = tracked_raw.sample(n=10, random_state=4).copy()
    first = schema.features[0]
    # Logged before the contract was tightened: a value the schema no longer allows.
    rows.loc[rows.index[:3], first.name] = (
        first.allowed[0] + 100 if first.allowed is not None else (first.max or 0) + 1
    )
    production(rows, schema, labelled=10)

    assert main(["refresh"]) == 0

    assert len(pd.read_csv(RAW_DATA)) == len(tracked_raw) + 7
    assert "3 break the data contract" in REFRESH_REPORT.read_text(encoding="utf-8")


def test_nothing_labelled_changes_nothing(
    tracked_raw: pd.DataFrame, schema: Schema, capsys: pytest.CaptureFixture[str]
) -> None:
    production(tracked_raw.head(10), schema, labelled=0)
    before = RAW_DATA.read_bytes()

    assert main(["refresh"]) == 0

    assert RAW_DATA.read_bytes() == before
    assert not PRODUCTION_IDS.exists()
    assert "refresh: nothing to add: 0 labelled predictions" in capsys.readouterr().out


def test_an_unreachable_remote_is_an_error_and_the_rows_stay_tracked_locally(
    tracked_raw: pd.DataFrame, dvc_repo: Path, schema: Schema, capsys: pytest.CaptureFixture[str]
) -> None:
    production(tracked_raw.head(20), schema, labelled=20)
    dvc_repo.write_text("a file where the remote's folder should be\n", encoding="utf-8")

    assert main(["refresh"]) == 1

    error = capsys.readouterr().err
    assert error.startswith(f"ERROR: {RAW_DATA}: tracked, but could not push it")
    assert "run `dvc push` once the remote is reachable" in error
    assert len(pd.read_csv(RAW_DATA)) == len(tracked_raw) + 20
    assert np.isfinite(pd.read_csv(RAW_DATA).select_dtypes("number").to_numpy()).all()
