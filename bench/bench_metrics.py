"""Benchmark: slice metrics, fairness and bootstrap against pandas+sklearn, fairlearn and MLflow.

Run `python bench/bench_metrics.py [--rows 100000 1000000 5000000]`. For each size it writes one
seeded synthetic dataset (22 slices, 5 age-band fairness groups, two correlated models) to a
temporary Parquet file and measures, each in a fresh process that reads that file:

(a) eval_assets' slice_metrics for both models plus fairness_metrics,
(b) a pandas groupby + scikit-learn loop computing the same numbers,
(c) fairlearn MetricFrame with the same metrics,
(d) eval_assets' paired_bootstrap with 1000 resamples,
(e) mlflow.models.evaluate, once per slice per model and once per age band for the candidate,
(f) a vectorized floor: per model one np.argsort of the scores and, per slice, one masked
    reduction giving support, positives and true positives (a yardstick, not all metrics),
(g) eval_assets' streamed_metrics for both models, as the Dagster assets run it: from a
    predictions file per model (text slice keys dictionary-encoded, as the assets store them), the
    slice plan from one batched read, then 100,000-row batches, each sliced on its own, the counts
    summed and the ranking metrics from a sort within a fixed memory limit (numpy's below it,
    DuckDB's beyond),

with wall and CPU seconds and the peak resident memory of each. It asserts that (a), (b), (c)
and (g) agree to 1e-9, that every metric MLflow reports agrees with (a) to 1e-9, and that the
floor's counts equal (a)'s; it prints one Markdown table per size and whether the issue's targets
are met (measured, not asserted). (b), (c) and (e) are skipped above their --*-max-rows caps.
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import logging
import multiprocessing
import os
import tempfile
import time
import warnings
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from fairlearn.metrics import (
    MetricFrame,
    demographic_parity_difference,
    demographic_parity_ratio,
    equalized_odds_difference,
)
from sklearn import metrics as skm
from sklearn.base import BaseEstimator, ClassifierMixin

from eval_assets.core.bootstrap import BootstrapConfig, paired_bootstrap
from eval_assets.core.criteria import parse_criteria
from eval_assets.core.metrics.binary import COUNT_COLUMNS, fairness_metrics, slice_metrics
from eval_assets.core.metrics.streamed import streamed_metrics
from eval_assets.core.pipeline import prediction_files
from eval_assets.core.slicing import Slice
from eval_assets.core.vocabulary import FAIRNESS_METRICS, METRIC_NAMES

THRESHOLD = 0.2
MERCHANTS = 12
COUNTRIES = 8
AGE_BANDS = ("18-24", "25-34", "35-49", "50-64", "65+")
TOLERANCE = 1e-9
_TOL = f"{TOLERANCE:g}".replace("e-0", "e-")
STREAM_BATCH_ROWS = 100_000
STREAM_KEYS = ("amount", "merchant_category", "country", "age_band")  # the slice keys stored
# The benchmark's slices and fairness groups as evaluation criteria, for (g). A predicate slice's
# name must be an identifier, so `amount>10000` is declared as HIGH_VALUE and renamed after.
HIGH_VALUE = "amount_over_10000"
STREAM_CRITERIA = f"""
model: bench
dataset:
  id_column: row_id
  label_column: label
  threshold: {THRESHOLD}
  extra_columns: ignore
slices:
  - name: {HIGH_VALUE}
    where: amount > 10000
    key: true
  - by: merchant_category
  - by: country
