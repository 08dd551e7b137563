"""Names and types every stage of the core shares: the slice every evaluation has, the metric
names the criteria may gate on, and one model's metrics on one snapshot.

They live here, apart from the code that computes or judges them, so that criteria, slicing,
metrics and gating can import one another in one direction only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd

OVERALL = "overall"

METRIC_NAMES: tuple[str, ...] = (
    "roc_auc",
    "pr_auc",
    "log_loss",
    "brier",
    "accuracy",
    "precision",
    "recall",
    "f1",
    "selection_rate",
    "tpr",
    "fpr",
)
HIGHER_IS_BETTER: dict[str, bool] = {
    name: name not in ("log_loss", "brier", "fpr") for name in METRIC_NAMES
}
FAIRNESS_METRICS: tuple[str, ...] = (
    "demographic_parity_difference",
    "demographic_parity_ratio",
    "equalized_odds_difference",
)
# The closed range of values each metric can take: rates, AUCs and disparities lie in [0, 1], log
# loss is unbounded above. Intervals are kept inside it (resampling noise must not report an AUC
# above 1), and a change's interval inside the range of a difference of two values.
METRIC_RANGES: dict[str, tuple[float, float]] = {
    **{name: (0.0, math.inf if name == "log_loss" else 1.0) for name in METRIC_NAMES},
    **dict.fromkeys(FAIRNESS_METRICS, (0.0, 1.0)),
}


@dataclass(frozen=True)
class ModelMetrics:
    """One model's metrics on one snapshot.

    `slices` is indexed by slice name (the table `slice_metrics` returns); `fairness_groups` has
    columns attribute, group, support, positives, selection_rate, tpr, fpr; `disparities` has
    columns attribute, metric, value.
    """

    slices: pd.DataFrame
    fairness_groups: pd.DataFrame
    disparities: pd.DataFrame

    def value(self, slice_name: str, metric: str) -> float | None:
        if slice_name not in self.slices.index or metric not in self.slices.columns:
            return None
        return float(self.slices.at[slice_name, metric])

    def disparity(self, attribute: str, metric: str) -> float | None:
        if self.disparities.empty:
            return None
        rows = self.disparities[
            (self.disparities["attribute"] == attribute) & (self.disparities["metric"] == metric)
        ]
        return None if rows.empty else float(rows["value"].iloc[0])
