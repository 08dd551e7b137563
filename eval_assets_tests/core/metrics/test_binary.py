"""Slice and fairness metrics must equal scikit-learn and fairlearn on the same rows.

Promotion gates compare these numbers, so any drift from the reference libraries, or a 0.0
where a metric is undefined, would silently pass or block a model. The vectorized code shares
one sort across all slices; these tests pin it to the slow, obvious computation.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from fairlearn.metrics import (
    demographic_parity_difference,
    demographic_parity_ratio,
    equalized_odds_difference,
)
from sklearn import metrics as skm

from eval_assets.core.metrics.binary import (
    COUNT_COLUMNS,
    FAIRNESS_GROUP_COLUMNS,
    auc_ap_from_counts,
    descending_order,
    fairness_metrics,
    slice_metrics,
)
from eval_assets.core.slicing import Slice
from eval_assets.core.vocabulary import FAIRNESS_METRICS, HIGHER_IS_BETTER, METRIC_NAMES

THRESHOLD = 0.4


def reference_row(y: np.ndarray, score: np.ndarray, threshold: float) -> dict[str, float]:
    """The slow way: scikit-learn on the slice's rows, NaN wherever a metric is undefined."""
    nan = float("nan")
    if len(y) == 0:
        return {**dict.fromkeys(COUNT_COLUMNS, 0), **dict.fromkeys(METRIC_NAMES, nan)}
    predicted = (score >= threshold).astype(int)
    tn, fp, fn, tp = skm.confusion_matrix(y, predicted, labels=[0, 1]).ravel()
    both_classes = 0 < y.sum() < len(y)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        row = {
            "support": len(y),
            "positives": int(y.sum()),
            "negatives": int(len(y) - y.sum()),
            "tp": tp,
            "fp": fp,
            "tn": tn,
            "fn": fn,
            "roc_auc": skm.roc_auc_score(y, score) if both_classes else nan,
            # scikit-learn answers 0.0 (no positives) or 1.0 (no negatives) here; see
            # test_average_precision_of_one_class_is_nan_not_sklearns_constant.
            "pr_auc": skm.average_precision_score(y, score) if both_classes else nan,
            "log_loss": skm.log_loss(y, score, labels=[0, 1]),
            "brier": skm.brier_score_loss(y, score, labels=[0, 1]),
            "accuracy": skm.accuracy_score(y, predicted),
            "precision": skm.precision_score(y, predicted, zero_division=np.nan),
            "recall": skm.recall_score(y, predicted, zero_division=np.nan),
            "f1": skm.f1_score(y, predicted, zero_division=np.nan),
            "selection_rate": predicted.mean(),
            "tpr": skm.recall_score(y, predicted, zero_division=np.nan),
            "fpr": fp / (fp + tn) if fp + tn else nan,
        }
    return row


def assert_matches_reference(
    y: np.ndarray, score: np.ndarray, slices: list[Slice], threshold: float
) -> pd.DataFrame:
    table = slice_metrics(y, score, slices, threshold)
    assert list(table.columns) == ["slice", *COUNT_COLUMNS, *METRIC_NAMES]
    assert list(table["slice"]) == [s.name for s in slices]
    for i, slice_ in enumerate(slices):
        expected = reference_row(y[slice_.mask], score[slice_.mask], threshold)
        for column in (*COUNT_COLUMNS, *METRIC_NAMES):
            actual = table[column].iloc[i]
            if np.isnan(expected[column]):
                assert np.isnan(actual), f"{slice_.name} {column}: {actual} should be NaN"
            else:
                assert actual == pytest.approx(expected[column], abs=1e-9), (
                    f"{slice_.name} {column}"
                )
    return table


