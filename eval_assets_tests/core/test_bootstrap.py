"""Paired bootstrap intervals: reproducible, truly paired, honest in width, and fail closed.

Change gates read `delta_low`/`delta_high`, and audits re-run evaluations expecting the same
bytes, so the intervals must be bit-for-bit reproducible, exactly zero-width when the two models
are the same, about as wide as a plain row-level bootstrap despite the binning shortcut, and
NaN rather than invented when a statistic is undefined.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from sklearn.metrics import roc_auc_score

from eval_assets.core import bootstrap as bootstrap_module
from eval_assets.core.bootstrap import (
    INTERVAL_COLUMNS,
    Binning,
    BootstrapConfig,
    paired_bootstrap,
)
from eval_assets.core.metrics.binary import fairness_metrics, slice_metrics
from eval_assets.core.slicing import Slice
from eval_assets.core.vocabulary import FAIRNESS_METRICS, METRIC_NAMES, METRIC_RANGES

THRESHOLD = 0.5


def make_data(n: int = 5000, seed: int = 0, positive_rate: float = 0.2):
    """Labels, two correlated models (candidate slightly better), slices and a fairness column."""
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < positive_rate).astype(np.int64)
    region = rng.choice(np.array(["north", "south", "east"], dtype=object), n)
    # The models favour the north, so every disparity is clearly above zero.
    signal = rng.normal(size=n) + 1.4 * y + 0.5 * (region == "north")
    shared = rng.normal(size=n)
    candidate = 1 / (1 + np.exp(-(signal + 0.6 * shared + 0.5 * rng.normal(size=n) - 1.2)))
    champion = 1 / (1 + np.exp(-(0.8 * signal + 0.6 * shared + 0.7 * rng.normal(size=n) - 1.2)))
    candidate, champion = np.round(candidate, 4), np.round(champion, 4)
    first_of_each_class = [np.flatnonzero(y == 1)[0], np.flatnonzero(y == 0)[0]]
    slices = [
        Slice("overall", np.ones(n, dtype=bool), key=True, kind="overall"),
        Slice("region=north", region == "north", kind="value"),
        Slice("high score", candidate > 0.3),
        Slice("negatives only", y == 0),
        Slice("empty", np.zeros(n, dtype=bool)),
        Slice("one positive, one negative", np.isin(np.arange(n), first_of_each_class)),
    ]
    return y, candidate, champion, slices, {"region": region}


@pytest.fixture(scope="module")
def data():
    return make_data()


@pytest.fixture(scope="module")
def intervals(data) -> pd.DataFrame:
    y, candidate, champion, slices, fairness = data
    return paired_bootstrap(
        y, candidate, champion, slices, THRESHOLD, BootstrapConfig(n_resamples=400), fairness
    )


def test_layout_one_row_per_slice_metric_and_fairness_disparity(data, intervals) -> None:
    _, _, _, slices, _ = data
    assert list(intervals.columns) == ["slice", "metric", *INTERVAL_COLUMNS]
    expected = [(s.name, m) for s in slices for m in METRIC_NAMES]
    expected += [("fairness:region", m) for m in FAIRNESS_METRICS]
    assert list(zip(intervals["slice"], intervals["metric"], strict=True)) == expected
    assert all(intervals[c].dtype == np.float64 for c in INTERVAL_COLUMNS)


def test_same_seed_is_bit_identical_and_another_seed_is_not(data, intervals) -> None:
    y, candidate, champion, slices, fairness = data
    again = paired_bootstrap(
        y, candidate, champion, slices, THRESHOLD, BootstrapConfig(n_resamples=400), fairness
    )
    pd.testing.assert_frame_equal(intervals, again, check_exact=True)
    other = paired_bootstrap(
        y,
        candidate,
        champion,
        slices,
        THRESHOLD,
        BootstrapConfig(n_resamples=400, seed=1),
        fairness,
    )
    assert not other.equals(intervals)


def test_a_slice_interval_does_not_depend_on_the_other_slices(data, intervals) -> None:
    y, candidate, champion, slices, _ = data
    alone = paired_bootstrap(
        y, candidate, champion, [slices[1]], THRESHOLD, BootstrapConfig(n_resamples=400)
    )
    together = intervals[intervals["slice"] == slices[1].name].reset_index(drop=True)
    pd.testing.assert_frame_equal(alone, together, check_exact=True)


def test_chunking_the_draws_does_not_change_the_result(data, monkeypatch) -> None:
    y, candidate, champion, slices, _ = data
    config = BootstrapConfig(n_resamples=300)
    whole = paired_bootstrap(y, candidate, champion, slices[:3], THRESHOLD, config)
    monkeypatch.setattr(bootstrap_module, "_CHUNK_CELLS", 1000)
    chunked = paired_bootstrap(y, candidate, champion, slices[:3], THRESHOLD, config)
    pd.testing.assert_frame_equal(whole, chunked, check_exact=True)


@pytest.mark.parametrize("workers", [1, 3])
def test_threads_do_not_change_the_result(data, intervals, monkeypatch, workers) -> None:
    # The shared fixture ran with the machine's thread count; one thread and an uneven count
    # must give the same bytes (slices draw from their own streams, collected in order).
    y, candidate, champion, slices, fairness = data
    monkeypatch.setattr(bootstrap_module, "_workers", lambda: workers)
    again = paired_bootstrap(
        y, candidate, champion, slices, THRESHOLD, BootstrapConfig(n_resamples=400), fairness
    )
    pd.testing.assert_frame_equal(intervals, again, check_exact=True)


def test_point_metrics_passed_in_give_the_same_intervals(data, intervals) -> None:
    y, candidate, champion, slices, fairness = data
    tables = [slice_metrics(y, scores, slices, THRESHOLD) for scores in (candidate, champion)]
    reused = paired_bootstrap(
        y,
        candidate,
        champion,
        slices,
        THRESHOLD,
        BootstrapConfig(n_resamples=400),
        fairness,
        point_metrics=tables,
    )
    pd.testing.assert_frame_equal(intervals, reused, check_exact=True)
    with pytest.raises(ValueError, match="one table per model"):
        paired_bootstrap(
            y, candidate, champion, slices, THRESHOLD, BootstrapConfig(10), point_metrics=tables[:1]
        )


def test_identical_models_have_an_exactly_zero_delta(data) -> None:
    y, candidate, _, slices, fairness = data
    result = paired_bootstrap(
        y, candidate, candidate.copy(), slices, THRESHOLD, BootstrapConfig(300), fairness
    )
    defined = result["candidate_low"].notna()
    assert defined.sum() > 30
    assert (result.loc[defined, ["delta_low", "delta_high"]] == 0.0).all().all()
    assert result.loc[~defined, ["delta_low", "delta_high"]].isna().all().all()
    pd.testing.assert_series_equal(
        result["candidate_low"], result["champion_low"], check_names=False
    )


def test_near_zero_disparity_interval_sits_at_or_above_the_point() -> None:
    # A disparity is a max - min over groups, biased upwards in samples: when groups barely
    # differ, resamples spread the groups apart and the whole interval can lie above the point.
    # That errs towards failing a fairness bound, never towards passing it.
    rng = np.random.default_rng(4)
    n = 4000
    y = (rng.random(n) < 0.3).astype(int)
    score = np.round(rng.random(n), 3)
    groups = {"coin": rng.choice(np.array(["heads", "tails"], dtype=object), n)}
    overall = [Slice("overall", np.ones(n, dtype=bool))]
    result = paired_bootstrap(y, score, None, overall, 0.5, BootstrapConfig(400), groups)
    rows = result[result["slice"] == "fairness:coin"].set_index("metric")
    _, disparity = fairness_metrics(y, score, groups["coin"], 0.5)
    for metric in ("demographic_parity_difference", "equalized_odds_difference"):
        assert rows.loc[metric, "candidate_high"] >= disparity[metric]
        assert rows.loc[metric, "candidate_low"] >= 0.0


def test_intervals_contain_the_exact_point_estimates(data, intervals) -> None:
    y, candidate, champion, slices, fairness = data
    for model, column in ((candidate, "candidate"), (champion, "champion")):
        points = slice_metrics(y, model, slices, THRESHOLD).set_index("slice")
        for name in ("overall", "region=north", "high score"):
            rows = intervals[intervals["slice"] == name].set_index("metric")
            for metric in METRIC_NAMES:
                low, high = rows.loc[metric, [f"{column}_low", f"{column}_high"]]
                assert low <= points.loc[name, metric] <= high, (name, metric, column)
                assert high - low > 0, (name, metric, column)
        _, disparity = fairness_metrics(y, model, fairness["region"], THRESHOLD)
        rows = intervals[intervals["slice"] == "fairness:region"].set_index("metric")
        for metric in FAIRNESS_METRICS:
            low, high = rows.loc[metric, [f"{column}_low", f"{column}_high"]]
            assert low <= disparity[metric] <= high, (metric, column)


def test_undefined_statistics_give_nan_intervals(intervals) -> None:
    by_slice = intervals.set_index(["slice", "metric"])
    # One class only: no AUC, no precision-recall curve, no recall.
    for metric in ("roc_auc", "pr_auc", "recall", "tpr"):
        assert by_slice.loc[("negatives only", metric)].isna().all()
    assert by_slice.loc[("negatives only", "fpr")].notna().all()
    assert by_slice.loc["empty"].isna().all().all()
    # Two rows: 60% of resamples lack a positive or a negative, so AUC is not estimable even
    # though the slice itself has one.
    assert by_slice.loc[("one positive, one negative", "roc_auc")].isna().all()


def test_without_champion_only_candidate_columns_are_filled(data) -> None:
    y, candidate, _, slices, fairness = data
    result = paired_bootstrap(
        y, candidate, None, slices[:2], THRESHOLD, BootstrapConfig(200), fairness
    )
    champion_and_delta = ["champion_low", "champion_high", "delta_low", "delta_high"]
    assert result[champion_and_delta].isna().all().all()
    assert result[["candidate_low", "candidate_high"]].notna().all().all()
    assert (result["slice"] == "fairness:region").sum() == len(FAIRNESS_METRICS)


def weighted_auc(y: np.ndarray, score: np.ndarray, weight: np.ndarray) -> float:
    """Mann-Whitney AUC with row weights, ties counted half (what sklearn computes)."""
    values, group = np.unique(-score, return_inverse=True)
    pos = np.bincount(group, weights=weight * y, minlength=len(values))
    neg = np.bincount(group, weights=weight * (1 - y), minlength=len(values))
    negatives_below = neg.sum() - np.cumsum(neg)
    return float(np.sum(pos * (negatives_below + neg / 2)) / (pos.sum() * neg.sum()))


def row_level_auc_bootstrap(y, candidate, champion, n_resamples: int, seed: int) -> np.ndarray:
    """The slow reference: a Poisson(1) weight per row, AUC of both models per resample."""
    rng = np.random.default_rng(seed)
    out = np.empty((n_resamples, 2))
    for r in range(n_resamples):
        weight = rng.poisson(1.0, len(y)).astype(float)
        out[r] = [weighted_auc(y, s, weight) for s in (candidate, champion)]
    assert out[-1, 0] == pytest.approx(roc_auc_score(y, candidate, sample_weight=weight))
    return out


def delong_standard_errors(y, candidate, champion) -> tuple[float, float]:
    """DeLong standard errors of one AUC and of the paired AUC difference."""
    placements = []
    for s in (candidate, champion):
        pos, neg = s[y == 1], s[y == 0]
        ranks_all = stats.rankdata(np.concatenate([pos, neg]))
        v10 = (ranks_all[: len(pos)] - stats.rankdata(pos)) / len(neg)
        v01 = 1 - (ranks_all[len(pos) :] - stats.rankdata(neg)) / len(pos)
        placements.append((v10, v01))
    s10 = np.cov(np.stack([p[0] for p in placements]))
    s01 = np.cov(np.stack([p[1] for p in placements]))
    covariance = s10 / (y == 1).sum() + s01 / (y == 0).sum()
    single = float(np.sqrt(covariance[0, 0]))
    difference = float(np.sqrt(covariance[0, 0] + covariance[1, 1] - 2 * covariance[0, 1]))
    return single, difference


def test_auc_interval_widths_match_a_row_level_bootstrap_and_delong() -> None:
    y, candidate, champion, _, _ = make_data(n=5000, seed=7)
    overall = [Slice("overall", np.ones(len(y), dtype=bool))]
    result = paired_bootstrap(y, candidate, champion, overall, THRESHOLD, BootstrapConfig())
    row = result.set_index("metric").loc["roc_auc"]
    width = row["candidate_high"] - row["candidate_low"]
    delta_width = row["delta_high"] - row["delta_low"]

    reference = row_level_auc_bootstrap(y, candidate, champion, n_resamples=200, seed=3)
    ref_width = np.subtract(*np.quantile(reference[:, 0], [0.975, 0.025]))
    ref_delta = reference[:, 0] - reference[:, 1]
    ref_delta_width = np.subtract(*np.quantile(ref_delta, [0.975, 0.025]))
    assert width == pytest.approx(ref_width, rel=0.25)
    assert delta_width == pytest.approx(ref_delta_width, rel=0.25)

    se, se_delta = delong_standard_errors(y, candidate, champion)
    z = stats.norm.ppf(0.975)
    assert width == pytest.approx(2 * z * se, rel=0.25)
    assert delta_width == pytest.approx(2 * z * se_delta, rel=0.25)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"n_resamples": 0}, "n_resamples"),
        ({"confidence": 1.0}, "confidence"),
        ({"bins": 1}, "bins"),
        ({"seed": -1}, "seed"),
    ],
)
def test_bad_configuration_is_refused(kwargs, message) -> None:
    with pytest.raises(ValueError, match=message):
        BootstrapConfig(**kwargs)


def test_champion_of_another_length_is_refused(data) -> None:
    y, candidate, champion, slices, _ = data
    with pytest.raises(ValueError, match="rows"):
        paired_bootstrap(y, candidate, champion[:-1], slices, THRESHOLD, BootstrapConfig(10))


@pytest.mark.parametrize("n_edges", [1, 25, 255, 256, 400])
def test_a_scores_bin_counts_the_edges_at_or_below_it(n_edges) -> None:
    """Few edges are counted by comparison, many by binary search: either way a score on an
    edge goes to the bin above it, as `np.searchsorted(edges, score, side="right")` puts it."""
    rng = np.random.default_rng(n_edges)
    edges = np.unique(rng.random(n_edges))
    binning = Binning(edges, 1)
    scores = np.concatenate([rng.random(5_000), edges, [0.0, 1.0], np.nextafter(edges, 0)])
    bins = binning.bins_of(scores)
    assert bins.dtype == np.int32
    np.testing.assert_array_equal(bins, np.searchsorted(edges, scores, side="right"))
    np.testing.assert_array_equal(binning.bins_of(edges), np.arange(1, len(edges) + 1))


def test_every_interval_stays_inside_its_metrics_range_near_a_perfect_model() -> None:
    """The shifted percentile adds a binned deviation to the exact point; near AUC 1 it reported
    1.00003 for ROC AUC and 1.0004 for average precision, and a change of 1.00001. Every bound of
    every metric must be a value the metric (or a difference of two of its values) can take."""
    rng = np.random.default_rng(3)
    n = 2000
    y = (rng.random(n) < 0.2).astype(np.int64)
    candidate = np.where(y == 1, rng.uniform(0.5, 1, n), rng.uniform(0, 0.5, n))
    # Two negatives among the positives: an exact AUC just under 1 that binning lowers further.
    candidate[np.flatnonzero(y == 0)[:2]] = 0.8
    champion = 1.0 - candidate  # the opposite ranking: a change of almost +1
    overall = [Slice("overall", np.ones(n, dtype=bool), key=True, kind="overall")]
    groups = {"group": np.where(np.arange(n) % 2 == 0, "a", "b")}
    intervals = paired_bootstrap(
        y, candidate, champion, overall, THRESHOLD, BootstrapConfig(1000, seed=1), groups
    ).set_index("metric")
    assert set(intervals.index) == set(METRIC_NAMES) | set(FAIRNESS_METRICS)
    for metric, row in intervals.iterrows():
        low, high = METRIC_RANGES[metric]
        for side in ("candidate", "champion"):
            assert low <= row[f"{side}_low"] <= row[f"{side}_high"] <= high, (metric, side)
        assert low - high <= row["delta_low"] <= row["delta_high"] <= high - low, metric
    # Clipped, not shifted away: the upper bounds that overshot now sit exactly on the limit.
    assert intervals.loc["roc_auc", "candidate_high"] == 1.0
    assert intervals.loc["pr_auc", "candidate_high"] == 1.0
    assert intervals.loc["roc_auc", "delta_high"] == 1.0


def test_every_metric_that_gets_an_interval_declares_its_range() -> None:
    """Clipping covers a metric only if it has a range: a new metric without one would fail here,
    not silently report an impossible interval."""
    assert set(METRIC_RANGES) == set(METRIC_NAMES) | set(FAIRNESS_METRICS)
    assert all(low < high for low, high in METRIC_RANGES.values())
