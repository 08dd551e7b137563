"""Benchmark: slice metrics, fairness and paired bootstrap against pandas+sklearn and fairlearn.

Run `python bench/bench_metrics.py [--rows 100000 1000000]`. For each size it times, on the same
seeded synthetic data (22 slices, 5 age-band fairness groups, two correlated models):

(a) eval_assets' slice_metrics for both models plus fairness_metrics,
(b) a pandas groupby + scikit-learn loop computing the same numbers,
(c) fairlearn MetricFrame with the same metrics,
(d) eval_assets' paired_bootstrap with 1000 resamples,

asserts that (a), (b) and (c) agree to 1e-9, and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import time
import warnings
from collections.abc import Callable
from functools import partial

import numpy as np
import pandas as pd
from fairlearn.metrics import (
    MetricFrame,
    demographic_parity_difference,
    demographic_parity_ratio,
    equalized_odds_difference,
)
from sklearn import metrics as skm

from eval_assets.core.bootstrap import BootstrapConfig, paired_bootstrap
from eval_assets.core.metrics import (
    COUNT_COLUMNS,
    FAIRNESS_METRICS,
    METRIC_NAMES,
    fairness_metrics,
    slice_metrics,
)
from eval_assets.core.slicing import Slice

THRESHOLD = 0.2
MERCHANTS = 12
COUNTRIES = 8
AGE_BANDS = ("18-24", "25-34", "35-49", "50-64", "65+")
TOLERANCE = 1e-9


def synthetic(n_rows: int, seed: int = 0) -> pd.DataFrame:
    """Seeded transactions with ~2% fraud and two correlated model scores."""
    rng = np.random.default_rng(seed)
    amount = rng.lognormal(mean=5.0, sigma=2.0, size=n_rows)
    merchant = rng.choice(MERCHANTS, size=n_rows, p=_skewed(MERCHANTS, rng))
    country = rng.choice(COUNTRIES, size=n_rows, p=_skewed(COUNTRIES, rng))
    age = rng.choice(len(AGE_BANDS), size=n_rows, p=[0.12, 0.3, 0.3, 0.18, 0.1])
    risk = (
        rng.normal(0.0, 0.6, MERCHANTS)[merchant]
        + rng.normal(0.0, 0.4, COUNTRIES)[country]
        + 0.35 * (np.log(amount) - 5.0)
        + rng.normal(size=n_rows)
    )
    fraud = rng.random(n_rows) < _sigmoid(1.6 * risk - 5.7)
    shared, own_candidate, own_champion = rng.normal(size=(3, n_rows))
    # Models output float32 probabilities, as most do: that brings realistic ties.
    candidate = _sigmoid(1.6 * risk - 5.7 + 0.5 * shared + 0.3 * own_candidate)
    champion = _sigmoid(1.4 * risk - 5.4 + 0.5 * shared + 0.5 * own_champion)
    return pd.DataFrame(
        {
            "amount": amount,
            "merchant_category": np.char.add("mcc_", merchant.astype(str)),
            "country": np.char.add("c", country.astype(str)),
            "age_band": np.asarray(AGE_BANDS, dtype=object)[age],
            "label": fraud.astype(np.int8),
            "candidate": candidate.astype(np.float32).astype(np.float64),
            "champion": champion.astype(np.float32).astype(np.float64),
        }
    )


def build_slices(data: pd.DataFrame) -> list[Slice]:
    """overall, amount > 10000, one per merchant category, one per country: 22 slices."""
    slices = [
        Slice("overall", np.ones(len(data), dtype=bool), key=True, kind="overall"),
        Slice("amount>10000", (data["amount"] > 10000).to_numpy(), key=True),
    ]
    for column in ("merchant_category", "country"):
        values = data[column].to_numpy()
        for value in sorted(np.unique(values)):
            slices.append(Slice(f"{column}={value}", values == value, kind="value"))
    return slices


def ours(data: pd.DataFrame, slices: list[Slice]) -> dict[str, object]:
    """(a) eval_assets: both models' slice tables and candidate fairness."""
    y = data["label"].to_numpy()
    tables = {
        model: slice_metrics(y, data[model].to_numpy(), slices, THRESHOLD)
        for model in ("candidate", "champion")
    }
    _, disparity = fairness_metrics(
        y, data["candidate"].to_numpy(), data["age_band"].to_numpy(), THRESHOLD
    )
    return {"tables": tables, "fairness": disparity}


