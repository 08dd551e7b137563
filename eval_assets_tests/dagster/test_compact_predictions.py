"""Predictions are stored and held compactly (Arrow ids, dictionary / categorical slice keys)
without changing a number, and stored metrics are reused only when they are still valid.

The compact forms are a memory measure only: slices, fairness groups and the champion's
alignment must come out exactly as they would from plain text columns.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from dagster import Failure

from eval_assets.assets import (
    _dictionary,
    _predictions_schema,
    aligned_scores,
    evaluate_and_draw,
    fairness_groups,
    metrics_record,
    stored_metrics,
)
from eval_assets.core.criteria import load_criteria
from eval_assets.core.evaluation import evaluate, to_json
from eval_assets.core.report import confusion_matrices_png, gate_changes_png, roc_pr_curves_png
from eval_assets.core.slicing import build_slices
from eval_assets.resources.storage import LocalEvaluationStore
from eval_assets_tests.support.factories import write_criteria


@pytest.fixture(scope="module")
def criteria(tmp_path_factory: pytest.TempPathFactory):
    return load_criteria(write_criteria(tmp_path_factory.mktemp("criteria")))


def test_predictions_written_batch_by_batch_read_back_with_sorted_categories(tmp_path):
    # Each batch dictionary-encodes its own text keys, so the parts' dictionaries differ in
    # content and order; the reader must still give one sorted set of categories.
    snapshot = pa.schema([("id", pa.string()), ("country", pa.string()), ("hour", pa.int64())])
    stored = _predictions_schema(snapshot, "id", ["country", "hour"])
    batches = [
        (["t1", "t2", "t3"], ["US", "FR", None], [1, None, 3]),
        (["t4", "t5"], ["BR", "US"], [4, 5]),
    ]
    store = LocalEvaluationStore(root=str(tmp_path))
    with (
        store.writing("m/predictions/p.parquet") as handle,
        pq.ParquetWriter(handle, stored) as writer,
    ):
        for ids, countries, hours in batches:
            columns = [
                pa.array(ids),
                pa.array([0] * len(ids), pa.int8()),
                pa.array([0.5] * len(ids)),
                _dictionary(pa.array(countries)),
                _dictionary(pa.array(hours)),
            ]
            writer.write_table(pa.Table.from_arrays(columns, schema=stored))
    frame = store.read_frame("m/predictions/p.parquet")
    assert frame["row_id"].dtype == pd.StringDtype("pyarrow")
    assert frame["row_id"].tolist() == ["t1", "t2", "t3", "t4", "t5"]
    country = frame["country"]
    assert isinstance(country.dtype, pd.CategoricalDtype)
    assert list(country.cat.categories) == ["BR", "FR", "US"]
    assert country.astype(object).where(country.notna(), None).tolist() == [
        "US",
        "FR",
        None,
        "BR",
        "US",
    ]
    assert frame["hour"].dtype == np.float64  # as pandas reads a nullable integer column
    assert frame["label"].dtype == np.int8 and frame["score"].dtype == np.float64
    assert list(Path(tmp_path).rglob("*.tmp")) == []


def test_a_failed_write_stores_nothing(tmp_path):
    store = LocalEvaluationStore(root=str(tmp_path))
    with pytest.raises(RuntimeError, match="scoring failed"):
        with store.writing("m/predictions/p.parquet") as path:
            path.write_bytes(b"PAR1 half a file")
            raise RuntimeError("scoring failed")
    assert store.read("m/predictions/p.parquet") is None
    assert [p for p in Path(tmp_path).rglob("*") if p.is_file()] == []


def test_fairness_groups_of_categories_equal_those_of_plain_text(criteria):
    attribute = criteria.fairness[0]
    values = ["65+", None, "18-25", "65+", "26-35"]
    plain = pd.DataFrame({attribute: pd.Series(values, dtype=object)})
    compact = plain.astype({attribute: "category"})
    expected = fairness_groups(criteria, plain)[attribute]
    got = fairness_groups(criteria, compact)[attribute]
    assert got.tolist() == expected.tolist() == ["65+", "None", "18-25", "65+", "26-35"]


def test_champion_scores_align_by_position_or_by_id_and_must_cover_every_row():
    ids = pd.array(["t1", "t2", "t3"], dtype=pd.StringDtype("pyarrow"))
    candidate = pd.DataFrame({"row_id": ids, "score": [0.1, 0.2, 0.3]})
    same_order = pd.DataFrame({"row_id": ids, "score": [0.7, 0.8, 0.9]})
    scores, in_order = aligned_scores(candidate, same_order)
    assert scores.tolist() == [0.7, 0.8, 0.9] and in_order
    shuffled = same_order.iloc[[2, 0, 1]].reset_index(drop=True)
    scores, in_order = aligned_scores(candidate, shuffled)
    assert scores.tolist() == [0.7, 0.8, 0.9] and not in_order
    with pytest.raises(Failure, match="do not cover the same rows"):
        aligned_scores(candidate, same_order.iloc[:2])
    other = same_order.assign(row_id=pd.array(["t1", "t2", "t9"], dtype="string[pyarrow]"))
    with pytest.raises(Failure, match="do not cover the same rows"):
        aligned_scores(candidate, other)


def predictions_frame(n: int, seed: int = 0) -> pd.DataFrame:
    """A predictions table as the graph holds it, with every column the criteria read."""
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "row_id": pd.array([f"t{i}" for i in range(n)], dtype="string[pyarrow]"),
            "label": rng.binomial(1, 0.3, n),
            "score": rng.random(n),
            "amount": rng.exponential(3000, n),
            "card_present": rng.binomial(1, 0.5, n),
            "hour": rng.integers(0, 24, n),
            "country": pd.Categorical(rng.choice(["BR", "FR", "US"], n)),
            "merchant_category": pd.Categorical(rng.choice(["food", "travel"], n)),
            "customer_age_band": pd.Categorical(rng.choice(["18-25", "65+"], n)),
        }
    )


def test_a_stored_metrics_record_is_reused_only_under_the_same_criteria_and_rows(criteria):
    n = 400
    frame = predictions_frame(n)
    record = metrics_record(criteria, frame)
    reused = stored_metrics(record, criteria, n)
    assert reused is not None
    assert reused.slices.loc["overall", "support"] == n
    # Another threshold is another criteria hash: the record is stale and is not reused.
    other = criteria.model_copy(
        update={"dataset": criteria.dataset.model_copy(update={"threshold": 0.9})}
    )
    assert other.digest() != criteria.digest()
    assert stored_metrics(record, other, n) is None
    assert stored_metrics(record, criteria, n + 1) is None
    assert stored_metrics({**record, "evaluator_version": "0.0.0"}, criteria, n) is None
    assert stored_metrics(None, criteria, n) is None


def test_drawing_beside_the_bootstrap_and_reusing_metrics_change_no_byte(criteria):
    frame = predictions_frame(3000, seed=1)
    rng = np.random.default_rng(2)
    champion = np.clip(frame["score"].to_numpy() + rng.normal(0, 0.1, len(frame)), 0, 1)
    result, images = evaluate_and_draw(criteria, frame, champion)

    # The same evaluation the plain way: the core on one thread, each plot drawn on its own.
    slices = build_slices(frame, criteria)
    groups = fairness_groups(criteria, frame)
    y, scores = frame["label"].to_numpy(), frame["score"].to_numpy()
    plain = evaluate(criteria, y, slices, groups, scores, champion)
    assert to_json(result.verdict.to_dict()) == to_json(plain.verdict.to_dict())
    pd.testing.assert_frame_equal(result.intervals, plain.intervals, check_exact=True)
    threshold = criteria.dataset.threshold
    key_slices = [s for s in criteria.key_slices if s in set(plain.candidate.slices.index)]
    assert list(images) == ["gate_changes.png", "roc_pr_overall.png", "confusion_matrices.png"]
    assert images["gate_changes.png"] == gate_changes_png(plain.verdict, criteria)
    assert images["roc_pr_overall.png"] == roc_pr_curves_png(
        y, scores, champion, threshold=threshold
    )
    assert images["confusion_matrices.png"] == confusion_matrices_png(
        plain.candidate, plain.champion, [s for s in key_slices if s != "overall"], threshold
    )

    # Stored records of both models (as `slice_metrics` wrote them) decide the same verdict.
    stored = [
        stored_metrics(metrics_record(criteria, frame.assign(score=s)), criteria, len(frame))
        for s in (scores, champion)
    ]
    reused, _ = evaluate_and_draw(
        criteria, frame, champion, candidate_metrics=stored[0], champion_metrics=stored[1]
    )
    assert to_json(reused.verdict.to_dict()) == to_json(plain.verdict.to_dict())
    pd.testing.assert_frame_equal(reused.intervals, plain.intervals, check_exact=True)


def test_an_input_with_columns_metadata_reads_only_those_columns(tmp_path):
    from dagster import build_input_context

    from eval_assets.resources.storage import OpenFormatIOManager

    store = LocalEvaluationStore(root=str(tmp_path))
    store.write_frame("m/predictions.parquet", predictions_frame(10))
    manager = OpenFormatIOManager(store=store)
    narrow = manager.load_input(
        build_input_context(
            asset_key=["m", "predictions"], definition_metadata={"columns": ["label", "score"]}
        )
    )
    assert list(narrow.columns) == ["label", "score"] and len(narrow) == 10
    whole = manager.load_input(build_input_context(asset_key=["m", "predictions"]))
    assert "row_id" in whole.columns