fairness: [age_band]
"""


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


def prepare_streamed(
    data: pd.DataFrame, slices: list[Slice], scratch: Path
) -> Callable[[], object]:
    """(g) reads what the Dagster assets read: per model a predictions file (label, score and the
    slice keys, text dictionary-encoded, STREAM_BATCH_ROWS-row groups), written here untimed."""
    text = pa.dictionary(pa.int32(), pa.string())
    files = {}
    for model in ("candidate", "champion"):
        columns = {"label": data["label"], "score": data[model]}
        columns.update({c: data[c] for c in STREAM_KEYS})
        table = pa.Table.from_pandas(pd.DataFrame(columns), preserve_index=False)
        table = table.cast(
            pa.schema(
                pa.field(f.name, text if pa.types.is_string(f.type) else f.type)
                for f in table.schema
            )
        )
        files[model] = scratch / f"predictions-{model}.parquet"
        pq.write_table(table, files[model], row_group_size=STREAM_BATCH_ROWS)
    return partial(streamed, files)


def streamed(files: dict[str, Path]) -> dict[str, object]:
    """(g) eval_assets streamed_metrics for both models, as the assets run it: the slice plan from
    one batched read of the slicing and fairness columns, then per model the file's batches, each
    sliced on its own by the criteria (`prediction_files.score_batches`)."""
    criteria = parse_criteria(STREAM_CRITERIA, "bench criteria")
    plan = prediction_files.slice_plan(criteria, files["candidate"])
    bins = BootstrapConfig().bins
    summaries = {
        model: streamed_metrics(
            prediction_files.score_batches(plan, path, list(STREAM_KEYS)), plan, THRESHOLD, bins
        ).metrics
        for model, path in files.items()
    }
    tables = {
        model: metrics.slices.rename(index={HIGH_VALUE: "amount>10000"}).reset_index()
        for model, metrics in summaries.items()
    }
    disparity = summaries["candidate"].disparities.set_index("metric")["value"].to_dict()
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
    return {"tables": tables, "fairness": disparities_of(rates)}


def disparities_of(rates: pd.DataFrame) -> dict[str, float]:
    """The three disparities from one row per group of selection_rate, tpr and fpr."""
    spread = rates.max() - rates.min()
    return {
        "demographic_parity_difference": spread["selection_rate"],
        "demographic_parity_ratio": rates["selection_rate"].min() / rates["selection_rate"].max(),
        "equalized_odds_difference": max(spread["tpr"], spread["fpr"]),
    }


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


class PrecomputedScore(ClassifierMixin, BaseEstimator):
    """A classifier whose probability is a precomputed score column, thresholded by predict().

    MLflow's classifier evaluator takes probabilities only from an MLflow sklearn (or xgboost,
    catboost) model's predict_proba: with a static dataset or a plain callable it sees labels only
    and computes no ROC AUC, PR AUC or log loss. It has no threshold setting either; its
    thresholded metrics use predict(), so the threshold has to live in the model.
    """

    def __init__(self, column: str = "score", threshold: float = THRESHOLD) -> None:
        self.column = column
        self.threshold = threshold

    def fit(self, X: pd.DataFrame, y: np.ndarray | None = None) -> PrecomputedScore:
        self.classes_ = np.array([0, 1])
        return self

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        score = X[self.column].to_numpy()
        return np.column_stack([1.0 - score, score])

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        return (X[self.column].to_numpy() >= self.threshold).astype(np.int8)


# Explainability (SHAP) off; label_list fixes the classes instead of inferring them per slice.
# The five plots per call (ROC, PR, lift, calibration, confusion matrix) have no switch in 3.17.2.
MLFLOW_CONFIG = {"log_model_explainability": False, "label_list": [0, 1], "pos_label": 1}
# Each metric MLflow's binary classifier evaluator reports, and our column it must equal.
MLFLOW_COLUMNS: dict[str, str] = {
    "example_count": "support",
    "true_positives": "tp",
    "false_positives": "fp",
    "true_negatives": "tn",
    "false_negatives": "fn",
    "accuracy_score": "accuracy",
    # The sklearn model's own score(): accuracy for a classifier.
    "score": "accuracy",
    "precision_score": "precision",
    "recall_score": "recall",
    "f1_score": "f1",
    "log_loss": "log_loss",
    "roc_auc": "roc_auc",
    # MLflow 3.17.2 reports average_precision_score under this name, not a trapezoidal area.
    "precision_recall_auc": "pr_auc",
}


def prepare_mlflow(
    data: pd.DataFrame, slices: list[Slice], scratch: Path
) -> Callable[[], dict[str, object]]:
    """A throwaway tracking store, both models logged and loaded, and one untimed warm-up call."""
    # Imported here so that only the (e) worker pays for MLflow.
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    import matplotlib
    import mlflow

    matplotlib.use("Agg")
    logging.getLogger("mlflow").setLevel(logging.ERROR)
    store = scratch / f"mlflow_{len(data)}"
    store.mkdir()
    mlflow.set_tracking_uri(f"sqlite:///{store / 'mlflow.db'}")
    # With a database store MLflow would put artifacts under ./mlruns, in the repository.
    experiment = mlflow.create_experiment(
        "bench_metrics", artifact_location=(store / "artifacts").as_uri()
    )
    mlflow.set_experiment(experiment_id=experiment)
    trusted = [f"{PrecomputedScore.__module__}.{PrecomputedScore.__qualname__}"]
    models = {}
    for name in ("candidate", "champion"):
        info = mlflow.sklearn.log_model(
            PrecomputedScore(name).fit(None),
            name=name,
            pip_requirements=["scikit-learn"],
            skops_trusted_types=trusted,
        )
        models[name] = mlflow.pyfunc.load_model(info.model_uri)
    # The first call imports matplotlib's and MLflow's lazy modules; that is not per-slice work.
    _mlflow_metrics(models["candidate"], data[["candidate", "label"]].iloc[:2000], "warm-up")
    return partial(mlflow_per_slice, models, data, slices)


def mlflow_per_slice(
    models: dict[str, Any], data: pd.DataFrame, slices: list[Slice]
) -> dict[str, object]:
    """(e) one mlflow.models.evaluate per slice and model, and one per age band for fairness."""
    tables = {}
    for name, model in models.items():
        rows = [
            {"slice": s.name, **_mlflow_metrics(model, data.loc[s.mask, [name, "label"]], s.name)}
            for s in slices
        ]
        tables[name] = pd.DataFrame(rows)
    # MLflow has no fairness metrics; per-group confusion counts give the rates they need.
    rates = {}
    for band, group in data.groupby("age_band", sort=True):
        counts = _mlflow_metrics(models["candidate"], group[["candidate", "label"]], str(band))
        tp, fp = counts["true_positives"], counts["false_positives"]
        rates[band] = {
            "selection_rate": (tp + fp) / counts["example_count"],
            "tpr": counts["recall_score"],
            "fpr": fp / (fp + counts["true_negatives"]),
        }
    return {"tables": tables, "fairness": disparities_of(pd.DataFrame.from_dict(rates, "index"))}


def _mlflow_metrics(model: Any, frame: pd.DataFrame, run_name: str) -> dict[str, float]:
    import mlflow

    with mlflow.start_run(run_name=run_name):
        result = mlflow.models.evaluate(
            model,
            frame,
            targets="label",
            model_type="classifier",
            evaluator_config=MLFLOW_CONFIG,
        )
    return result.metrics


def floor(data: pd.DataFrame, slices: list[Slice]) -> dict[str, np.ndarray]:
    """(f) per model one argsort, per slice one masked count of (label, decision) cells."""
    y = data["label"].to_numpy()
    cells = {}
    for model in ("candidate", "champion"):
        score = data[model].to_numpy()
        # Exact ranking metrics need the scores in order: the floor pays for the order and stops.
        np.argsort(score)
        # 0 tn, 1 fn, 2 fp, 3 tp: one pass per slice gives support, positives, true positives.
        cell = y + 2 * (score >= THRESHOLD).view(np.int8)
        cells[model] = np.stack([np.bincount(cell[s.mask], minlength=4) for s in slices])
    return cells


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


def assert_mlflow_agrees(reference: dict[str, object], theirs: dict[str, object]) -> list[str]:
    """Every MLflow metric mapped in MLFLOW_COLUMNS, and the disparities, within TOLERANCE.

    Where our value is NaN (undefined) scikit-learn, and so MLflow, may report 0.0 instead; those
    cells are left out of the assertion and returned as notes.
    """
    notes = []
    for model, table in reference["tables"].items():
        mlflow_table = theirs["tables"][model]
        assert list(mlflow_table["slice"]) == list(table["slice"]), "mlflow"
        unmapped = sorted(set(mlflow_table.columns) - {"slice", *MLFLOW_COLUMNS})
        if unmapped:
            notes.append(f"MLflow metrics with no counterpart here, not compared: {unmapped}")
        for metric, column in MLFLOW_COLUMNS.items():
            expected = table[column].to_numpy(dtype=np.float64)
            actual = mlflow_table[metric].to_numpy(dtype=np.float64)
            undefined = np.isnan(expected)
            notes += [
                f"{model} {table['slice'].iloc[i]}: MLflow {metric} = {actual[i]!r}, ours undefined"
                for i in np.flatnonzero(undefined)
            ]
            np.testing.assert_allclose(
                actual[~undefined],
                expected[~undefined],
                rtol=0,
                atol=TOLERANCE,
                err_msg=f"mlflow: {model} {metric} vs {column}",
            )
    for name in FAIRNESS_METRICS:
        assert abs(reference["fairness"][name] - theirs["fairness"][name]) <= TOLERANCE, name
    return notes


def assert_floor_counts(reference: dict[str, object], cells: dict[str, np.ndarray]) -> None:
    """The floor's support, positives and true positives equal (a)'s, slice by slice."""
    for model, table in reference["tables"].items():
        counts = cells[model]
        np.testing.assert_array_equal(counts.sum(axis=1), table["support"], err_msg=model)
        np.testing.assert_array_equal(counts[:, 1] + counts[:, 3], table["positives"])
        np.testing.assert_array_equal(counts[:, 3], table["tp"], err_msg=model)


def timed(function: Callable[[], object], repeat: int) -> tuple[float, float, object]:
    """Best wall and CPU seconds of `repeat` runs, and the last result."""
    wall, cpu, result = float("inf"), float("inf"), None
    for _ in range(repeat):
        start, start_cpu = time.perf_counter(), time.process_time()
        result = function()
        wall = min(wall, time.perf_counter() - start)
        cpu = min(cpu, time.process_time() - start_cpu)
    return wall, cpu, result


Prepare = Callable[[pd.DataFrame, list[Slice], Path], Callable[[], object]]


def _plain(approach: Callable[[pd.DataFrame, list[Slice]], object]) -> Prepare:
    def prepare(data: pd.DataFrame, slices: list[Slice], scratch: Path) -> Callable[[], object]:
        return partial(approach, data, slices)

    return prepare


@dataclass(frozen=True)
class Approach:
    """One table row: what to prepare untimed, how many timed runs to take the best of, and
    whether it is one of the quick ones timed in turns (`QUICK_ROUNDS`)."""

    label: str
    prepare: Prepare
    repeat: int
    quick: bool = False


# The quick approaches (under a few seconds) take turns: each runs in QUICK_ROUNDS fresh
# processes, one approach after the other, round after round, and keeps its best of all runs.
# On this shared machine a busy spell lasts minutes (one run's floor took 0.43 s at 1M rows where
# five others took 0.27 to 0.32 s), and a fresh process's first runs are slower ((a) 0.80, 0.74,
# 0.69, then 0.47 to 0.52 s): timed one after the other, a ratio of two of them measured the
# machine as much as the code.
QUICK_REPEAT = 3
QUICK_ROUNDS = 3

APPROACHES: dict[str, Approach] = {
    "a": Approach(
        "(a) eval_assets slice_metrics x2 + fairness_metrics", _plain(ours), QUICK_REPEAT, True
    ),
    "g": Approach(
        "(g) ours, streamed: eval_assets streamed_metrics x2, 100k-row batches, bounded memory",
        prepare_streamed,
        QUICK_REPEAT,
        True,
    ),
    "b": Approach("(b) pandas groupby + sklearn loop", _plain(pandas_sklearn), 1),
    "c": Approach("(c) fairlearn MetricFrame", _plain(fairlearn_frames), 1),
    "d": Approach("(d) eval_assets paired_bootstrap, 1000 resamples", _plain(bootstrap), 3),
    "e": Approach("(e) mlflow.models.evaluate per slice x2 + per age band", prepare_mlflow, 1),
    "f": Approach(
        "(f) vectorized floor: argsort + masked bincount per slice",
        _plain(floor),
        QUICK_REPEAT,
        True,
    ),
}


class Measurement(NamedTuple):
    """What one worker reports: best seconds, resident MiB before and at peak, the result."""

    wall: float
    cpu: float
    before_mib: float
    peak_mib: float
    result: object


def measure(key: str, parquet: Path, scratch: Path) -> Measurement:
    """In a fresh process: read the data, run one approach, and report its time and peak RSS."""
    warnings.simplefilter("ignore")
    approach = APPROACHES[key]
    data = pd.read_parquet(parquet)
    slices = build_slices(data)
    assert len(slices) == 22
    work = approach.prepare(data, slices, scratch)
    # Hand freed read buffers back to the OS, so that the approach cannot hide its allocations
    # in pages the Parquet reader left resident.
    gc.collect()
    pa.default_memory_pool().release_unused()
    ctypes.CDLL("libc.so.6").malloc_trim(0)
    before = _status_kib("VmRSS")
    # getrusage's ru_maxrss cannot be reset, and a spawned child starts with its parent's peak
    # (Linux carries it across exec); writing 5 to clear_refs resets VmHWM to the current RSS.
    Path("/proc/self/clear_refs").write_text("5")
    wall, cpu, result = timed(work, approach.repeat)
    peak = _status_kib("VmHWM")
    return Measurement(wall, cpu, before / 1024, peak / 1024, result)


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} missing from /proc/self/status")


def measure_all(keys: list[str], parquet: Path, scratch: Path) -> dict[str, Measurement]:
    """Each approach in fresh processes: the slow ones once, then the quick ones in turns."""
    runs = {
        key: in_fresh_process(key, parquet, scratch) for key in keys if not APPROACHES[key].quick
    }
    for _ in range(QUICK_ROUNDS):
        for key in (key for key in keys if APPROACHES[key].quick):
            runs[key] = _better(runs.get(key), in_fresh_process(key, parquet, scratch))
    return runs


def _better(kept: Measurement | None, new: Measurement) -> Measurement:
    """The best times of both, and the memory of the one that needed more."""
    if kept is None:
        return new
    memory = max(kept, new, key=lambda m: m.peak_mib - m.before_mib)
    return Measurement(
        min(kept.wall, new.wall),
        min(kept.cpu, new.cpu),
        memory.before_mib,
        memory.peak_mib,
        new.result,
    )


def in_fresh_process(key: str, parquet: Path, scratch: Path) -> Measurement:
    """`measure` in a newly spawned interpreter, so that no approach inherits another's memory."""
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
        return pool.submit(measure, key, parquet, scratch).result()


