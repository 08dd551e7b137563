"""Streamed metrics must equal the in-memory ones on the same rows, whatever the batching.

`streamed_metrics` reads rows in batches, sorts them (in numpy, or in DuckDB past a memory
budget; every test here runs with both) and reduces the sorted rows in fixed chunks, carrying a
tie group that straddles two chunks as counts. Gates and the bootstrap read its numbers as they
read those of `model_metrics`, so every count must be identical, every metric within 1e-12, every
NaN in the same place, and the curve and bootstrap quantiles bit for bit those of
`curves.roc_pr_curves` and `np.quantile`, for any batch size, chunk size and ties.
"""

from __future__ import annotations

import dataclasses

import duckdb
import numpy as np
import pandas as pd
import pytest

from eval_assets.core.bootstrap import (
    INTERVAL_COLUMNS,
    Binning,
    BootstrapConfig,
    PairedCells,
    edge_levels,
    paired_bootstrap,
)
from eval_assets.core.criteria import Criteria, parse_criteria
from eval_assets.core.evaluation import model_metrics
from eval_assets.core.metrics import streamed as streamed_module
from eval_assets.core.metrics.binary import (
    COUNT_COLUMNS,
    group_codes,
    slice_metrics,
    validate_inputs,
)
from eval_assets.core.metrics.curves import roc_pr_curves
from eval_assets.core.metrics.streamed import ScoreBatch, SortedSummary, streamed_metrics
from eval_assets.core.predicates import evaluate_predicate, parse_predicate
from eval_assets.core.slicing import Slice, SlicePlan, build_slices, fairness_groups, plan_slices
from eval_assets.core.vocabulary import METRIC_NAMES, ModelMetrics

THRESHOLD = 0.1
BINS = 24
# Sorted rows are reduced in chunks of this many here (smaller than the module's own), so that
# test data of 100k rows already crosses chunk boundaries.
CHUNK = 1 << 16

CRITERIA_TEXT = f"""
model: fraud_detector
dataset: {{id_column: transaction_id, label_column: is_fraud, threshold: {THRESHOLD}}}
slices:
  - {{name: high_value, where: amount > 10000, key: true}}
  - {{name: card_not_present, where: card_present == 0, key: true}}
  - {{name: foreign, where: country != US, key: true}}
  - {{name: night, where: hour < 6}}
  - {{name: nobody, where: amount < 0}}
  - {{name: cleared, where: review == cleared}}
  - {{name: confirmed, where: review == confirmed}}
  - by: merchant_category
  - by: country
fairness: [customer_age_band]
"""
CRITERIA = parse_criteria(CRITERIA_TEXT)


@pytest.fixture(autouse=True, params=["numpy-sort", "duckdb-sort"])
def sort(request, monkeypatch):
    """Every test runs with both sorts: numpy's (rows that fit in the sort's memory, as all test
    data here does) and DuckDB's (forced), with sorted chunks of test size."""
    monkeypatch.setattr(streamed_module, "_SORTED_CHUNK", CHUNK)
    if request.param == "duckdb-sort":
        monkeypatch.setattr(streamed_module, "_IN_MEMORY_SORT_BYTES", 0)
    return request.param


# The curve and the quantiles are the whole data's: no slices, so tiny sorted chunks stay cheap.
OVERALL_ONLY = parse_criteria(
    f"model: m\ndataset: {{id_column: id, label_column: y, threshold: {THRESHOLD}}}\n"
)
# 80 store slices push the slice count past 64, so membership needs two uint64 words; a predicate
# slice after them sits in the second word.
WIDE = parse_criteria(
    CRITERIA_TEXT.replace(
        "  - by: country\n", "  - by: country\n  - by: store\n  - {name: late, where: hour >= 22}\n"
    )
)


# --- builders -----------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Rows:
    """A synthetic evaluation dataset: the frame the slices read, labels and one model's scores."""

    frame: pd.DataFrame
    y: np.ndarray
    score: np.ndarray

    def with_score(self, score: np.ndarray) -> Rows:
        return dataclasses.replace(self, score=np.asarray(score, dtype=np.float64))

    def with_labels(self, y: np.ndarray) -> Rows:
        return dataclasses.replace(self, y=np.asarray(y, dtype=np.int8))


