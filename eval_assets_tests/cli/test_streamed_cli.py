"""`eval-assets evaluate` runs the core's streamed pipeline, the one the Dagster assets run.

It used to read the whole file and evaluate in memory, a second pipeline that could drift from
the assets' (issue 23). These tests hold the streamed CLI to the in-memory core on the same rows
(metrics and intervals to 1e-12, the same verdict), read in batches of a few hundred rows so that
every stage spans batches; and CSV, Parquet and a file without ids must evaluate alike.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import skops.io
from sklearn.linear_model import LogisticRegression

from eval_assets.cli import main
from eval_assets.core.criteria import load_criteria
from eval_assets.core.evaluation import evaluate, metrics_json
from eval_assets.core.pipeline import dataset, prediction_files, scoring
from eval_assets.core.slicing import build_slices, fairness_groups

FEATURES = ["x1", "x2", "x3"]
ROWS = 2_000
CRITERIA = """\
model: streamed_cli_model
dataset:
  id_column: id
  label_column: label
  features: [x1, x2, x3]
  columns: {id: string, label: integer, x1: float, x2: float, x3: float, amount: float,
            country: string, age_band: string}
slices:
  - name: high_value
    where: amount > 5000
    key: true
  - by: country
fairness: [age_band]
gates:
  - name: overall_roc_auc_floor
    kind: absolute
    metric: roc_auc
    min: 0.70
  - name: key_slice_roc_auc_vs_champion
    kind: change
    metric: roc_auc
    slices: key
    max_relative_drop: 0.01
  - name: age_band_equalized_odds
    kind: fairness
    attribute: age_band
    metric: equalized_odds_difference
    max: 0.5