def check_agreement(runs: dict[str, Measurement]) -> list[str]:
    """Assert every agreement this run can check; the sentences saying what was checked."""
    reference = runs["a"].result
    checked = [key for key in ("g", "b", "c") if key in runs]
    for key in checked:
        assert_agree(reference, runs[key].result, APPROACHES[key].label)
    lines = []
    if checked:
        names = ", ".join(f"({k})" for k in ("a", *checked[:-1]))
        lines.append(
            f"{names} and ({checked[-1]}) agree on every count, metric and disparity to {_TOL}."
        )
    ci = runs["d"].result
    assert ci[["candidate_low", "candidate_high", "delta_low", "delta_high"]].notna().all().all()
    if "e" in runs:
        notes = assert_mlflow_agrees(reference, runs["e"].result)
        lines.append(
            f"(e) agrees with (a) to {_TOL} on every metric MLflow reports "
            f"({', '.join(MLFLOW_COLUMNS)}) and on the three disparities."
        )
        lines += [f"(e) note: {note}" for note in notes]
    assert_floor_counts(reference, runs["f"].result)
    lines.append("(f) gives the same support, positives and true positives as (a) in every slice.")
    return lines


def report(n_rows: int, runs: dict[str, Measurement], caps: dict[str, int]) -> None:
    """The Markdown table for one size, the agreement lines and the targets."""
    print(f"\n### {n_rows:,} rows: 22 slices x 2 models, 5 age-band fairness groups\n")
    print(
        "| approach | wall s | CPU s | wall vs (a) | wall vs (f) | peak MiB | extra MiB over data |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    ours_wall, floor_wall = runs["a"].wall, runs["f"].wall
    for key, approach in APPROACHES.items():
        if key not in runs:
            limit = f"skipped above {caps[key]:,} rows"
            print(f"| {approach.label} | {limit} | | | | | |")
            continue
        run = runs[key]
        print(
            f"| {approach.label} | {run.wall:.3f} | {run.cpu:.3f} | {run.wall / ours_wall:.1f}x "
            f"| {run.wall / floor_wall:.1f}x | {run.peak_mib:,.0f} "
            f"| {run.peak_mib - run.before_mib:,.0f} |"
        )
    print()
    for line in check_agreement(runs):
        print(f"- {line}")
    # Both of ours: the core the command line tool runs, and the streamed path the assets run.
    targets = []
    for key in ("a", "g"):
        wall = runs[key].wall
        near_floor = wall / floor_wall
        verdict = "met" if near_floor <= 2 else "NOT met"
        targets.append(f"({key}) within 2x of (f): {near_floor:.2f}x, {verdict}")
        if "b" in runs:
            speedup = runs["b"].wall / wall
            verdict = "met" if speedup >= 15 else "NOT met"
            targets.append(f"({key}) at least 15x faster than (b): {speedup:.1f}x, {verdict}")
        else:
            targets.append(f"({key}) at least 15x faster than (b): (b) not run at this size")
    print(
        "- Targets (measured, not asserted; the issue sets them at 1M rows): "
        + "; ".join(targets)
        + "."
    )


NOTES = """
Notes:

- Each approach runs in its own spawned interpreter that reads the same Parquet file and builds
  the slice masks before anything is measured. *peak MiB* is that process's peak resident set
  (VmHWM, reset just before the approach) while the approach ran, so it includes the interpreter,
  the libraries, the data and the masks; *extra MiB over data* is the peak minus the resident set
  just before the approach. (a), (g) and (f) take turns in three rounds of fresh processes, three
  runs each time: their seconds are the best of nine runs spread over the bench's minutes, their
  memory the largest of the three processes'. (d) is the best of 3 runs, the others of 1 (each
  takes seconds to minutes).
- (e) is MLflow 3.17.2's default classifier evaluator: one mlflow.models.evaluate per slice and
  model (44 calls) and one per age band for the candidate (5 calls), each in its own run of a
  throwaway SQLite tracking store in a temporary directory. MLflow has no slicing and no fairness
  metrics: the disparities come from the per-band confusion counts it reports. It takes
  probabilities only from a logged sklearn-flavour model's predict_proba and has no threshold
  option, so each model is logged as a PrecomputedScore estimator whose predict() applies the
  0.2 threshold. Explainability (SHAP) is off; the ROC, PR, lift, calibration and confusion-matrix
  plots it draws on every call cannot be switched off (profiled, they are about 80% of a call on
  100k rows and half of one on 1M rows, where logging the dataset takes another quarter).
  Creating the store, logging and loading the two models and one warm-up call are not timed.
- MLflow reports no Brier score, selection rate or FPR (they follow from its confusion counts,
  which are compared). Its precision_recall_auc is average precision in 3.17.2, the same
  definition as our pr_auc; its log_loss uses the [1 - p, p] probability matrix, clipped the same
  way, and its score is the sklearn estimator's accuracy.
- (g) is what the Dagster assets run, fed as they are fed: before the clock, each model's scores
  are written with the label and the slice keys to a predictions file as the assets store one
  (text dictionary-encoded, 100,000-row row groups); the timed call plans the slices (one batched
  read of the slicing and fairness columns), then per model reads the file in 100,000-row
  batches (`prediction_files.score_batches`), derives each batch's slice membership and age-band
  codes from a criteria declaring the same 22 slices (the precomputed masks (a) and (f) use are
  not used) and runs streamed_metrics, whose sort is numpy's while the rows fit in 64 MB and
  DuckDB's (capped at 64 MB and 2 threads, spilling to a temporary folder) beyond. Unlike the
  other approaches, its time includes reading its data (Parquet, the columns it needs). It also
  computes what (a) does not: the overall curves, the bootstrap's score quantiles and the
  champion's fairness. Its peak MiB includes the whole in-memory data, as every approach's does,
  so its own memory is the extra MiB column: one batch, the rows held for numpy's sort (below
  64 MB) and one sorted chunk of 262,144 rows.
- (f) is a yardstick, not an implementation: per model one np.argsort (any exact ROC AUC or
  average precision needs the order) and one boolean-masked bincount of (label, decision) per
  slice. It computes no metric, no fairness and no log loss or Brier sum.
"""


def main() -> None:
    """Measure each approach at each size and print one Markdown table per size."""
    started = time.perf_counter()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[100_000, 1_000_000, 5_000_000])
    parser.add_argument(
        "--loop-max-rows",
        type=int,
        default=1_000_000,
        help="skip (b) above this size: about 13 s at 1M rows, growing linearly",
    )
    parser.add_argument(
        "--fairlearn-max-rows",
        type=int,
        default=100_000,
        help="skip (c) above this size: fairlearn 0.15 np.stack()s y_true and y_pred element by "
        "element for every metric and group, which takes minutes at 100k rows",
    )
    parser.add_argument(
        "--mlflow-max-rows",
        type=int,
        default=1_000_000,
        help="skip (e) above this size: 49 evaluate calls, each drawing five plots, take about "
        "2 minutes at 100k rows and 3.5 at 1M",
    )
    args = parser.parse_args()
    caps = {"b": args.loop_max_rows, "c": args.fairlearn_max_rows, "e": args.mlflow_max_rows}
    with tempfile.TemporaryDirectory(prefix="bench_metrics_") as scratch:
        for n_rows in args.rows:
            parquet = Path(scratch) / f"synthetic_{n_rows}.parquet"
            synthetic(n_rows).to_parquet(parquet)
            keys = [key for key in APPROACHES if n_rows <= caps.get(key, n_rows)]
            runs = measure_all(keys, parquet, Path(scratch))
            parquet.unlink()
            report(n_rows, runs, caps)
    print(NOTES)
    print(f"Total run time: {time.perf_counter() - started:.0f} s.")


def _skewed(k: int, rng: np.random.Generator) -> np.ndarray:
    weights = rng.dirichlet(np.full(k, 3.0))
    return weights / weights.sum()


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


if __name__ == "__main__":
    main()