def awkward_data(seed: int, decimals: int | None, n: int = 2000):
    """Scores with ties (rounded) and edge values, and slices that stress every NaN rule."""
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < rng.uniform(0.05, 0.5)).astype(np.int64)
    score = np.clip(rng.beta(2, 5, n) + 0.25 * y * rng.random(n), 0.0, 1.0)
    if decimals is not None:
        score = np.round(score, decimals)
    score[:4] = [0.0, 1.0, THRESHOLD, 1e-300]
    below = score < THRESHOLD
    slices = [
        Slice("overall", np.ones(n, dtype=bool), kind="overall"),
        Slice("random", rng.random(n) < 0.3),
        Slice("empty", np.zeros(n, dtype=bool)),
        Slice("negatives only", y == 0),
        Slice("positives only", y == 1),
        Slice("no predicted positives", below),
        Slice("no predicted positives, no positives", below & (y == 0)),
        Slice("all predicted positive", ~below),
        Slice("tiny", np.isin(np.arange(n), [5, 17, 400])),
        Slice("one row", np.arange(n) == 7),
        Slice("first rows", np.arange(n) < 50),
    ]
    return y, score, slices


@pytest.mark.parametrize("seed", range(2))
@pytest.mark.parametrize("decimals", [1, 3, None])
def test_every_column_equals_sklearn(seed: int, decimals: int | None) -> None:
    y, score, slices = awkward_data(seed, decimals)
    assert_matches_reference(y, score, slices, THRESHOLD)


@pytest.mark.parametrize("threshold", [0.0, 1.0, 1.5])
def test_thresholds_at_and_beyond_the_score_range(threshold: float) -> None:
    y, score, slices = awkward_data(11, 2)
    assert_matches_reference(y, score, slices[:2] + slices[-3:], threshold)


def test_nearly_equal_scores_are_ordered_exactly() -> None:
    # Scores a few ulps apart collide in the truncated sort key and must be re-sorted exactly.
    rng = np.random.default_rng(3)
    n = 5000
    steps = rng.integers(0, 3000, n)
    # 0.3 plus a whole number of ulps (2**-54 near 0.3): thousands of distinct, nearly equal values.
    score = 0.3 + steps * 2.0**-54
    assert len(np.unique(score)) > 2000
    y = (rng.random(n) < 0.3).astype(int)
    order, sorted_score = descending_order(score)
    np.testing.assert_array_equal(order, np.argsort(-score, kind="stable"))
    np.testing.assert_array_equal(sorted_score, score[order])
    slices = [Slice("overall", np.ones(n, dtype=bool)), Slice("half", rng.random(n) < 0.5)]
    assert_matches_reference(y, score, slices, 0.3 + 1000 * 2.0**-54)


def test_negative_zero_counts_as_zero() -> None:
    y = np.array([0, 1, 0, 1, 0])
    score = np.array([-0.0, 0.9, 0.0, 0.0, 0.2])
    table = slice_metrics(y, score, [Slice("all", np.ones(5, dtype=bool))], 0.5)
    assert table["roc_auc"].iloc[0] == pytest.approx(skm.roc_auc_score(y, score), abs=1e-12)


def test_empty_slice_is_all_nan_with_zero_counts() -> None:
    y, score, _ = awkward_data(0, 2)
    table = slice_metrics(y, score, [Slice("nobody", np.zeros(len(y), dtype=bool))], THRESHOLD)
    assert (table[list(COUNT_COLUMNS)].to_numpy() == 0).all()
    assert table[list(METRIC_NAMES)].isna().all().all()


def test_average_precision_of_one_class_is_nan_not_sklearns_constant() -> None:
    # scikit-learn returns 0.0 without positives and 1.0 without negatives, whatever the model:
    # a gate on such a number would pass or fail regardless of the model, so it is undefined.
    score = np.array([0.2, 0.7, 0.4])
    for labels in ([0, 0, 0], [1, 1, 1]):
        y = np.array(labels)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            assert skm.average_precision_score(y, score) in (0.0, 1.0)
        table = slice_metrics(y, score, [Slice("one class", np.ones(3, dtype=bool))], 0.5)
        assert np.isnan(table["pr_auc"].iloc[0])
        assert np.isnan(table["roc_auc"].iloc[0])


