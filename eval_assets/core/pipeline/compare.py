"""The candidate against the champion on the same rows: paired metrics, bootstrap, verdict, and
the report's plots."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pandas as pd

from eval_assets.core.bootstrap import Binning, BootstrapConfig, PairedCells
from eval_assets.core.criteria import Criteria
from eval_assets.core.evaluation import Evaluation, bootstrap_config
from eval_assets.core.gating import decide
from eval_assets.core.metrics.streamed import SortedSummary, streamed_metrics
from eval_assets.core.pipeline.metrics import stored_summary
from eval_assets.core.pipeline.prediction_files import (
    champion_scores,
    paired_batches,
    rows_in,
    same_rows_in_order,
    score_batches,
    scored_snapshot_sha256,
    slice_key_columns,
    slice_plan,
)
from eval_assets.core.render.plots import confusion_matrices_png, gate_changes_png, roc_pr_png
from eval_assets.core.slicing import unpack_slices
from eval_assets.core.vocabulary import OVERALL


def evaluate_and_draw(
    criteria: Criteria,
    candidate: Path,
    candidate_record: dict[str, Any] | None,
    champion: Path | None,
    champion_record: dict[str, Any] | None,
) -> tuple[Evaluation, dict[str, bytes]]:
    """The paired evaluation of two predictions files, read in batches, and the report's plots.

    Each model's point metrics, curves and score quantiles come from its `slice_metrics` record
    when that is current (see `stored_summary`), and are computed here otherwise; the champion's
    only when its rows are in the candidate's order (in another order, sums could differ in the
    last bit). The paired bootstrap's count tables take one more pass over both files. The
    curves and confusion matrices need only point metrics, so they are drawn on a second thread
    while the bootstrap resamples: its draws release the GIL, where the count pass holds it as
    much as matplotlib does (drawn during the pass, the two took as long as one after the
    other). The gate picture needs the verdict.
    """
    plan = slice_plan(criteria, candidate)
    rows = rows_in(candidate)
    scored_from = scored_snapshot_sha256(candidate)
    threshold = criteria.dataset.threshold
    keys = slice_key_columns(criteria)
    bins = BootstrapConfig().bins

    def computed(scores: Any = None) -> SortedSummary:
        return streamed_metrics(score_batches(plan, candidate, keys, scores), plan, threshold, bins)

    summaries = [stored_summary(candidate_record, criteria, rows, scored_from) or computed()]
    in_order = champion is not None and same_rows_in_order(candidate, champion)
    if champion is not None:
        stored = stored_summary(champion_record, criteria, rows, scored_from) if in_order else None
        summaries.append(stored or computed(champion_scores(candidate, champion, in_order)))
    config = bootstrap_config(criteria)
    cells = None
    if config is not None:
        cells = PairedCells(
            [
                Binning.from_quantiles(
                    s.positive_quantiles, s.negative_quantiles, threshold=threshold
                )
                for s in summaries
            ],
            plan.names,
            {attribute: len(groups) for attribute, groups in plan.groups.items()},
        )
        other = None if champion is None else champion_scores(candidate, champion, in_order)
        for batch, champion_batch in paired_batches(plan, candidate, keys, other):
            models = [batch.score] if champion_batch is None else [batch.score, champion_batch]
            cells.add(batch.y, models, unpack_slices(batch.bits, len(plan.names)), batch.groups)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="plots") as painter:
        drawn = painter.submit(point_images, criteria, summaries)
        metrics = [s.metrics for s in summaries]
        intervals = (
            pd.DataFrame()
            if cells is None
            else cells.intervals([m.slices for m in metrics], config)
        )
        champion_metrics = metrics[1] if len(metrics) > 1 else None
        verdict = decide(criteria, metrics[0], champion_metrics, intervals)
        images = drawn.result()
    result = Evaluation(metrics[0], champion_metrics, intervals, verdict)
    # One matplotlib figure at a time: the gate picture only once the other thread is done.
    return result, {"gate_changes.png": gate_changes_png(result.verdict, criteria), **images}


def point_images(criteria: Criteria, summaries: list[SortedSummary]) -> dict[str, bytes]:
    """The report's plots of point metrics: ROC/PR curves, confusion matrices of key slices."""
    threshold = criteria.dataset.threshold
    overall = [s.metrics.slices.loc[OVERALL] for s in summaries]
    curves = [
        (
            name,
            {**s.curve, "auc": row["roc_auc"], "ap": row["pr_auc"]},
            (int(row["tp"]), int(row["fp"])),
        )
        for name, s, row in zip(("candidate", "champion"), summaries, overall, strict=False)
    ]
    candidate = summaries[0].metrics
    champion = summaries[1].metrics if len(summaries) > 1 else None
    present = set(candidate.slices.index)
    key_slices = [s for s in criteria.key_slices if s in present and s != OVERALL]
    return {
        "roc_pr_overall.png": roc_pr_png(
            curves, int(overall[0]["positives"]), int(overall[0]["negatives"]), threshold=threshold
        ),
        "confusion_matrices.png": confusion_matrices_png(
            candidate, champion, key_slices, threshold
        ),
    }
