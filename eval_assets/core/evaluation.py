"""One evaluation end to end: slices, metrics for both models, paired intervals, verdict."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from eval_assets.core.bootstrap import BootstrapConfig, paired_bootstrap
from eval_assets.core.criteria import Criteria
from eval_assets.core.gating import Verdict, decide
from eval_assets.core.metrics.binary import (
    COUNT_COLUMNS,
    FAIRNESS_GROUP_COLUMNS,
    fairness_metrics,
    slice_metrics,
)
from eval_assets.core.slicing import Slice
from eval_assets.core.vocabulary import METRIC_NAMES, ModelMetrics


@dataclass(frozen=True)
class Evaluation:
    """Everything one evaluation computed; the verdict is derived from the rest."""

    candidate: ModelMetrics
    champion: ModelMetrics | None
    intervals: pd.DataFrame
    verdict: Verdict

    def metrics_record(self) -> dict[str, Any]:
        """Metrics and intervals as plain JSON-ready data, in a stable order."""
        return {
            "candidate": metrics_json(self.candidate),
            "champion": metrics_json(self.champion) if self.champion else None,
            "intervals": _records(self.intervals),
        }


def model_metrics(
    y: np.ndarray,
    scores: np.ndarray,
    slices: list[Slice],
    fairness: Mapping[str, np.ndarray | pd.Categorical],
    threshold: float,
) -> ModelMetrics:
    """Per-slice metrics and per-attribute fairness metrics of one model's scores."""
    table = slice_metrics(y, scores, slices, threshold)
    return assemble_metrics(
        table,
        {
            attribute: fairness_metrics(y, scores, groups, threshold)
            for attribute, groups in fairness.items()
        },
    )


def assemble_metrics(
    table: pd.DataFrame, fairness: Mapping[str, tuple[pd.DataFrame, dict[str, float]]]
) -> ModelMetrics:
    """`ModelMetrics` from the slice table and each attribute's (groups table, disparities)."""
    group_tables, disparity_rows = [], []
    for attribute, (groups_table, disparities) in fairness.items():
        group_tables.append(groups_table.assign(attribute=attribute))
        disparity_rows += [
            {"attribute": attribute, "metric": metric, "value": value}
            for metric, value in disparities.items()
        ]
    group_frame = (
        pd.concat(group_tables, ignore_index=True)
        if group_tables
        else pd.DataFrame(columns=["attribute", "group", "support", "positives"])
    )
    disparity_frame = pd.DataFrame(disparity_rows, columns=["attribute", "metric", "value"])
    return ModelMetrics(table.set_index("slice"), group_frame, disparity_frame)


def evaluate(
    criteria: Criteria,
    y: np.ndarray,
    slices: list[Slice],
    fairness: Mapping[str, np.ndarray | pd.Categorical],
    candidate_scores: np.ndarray,
    champion_scores: np.ndarray | None = None,
    *,
    candidate_metrics: ModelMetrics | None = None,
    champion_metrics: ModelMetrics | None = None,
) -> Evaluation:
    """Metrics of both models on the same rows, paired intervals, and the verdict.

    Already computed metrics (a stored `slice_metrics` partition) can be passed in and are
    not recomputed.
    """
    threshold = criteria.dataset.threshold
    candidate = candidate_metrics or model_metrics(y, candidate_scores, slices, fairness, threshold)
    champion = champion_metrics
    if champion is None and champion_scores is not None:
        champion = model_metrics(y, champion_scores, slices, fairness, threshold)
    config = bootstrap_config(criteria)
    intervals = (
        paired_bootstrap(
            y,
            candidate_scores,
            champion_scores,
            slices,
            threshold,
            config,
            fairness=fairness,
            point_metrics=[candidate.slices]
            + ([champion.slices] if champion is not None and champion_scores is not None else []),
        )
        if config is not None
        else pd.DataFrame()
    )
    verdict = decide(criteria, candidate, champion, intervals)
    return Evaluation(candidate, champion, intervals, verdict)


def bootstrap_config(criteria: Criteria) -> BootstrapConfig | None:
    """The criteria's paired bootstrap, or None when they ask for no resamples (no intervals)."""
    spec = criteria.bootstrap
    if spec.resamples == 0:
        return None
    return BootstrapConfig(n_resamples=spec.resamples, seed=spec.seed, confidence=spec.confidence)


def to_json(data: Any) -> str:
    """Canonical JSON: sorted keys, NaN as null, so identical inputs give identical bytes."""
    return json.dumps(_clean(data), sort_keys=True, indent=2, allow_nan=False) + "\n"


def metrics_json(metrics: ModelMetrics) -> dict[str, Any]:
    """One model's slice table, fairness groups and disparities as JSON-ready records."""
    return {
        "slices": _records(metrics.slices.reset_index()),
        "fairness_groups": _records(metrics.fairness_groups),
        "disparities": _records(metrics.disparities),
    }


def metrics_from_json(record: Mapping[str, Any]) -> ModelMetrics:
    """The inverse of `metrics_json`: the same tables, bit for bit (JSON floats round-trip)."""
    slices = pd.DataFrame.from_records(
        record["slices"], columns=["slice", *COUNT_COLUMNS, *METRIC_NAMES]
    )
    groups = pd.DataFrame.from_records(
        record["fairness_groups"], columns=[*FAIRNESS_GROUP_COLUMNS, "attribute"]
    )
    disparities = pd.DataFrame.from_records(
        record["disparities"], columns=["attribute", "metric", "value"]
    )
    return ModelMetrics(
        _typed(slices, COUNT_COLUMNS, METRIC_NAMES).set_index("slice"),
        _typed(groups, ("support", "positives"), FAIRNESS_GROUP_COLUMNS[3:]),
        _typed(disparities, (), ("value",)),
    )


def _typed(frame: pd.DataFrame, counts: Sequence[str], floats: Sequence[str]) -> pd.DataFrame:
    # `_clean` wrote NaN as null and infinities as text; both read back as floats.
    for column in counts:
        frame[column] = frame[column].astype(np.int64)
    for column in floats:
        frame[column] = np.asarray(
            [np.nan if v is None else float(v) for v in frame[column]], dtype=np.float64
        )
    return frame


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    return [_clean(r) for r in frame.to_dict(orient="records")] if len(frame) else []


def _clean(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None if math.isnan(value) else str(value)
    return value
