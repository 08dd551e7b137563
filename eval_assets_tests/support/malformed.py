"""A classifier whose predict_proba output is malformed in one chosen way.

It wraps a real fitted classifier and bends its output, so the rest of a run (loading, digests,
data) is genuine and only the model's output is at fault. It is an importable class, so it can be
saved with skops and trusted by name (`MALFORMED_TYPE`) in a criteria file's
`loading.trusted_skops_types`, with pickles still forbidden.
"""

from __future__ import annotations

from typing import Any

import numpy as np

MALFORMED_TYPE = "eval_assets_tests.support.malformed.MalformedOutput"

# kind: what predict_proba returns instead of one (rows, 2) float array of probabilities.
KINDS = {
    "three-columns": "a third column for a two-class model",
    "one-dimensional": "only the positive column, as a 1-D array",
    "too-few-rows": "one row fewer than it was given",
    "too-many-rows": "one row more than it was given",
    "text": "the probabilities as text ('0.93...')",
    "nan": "NaN for one row",
    "out-of-range": "1.5 for one row",
}


class MalformedOutput:
    """`estimator`'s classes and probabilities, with the output bent as `kind` says."""

    def __init__(self, estimator: Any, kind: str):
        if kind not in KINDS:
            raise ValueError(f"unknown kind {kind!r}")
        self.estimator = estimator
        self.kind = kind
        self.classes_ = np.asarray(estimator.classes_)

    def predict_proba(self, frame: Any) -> np.ndarray:
        proba = np.array(self.estimator.predict_proba(frame), dtype=np.float64)
        if self.kind == "three-columns":
            # The first two columns are the real ones: taken as-is, the scores look fine.
            return np.column_stack([proba, np.zeros(len(proba))])
        if self.kind == "one-dimensional":
            return proba[:, 1]
        if self.kind == "too-few-rows":
            return proba[:-1]
        if self.kind == "too-many-rows":
            return np.vstack([proba, proba[:1]])
        if self.kind == "text":
            return proba.astype(str)
        if self.kind == "nan":
            proba[3] = np.nan
        else:  # out-of-range
            proba[5] = [-0.5, 1.5]
        return proba