def sklearn_row(y: np.ndarray, score: np.ndarray) -> dict[str, float]:
    """All counts and metrics of one slice, straight from scikit-learn."""
    predicted = (score >= THRESHOLD).astype(np.int8)
    tn, fp, fn, tp = skm.confusion_matrix(y, predicted, labels=[0, 1]).ravel()
    return {
        "support": len(y),
        "positives": int(y.sum()),
        "negatives": int(len(y) - y.sum()),
        "tp": tp,
        "fp": fp,
        "tn": tn,
        "fn": fn,
        "roc_auc": skm.roc_auc_score(y, score),
        "pr_auc": skm.average_precision_score(y, score),
        "log_loss": skm.log_loss(y, score, labels=[0, 1]),
        "brier": skm.brier_score_loss(y, score, labels=[0, 1]),
        "accuracy": skm.accuracy_score(y, predicted),
        "precision": skm.precision_score(y, predicted, zero_division=np.nan),
        "recall": skm.recall_score(y, predicted, zero_division=np.nan),
        "f1": skm.f1_score(y, predicted, zero_division=np.nan),
        "selection_rate": predicted.mean(),
        "tpr": skm.recall_score(y, predicted, zero_division=np.nan),
        "fpr": fp / (fp + tn) if fp + tn else np.nan,
    }


def pandas_sklearn(data: pd.DataFrame, slices: list[Slice]) -> dict[str, object]:
    """(b) the usual way: groupby per slicing column, scikit-learn per group."""
    frame = data.assign(**{"amount>10000": data["amount"] > 10000, "overall": True})
    tables = {}
    for model in ("candidate", "champion"):
        rows = {}
        for column in ("overall", "amount>10000", "merchant_category", "country"):
            for value, group in frame.groupby(column, sort=True):
                if column in ("overall", "amount>10000"):
                    if not value:
                        continue
                    name = column
                else:
                    name = f"{column}={value}"
                rows[name] = sklearn_row(group["label"].to_numpy(), group[model].to_numpy())
        tables[model] = pd.DataFrame([{"slice": s.name, **rows[s.name]} for s in slices])
    frame["predicted"] = data["candidate"] >= THRESHOLD
    rates = frame.groupby("age_band").apply(
        lambda group: pd.Series(
            {
                "selection_rate": group["predicted"].mean(),
                "tpr": group.loc[group["label"] == 1, "predicted"].mean(),
                "fpr": group.loc[group["label"] == 0, "predicted"].mean(),
            }
        )
    )
    spread = rates.max() - rates.min()
    disparity = {
        "demographic_parity_difference": spread["selection_rate"],
        "demographic_parity_ratio": rates["selection_rate"].min() / rates["selection_rate"].max(),
        "equalized_odds_difference": max(spread["tpr"], spread["fpr"]),
    }
    return {"tables": tables, "fairness": disparity}


def _thresholded(metric: Callable[..., float], y: np.ndarray, score: np.ndarray) -> float:
    return metric(y, (score >= THRESHOLD).astype(np.int8))


def _count(kind: str, y: np.ndarray, score: np.ndarray) -> float:
    predicted = score >= THRESHOLD
    positive = y == 1
    return {
        "support": len(y),
        "positives": positive.sum(),
        "negatives": (~positive).sum(),
        "tp": (predicted & positive).sum(),
        "fp": (predicted & ~positive).sum(),
        "tn": (~predicted & ~positive).sum(),
        "fn": (~predicted & positive).sum(),
    }[kind]


def _fpr(y: np.ndarray, score: np.ndarray) -> float:
    predicted = score >= THRESHOLD
    negatives = (y == 0).sum()
    return (predicted & (y == 0)).sum() / negatives if negatives else np.nan


FAIRLEARN_METRICS: dict[str, Callable[..., float]] = {
    **{kind: partial(_count, kind) for kind in COUNT_COLUMNS},
    "roc_auc": skm.roc_auc_score,
    "pr_auc": skm.average_precision_score,
    "log_loss": partial(skm.log_loss, labels=[0, 1]),
    "brier": partial(skm.brier_score_loss, labels=[0, 1]),
    "accuracy": partial(_thresholded, skm.accuracy_score),
    "precision": partial(_thresholded, partial(skm.precision_score, zero_division=np.nan)),
    "recall": partial(_thresholded, partial(skm.recall_score, zero_division=np.nan)),
    "f1": partial(_thresholded, partial(skm.f1_score, zero_division=np.nan)),
    "selection_rate": lambda y, score: float(np.mean(score >= THRESHOLD)),
    "tpr": partial(_thresholded, partial(skm.recall_score, zero_division=np.nan)),
    "fpr": _fpr,
}


def fairlearn_frames(data: pd.DataFrame, slices: list[Slice]) -> dict[str, object]:
    """(c) fairlearn MetricFrame, one per slicing column and model."""
    y = data["label"].to_numpy()
    features = {
        "amount>10000": data["amount"].to_numpy() > 10000,
        "merchant_category": data["merchant_category"].to_numpy(),
        "country": data["country"].to_numpy(),
    }
    tables = {}
    for model in ("candidate", "champion"):
        score = data[model].to_numpy()
        rows = {}
        for column, feature in features.items():
            frame = MetricFrame(
                metrics=FAIRLEARN_METRICS, y_true=y, y_pred=score, sensitive_features=feature
            )
            if column == "amount>10000":
                rows["overall"] = frame.overall.to_dict()
                rows[column] = frame.by_group.loc[True].to_dict()
            else:
                for value, values in frame.by_group.iterrows():
                    rows[f"{column}={value}"] = values.to_dict()
        tables[model] = pd.DataFrame([{"slice": s.name, **rows[s.name]} for s in slices])
    predicted = (data["candidate"].to_numpy() >= THRESHOLD).astype(np.int8)
    kwargs = {"sensitive_features": data["age_band"].to_numpy()}
    disparity = {
        "demographic_parity_difference": demographic_parity_difference(y, predicted, **kwargs),
        "demographic_parity_ratio": demographic_parity_ratio(y, predicted, **kwargs),
        "equalized_odds_difference": equalized_odds_difference(y, predicted, **kwargs),
    }
    return {"tables": tables, "fairness": disparity}


