"""Per-slice classification metrics and group fairness disparities, vectorized over slices.

Every value equals scikit-learn 1.9.1 (and fairlearn 0.15 for the disparities) on the same rows,
except where scikit-learn returns a number for an undefined quantity: here an undefined metric is
NaN, never 0.0, so that a gate cannot pass on it (fail closed).

The ranking metrics avoid one sort per slice: the scores are sorted once, tied scores are grouped
once, and each slice reduces to per-tie-group positive and negative counts taken in sorted order.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from eval_assets.core.slicing import Slice
from eval_assets.core.vocabulary import METRIC_NAMES

COUNT_COLUMNS: tuple[str, ...] = ("support", "positives", "negatives", "tp", "fp", "tn", "fn")
FAIRNESS_GROUP_COLUMNS: tuple[str, ...] = (
    "group",
    "support",
    "positives",
    "selection_rate",
    "tpr",
    "fpr",
)

# scikit-learn clips probabilities to [eps, 1 - eps] of the input dtype before taking logs.
_EPS = float(np.finfo(np.float64).eps)


def slice_metrics(
    y: np.ndarray, score: np.ndarray, slices: Sequence[Slice], threshold: float
) -> pd.DataFrame:
    """One row of counts and metrics per slice, in the order of `slices`."""
    y, score = validate_inputs(y, score)
    threshold = validate_threshold(threshold)
    n = len(y)
    masks = [_slice_mask(s, n) for s in slices]
    order, sorted_score = descending_order(score)
    # Ascending copy, so that tie-group bounds are two searchsorted calls.
    ascending = -sorted_score
    y_sorted = y[order]
    n_predicted = int(np.count_nonzero(sorted_score >= threshold))
    log_loss_sorted, brier_sorted = row_losses(y_sorted, sorted_score)
    packed = _pack_sorted_masks(masks, order)

    counts = np.zeros((len(slices), len(COUNT_COLUMNS)), dtype=np.int64)
    auc = np.full(len(slices), np.nan)
    ap = np.full(len(slices), np.nan)
    log_loss = np.full(len(slices), np.nan)
    brier = np.full(len(slices), np.nan)
    for i, mask in enumerate(masks):
        if mask is None:
            if n == 0:
                continue
            positions = None
            support = n
            labels = y_sorted
            loss_sum, sq_sum = log_loss_sorted.sum(), brier_sorted.sum()
        else:
            byte, bit = packed[i]
            # A 0/1 byte array viewed as bool takes numpy's fast path for nonzero.
            positions = np.flatnonzero(((byte >> bit) & np.uint8(1)).view(np.bool_))
            support = len(positions)
            if support == 0:
                continue
            labels = y_sorted[positions]
            loss_sum = log_loss_sorted[positions].sum()
            sq_sum = brier_sorted[positions].sum()
        positive_positions = np.flatnonzero(labels.view(np.bool_))
        if positions is not None:
            positive_positions = positions[positive_positions]
        auc[i], ap[i] = _auc_ap_in_slice(ascending, positions, positive_positions, support)
        positives = len(positive_positions)
        predicted = _count_before(positions, n_predicted)
        tp = int(np.searchsorted(positive_positions, n_predicted))
        fp = predicted - tp
        counts[i] = (
            support,
            positives,
            support - positives,
            tp,
            fp,
            support - positives - fp,
            positives - tp,
        )
        log_loss[i] = loss_sum / support
        brier[i] = sq_sum / support

    columns = dict(zip(COUNT_COLUMNS, counts.T, strict=True))
    rates = confusion_metrics(columns["tp"], columns["fp"], columns["tn"], columns["fn"])
    values = {"roc_auc": auc, "pr_auc": ap, "log_loss": log_loss, "brier": brier, **rates}
    frame = pd.DataFrame({"slice": [s.name for s in slices]})
    for name in COUNT_COLUMNS:
        frame[name] = columns[name].astype(np.int64)
    for name in METRIC_NAMES:
        frame[name] = np.asarray(values[name], dtype=np.float64)
    return frame


def descending_order(score: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Row indices by descending score (ties by ascending row index), and the sorted scores.

    np.argsort on float64 is several times slower than np.sort on uint64 keys, so the key is the
    complemented float bits (order-reversing for non-negative floats) with the row index in the
    low bits. Truncating the float bits can merge nearby distinct scores; those rare runs are
    detected and re-sorted exactly.
    """
    n = len(score)
    index_bits = max(1, (n - 1).bit_length())
    if index_bits > 40:
        order = np.argsort(-score, kind="stable")
        return order, score[order]
    shift = np.uint64(index_bits)
    key = (~score.view(np.uint64) >> shift) << shift
    key |= np.arange(n, dtype=np.uint64)
    key.sort()
    order = (key & np.uint64((1 << index_bits) - 1)).astype(np.intp)
    sorted_score = score[order]
    if n > 1 and (sorted_score[1:] > sorted_score[:-1]).any():
        high = key >> shift
        run = np.concatenate(([0], np.cumsum(high[1:] != high[:-1])))
        bad_runs = np.unique(run[1:][sorted_score[1:] > sorted_score[:-1]])
        inside = np.flatnonzero(np.isin(run, bad_runs))
        resorted = np.lexsort((-sorted_score[inside], run[inside]))
        order[inside] = order[inside][resorted]
        sorted_score = score[order]
    return order, sorted_score