def make_rows(
    n: int, *, seed: int = 0, decimals: int | None = None, positive_rate: float = 0.05
) -> Rows:
    """Fraud-like rows: rare positives scored higher; `decimals` rounds scores (heavy ties).

    `review` is "confirmed" only on positives and "cleared" only on negatives (single-class
    slices); about 1% of rows have no age band (the fairness group "None").
    """
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < positive_rate).astype(np.int8)
    score = np.clip(rng.beta(1.0, 12.0, n) + 0.3 * y * rng.random(n), 0.0, 1.0)
    if decimals is not None:
        score = np.round(score, decimals)
    picked = rng.random(n) < 0.3
    review = np.where(picked, np.where(y == 1, "confirmed", "cleared"), "open")
    frame = pd.DataFrame(
        {
            "amount": rng.exponential(3000.0, n),
            "card_present": rng.integers(0, 2, n),
            "country": rng.choice(np.array(["US", "DE", "FR", None], dtype=object), n),
            "hour": rng.integers(0, 24, n),
            "merchant_category": pd.Categorical(
                rng.choice(["grocery", "travel", "electronics", "fuel"], n)
            ),
            "customer_age_band": rng.choice(
                np.array(["18-25", "26-40", "41-65", None], dtype=object),
                n,
                p=[0.3, 0.4, 0.29, 0.01],
            ),
            "review": review,
            "store": rng.integers(0, 80, n),
        }
    )
    return Rows(frame, y, score)


def bounds(n: int, size: int) -> list[tuple[int, int]]:
    return [(start, min(start + size, n)) for start in range(0, n, size)]


def own_categories(frame: pd.DataFrame, k: int) -> pd.DataFrame:
    """The batch with each categorical column re-encoded on its own categories: only the values
    it holds, in reverse order for odd batches, plus a category no row uses for even ones."""
    out = frame.copy()
    for column in frame.columns:
        if isinstance(frame[column].dtype, pd.CategoricalDtype):
            values = np.asarray(frame[column], dtype=object)
            present = sorted({v for v in values if isinstance(v, str)})
            categories = present[::-1] if k % 2 else [*present, f"unused-{k}"]
            out[column] = pd.Categorical(values, categories=categories)
    return out


def score_batches(
    rows: Rows, criteria: Criteria, size: int, *, recategorize: bool = False
) -> tuple[SlicePlan, list[ScoreBatch]]:
    """The slice plan from a pass over the batches' frames, then one ScoreBatch per batch."""
    parts = bounds(len(rows.y), size)
    frames = [rows.frame.iloc[a:b] for a, b in parts]
    if recategorize:
        frames = [own_categories(f, k) for k, f in enumerate(frames)]
    plan = plan_slices(criteria, frames)
    batches = [
        ScoreBatch(rows.y[a:b], rows.score[a:b], plan.bits(f), plan.group_codes(f))
        for (a, b), f in zip(parts, frames, strict=True)
    ]
    return plan, batches


def streamed(
    rows: Rows, criteria: Criteria = CRITERIA, size: int = 5000, **options
) -> SortedSummary:
    plan, batches = score_batches(rows, criteria, size, **options)
    return streamed_metrics(iter(batches), plan, criteria.dataset.threshold, BINS)


def in_memory(rows: Rows, criteria: Criteria = CRITERIA) -> ModelMetrics:
    """The reference: every row at once through `model_metrics`."""
    slices = build_slices(rows.frame, criteria)
    fairness = fairness_groups(criteria, rows.frame)
    return model_metrics(rows.y, rows.score, slices, fairness, criteria.dataset.threshold)


def assert_same_metrics(got: ModelMetrics, want: ModelMetrics) -> None:
    """Same slices in the same order, identical counts, metrics within 1e-12, NaN alike, and
    identical fairness tables."""
    assert list(got.slices.index) == list(want.slices.index)
    assert list(got.slices.columns) == list(want.slices.columns)
    counts = list(COUNT_COLUMNS)
    assert (got.slices[counts].dtypes == np.int64).all()
    np.testing.assert_array_equal(got.slices[counts].to_numpy(), want.slices[counts].to_numpy())
    a = got.slices[list(METRIC_NAMES)].to_numpy(dtype=np.float64)
    b = want.slices[list(METRIC_NAMES)].to_numpy(dtype=np.float64)
    np.testing.assert_array_equal(np.isnan(a), np.isnan(b))
    np.testing.assert_allclose(a, b, rtol=0.0, atol=1e-12)
    pd.testing.assert_frame_equal(got.fairness_groups, want.fairness_groups, check_exact=True)
    pd.testing.assert_frame_equal(got.disparities, want.disparities, check_exact=True)


