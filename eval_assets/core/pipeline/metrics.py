"""A predictions file's slice metrics, and when a stored metrics record may stand for them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from eval_assets.core import EVALUATOR_VERSION
from eval_assets.core.bootstrap import BootstrapConfig
from eval_assets.core.criteria import Criteria
from eval_assets.core.evaluation import metrics_from_json, metrics_json
from eval_assets.core.metrics.streamed import SortedSummary, streamed_metrics
from eval_assets.core.pipeline.prediction_files import (
    rows_in,
    score_batches,
    scored_snapshot_sha256,
    slice_key_columns,
    slice_plan,
)


def metrics_record(criteria: Criteria, path: Path) -> dict[str, Any]:
    """The `slice_metrics` value of a predictions file: per-slice table, fairness groups and
    disparities, the overall curves and the bootstrap's score quantiles, read in batches.

    Intervals are not computed here: `gate_verdict` bootstraps once, paired with the champion,
    and its intervals cover the candidate's own metrics too.
    """
    plan = slice_plan(criteria, path)
    summary = streamed_metrics(
        score_batches(plan, path, slice_key_columns(criteria)),
        plan,
        criteria.dataset.threshold,
        BootstrapConfig().bins,
    )
    return {
        **metrics_json(summary.metrics),
        **summary.record(),
        **_metrics_stamp(criteria, rows_in(path), scored_snapshot_sha256(path)),
    }


def _metrics_stamp(criteria: Criteria, rows: int, snapshot_sha256: str | None) -> dict[str, Any]:
    """What a stored metrics record must match to be reused instead of recomputed."""
    return {
        "criteria_hash": criteria.digest(),
        "evaluator_version": EVALUATOR_VERSION,
        "rows": rows,
        "snapshot_sha256": snapshot_sha256,
    }


def stored_summary(
    record: dict[str, Any] | None,
    criteria: Criteria,
    rows: int,
    snapshot_sha256: str | None = None,
) -> SortedSummary | None:
    """A `slice_metrics` record as tables, curves and quantiles, when it was computed under these
    criteria by this evaluator on as many rows scored from the same snapshot bytes; None
    otherwise (recompute: a stale record is never reused)."""
    stamp = _metrics_stamp(criteria, rows, snapshot_sha256)
    if record is None or any(record.get(k) != v for k, v in stamp.items()):
        return None
    quantiles = record["score_quantiles"]
    return SortedSummary(
        metrics_from_json(record),
        {k: np.asarray(v, dtype=np.float64) for k, v in record["curve"].items()},
        np.asarray(quantiles["positive"], dtype=np.float64),
        np.asarray(quantiles["negative"], dtype=np.float64),
    )
