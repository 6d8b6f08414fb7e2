"""Scoring with the raw scikit-learn estimator, shared by the online service and `batch`."""

from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from sklearn.pipeline import Pipeline

PREDICTION = "prediction"
PROBABILITY = "probability"


def predict(estimator: "Pipeline", features: Any) -> dict[str, np.ndarray]:
    """The prediction for each row and, for a classifier, the probabilities of the classes.

    A binary classifier gets one `probability` column, the probability of its second class (the
    positive one, 1 for classes 0 and 1); a multi-class one gets `probability_<class>` for each.
    `features` is a DataFrame or an array with the columns in the order the model was fitted on.
    """
    if not hasattr(estimator, "predict_proba"):
        return {PREDICTION: estimator.predict(features)}
    probabilities = estimator.predict_proba(features)
    classes = estimator.classes_
    # scikit-learn's classifiers predict the most probable class: one pass through the model.
    columns = {PREDICTION: classes[np.argmax(probabilities, axis=1)]}
    if len(classes) == 2:
        columns[PROBABILITY] = probabilities[:, 1]
    else:
        for position, label in enumerate(classes):
            columns[f"{PROBABILITY}_{label}"] = probabilities[:, position]
    return columns