def assert_identical(a: SortedSummary, b: SortedSummary) -> None:
    """Bit-identical tables, curves and quantiles."""
    for x, y in [
        (a.metrics.slices, b.metrics.slices),
        (a.metrics.fairness_groups, b.metrics.fairness_groups),
        (a.metrics.disparities, b.metrics.disparities),
    ]:
        assert list(x.index) == list(y.index) and list(x.columns) == list(y.columns)
        for column in x.columns:
            if x[column].dtype.kind == "f":
                assert np.array_equal(x[column], y[column], equal_nan=True), column
            else:
                assert x[column].tolist() == y[column].tolist(), column
    for key in ("fpr", "tpr", "recall", "precision"):
        assert np.array_equal(a.curve[key], b.curve[key]), key
    assert np.array_equal(a.positive_quantiles, b.positive_quantiles)
    assert np.array_equal(a.negative_quantiles, b.negative_quantiles)


# --- streamed equals in memory -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("n", "decimals", "size"),
    [
        pytest.param(100_000, 2, 997, id="ties-small-batches"),
        pytest.param(100_000, 2, 25_000, id="ties-batches-divide-rows"),
        pytest.param(100_000, 2, CHUNK + 1, id="ties-batches-one-past-a-chunk"),
        pytest.param(100_000, 2, 100_000, id="ties-one-batch"),
        pytest.param(20_000, None, 997, id="distinct-small-batches"),
        pytest.param(20_000, None, 5_000, id="distinct-batches-divide-rows"),
        pytest.param(20_000, None, 20_000, id="distinct-one-batch"),
    ],
)
def test_streamed_metrics_equal_in_memory_metrics_for_any_batch_size(n, decimals, size):
    """Counts identical, metrics within 1e-12 and fairness tables equal, batches of any size."""
    rows = make_rows(n, seed=n + (decimals or 0), decimals=decimals)
    if decimals is not None:
        # The premise: a tie group straddles the first boundary between sorted chunks.
        ranked = np.sort(rows.score)[::-1]
        assert ranked[CHUNK - 1] == ranked[CHUNK]
    assert_same_metrics(streamed(rows, size=size).metrics, in_memory(rows))


@pytest.mark.parametrize("chunk", [1, 7, 64])
@pytest.mark.parametrize("decimals", [2, 3])
def test_tie_groups_spanning_many_sorted_chunks_are_reduced_exactly(monkeypatch, chunk, decimals):
    """With sorted chunks of a few rows, most tie groups run over many chunks: still exact."""
    monkeypatch.setattr(streamed_module, "_SORTED_CHUNK", chunk)
    rows = make_rows(2_000, seed=chunk, decimals=decimals, positive_rate=0.2)
    summary = streamed(rows, size=333)
    assert_same_metrics(summary.metrics, in_memory(rows))
    assert np.array_equal(
        summary.positive_quantiles, np.quantile(rows.score[rows.y == 1], edge_levels(BINS)[0])
    )


@pytest.mark.parametrize("chunk", [7, 64, CHUNK])
def test_one_tie_group_over_every_chunk_gives_auc_one_half(monkeypatch, chunk):
    """All scores equal: one tie group through every chunk; AUC 0.5, AP the positive rate."""
    monkeypatch.setattr(streamed_module, "_SORTED_CHUNK", chunk)
    rows = make_rows(3_000, seed=5, positive_rate=0.2)
    rows = rows.with_score(np.full(len(rows.y), 0.3))
    got = streamed(rows, size=400).metrics
    assert_same_metrics(got, in_memory(rows))
    table = got.slices
    both = (table["positives"] > 0) & (table["negatives"] > 0)
    assert both.sum() >= 10
    assert (table.loc[both, "roc_auc"] == 0.5).all()
    np.testing.assert_allclose(
        table.loc[both, "pr_auc"], table.loc[both, "positives"] / table.loc[both, "support"]
    )


# --- edge cases ----------------------------------------------------------------------------------