def test_f1_follows_sklearn_when_nothing_is_predicted_positive() -> None:
    # Precision is undefined, recall is 0: scikit-learn's F1 is 0.0 there, not NaN.
    y = np.array([1, 1, 0, 0])
    score = np.array([0.1, 0.2, 0.3, 0.1])
    row = slice_metrics(y, score, [Slice("s", np.ones(4, dtype=bool))], 0.5).iloc[0]
    assert np.isnan(row["precision"])
    assert row["recall"] == 0.0
    assert row["f1"] == skm.f1_score(y, score >= 0.5, zero_division=np.nan) == 0.0


def test_dtypes_and_constants() -> None:
    y, score, slices = awkward_data(1, 2)
    table = slice_metrics(y, score, slices, THRESHOLD)
    assert all(table[c].dtype == np.int64 for c in COUNT_COLUMNS)
    assert all(table[c].dtype == np.float64 for c in METRIC_NAMES)
    assert {m for m, up in HIGHER_IS_BETTER.items() if not up} == {"log_loss", "brier", "fpr"}
    assert set(HIGHER_IS_BETTER) == set(METRIC_NAMES)


@pytest.mark.parametrize(
    ("y", "score", "mask", "message"),
    [
        ([0, 2, 1], [0.1, 0.2, 0.3], None, "0 or 1"),
        ([0, 1, 1], [0.1, 1.2, 0.3], None, "probabilities"),
        ([0, 1, 1], [0.1, np.nan, 0.3], None, "probabilities"),
        ([0, 1], [0.1, 0.2, 0.3], None, "rows"),
        ([0, 1, 1], [0.1, 0.2, 0.3], np.array([1, 0, 1]), "boolean"),
        ([0, 1, 1], [0.1, 0.2, 0.3], np.array([True, False]), "length 3"),
    ],
)
def test_bad_input_is_refused_with_a_clear_message(y, score, mask, message) -> None:
    mask = np.ones(len(y), dtype=bool) if mask is None else mask
    with pytest.raises(ValueError, match=message):
        slice_metrics(np.array(y), np.array(score), [Slice("s", mask)], 0.5)


def test_auc_ap_from_binned_counts_equal_sklearn_on_expanded_rows() -> None:
    # The bootstrap scores resamples from per-bin counts; each row of counts is a dataset.
    rng = np.random.default_rng(5)
    positives = rng.integers(0, 6, size=(20, 9))
    negatives = rng.integers(0, 9, size=(20, 9))
    auc, ap = auc_ap_from_counts(positives, negatives)
    for r in range(20):
        bins = np.arange(9, 0, -1)  # column 0 is the highest score
        score = np.concatenate([np.repeat(bins, positives[r]), np.repeat(bins, negatives[r])])
        y = np.concatenate([np.ones(positives[r].sum()), np.zeros(negatives[r].sum())])
        if 0 < y.sum() < len(y):
            assert auc[r] == pytest.approx(skm.roc_auc_score(y, score), abs=1e-12)
            assert ap[r] == pytest.approx(skm.average_precision_score(y, score), abs=1e-12)
        else:
            assert np.isnan(auc[r]) and np.isnan(ap[r])


def fairness_data(seed: int, n: int = 3000):
    rng = np.random.default_rng(seed)
    groups = rng.choice(np.array(["b", "a", "d", "c"], dtype=object), n, p=[0.4, 0.3, 0.2, 0.1])
    y = (rng.random(n) < 0.3).astype(int)
    score = np.round(np.clip(rng.beta(2, 4, n) + 0.2 * y, 0, 1), 3)
    return y, score, groups


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("as_ints", [False, True])
def test_disparities_equal_fairlearn(seed: int, as_ints: bool) -> None:
    y, score, groups = fairness_data(seed)
    if as_ints:
        groups = np.searchsorted(np.array(["a", "b", "c", "d"]), groups.astype(str)) * 10
    table, disparity = fairness_metrics(y, score, groups, THRESHOLD)
    predicted = (score >= THRESHOLD).astype(int)
    expected = {
        "demographic_parity_difference": demographic_parity_difference(
            y, predicted, sensitive_features=groups
        ),
        "demographic_parity_ratio": demographic_parity_ratio(
            y, predicted, sensitive_features=groups
        ),
        "equalized_odds_difference": equalized_odds_difference(
            y, predicted, sensitive_features=groups
        ),
    }
    assert list(disparity) == list(FAIRNESS_METRICS)
    for name in FAIRNESS_METRICS:
        assert disparity[name] == pytest.approx(expected[name], abs=1e-9), name
    assert list(table.columns) == list(FAIRNESS_GROUP_COLUMNS)
    values = sorted(set(groups.tolist()))
    assert list(table["group"]) == [str(v) for v in values]
    for _, row in table.iterrows():
        rows = groups.astype(str) == row["group"]
        assert row["support"] == rows.sum()
        assert row["positives"] == y[rows].sum()
        assert row["selection_rate"] == pytest.approx(predicted[rows].mean(), abs=1e-12)
        assert row["tpr"] == pytest.approx(predicted[rows & (y == 1)].mean(), abs=1e-12)
        assert row["fpr"] == pytest.approx(predicted[rows & (y == 0)].mean(), abs=1e-12)


