"""A classifier that sleeps in `predict_proba`: a slow model, or with a long sleep a hung one.

The end-to-end suite registers it through MLflow (skops format) to lose MLflow in the middle of an
evaluation and to prove that a run past `dagster/max_runtime` is stopped and recorded. Its type is
listed in the suite's criteria under `loading.trusted_skops_types`, so it loads under the policy
like any trusted type; the run worker imports it from the repository (the code location's working
directory).
"""

from __future__ import annotations

import time

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin

TYPE_NAME = f"{__name__}.SleepyClassifier"


class SleepyClassifier(ClassifierMixin, BaseEstimator):
    """Scores as `inner` does, after sleeping `seconds` per call."""

    def __init__(self, inner: object = None, seconds: float = 0.0):
        self.inner = inner
        self.seconds = seconds

    @property
    def classes_(self) -> np.ndarray:
        return self.inner.classes_  # type: ignore[union-attr]

    def fit(self, X: object, y: object) -> SleepyClassifier:  # noqa: N803 - sklearn's names
        return self

    def predict_proba(self, X: object) -> np.ndarray:  # noqa: N803
        time.sleep(self.seconds)
        return self.inner.predict_proba(X)  # type: ignore[union-attr]

    def predict(self, X: object) -> np.ndarray:  # noqa: N803
        return self.classes_[np.argmax(self.predict_proba(X), axis=1)]
