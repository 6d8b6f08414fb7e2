"""Slow tier: batch scoring on Apache Spark, as the README runs it (`make batch ENGINE=spark`).

A project (with an s3 remote, so that s3fs is installed) trains and promotes a champion; the
same rows go through `make batch` and `make batch ENGINE=spark` (pyspark from the project's
`spark` group, Spark in local mode on this machine's Java), and a file that breaks the schema is
refused with nothing written. Then the project's own Spark tests run in its environment with the
`spark` and `server` groups installed (moto's S3 server for the object-store test): none may
skip.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from .conftest import Bake, make, require_java, run

pytestmark = pytest.mark.slow


@pytest.fixture
def project(bake: Bake, bake_env: dict[str, str]) -> Path:
    require_java(bake_env)
    baked = bake(dvc_remote="s3")
    make(baked, bake_env, "setup")  # no remote to push to: the sample stays local
    make(baked, bake_env, "repro")
    assert "version 1 is now 'champion'" in make(baked, bake_env, "promote")
    return baked


def test_spark_scores_as_make_batch_does_refuses_what_it_refuses_and_its_tests_pass(
    project: Path, bake_env: dict[str, str], tmp_path: Path
) -> None:
    work = tmp_path / "scores"
    work.mkdir()
    rows = project / "data" / "raw" / "breast_cancer.csv"
    local = work / "local.parquet"
    spark = work / "spark.parquet"
    make(project, bake_env, "batch", f"INPUT={rows}", f"OUTPUT={local}")
    scored = run(
        ["make", "batch", "ENGINE=spark", f"INPUT={rows}", f"OUTPUT={spark}"], project, bake_env
    )
    assert (
        f"batch-spark: scored 569 rows with tumour-classifier version 1 ('champion') -> {spark}"
        in scored.stdout
    )
    # Spark's log on one machine is errors only: no warnings, no advice on adjusting it.
    assert "Setting default log level" not in scored.stderr
    assert " WARN " not in scored.stderr
    expected = pd.read_parquet(local)
    result = pd.read_parquet(spark).sort_values("row", ignore_index=True)
    assert list(result.columns) == list(expected.columns)
    assert list(result["row"]) == list(range(569))
    assert (result["prediction"] == expected["prediction"]).all()
    assert ((result["probability"] - expected["probability"]).abs() < 1e-12).all()
    assert not set(result["prediction_id"]) & set(expected["prediction_id"])

    bad = pd.read_csv(rows)
    bad.loc[10, "mean_radius"] = -5
    bad.to_csv(work / "bad.csv", index=False)
    refused = run(
        [
            "make",
            "batch",
            "ENGINE=spark",
            f"INPUT={work / 'bad.csv'}",
            f"OUTPUT={work / 'bad.parquet'}",
        ],
        project,
        bake_env,
        check=False,
    )
    assert refused.returncode != 0
    assert "column 'mean_radius': 1 values not between 0 and 100 at line 12" in refused.stderr
    assert sorted(path.name for path in work.iterdir()) == [
        "bad.csv",
        "local.parquet",
        "spark.parquet",
    ]

    # The project's own Spark tests, in its environment with the group installed.
    groups = ["--group", "spark", "--group", "server"]
    command = ["uv", "run", "--locked", *groups, "pytest", "-p", "no:cacheprovider"]
    result = run([*command, "-rs", "tests/test_batch_spark.py"], project, bake_env, timeout=900)
    assert " passed" in result.stdout
    assert "skipped" not in result.stdout