def _pack_sorted_masks(
    masks: Sequence[np.ndarray | None], order: np.ndarray
) -> dict[int, tuple[np.ndarray, np.uint8]]:
    """Each partial mask as (byte array in sorted order, bit index): 8 masks share a gather."""
    # Gathering by the sort order costs the same for one byte as for one bool, so eight masks
    # are packed into the bits of a byte and moved together.
    partial = [(i, m) for i, m in enumerate(masks) if m is not None]
    packed: dict[int, tuple[np.ndarray, np.uint8]] = {}
    shifted = np.empty(len(order), dtype=np.uint8)
    for start in range(0, len(partial), 8):
        chunk = partial[start : start + 8]
        byte = chunk[0][1].astype(np.uint8)
        for bit, (_, mask) in enumerate(chunk[1:], start=1):
            np.left_shift(mask.view(np.uint8), np.uint8(bit), out=shifted)
            byte |= shifted
        byte = byte[order]
        for bit, (i, _) in enumerate(chunk):
            packed[i] = (byte, np.uint8(bit))
    return packed


def _count_before(positions: np.ndarray | None, limit: int) -> int:
    """How many slice rows sit before sorted position `limit` (all rows when unsliced)."""
    return limit if positions is None else int(np.searchsorted(positions, limit))


def _auc_ap_in_slice(
    ascending: np.ndarray,
    positions: np.ndarray | None,
    positive_positions: np.ndarray,
    support: int,
) -> tuple[float, float]:
    """ROC AUC and average precision of one slice from the globally sorted scores.

    Only the slice's positives are visited: for each, its tie group's bounds in the global order
    give the slice negatives strictly above it and tied with it (Mann-Whitney with ties counted
    half), and the slice precision at its threshold (scikit-learn's AP step sum).
    """
    n_pos = len(positive_positions)
    n_neg = support - n_pos
    if n_pos == 0 or n_neg == 0:
        return np.nan, np.nan
    value = ascending[positive_positions]
    group_start = np.searchsorted(ascending, value, side="left")
    group_end = np.searchsorted(ascending, value, side="right")
    if positions is None:
        rows_above, rows_through = group_start, group_end
    else:
        rows_above = np.searchsorted(positions, group_start)
        rows_through = np.searchsorted(positions, group_end)
    neg_above = rows_above - np.searchsorted(positive_positions, group_start)
    pos_through = np.searchsorted(positive_positions, group_end)
    neg_through = rows_through - pos_through
    twice_u = int(np.sum(2 * (n_neg - neg_through) + (neg_through - neg_above)))
    auc = twice_u / (2.0 * n_pos * n_neg)
    ap = float(np.sum(pos_through / rows_through)) / n_pos
    return auc, ap


def fairness_metrics(
    y: np.ndarray, score: np.ndarray, groups: np.ndarray | pd.Categorical, threshold: float
) -> tuple[pd.DataFrame, dict[str, float]]:
    """Per-group selection rate, TPR and FPR, and the disparities between groups.

    The disparities equal fairlearn's `demographic_parity_difference`, `demographic_parity_ratio`
    and `equalized_odds_difference` (default `agg="worst_case"`), with one deliberate difference:
    a group whose TPR or FPR is undefined (no positives, or no negatives) makes the disparity NaN,
    where fairlearn counts that rate as 0.0 (it silently passes a gate that never saw the group).
    """
    y, score = validate_inputs(y, score)
    values, inverse = group_codes(groups, len(y))
    predicted = score >= validate_threshold(threshold)
    return fairness_from_counts(values, *group_counts(inverse, len(values), y, predicted))