bootstrap: {resamples: 40, seed: 11}
"""


@pytest.fixture(autouse=True)
def small_batches(monkeypatch):
    """A few hundred rows per batch: scoring, validation and metrics all span batches."""
    monkeypatch.setattr(scoring, "PREDICT_BATCH_ROWS", 300)
    monkeypatch.setattr(prediction_files, "PREDICT_BATCH_ROWS", 300)
    monkeypatch.setattr(dataset, "CSV_BLOCK_BYTES", 16_000)
    monkeypatch.setattr(dataset, "PARQUET_BATCH_ROWS", 300)


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("streamed_cli")
    rng = np.random.default_rng(8)
    frame = pd.DataFrame(rng.normal(size=(ROWS, 3)), columns=FEATURES)
    frame.insert(0, "id", [f"r{i:05d}" for i in range(ROWS)])
    frame["amount"] = rng.exponential(4000, ROWS).round(2)
    frame["country"] = rng.choice(["US", "FR", "DE"], ROWS)
    frame["age_band"] = rng.choice(["18-25", "26-40", "41+"], ROWS)
    logit = 1.5 * frame["x1"] - frame["x2"] - 1.0
    frame["label"] = rng.binomial(1, 1 / (1 + np.exp(-logit)))
    paths = {
        "csv": root / "golden.csv",
        "parquet": root / "golden.parquet",
        "bare_csv": root / "bare.csv",
        "bare_parquet": root / "bare.parquet",
        "criteria": root / "criteria.yaml",
        "candidate": root / "candidate.skops",
        "champion": root / "champion.skops",
    }
    frame.to_csv(paths["csv"], index=False)
    frame.to_parquet(paths["parquet"], index=False)
    frame[[*FEATURES, "label"]].to_csv(paths["bare_csv"], index=False)
    frame[[*FEATURES, "label"]].to_parquet(paths["bare_parquet"], index=False)
    paths["criteria"].write_text(CRITERIA)
    candidate = LogisticRegression().fit(frame[FEATURES], frame["label"])
    champion = LogisticRegression().fit(frame[FEATURES[:2]].assign(x3=0.0), frame["label"])
    skops.io.dump(candidate, paths["candidate"])
    skops.io.dump(champion, paths["champion"])
    return paths


def run(files: dict[str, Path], out: Path, data: str, *extra: object) -> Path:
    """One in-process `eval-assets evaluate`; returns its run folder."""
    code = main(
        [
            "evaluate",
            "--model-path",
            str(files["candidate"]),
            "--data-path",
            str(files[data]),
            "--out",
            str(out),
            "--quiet",
            *map(str, extra),
        ]
    )
    assert code in (0, 1)
    (folder,) = out.iterdir()
    return folder


def read(folder: Path, name: str) -> dict:
    return json.loads((folder / name).read_text())


def table_of(records: list[dict]) -> pd.DataFrame:
    """JSON records as a table with its columns in name order (metrics.json sorts its keys)."""
    return pd.DataFrame(records).sort_index(axis=1)


def gated(files: dict[str, Path], out: Path, data: str) -> Path:
    return run(
        files, out, data, "--criteria", files["criteria"], "--champion-path", files["champion"]
    )


def test_the_streamed_cli_gives_the_in_memory_cores_metrics_intervals_and_verdict(files, tmp_path):
    folder = gated(files, tmp_path / "out", "csv")

    criteria = load_criteria(files["criteria"])
    frame = pd.read_csv(files["csv"])
    y = frame["label"].to_numpy()
    candidate, champion = (
        skops.io.load(
            files[name], trusted=skops.io.get_untrusted_types(file=files[name])
        ).predict_proba(frame[FEATURES])[:, 1]
        for name in ("candidate", "champion")
    )
    plain = evaluate(
        criteria,
        y,
        build_slices(frame, criteria),
        fairness_groups(criteria, frame),
        candidate,
        champion,
    )
    metrics, verdict = read(folder, "metrics.json"), read(folder, "verdict.json")

    for side, expected in (("candidate", plain.candidate), ("champion", plain.champion)):
        ours, theirs = metrics[side], metrics_json(expected)
        for table in ("slices", "fairness_groups", "disparities"):
            pd.testing.assert_frame_equal(
                table_of(ours[table]), table_of(theirs[table]), rtol=1e-12, atol=1e-12
            )
    pd.testing.assert_frame_equal(
        table_of(metrics["intervals"]),
        table_of(plain.metrics_record()["intervals"]),
        rtol=1e-12,
        atol=1e-12,
        check_dtype=False,
    )
    assert [(g["name"], g["passed"]) for g in verdict["gates"]] == [
        (g.name, g.passed) for g in plain.verdict.gates
    ]
    assert verdict["passed"] is plain.verdict.passed
    assert metrics["data"]["rows"] == ROWS


def test_csv_and_parquet_of_the_same_rows_give_the_same_evaluation(files, tmp_path):
    from_csv = gated(files, tmp_path / "csv", "csv")
    from_parquet = gated(files, tmp_path / "parquet", "parquet")

    for name in ("metrics.json", "verdict.json"):
        ours, theirs = read(from_csv, name), read(from_parquet, name)
        for record in (ours, theirs):
            for key in ("evaluation_key", "run_id", "data", "git_commit"):
                record.pop(key, None)
        assert ours == theirs, name
    # The digest recorded is that of the bytes read: each file's own.
    assert (
        read(from_csv, "metrics.json")["data"]["digest"]
        != (read(from_parquet, "metrics.json")["data"]["digest"])
    )
    assert (from_csv / "roc_pr_overall.png").read_bytes() == (
        from_parquet / "roc_pr_overall.png"
    ).read_bytes()


@pytest.mark.parametrize("data", ["bare_csv", "bare_parquet"])
def test_a_file_without_ids_is_evaluated_with_rows_named_by_number(files, tmp_path, data):
    folder = run(files, tmp_path / "out", data, "--label-column", "label")

    metrics = read(folder, "metrics.json")
    (overall,) = metrics["candidate"]["slices"]
    frame = pd.read_csv(files["csv"])
    model = skops.io.load(files["candidate"])
    scores = model.predict_proba(frame[FEATURES])[:, 1]
    from sklearn.metrics import roc_auc_score

    assert overall["support"] == ROWS
    assert overall["roc_auc"] == pytest.approx(roc_auc_score(frame["label"], scores), abs=1e-12)
    assert not (folder / "verdict.json").exists()
