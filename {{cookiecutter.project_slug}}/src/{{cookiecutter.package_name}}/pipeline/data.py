"""`data`: put the raw and current data in place, from the DVC remote or, on a new project, samples.

A file that is already there but not yet tracked is the user's own data: it is tracked as it is,
never replaced by a sample. Until there is production data, the current data (what `drift`
compares with the training data) is a sample of the raw rows with measurement noise.
"""

import argparse
import hashlib
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from ..core.checks import read_table
from ..core.config import RAW_DATA, load_params
from ..core.errors import DataError
from ..core.files import write_atomic, write_csv_atomic
from ..core.schema import Schema, load_schema
from ..release.lineage import pointer, tracked_md5

# The sample current data: this many raw rows, drawn with replacement, each value of a float
# column off by this relative amount on average (a measurement, not a shift).
CURRENT_ROWS = 300
NOISE = 0.01


def sample_frame(schema: Schema) -> pd.DataFrame:
    """scikit-learn's bundled {{ cookiecutter.__dataset_topic }} data, with the schema's column names."""
    from sklearn.datasets import load_{{ cookiecutter.__dataset }}
{% if cookiecutter.task == "regression" %}
    # In their own units (age in years, body mass index, blood pressure), as real data
    # arrives: scikit-learn centres and scales this set unless told otherwise.
    bunch = load_diabetes(as_frame=True, scaled=False)
{%- else %}
    bunch = load_breast_cancer(as_frame=True)
{%- endif %}
    frame: pd.DataFrame = bunch.frame.rename(columns={"target": schema.target.name})
    frame.columns = [str(name).replace(" ", "_") for name in frame.columns]
    return frame.astype({column.name: column.dtype for column in schema.columns})


def current_sample(raw: pd.DataFrame, schema: Schema, seed: int = 0) -> pd.DataFrame:
    """Rows like the raw ones, as production would send them: features only, slightly noisy."""
    rng = np.random.default_rng(seed)
    rows = raw[schema.feature_names].sample(
        n=CURRENT_ROWS, replace=True, random_state=seed, ignore_index=True
    )
    for column in schema.features:
        if column.dtype == "float":
            noisy = rows[column.name] * rng.normal(1, NOISE, len(rows))
            rows[column.name] = noisy.clip(column.min, column.max).round(6)
    return rows


def _dvc(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["dvc", *args], capture_output=True, text=True, check=False)


def _dvc_error(output: str) -> str:
    """DVC's first ERROR line, the cause (later ones repeat it per file, then sum up), without
    its prefix; else the last line. DVC ends its output with a line asking to contact its
    support, which says nothing of what failed."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    errors = [line.removeprefix("ERROR:").strip() for line in lines if line.startswith("ERROR")]
    return (errors or lines or ["no output"])[0 if errors else -1]


def pull(path: Path) -> None:
    """Fetch a tracked file from the DVC remote."""
    result = _dvc("pull", str(pointer(path)))
    if result.returncode != 0:
        raise DataError(
            f"{path}: could not pull it from the DVC remote: {_dvc_error(result.stderr)}; "
            "check `dvc remote list` and your credentials"
        )


def track(path: Path, must_push: bool = False) -> None:
    """Track a file with DVC and push it to the remote; with `must_push`, a failed push is an
    error, not a warning."""
    result = _dvc("add", str(path))
    if result.returncode != 0:
        raise DataError(f"{path}: `dvc add` failed: {_dvc_error(result.stderr)}")
    result = _dvc("push", str(pointer(path)))
    if result.returncode != 0 and must_push:
        raise DataError(
            f"{path}: tracked, but could not push it to the DVC remote "
            f"({_dvc_error(result.stderr)}); run `dvc push` once the remote is reachable"
        )
    if result.returncode != 0:
        # The data is safe in the local DVC cache; only sharing it has to wait.
        print(
            f"warning: could not push {path} to the DVC remote "
            f"({_dvc_error(result.stderr)}); run `dvc push` once the remote is reachable",
            file=sys.stderr,
        )


def rebuild(path: Path, sample: Callable[[], pd.DataFrame]) -> bool:
    """Write the bundled sample to `path`, and cache it, if it is exactly what DVC tracks there."""
    if path.suffix.lower() != ".csv":
        return False
    content = sample().to_csv(index=False).encode("utf-8")
    if hashlib.md5(content, usedforsecurity=False).hexdigest() != tracked_md5(path):
        return False
    write_atomic(path, lambda tmp: tmp.write_bytes(content))
    result = _dvc("commit", "--force", str(pointer(path)))
    if result.returncode != 0:
        raise DataError(f"{path}: `dvc commit` failed: {_dvc_error(result.stderr)}")
    return True


def pull_or_track(path: Path, sample: Callable[[], pd.DataFrame]) -> bool:
    """Pull a tracked file, or track the user's own; False when there is neither.

    When the remote cannot be reached (a CI runner, and the default remote is a folder on your
    machine) and the tracked file is the bundled sample, the sample is rebuilt instead.
    """
    if pointer(path).exists():
        try:
            pull(path)
        except DataError:
            if not rebuild(path, sample):
                raise
            print(f"{path}: the DVC remote is not reachable; rebuilt the bundled sample it tracks")
            return True
        print(f"{path}: pulled from the DVC remote")
        return True
    if path.exists():
        track(path)
        print(f"{path}: tracked your file with DVC ({pointer(path)})")
        return True
    return False


def write_sample(path: Path, frame: pd.DataFrame, what: str) -> None:
    if path.suffix.lower() == ".parquet":
        write_atomic(path, lambda tmp: frame.to_parquet(tmp, index=False))
    else:
        write_csv_atomic(path, frame)
    track(path)
    print(f"{path}: wrote {what} and tracked it with DVC ({pointer(path)})")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="data", description=__doc__)
    parser.parse_args(argv)
    schema = load_schema()
    source = load_params().drift.current
    current = Path(source)

    def raw_sample() -> pd.DataFrame:
        return sample_frame(schema)

    def current_rows() -> pd.DataFrame:
        return current_sample(read_table(RAW_DATA, schema), schema)

    if not pull_or_track(RAW_DATA, raw_sample):
        write_sample(RAW_DATA, raw_sample(), "the sample data")
    # A folder or a URL is the service's inference log: the service fills it, DVC does not
    # track it.
    local = "://" not in source and not current.is_dir()
    if local and current.suffix and not pull_or_track(current, current_rows):
        write_sample(current, current_rows(), "a sample of the raw rows")
    return 0
