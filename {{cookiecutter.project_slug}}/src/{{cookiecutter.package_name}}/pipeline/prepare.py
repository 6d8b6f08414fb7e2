"""`prepare`: check the raw data against the schema and split it into train and test sets."""

import argparse

import pandas as pd

from ..core.checks import read_table
from ..core.config import RAW_DATA, TEST_DATA, TRAIN_DATA, PrepareParams, load_params
from ..core.errors import ParamsError
from ..core.files import write_csv_atomic
from ..core.schema import Schema, load_schema


def split(
    frame: pd.DataFrame, params: PrepareParams, schema: Schema
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Hold out `test_size` of the rows (per class when stratified); a seed fixes the split."""
    if params.stratify and not schema.target_is_categorical:
        raise ParamsError(
            f"params.yaml: prepare.stratify: only possible for a target with classes; "
            f"'{schema.target.name}' is continuous, set it to false"
        )
    # pandas alone does the split: importing scikit-learn here would cost more than the work.
    rows = frame.groupby(schema.target.name) if params.stratify else frame
    test = rows.sample(frac=params.test_size, random_state=params.seed)
    train = frame.drop(index=test.index)
    if train.empty or test.empty:
        raise ParamsError(
            f"params.yaml: prepare.test_size: leaves an empty split of {len(frame)} rows "
            f"(got {params.test_size})"
        )
    return train.sort_index(), test.sort_index()


def main(argv: list[str] | None = None) -> int:
    argparse.ArgumentParser(prog="prepare", description=__doc__).parse_args(argv)
    params = load_params().prepare
    schema = load_schema()
    train, test = split(read_table(RAW_DATA, schema), params, schema)
    write_csv_atomic(TRAIN_DATA, train)
    write_csv_atomic(TEST_DATA, test)
    print(f"prepare: {len(train)} training rows, {len(test)} test rows")
    return 0
