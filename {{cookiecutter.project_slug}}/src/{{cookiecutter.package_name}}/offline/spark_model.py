"""The model `batch-spark` gives `mlflow.pyfunc.spark_udf`: a registered version's skops file,
scored by this package's `scoring.predict`, so that Spark writes the columns `batch` writes.

MLflow loads it as a model from code: this file runs on each Spark worker, and the skops file,
checked on the driver against the version's hash, is loaded with the project's trusted types. No
pickle anywhere.
"""

from pathlib import Path
from typing import Any

import pandas as pd
from mlflow.models import set_model
from mlflow.pyfunc.model import PythonModel

from {{ cookiecutter.package_name }}.core.model_file import model_from_bytes
from {{ cookiecutter.package_name }}.core.scoring import predict

# The name of the skops file among the model's artifacts.
ARTIFACT = "model"


class Scoring(PythonModel):
    """`predict` of a scikit-learn estimator read from a skops file."""

    # The rows reach `predict` as a DataFrame, checked against the schema by Spark first: MLflow
    # is not to check them against type hints, nor to warn that there are none (the switch
    # MLflow's own ChatModel uses).
    _skip_type_hint_validation = True

    def load_context(self, context: Any) -> None:
        path = Path(context.artifacts[ARTIFACT])
        self.estimator = model_from_bytes(path.read_bytes(), str(path))

    def predict(self, context: Any, model_input: pd.DataFrame, params: Any = None) -> pd.DataFrame:
        return pd.DataFrame(predict(self.estimator, model_input))


set_model(Scoring())
