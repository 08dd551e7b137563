"""Small, seeded data, models and criteria shared by the asset, sensor and integration tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from eval_assets.demo.synthetic import generate_transactions

REPO = Path(__file__).resolve().parents[2]
MODEL = "fraud_detector"
DATASET = "card_fraud_golden"
NUMERIC = ["amount", "card_present", "hour", "customer_tenure_days", "tx_count_24h"]
CATEGORICAL = ["merchant_category", "country", "customer_age_band"]


def golden_frame(rows: int = 20_000, seed: int = 11) -> pd.DataFrame:
    return generate_transactions(rows, seed)


def train(kind: str, rows: int = 20_000, seed: int = 5) -> Pipeline:
    """``good``: every feature; ``weak``: no burst count; ``bad``: learns shuffled labels."""
    frame = generate_transactions(rows, seed)
    y = frame["is_fraud"].to_numpy()
    numeric, categorical = NUMERIC, CATEGORICAL
    if kind == "weak":
        numeric = [c for c in NUMERIC if c != "tx_count_24h"]
    if kind == "bad":
        y = np.random.default_rng(seed).permutation(y)
    steps = [("num", StandardScaler(), numeric)]
    if categorical:
        steps.append(("cat", OneHotEncoder(handle_unknown="ignore"), categorical))
    model = Pipeline(
        [("prep", ColumnTransformer(steps)), ("clf", LogisticRegression(max_iter=500))]
    )
    return model.fit(frame[numeric + categorical], y)


def save_mlflow_model(model: Pipeline, folder: Path) -> Path:
    """An MLflow sklearn model folder (skops format), as the registry stores it."""
    import mlflow.sklearn

    mlflow.sklearn.save_model(model, str(folder))
    return folder


def write_criteria(folder: Path, **changes: object) -> Path:
    """The real criteria with test-sized support and resamples, plus `changes` at top level."""
    data = yaml.safe_load((REPO / "criteria" / f"{MODEL}.yaml").read_text())
    for gate in data["gates"]:
        if gate["kind"] == "support":
            gate["min_rows"], gate["min_positives"] = 50, 5
    data["bootstrap"]["resamples"] = 200
    data.update(changes)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{MODEL}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path