def test_group_without_positives_makes_disparity_nan_where_fairlearn_says_zero_tpr() -> None:
    # Deliberate difference from fairlearn: it scores the missing TPR as 0.0 and reports a
    # number; a gate must not pass on a group it could not measure.
    y, score, groups = fairness_data(0)
    y = np.where(groups == "c", 0, y)
    table, disparity = fairness_metrics(y, score, groups, THRESHOLD)
    predicted = (score >= THRESHOLD).astype(int)
    assert np.isnan(table.set_index("group").loc["c", "tpr"])
    assert np.isnan(disparity["equalized_odds_difference"])
    assert np.isfinite(equalized_odds_difference(y, predicted, sensitive_features=groups))
    assert disparity["demographic_parity_difference"] == pytest.approx(
        demographic_parity_difference(y, predicted, sensitive_features=groups), abs=1e-9
    )


def test_zero_selection_everywhere_gives_nan_ratio_like_fairlearn() -> None:
    y, score, groups = fairness_data(1)
    _, disparity = fairness_metrics(y, score, groups, 2.0)
    assert disparity["demographic_parity_difference"] == 0.0
    assert np.isnan(disparity["demographic_parity_ratio"])


@pytest.mark.parametrize("missing", [None, np.nan])
def test_missing_group_values_are_refused(missing) -> None:
    y, score, groups = fairness_data(2)
    groups = groups.copy()
    groups[10] = missing
    with pytest.raises(ValueError, match="missing values.*row 10"):
        fairness_metrics(y, score, groups, THRESHOLD)
    with pytest.raises(ValueError, match="missing values"):
        fairness_metrics(y, score, np.where(np.arange(len(y)) == 3, np.nan, 1.0), THRESHOLD)


def test_groups_as_a_categorical_give_the_very_tables_of_their_values() -> None:
    y, score, groups = fairness_data(3)
    text = np.asarray(groups, dtype=str).astype(object)
    # Unsorted categories and one no row uses: neither may change a group or add one.
    categorical = pd.Categorical(text, categories=[*sorted(set(text), reverse=True), "unused"])
    table, disparity = fairness_metrics(y, score, text, THRESHOLD)
    table_c, disparity_c = fairness_metrics(y, score, categorical, THRESHOLD)
    pd.testing.assert_frame_equal(table, table_c, check_exact=True)
    assert disparity == disparity_c
    # More categories than an int8 code holds, most unused: codes must not wrap around.
    many = pd.Categorical(
        text, categories=[f"unused {i:03d}" for i in range(300)] + sorted(set(text))
    )
    assert many.codes.dtype == np.int16
    table_m, disparity_m = fairness_metrics(y, score, many, THRESHOLD)
    pd.testing.assert_frame_equal(table, table_m, check_exact=True)
    assert disparity == disparity_m
    with_missing = pd.Categorical([None, *text[1:]], categories=sorted(set(text)))
    with pytest.raises(ValueError, match="missing values.*row 0"):
        fairness_metrics(y, score, with_missing, THRESHOLD)
