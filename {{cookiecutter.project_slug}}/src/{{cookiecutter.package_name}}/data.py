"""`data`: put the raw data in place, from the DVC remote or, on a new project, from the sample.

A raw file that is already there but not yet tracked is the user's own data: it is tracked as it
is, never replaced by the sample.
"""

import argparse
import subprocess
import sys

import pandas as pd

from .config import RAW_DATA
from .errors import DataError
from .files import write_csv_atomic
from .schema import Schema, load_schema

POINTER = RAW_DATA.with_name(RAW_DATA.name + ".dvc")


def sample_frame(schema: Schema) -> pd.DataFrame:
    """scikit-learn's bundled {{ cookiecutter.__dataset | replace('_', ' ') }} data, with the schema's column names."""
    from sklearn.datasets import load_{{ cookiecutter.__dataset }}

    bunch = load_{{ cookiecutter.__dataset }}(as_frame=True{{ ", scaled=False" if cookiecutter.task == "regression" }})
    frame: pd.DataFrame = bunch.frame.rename(columns={"target": schema.target.name})
    frame.columns = [str(name).replace(" ", "_") for name in frame.columns]
    return frame.astype({column.name: column.dtype for column in schema.columns})


def _dvc(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["dvc", *args], capture_output=True, text=True, check=False)


def _last_line(output: str) -> str:
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    return lines[-1] if lines else "no output"


def pull() -> None:
    """Fetch the tracked raw data from the DVC remote."""
    result = _dvc("pull", str(POINTER))
    if result.returncode != 0:
        raise DataError(
            f"{RAW_DATA}: could not pull it from the DVC remote: {_last_line(result.stderr)}; "
            "check `dvc remote list` and your credentials"
        )


def track() -> None:
    """Track the raw data with DVC and push it to the remote."""
    result = _dvc("add", str(RAW_DATA))
    if result.returncode != 0:
        raise DataError(f"{RAW_DATA}: `dvc add` failed: {_last_line(result.stderr)}")
    result = _dvc("push", str(POINTER))
    if result.returncode != 0:
        # The data is safe in the local DVC cache; only sharing it has to wait.
        print(
            f"warning: could not push {RAW_DATA} to the DVC remote "
            f"({_last_line(result.stderr)}); run `dvc push` once the remote is reachable",
            file=sys.stderr,
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="data", description=__doc__)
    parser.parse_args(argv)
    if POINTER.exists():
        pull()
        print(f"{RAW_DATA}: pulled from the DVC remote")
    elif RAW_DATA.exists():
        track()
        print(f"{RAW_DATA}: tracked your file with DVC ({POINTER})")
    else:
        write_csv_atomic(RAW_DATA, sample_frame(load_schema()))
        track()
        print(f"{RAW_DATA}: wrote the sample data and tracked it with DVC ({POINTER})")
    return 0