def bootstrap(data: pd.DataFrame, slices: list[Slice]) -> pd.DataFrame:
    """(d) paired bootstrap, 1000 resamples, both models, age-band fairness."""
    return paired_bootstrap(
        data["label"].to_numpy(),
        data["candidate"].to_numpy(),
        data["champion"].to_numpy(),
        slices,
        THRESHOLD,
        BootstrapConfig(n_resamples=1000, seed=0),
        fairness={"age_band": data["age_band"].to_numpy()},
    )


def assert_agree(reference: dict[str, object], other: dict[str, object], label: str) -> None:
    """Every count and metric of both models, and the disparities, within TOLERANCE."""
    for model, table in reference["tables"].items():
        theirs = other["tables"][model]
        assert list(theirs["slice"]) == list(table["slice"]), label
        for column in (*COUNT_COLUMNS, *METRIC_NAMES):
            np.testing.assert_allclose(
                table[column].to_numpy(dtype=np.float64),
                theirs[column].to_numpy(dtype=np.float64),
                rtol=0,
                atol=TOLERANCE,
                err_msg=f"{label}: {model} {column}",
            )
    for name in FAIRNESS_METRICS:
        assert abs(reference["fairness"][name] - other["fairness"][name]) <= TOLERANCE, name


def timed(function: Callable[[], object], repeat: int) -> tuple[float, float, object]:
    """Best wall and CPU seconds of `repeat` runs, and the last result."""
    wall, cpu, result = float("inf"), float("inf"), None
    for _ in range(repeat):
        start, start_cpu = time.perf_counter(), time.process_time()
        result = function()
        wall = min(wall, time.perf_counter() - start)
        cpu = min(cpu, time.process_time() - start_cpu)
    return wall, cpu, result


def main() -> None:
    """Time each approach at each size and print one Markdown table per size."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument(
        "--fairlearn-max-rows",
        type=int,
        default=100_000,
        help="skip (c) above this size: fairlearn 0.15 np.stack()s y_true and y_pred element by "
        "element for every metric and group, which takes minutes at 100k rows",
    )
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    for n_rows in args.rows:
        data = synthetic(n_rows)
        slices = build_slices(data)
        assert len(slices) == 22
        runs = {
            "(a) eval_assets slice_metrics x2 + fairness_metrics": timed(
                partial(ours, data, slices), repeat=3
            ),
            "(b) pandas groupby + sklearn loop": timed(
                partial(pandas_sklearn, data, slices), repeat=1
            ),
        }
        if n_rows <= args.fairlearn_max_rows:
            runs["(c) fairlearn MetricFrame"] = timed(
                partial(fairlearn_frames, data, slices), repeat=1
            )
        runs["(d) eval_assets paired_bootstrap, 1000 resamples"] = timed(
            partial(bootstrap, data, slices), repeat=1
        )
        base, _, ours_result = runs["(a) eval_assets slice_metrics x2 + fairness_metrics"]
        assert_agree(ours_result, runs["(b) pandas groupby + sklearn loop"][2], "pandas+sklearn")
        if "(c) fairlearn MetricFrame" in runs:
            assert_agree(ours_result, runs["(c) fairlearn MetricFrame"][2], "fairlearn")
        ci = runs["(d) eval_assets paired_bootstrap, 1000 resamples"][2]
        assert (
            ci[["candidate_low", "candidate_high", "delta_low", "delta_high"]].notna().all().all()
        )
        print(f"\n### {n_rows:,} rows: 22 slices x 2 models, 5 age-band fairness groups\n")
        print("| approach | wall s | CPU s | wall vs (a) |")
        print("|---|---:|---:|---:|")
        for label, (wall, cpu, _) in runs.items():
            print(f"| {label} | {wall:.3f} | {cpu:.3f} | {wall / base:.1f}x |")
        if "(c) fairlearn MetricFrame" not in runs:
            limit = f"{args.fairlearn_max_rows:,}"
            print(f"| (c) fairlearn MetricFrame | skipped above {limit} rows | | |")
        checked = "(a), (b) and (c)" if "(c) fairlearn MetricFrame" in runs else "(a) and (b)"
        print(f"\n{checked} agree on every count, metric and disparity to 1e-9.")


def _skewed(k: int, rng: np.random.Generator) -> np.ndarray:
    weights = rng.dirichlet(np.full(k, 3.0))
    return weights / weights.sum()


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


if __name__ == "__main__":
    main()