def test_empty_and_single_class_slices_are_nan_as_in_memory():
    """A predicate matching nothing has support 0 and NaN metrics; a slice of one class has NaN
    AUC and AP (but defined log loss) in both computations."""
    rows = make_rows(20_000, seed=11, decimals=2)
    got = streamed(rows, size=1_234).metrics
    assert_same_metrics(got, in_memory(rows))
    table = got.slices
    assert table.loc["nobody", list(COUNT_COLUMNS)].tolist() == [0] * len(COUNT_COLUMNS)
    assert table.loc["nobody", list(METRIC_NAMES)].isna().all()
    assert table.loc["cleared", "positives"] == 0 and table.loc["cleared", "support"] > 0
    assert table.loc["confirmed", "negatives"] == 0 and table.loc["confirmed", "support"] > 0
    for name in ("cleared", "confirmed"):
        assert np.isnan(table.loc[name, "roc_auc"]) and np.isnan(table.loc[name, "pr_auc"])
        assert np.isfinite(table.loc[name, "log_loss"])


@pytest.mark.parametrize("label", [0, 1])
def test_one_label_overall_has_nan_ranking_metrics_and_no_quantiles_of_the_missing_class(label):
    """All labels equal: AUC and AP NaN everywhere, the missing class has no quantiles (the
    bins are those of `Binning.of`) and there is no curve to draw."""
    rows = make_rows(10_000, seed=12, decimals=3)
    rows = rows.with_labels(np.full(len(rows.y), label))
    summary = streamed(rows, size=3_000)
    assert_same_metrics(summary.metrics, in_memory(rows))
    assert summary.metrics.slices["roc_auc"].isna().all()
    assert summary.metrics.slices["pr_auc"].isna().all()
    missing, present = (
        (summary.positive_quantiles, summary.negative_quantiles)
        if label == 0
        else (summary.negative_quantiles, summary.positive_quantiles)
    )
    assert missing.size == 0
    assert np.array_equal(present, np.quantile(rows.score, edge_levels(BINS)[label == 0]))
    binned = Binning.from_quantiles(
        summary.positive_quantiles, summary.negative_quantiles, threshold=THRESHOLD
    )
    assert np.array_equal(binned.edges, Binning.of(rows.score, rows.y, BINS, THRESHOLD).edges)
    assert all(len(summary.curve[k]) == 0 for k in ("fpr", "tpr", "recall", "precision"))


def test_more_than_64_slices_use_a_second_membership_word():
    """94 slices: each store's slice, and the predicate slice past bit 64, keep their rows."""
    rows = make_rows(30_000, seed=13, decimals=2)
    got = streamed(rows, WIDE, size=4_321).metrics
    assert len(got.slices) > 64
    assert_same_metrics(got, in_memory(rows, WIDE))
    stores = [f"store={k}" for k in range(80)]
    assert list(got.slices.index[-81:-1]) == stores
    np.testing.assert_array_equal(
        got.slices.loc[stores, "support"], np.bincount(rows.frame["store"], minlength=80)
    )
    np.testing.assert_array_equal(
        got.slices.loc[stores, "positives"],
        np.bincount(rows.frame["store"], weights=rows.y, minlength=80).astype(np.int64),
    )
    assert got.slices.loc["late", "support"] == (rows.frame["hour"] >= 22).sum()


