"""The model file: a fitted scikit-learn pipeline saved with skops, and where serving finds it.

The service imports this module, and its image installs only the `serve` dependency group:
nothing here may import MLflow, DVC or Evidently (`make lint` checks it).
"""

import hashlib
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import ModelError
from .estimators import TRUSTED_TYPES
from .files import write_atomic

if TYPE_CHECKING:
    from sklearn.pipeline import Pipeline

# The file's name wherever a model is kept: models/, an MLflow model, a BentoML model.
FILE_NAME = "model.skops"
# The BentoML model the service serves: `make serve` and `make bento` store the champion there.
BENTO_MODEL = "{{ cookiecutter.project_slug }}"
# The sha256 of the model file, recorded where the file is kept (a model version's tag, a BentoML
# model's label) and compared with the file before it is loaded.
MODEL_SHA256 = "model_sha256"


def save_model(model: "Pipeline", path: Path) -> None:
    """Save with skops: loading it back never runs code from the file."""
    import skops.io

    write_atomic(path, lambda tmp: skops.io.dump(model, tmp))


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def load_model(path: Path) -> "Pipeline":
    """Load a model saved by `save_model`, trusting only this project's estimator types."""
    return model_from_bytes(path.read_bytes(), str(path))


def model_from_bytes(data: bytes, source: str) -> "Pipeline":
    """The model in a skops file's bytes (from `source`, for the error); ModelError if it holds a
    type this project does not trust, which is then never created."""
    import skops.io
    from skops.io.exceptions import UntrustedTypesFoundException

    try:
        model: Pipeline = skops.io.loads(data, trusted=TRUSTED_TYPES)
    except UntrustedTypesFoundException:
        untrusted = sorted(set(skops.io.get_untrusted_types(data=data)) - set(TRUSTED_TYPES))
        raise ModelError(
            f"{source}: refused: it holds types this project does not trust "
            f"({', '.join(untrusted)}), which no model it trains contains; it was made elsewhere "
            "or altered"
        ) from None
    except zipfile.BadZipFile:
        raise ModelError(f"{source}: refused: not a skops model file") from None
    return model
