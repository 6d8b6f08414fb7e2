"""The estimators `train` can fit, with their hyperparameters and valid ranges."""

from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

if TYPE_CHECKING:
    from sklearn.pipeline import Pipeline

# Types skops must be told to trust when it loads a fitted model back: the tree
# structures of scikit-learn's forests and boosted trees. We wrote the file.
TRUSTED_TYPES = [
    "sklearn.tree._tree.Tree",
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
]


class Hyperparameters(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

{% if cookiecutter.task == "classification" %}
class LogisticRegressionParams(Hyperparameters):
    C: float = Field(default=1.0, gt=0)
    max_iter: int = Field(default=1000, ge=10, le=100_000)
{% else %}
class RidgeParams(Hyperparameters):
    alpha: float = Field(default=1.0, ge=0)
{% endif %}

class RandomForestParams(Hyperparameters):
    n_estimators: int = Field(default=200, ge=1, le=5000)
    max_depth: int | None = Field(default=None, ge=1)
    min_samples_leaf: int = Field(default=1, ge=1)


class HistGradientBoostingParams(Hyperparameters):
    learning_rate: float = Field(default=0.1, gt=0, le=1)
    max_iter: int = Field(default=100, ge=1, le=10_000)
    max_depth: int | None = Field(default=None, ge=1)
    l2_regularization: float = Field(default=0.0, ge=0)


class TrainParams(Hyperparameters):
    estimator: Literal["{{ cookiecutter.__linear_estimator }}", "random_forest", "hist_gradient_boosting"]
    seed: int = Field(ge=0)
{%- if cookiecutter.task == "classification" %}
    logistic_regression: LogisticRegressionParams = LogisticRegressionParams()
{%- else %}
    ridge: RidgeParams = RidgeParams()
{%- endif %}
    random_forest: RandomForestParams = RandomForestParams()
    hist_gradient_boosting: HistGradientBoostingParams = HistGradientBoostingParams()

    def hyperparameters(self) -> dict[str, Any]:
        """The chosen estimator's hyperparameters."""
        chosen: Hyperparameters = getattr(self, self.estimator)
        return chosen.model_dump()


def build_pipeline(params: TrainParams) -> "Pipeline":
    """A fresh, unfitted pipeline: scaling, then the chosen estimator."""
    # Imported here so that reading params.yaml does not pay for scikit-learn.
    from sklearn.ensemble import HistGradientBoosting{{ cookiecutter.__estimator_kind }}, RandomForest{{ cookiecutter.__estimator_kind }}
    from sklearn.linear_model import {{ cookiecutter.__linear_class }}
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    hyperparameters = params.hyperparameters()
    estimators = {
        "{{ cookiecutter.__linear_estimator }}": {{ cookiecutter.__linear_class }},
        "random_forest": RandomForest{{ cookiecutter.__estimator_kind }},
        "hist_gradient_boosting": HistGradientBoosting{{ cookiecutter.__estimator_kind }},
    }
    estimator = estimators[params.estimator](**hyperparameters, random_state=params.seed)
    return Pipeline([("scale", StandardScaler()), ("model", estimator)])