@pytest.mark.parametrize("criteria", [CRITERIA, WIDE], ids=["standard", "wide"])
def test_slice_bits_hold_each_slices_rows_eight_slices_a_byte(criteria):
    """`SlicePlan.bits` (which `members` unpacks) against membership worked out here from the
    frame: every row in the overall slice, a predicate's rows, a value's rows, missing values in
    no value slice; byte k holds slices 8k to 8k + 7, lowest bit first, past 64 slices too."""
    rows = make_rows(5_000, seed=21, decimals=2)
    frame = rows.frame
    plan = plan_slices(criteria, [frame])
    expected = [np.ones(len(frame), dtype=bool)]
    for spec in criteria.slices:
        if hasattr(spec, "where"):
            expected.append(evaluate_predicate(parse_predicate(spec.where), frame))
        else:
            column = frame[spec.by].astype(object)
            values = sorted(column.dropna().unique())
            expected += [(column == value).to_numpy(dtype=bool) for value in values]
    expected = np.column_stack(expected)
    assert expected.shape[1] == len(plan.names)
    bits = plan.bits(frame)
    assert bits.shape == (-(-len(plan.names) // 8), len(frame))
    for j in range(len(plan.names)):
        got = (bits[j // 8] >> (j % 8)) & 1
        np.testing.assert_array_equal(got.astype(bool), expected[:, j], err_msg=plan.names[j])
    np.testing.assert_array_equal(plan.members(frame), expected)
    assert frame["country"].isna().any()


@pytest.mark.parametrize("n", [0, 1, 63, 64, 65, 128, 1_000, 4_097])
@pytest.mark.parametrize("density", [0.0, 0.03, 0.5, 1.0])
def test_rows_before_counts_a_masks_rows_before_every_position(n, density):
    """The ranking's per-slice counts come from 64-bit words and popcounts: at every position,
    word boundaries and the very end included, they equal a running count of the mask."""
    mask = np.random.default_rng(n).random(n) < density
    rows_before = streamed_module._RowsBefore(mask)
    positions = np.arange(n + 1)
    expected = np.concatenate([[0], np.cumsum(mask)])
    np.testing.assert_array_equal(rows_before(positions), expected)
    assert rows_before.total == mask.sum()


def test_missing_fairness_value_is_the_group_none():
    """A row without an age band counts in the group "None", in both computations."""
    rows = make_rows(20_000, seed=14, decimals=2)
    got = streamed(rows, size=2_500).metrics
    assert_same_metrics(got, in_memory(rows))
    groups = got.fairness_groups.set_index("group")
    assert list(groups.index) == ["18-25", "26-40", "41-65", "None"]
    missing = rows.frame["customer_age_band"].isna().to_numpy()
    assert groups.loc["None", "support"] == missing.sum() > 0
    assert groups.loc["None", "positives"] == rows.y[missing].sum()


def test_categorical_columns_with_different_categories_per_batch():
    """Each batch's Categorical has its own (reordered, partly unused) categories: the value
    slices and fairness groups still line up with the whole-frame ones."""
    rows = make_rows(12_000, seed=15, decimals=2)
    frame = rows.frame.assign(
        customer_age_band=pd.Categorical(rows.frame["customer_age_band"].to_numpy())
    )
    rows = dataclasses.replace(rows, frame=frame)
    plan, batches = score_batches(rows, CRITERIA, 1_000, recategorize=True)
    got = streamed_metrics(iter(batches), plan, THRESHOLD, BINS).metrics
    assert_same_metrics(got, in_memory(rows))
    categories = sorted(set(frame["merchant_category"]))
    names = [f"merchant_category={c}" for c in categories]
    assert [n for n in got.slices.index if n.startswith("merchant_category=")] == names
    np.testing.assert_array_equal(
        got.slices.loc[names, "support"],
        [(frame["merchant_category"] == c).sum() for c in categories],
    )
    assert "None" in set(got.fairness_groups["group"])


def test_empty_batches_change_nothing():
    """Batches without rows (a filtered-out row group) between full ones add nothing."""
    rows = make_rows(6_000, seed=16, decimals=2)
    plan, batches = score_batches(rows, CRITERIA, 1_500)
    nothing = rows.frame.iloc[:0]
    empty = ScoreBatch(rows.y[:0], rows.score[:0], plan.bits(nothing), plan.group_codes(nothing))
    with_empty = [empty, batches[0], empty, *batches[1:], empty]
    got = streamed_metrics(iter(with_empty), plan, THRESHOLD, BINS)
    assert_same_metrics(got.metrics, in_memory(rows))
    assert_identical(got, streamed_metrics(iter(batches), plan, THRESHOLD, BINS))


# --- quantiles and curves -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("n", "decimals", "positives", "bins", "chunk"),
    [
        pytest.param(100_000, 2, None, 24, CHUNK, id="ties-over-chunks"),
        pytest.param(20_000, None, None, 24, CHUNK, id="distinct"),
        pytest.param(20_000, None, None, 101, 64, id="many-bins-small-chunks"),
        pytest.param(5_000, 3, None, 2, 64, id="two-bins-threshold-only"),
        pytest.param(5_000, None, 1, 24, 64, id="one-positive"),
        pytest.param(5_000, None, 2, 24, 7, id="two-positives"),
        pytest.param(5_000, 3, 7, 24, 7, id="seven-tied-positives"),
    ],
)
def test_quantiles_are_numpys_bit_for_bit(monkeypatch, n, decimals, positives, bins, chunk):
    """The score quantiles are `np.quantile`'s, so the streamed bins are `Binning.of`'s."""
    monkeypatch.setattr(streamed_module, "_SORTED_CHUNK", chunk)
    rows = make_rows(n, seed=17, decimals=decimals)
    if positives is not None:
        y = np.zeros(n, dtype=np.int8)
        y[np.random.default_rng(1).choice(n, positives, replace=False)] = 1
        rows = rows.with_labels(y)
    plan, batches = score_batches(rows, OVERALL_ONLY, 3_001)
    summary = streamed_metrics(iter(batches), plan, THRESHOLD, bins)
    positive_levels, negative_levels = edge_levels(bins)
    positive = rows.y == 1
    assert np.array_equal(
        summary.positive_quantiles, np.quantile(rows.score[positive], positive_levels)
    )
    assert np.array_equal(
        summary.negative_quantiles, np.quantile(rows.score[~positive], negative_levels)
    )
    streamed_bins = Binning.from_quantiles(
        summary.positive_quantiles, summary.negative_quantiles, threshold=THRESHOLD
    )
    reference = Binning.of(rows.score, rows.y, bins, THRESHOLD)
    assert np.array_equal(streamed_bins.edges, reference.edges)
    assert streamed_bins.threshold_bin == reference.threshold_bin


@pytest.mark.parametrize("chunk", [7, 64, 1_000, CHUNK])
@pytest.mark.parametrize("decimals", [3, None])
def test_curve_equals_the_in_memory_curve_vertex_for_vertex(monkeypatch, chunk, decimals):
    """ROC and PR vertices, thinned chunk by chunk, are exactly `roc_pr_curves`'s (the top
    score is tied between a positive and two negatives, so the PR curve starts at 1/3)."""
    monkeypatch.setattr(streamed_module, "_SORTED_CHUNK", chunk)
    rows = make_rows(5_000, seed=18, decimals=decimals, positive_rate=0.1)
    score = rows.score.copy()
    score[[np.flatnonzero(rows.y == 1)[0], *np.flatnonzero(rows.y == 0)[:2]]] = 1.0
    rows = rows.with_score(score)
    curve = streamed(rows, OVERALL_ONLY, size=1_100).curve
    want = roc_pr_curves(rows.y, rows.score)
    assert want["precision"][0] == 1 / 3
    for key in ("fpr", "tpr", "recall", "precision"):
        assert len(want[key]) > 10
        assert np.array_equal(curve[key], want[key]), key


# --- bad input ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("column", "value"),
    [("score", 1.5), ("score", np.nan), ("score", -0.25), ("y", 2)],
    ids=["score-above-one", "score-nan", "score-negative", "label-two"],
)
def test_bad_value_in_the_third_batch_raises_the_validation_error(column, value):
    """The ValueError of `validate_inputs`, message and all, not DuckDB's wrapper of it."""
    rows = make_rows(5_000, seed=19)
    plan, batches = score_batches(rows, CRITERIA, 1_000)
    bad = getattr(batches[2], column).copy()
    bad[17] = value
    batches[2] = dataclasses.replace(batches[2], **{column: bad})
    with pytest.raises(ValueError) as expected:
        validate_inputs(batches[2].y, batches[2].score)
    assert str(value) in str(expected.value)
    with pytest.raises(ValueError) as raised:
        streamed_metrics(iter(batches), plan, THRESHOLD, BINS)
    assert type(raised.value) is ValueError
    assert not isinstance(raised.value, duckdb.Error)
    assert str(raised.value) == str(expected.value)


# --- determinism ---------------------------------------------------------------------------------


def test_same_batches_twice_give_bit_identical_results(tmp_path):
    """Run twice on the same batches: every table, curve and quantile is bit-identical, and the
    sort's temporary folder is gone afterwards."""
    rows = make_rows(100_000, seed=20, decimals=2)
    plan, batches = score_batches(rows, CRITERIA, 9_973)
    first = streamed_metrics(iter(batches), plan, THRESHOLD, BINS, workdir=tmp_path)
    second = streamed_metrics(iter(batches), plan, THRESHOLD, BINS, workdir=tmp_path)
    assert_identical(first, second)
    assert list(tmp_path.iterdir()) == []


def test_ranking_metrics_do_not_depend_on_row_order_or_batching():
    """Shuffled rows in other batches: AUC, AP, counts, fairness, curve and quantiles are
    bit-identical (only the loss means, summed in another order, may move by rounding)."""
    rows = make_rows(80_000, seed=21, decimals=2)
    order = np.random.default_rng(2).permutation(len(rows.y))
    shuffled = Rows(rows.frame.iloc[order].reset_index(drop=True), rows.y[order], rows.score[order])
    a = streamed(rows, size=7_000)
    b = streamed(shuffled, size=12_345)
    exact = [*COUNT_COLUMNS, "roc_auc", "pr_auc"]
    pd.testing.assert_frame_equal(
        a.metrics.slices[exact], b.metrics.slices[exact], check_exact=True
    )
    pd.testing.assert_frame_equal(
        a.metrics.fairness_groups, b.metrics.fairness_groups, check_exact=True
    )
    losses = ["log_loss", "brier"]
    np.testing.assert_allclose(
        a.metrics.slices[losses], b.metrics.slices[losses], rtol=0.0, atol=1e-12
    )
    for key in ("fpr", "tpr", "recall", "precision"):
        assert np.array_equal(a.curve[key], b.curve[key]), key
    assert np.array_equal(a.positive_quantiles, b.positive_quantiles)
    assert np.array_equal(a.negative_quantiles, b.negative_quantiles)


# --- the sort's memory ---------------------------------------------------------------------------


def test_rows_well_below_the_memory_limit_sort_with_many_duckdb_threads(monkeypatch):
    """DuckDB runs one thread per core unless told otherwise, and each thread needs its own sort
    memory. On an 8-core machine (simulated: 8 threads wherever the caller sets none), 1.5
    million rows (about 25 MB of sort data, under the 64 MB limit) must still sort."""
    real_connect = duckdb.connect

    def eight_threads(*args, config=None, **kwargs):
        return real_connect(*args, config={"threads": 8, **(config or {})}, **kwargs)

    monkeypatch.setattr(duckdb, "connect", eight_threads)
    n, size = 1_500_000, 250_000
    rng = np.random.default_rng(23)
    y = (rng.random(n) < 0.05).astype(np.int8)
    score = np.round(np.clip(rng.beta(1.0, 12.0, n) + 0.3 * y, 0.0, 1.0), 3)
    plan = plan_slices(OVERALL_ONLY, [])
    batches = (
        ScoreBatch(y[a:b], score[a:b], np.ones((1, b - a), dtype=np.uint8), {})
        for a, b in bounds(n, size)
    )
    got = streamed_metrics(batches, plan, THRESHOLD, BINS).metrics.slices
    want = slice_metrics(y, score, [Slice("overall", np.ones(n, dtype=bool))], THRESHOLD)
    assert got.loc["overall", "support"] == n
    np.testing.assert_allclose(got.loc["overall", "roc_auc"], want["roc_auc"][0], atol=1e-12)


@pytest.mark.parametrize("held_batches", [1, 3])
def test_rows_past_the_in_memory_budget_go_to_duckdb_with_the_batches_held_so_far(
    monkeypatch, held_batches
):
    """Once the rows outgrow numpy's budget, DuckDB sorts everything: the batches held until
    then and the rest. Same bits as one sort of every row (numpy's or DuckDB's, by the
    fixture)."""
    rows = make_rows(20_000, seed=24, decimals=3)
    whole = streamed(rows, size=1_000)
    calls = []
    real = streamed_module._sorted_by_duckdb

    def spy(records, *args):
        calls.append(1)
        return real(records, *args)

    monkeypatch.setattr(streamed_module, "_sorted_by_duckdb", spy)
    # Past the budget during batch `held_batches + 1`: 15 slices make 2 x (8 + 1 + 2) + 16 = 38
    # bytes a row, 38,000 a batch.
    monkeypatch.setattr(streamed_module, "_IN_MEMORY_SORT_BYTES", held_batches * 1_000 * 40 + 1)
    switched = streamed(rows, size=1_000)
    assert calls == [1]
    assert_identical(switched, whole)
    assert_same_metrics(switched.metrics, in_memory(rows))


# --- the bootstrap's count tables ---------------------------------------------------------------


@pytest.fixture(scope="module")
def two_models():
    """Rows, two correlated models' scores, slices, fairness codes and point metrics."""
    rows = make_rows(20_000, seed=22, decimals=3, positive_rate=0.1)
    rng = np.random.default_rng(3)
    champion = np.round(np.clip(rows.score + rng.normal(0.0, 0.05, len(rows.y)), 0.0, 1.0), 3)
    models = [rows.score, champion]
    slices = build_slices(rows.frame, CRITERIA)
    fairness = fairness_groups(CRITERIA, rows.frame)
    codes = {name: group_codes(values, len(rows.y)) for name, values in fairness.items()}
    points = [slice_metrics(rows.y, scores, slices, THRESHOLD) for scores in models]
    return rows, models, slices, fairness, codes, points


def paired_cells(two_models, n_models: int, size: int) -> PairedCells:
    rows, models, slices, _, codes, _ = two_models
    models = models[:n_models]
    binned = [Binning.of(scores, rows.y, BINS, THRESHOLD) for scores in models]
    cells = PairedCells(
        binned, [s.name for s in slices], {name: len(v) for name, (v, _) in codes.items()}
    )
    masks = np.column_stack([s.mask for s in slices])
    for a, b in bounds(len(rows.y), size):
        cells.add(
            rows.y[a:b],
            [scores[a:b] for scores in models],
            masks[a:b],
            {name: inverse[a:b] for name, (_, inverse) in codes.items()},
        )
    return cells


CONFIG = BootstrapConfig(n_resamples=200, seed=7)


@pytest.mark.parametrize("size", [997, 6_000])
def test_paired_cells_summed_over_batches_equal_one_batch(two_models, size):
    """Count tables summed batch by batch are identical to one batch's; loss totals and the
    intervals agree within 1e-12."""
    rows, points = two_models[0], two_models[-1]
    whole = paired_cells(two_models, 2, len(rows.y))
    parts = paired_cells(two_models, 2, size)
    np.testing.assert_array_equal(parts.occupancy, whole.occupancy)
    assert parts.fairness.keys() == whole.fairness.keys()
    for name in whole.fairness:
        np.testing.assert_array_equal(parts.fairness[name], whole.fairness[name])
    np.testing.assert_allclose(parts.loss_totals, whole.loss_totals, rtol=1e-13, atol=1e-12)
    assert parts.rows == whole.rows == len(rows.y)
    want = whole.intervals(points, CONFIG)
    got = parts.intervals(points, CONFIG)
    pd.testing.assert_frame_equal(got[["slice", "metric"]], want[["slice", "metric"]])
    a = got[list(INTERVAL_COLUMNS)].to_numpy()
    b = want[list(INTERVAL_COLUMNS)].to_numpy()
    np.testing.assert_array_equal(np.isnan(a), np.isnan(b))
    assert np.isfinite(b).sum() > len(b)
    np.testing.assert_allclose(a, b, rtol=0.0, atol=1e-12)


@pytest.mark.parametrize("n_models", [1, 2], ids=["no-champion", "champion"])
def test_paired_bootstrap_is_paired_cells_fed_one_batch(two_models, n_models):
    """`paired_bootstrap` gives exactly the intervals of `PairedCells` given all rows at once."""
    rows, models, slices, fairness, _, points = two_models
    champion = models[1] if n_models == 2 else None
    want = paired_bootstrap(
        rows.y,
        models[0],
        champion,
        slices,
        THRESHOLD,
        CONFIG,
        fairness=fairness,
        point_metrics=points[:n_models],
    )
    got = paired_cells(two_models, n_models, len(rows.y)).intervals(points[:n_models], CONFIG)
    assert len(got) == len(slices) * len(METRIC_NAMES) + 3
    pd.testing.assert_frame_equal(got, want, check_exact=True)


def test_a_batch_with_a_group_the_plan_never_saw_is_refused_by_name():
    """Groups are numbered once for all batches; a batch from other data cannot be numbered."""
    criteria = parse_criteria(
        "model: m\ndataset: {id_column: id, label_column: y}\nfairness: [band]\n"
    )
    plan = plan_slices(criteria, [pd.DataFrame({"band": ["18-25", "65+"]})])
    assert plan.group_codes(pd.DataFrame({"band": ["65+", "18-25"]}))["band"].tolist() == [1, 0]
    with pytest.raises(ValueError, match=r"'band': group '26-35' \(row 1 of this batch\)"):
        plan.group_codes(pd.DataFrame({"band": ["65+", "26-35"]}))
