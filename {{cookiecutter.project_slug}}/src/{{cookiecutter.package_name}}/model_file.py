"""The model file: a fitted scikit-learn pipeline saved with skops, and where serving finds it.

The service imports this module, and its image installs only the `serve` dependency group:
nothing here may import MLflow, DVC or Evidently (`make lint` checks it).
"""

from pathlib import Path
from typing import TYPE_CHECKING

from .estimators import TRUSTED_TYPES
from .files import write_atomic

if TYPE_CHECKING:
    from sklearn.pipeline import Pipeline

# The file's name wherever a model is kept: models/, an MLflow model, a BentoML model.
FILE_NAME = "model.skops"
# The BentoML model the service serves: `make serve` and `make bento` store the champion there.
BENTO_MODEL = "{{ cookiecutter.project_slug }}"


def save_model(model: "Pipeline", path: Path) -> None:
    """Save with skops: loading it back never runs code from the file."""
    import skops.io

    write_atomic(path, lambda tmp: skops.io.dump(model, tmp))


def load_model(path: Path) -> "Pipeline":
    """Load a model saved by `save_model`, trusting only this project's estimator types."""
    import skops.io

    model: Pipeline = skops.io.load(path, trusted=TRUSTED_TYPES)
    return model
