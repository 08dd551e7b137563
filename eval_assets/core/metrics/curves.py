"""ROC and precision-recall curves as vertices to draw, thinned to what a picture can show.

Pure numpy: the streamed evaluation thins its curves here without loading any plotting library.
"""

from __future__ import annotations

import numpy as np

from eval_assets.core.metrics.binary import auc_ap_from_counts, descending_order

# Curves are thinned to about this many steps per axis; the AUC and AP use every row.
_CURVE_RESOLUTION = 1500


def roc_pr_curves(y: np.ndarray, scores: np.ndarray) -> dict[str, np.ndarray | float]:
    """ROC and PR curve vertices (one per distinct score, thinned) and the exact AUC and AP."""
    order, sorted_scores = descending_order(scores)
    labels = y[order].astype(np.int64)
    # The last row of each run of tied scores closes a threshold.
    ends = np.r_[np.flatnonzero(np.diff(sorted_scores)), len(sorted_scores) - 1]
    tps = np.cumsum(labels)[ends]
    fps = ends + 1 - tps
    auc, ap = auc_ap_from_counts(np.diff(tps, prepend=0), np.diff(fps, prepend=0))
    n_pos, n_neg = tps[-1], fps[-1]
    fpr = np.r_[0.0, fps / n_neg]
    tpr = np.r_[0.0, tps / n_pos]
    recall = np.r_[0.0, tps / n_pos]
    precision = tps / (tps + fps)
    precision = np.r_[precision[0], precision]
    roc_keep = thin_curve(fpr, tpr)
    pr_keep = thin_curve(recall, precision)
    return {
        "fpr": fpr[roc_keep],
        "tpr": tpr[roc_keep],
        "recall": recall[pr_keep],
        "precision": precision[pr_keep],
        "auc": float(auc),
        "ap": float(ap),
    }


def thin_curve(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Indices of the vertices that move to another cell of a fine grid (first and last kept)."""
    cell = np.floor(x * _CURVE_RESOLUTION) * (_CURVE_RESOLUTION + 1) + np.floor(
        y * _CURVE_RESOLUTION
    )
    keep = np.r_[True, cell[1:] != cell[:-1]]
    keep[-1] = True
    # Keep the vertex before each kept one too, so steps and corners stay where they are.
    keep[:-1] |= keep[1:]
    return np.flatnonzero(keep)