def fairness_from_counts(
    values: np.ndarray,
    support: np.ndarray,
    positives: np.ndarray,
    selected: np.ndarray,
    tp: np.ndarray,
) -> tuple[pd.DataFrame, dict[str, float]]:
    """`fairness_metrics` from per-group counts (groups in `values` order)."""
    negatives = support - positives
    selection_rate = selected / support
    tpr = _ratio(tp, positives)
    fpr = _ratio(selected - tp, negatives)
    table = pd.DataFrame(
        {
            "group": [str(v) for v in values],
            "support": support.astype(np.int64),
            "positives": positives.astype(np.int64),
            "selection_rate": selection_rate,
            "tpr": tpr,
            "fpr": fpr,
        }
    )
    dpd, dpr, eod = disparities(selection_rate, tpr, fpr)
    return table, {
        "demographic_parity_difference": float(dpd),
        "demographic_parity_ratio": float(dpr),
        "equalized_odds_difference": float(eod),
    }


def validate_inputs(y: np.ndarray, score: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Labels as a 0/1 int8 array and scores as float64 probabilities, or a ValueError."""
    y = np.asarray(y)
    score = np.asarray(score)
    if y.ndim != 1 or score.ndim != 1:
        raise ValueError(f"labels and scores must be 1-D, got shapes {y.shape} and {score.shape}")
    if len(y) != len(score):
        raise ValueError(f"labels have {len(y)} rows but scores have {len(score)}")
    if y.dtype != np.bool_:
        if not np.issubdtype(y.dtype, np.number):
            raise ValueError(f"labels must be 0/1 numbers, got dtype {y.dtype}")
        bad = (y != 0) & (y != 1)
        if bad.any():
            raise ValueError(f"labels must be 0 or 1, found {y[bad][0]!r}")
    if not np.issubdtype(score.dtype, np.number) or np.issubdtype(score.dtype, np.complexfloating):
        raise ValueError(f"scores must be real numbers, got dtype {score.dtype}")
    score = np.ascontiguousarray(score, dtype=np.float64)
    if np.signbit(score).any():
        # -0.0 would sort above 1.0 by its bits; adding +0.0 turns it into +0.0.
        score = score + 0.0
    bad = ~((score >= 0.0) & (score <= 1.0))
    if bad.any():
        raise ValueError(f"scores must be probabilities in [0, 1], found {score[bad][0]!r}")
    return y.astype(np.int8, copy=False), score


def validate_threshold(threshold: float) -> float:
    """The decision threshold as a float, or a ValueError when it is not a finite number."""
    value = float(threshold)
    if not np.isfinite(value):
        raise ValueError(f"threshold must be a finite number, got {threshold!r}")
    return value


def row_losses(y: np.ndarray, score: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-row log loss (clipped exactly as scikit-learn does) and squared error."""
    # scikit-learn clips p and 1 - p separately, so the clipped pair need not sum to one.
    positive = y.astype(bool)
    chosen = np.where(positive, score, 1.0 - score)
    log_loss = -np.log(np.clip(chosen, _EPS, 1.0 - _EPS))
    brier = (y - score) ** 2
    return log_loss, brier


def auc_ap_from_counts(pos: np.ndarray, neg: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """ROC AUC and average precision from positive/negative counts per tie group.

    The last axis lists the tie groups (or score bins) from the highest score down; leading axes
    are independent samples. AUC is Mann-Whitney with ties counted half, computed in integers;
    AP is scikit-learn's step sum over thresholds of (recall change) x precision.
    """
    pos = np.asarray(pos, dtype=np.int64)
    neg = np.asarray(neg, dtype=np.int64)
    cum_pos = np.cumsum(pos, axis=-1)
    cum_neg = np.cumsum(neg, axis=-1)
    n_pos = cum_pos[..., -1]
    n_neg = cum_neg[..., -1]
    # Twice the Mann-Whitney U, so that half-counted ties stay integers.
    twice_u = np.sum(pos * (2 * (n_neg[..., None] - cum_neg) + neg), axis=-1)
    precision = np.divide(cum_pos, cum_pos + cum_neg, out=np.zeros(cum_pos.shape), where=pos > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        auc = np.where((n_pos > 0) & (n_neg > 0), twice_u / (2.0 * n_pos * n_neg), np.nan)
        ap = np.where((n_pos > 0) & (n_neg > 0), np.sum(pos * precision, axis=-1) / n_pos, np.nan)
    return auc, ap


def confusion_metrics(
    tp: np.ndarray, fp: np.ndarray, tn: np.ndarray, fn: np.ndarray
) -> dict[str, np.ndarray]:
    """Threshold metrics from confusion counts; NaN wherever a denominator is zero."""
    tp, fp, tn, fn = (np.asarray(a, dtype=np.int64) for a in (tp, fp, tn, fn))
    support = tp + fp + tn + fn
    recall = _ratio(tp, tp + fn)
    return {
        "accuracy": _ratio(tp + tn, support),
        "precision": _ratio(tp, tp + fp),
        "recall": recall,
        # scikit-learn's F1 is 2tp / (2tp + fp + fn): 0.0, not NaN, when no row is predicted
        # positive but positives exist; NaN only when the slice has no positives and no
        # predicted positives.
        "f1": _ratio(2 * tp, 2 * tp + fp + fn),
        "selection_rate": _ratio(tp + fp, support),
        "tpr": recall,
        "fpr": _ratio(fp, fp + tn),
    }


def group_codes(groups: np.ndarray | pd.Categorical, n_rows: int) -> tuple[np.ndarray, np.ndarray]:
    """Sorted distinct group values and each row's index into them; missing values refused.

    A pandas Categorical gives the same answer as its values would, read from its codes (no
    hashing of one value per row); categories no row uses are not groups.
    """
    try:
        if isinstance(groups, pd.Categorical):
            if groups.ndim != 1 or len(groups) != n_rows:
                raise ValueError(f"groups must be 1-D with {n_rows} rows, got {len(groups)} rows")
            # Categories some row uses, in sorted order, each row's code renumbered to match:
            # counting and one lookup, where pandas' remove_unused_categories sorts every code.
            # Codes are shifted by one so that "missing" (-1) indexes slot 0 (wide: no overflow).
            shifted = groups.codes.astype(np.intp) + 1
            n_categories = len(groups.categories)
            used = np.flatnonzero(np.bincount(shifted, minlength=n_categories + 1)[1:])
            present = groups.categories[used]
            ranked = sorted(range(len(used)), key=lambda i: present[i])
            lookup = np.full(n_categories + 1, -1, dtype=np.intp)
            lookup[used[ranked] + 1] = np.arange(len(used))
            values, inverse = np.asarray(present[ranked]), lookup[shifted]
        else:
            groups = np.asarray(groups)
            if groups.ndim != 1 or len(groups) != n_rows:
                raise ValueError(f"groups must be 1-D with {n_rows} rows, got shape {groups.shape}")
            # factorize hashes instead of sorting all rows (np.unique on object arrays is slow).
            inverse, values = pd.factorize(groups, sort=True)
    except TypeError as error:
        raise ValueError(f"groups mix values that cannot be ordered: {error}") from error
    missing = inverse < 0
    if missing.any():
        raise ValueError(
            f"groups contain {int(missing.sum())} missing values (first at row "
            f"{int(np.flatnonzero(missing)[0])}); every row needs a known group"
        )
    return np.asarray(values), inverse.astype(np.intp, copy=False)


def group_counts(
    inverse: np.ndarray, n_groups: int, y: np.ndarray, predicted: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Support, positives, predicted positives and true positives per group."""
    positive = y.astype(bool)
    return (
        np.bincount(inverse, minlength=n_groups),
        np.bincount(inverse[positive], minlength=n_groups),
        np.bincount(inverse[predicted], minlength=n_groups),
        np.bincount(inverse[predicted & positive], minlength=n_groups),
    )


def disparities(
    selection_rate: np.ndarray, tpr: np.ndarray, fpr: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Demographic parity difference and ratio, equalized odds difference over the last axis.

    Plain max/min propagate NaN: an undefined rate in any group makes the disparity undefined.
    """
    if selection_rate.shape[-1] == 0:
        nan = np.full(selection_rate.shape[:-1], np.nan)
        return nan, nan, nan
    sel_max, sel_min = selection_rate.max(axis=-1), selection_rate.min(axis=-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(sel_max > 0, sel_min / sel_max, np.nan)
    ratio = np.where(np.isnan(sel_max), np.nan, ratio)
    tpr_gap = tpr.max(axis=-1) - tpr.min(axis=-1)
    fpr_gap = fpr.max(axis=-1) - fpr.min(axis=-1)
    return sel_max - sel_min, ratio, np.maximum(tpr_gap, fpr_gap)


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    numerator = np.asarray(numerator, dtype=np.float64)
    denominator = np.asarray(denominator, dtype=np.float64)
    return np.divide(
        numerator,
        denominator,
        out=np.full(np.broadcast(numerator, denominator).shape, np.nan),
        where=denominator != 0,
    )


def _slice_mask(slice_: Slice, n_rows: int) -> np.ndarray | None:
    """The slice's boolean mask, or None when it selects every row (no gather needed)."""
    mask = np.asarray(slice_.mask)
    if mask.dtype != np.bool_ or mask.shape != (n_rows,):
        raise ValueError(
            f"slice {slice_.name!r}: mask must be a boolean array of length {n_rows}, "
            f"got dtype {mask.dtype} and shape {mask.shape}"
        )
    return None if mask.all() else mask
