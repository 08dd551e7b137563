"""Predictions files are read compactly (Arrow ids, dictionary / categorical slice keys) and in
batches without changing a number, the champion's side is aligned with the candidate's rows, and
stored metrics are reused only when they are still valid.

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

from eval_assets.core.criteria import load_criteria
from eval_assets.core.evaluation import evaluate, to_json
from eval_assets.core.models import PREDICT_BATCH_ROWS
from eval_assets.core.pipeline import prediction_files
from eval_assets.core.pipeline.compare import evaluate_and_draw
from eval_assets.core.pipeline.metrics import metrics_record, stored_summary
from eval_assets.core.pipeline.prediction_files import (
    PipelineError,
    RowIdsDigest,
    batches,
    champion_scores,
    row_ids_digest,
    same_rows_in_order,
)
from eval_assets.core.render.plots import confusion_matrices_png, roc_pr_curves_png
from eval_assets.core.slicing import build_slices, fairness_groups, plan_slices
from eval_assets_tests.support.factories import write_criteria


@pytest.fixture(scope="module")
def criteria(tmp_path_factory: pytest.TempPathFactory):
    return load_criteria(write_criteria(tmp_path_factory.mktemp("criteria")))


def test_fairness_groups_of_categories_equal_those_of_plain_text(criteria):
    attribute = criteria.fairness[0]
    values = ["65+", None, "18-25", "65+", "26-35"]
    plain = pd.DataFrame({attribute: pd.Series(values, dtype=object)})
    compact = plain.astype({attribute: "category"})
    expected = fairness_groups(criteria, plain)[attribute]
    got = fairness_groups(criteria, compact)[attribute]
    assert got.tolist() == expected.tolist() == ["65+", "None", "18-25", "65+", "26-35"]


def test_champion_scores_align_by_position_or_by_id_and_must_cover_every_row(tmp_path):
    ids = pd.array(["t1", "t2", "t3"], dtype=pd.StringDtype("pyarrow"))
    candidate = write(
        tmp_path / "c.parquet", pd.DataFrame({"row_id": ids, "score": [0.1, 0.2, 0.3]})
    )
    same = pd.DataFrame({"row_id": ids, "score": [0.7, 0.8, 0.9]})

    def aligned(champion: pd.DataFrame) -> tuple[list[float], bool]:
        path = write(tmp_path / "h.parquet", champion)
        in_order = same_rows_in_order(candidate, path)
        scores = champion_scores(candidate, path, in_order)
        return np.concatenate(list(scores)).tolist(), in_order

    assert aligned(same) == ([0.7, 0.8, 0.9], True)
    assert aligned(same.iloc[[2, 0, 1]]) == ([0.7, 0.8, 0.9], False)
    with pytest.raises(PipelineError, match="do not cover the same rows"):
        aligned(same.iloc[:2])
    with pytest.raises(PipelineError, match="do not cover the same rows"):
        aligned(same.assign(row_id=pd.array(["t1", "t2", "t9"], dtype="string[pyarrow]")))
    duplicated = pd.DataFrame({"row_id": ["t1", "t2", "t3", "t3"], "score": [0.7, 0.8, 0.9, 0.1]})
    with pytest.raises(PipelineError, match="do not cover the same rows"):
        aligned(duplicated)


def test_files_with_the_same_ids_digest_are_in_order_without_reading_their_ids(
    tmp_path, monkeypatch
):
    ids = [pa.array(["t1", "t2"]), pa.array(["t3"])]

    def written(name: str, batches: list[pa.Array], digest: bool = True) -> Path:
        path = tmp_path / name
        schema = pa.schema([("row_id", pa.string()), ("score", pa.float64())])
        digest_of = RowIdsDigest()
        with pq.ParquetWriter(path, schema) as writer:
            for batch in batches:
                scores = pa.array([0.5] * len(batch))
                writer.write_table(pa.Table.from_arrays([batch, scores], schema=schema))
                digest_of.update(batch)
            if digest:
                writer.add_key_value_metadata(digest_of.footer())
        return path

    candidate, champion = written("c.parquet", ids), written("h.parquet", ids)
    reordered = written("r.parquet", [pa.array(["t2", "t1"]), pa.array(["t3"])])
    rebatched = written("b.parquet", [pa.array(["t1"]), pa.array(["t2", "t3"])])
    undigested = written("u.parquet", ids, digest=False)
    assert row_ids_digest(candidate) == row_ids_digest(champion) is not None
    assert row_ids_digest(undigested) is None
    assert row_ids_digest(reordered) != row_ids_digest(candidate)

    reads: list[Path] = []
    real_batches = prediction_files.batches
    monkeypatch.setattr(
        prediction_files,
        "batches",
        lambda path, columns: reads.append(path) or real_batches(path, columns),
    )
    assert same_rows_in_order(candidate, champion) and reads == []
    # Without agreeing digests the ids are compared: the same ids in other batches, or a file
    # from before digests, are still in order; other orders are not.
    assert same_rows_in_order(candidate, rebatched) and reads
    assert same_rows_in_order(undigested, candidate)
    assert not same_rows_in_order(candidate, reordered)


def write(path: Path, frame: pd.DataFrame) -> Path:
    frame.to_parquet(path, index=False)
    return path


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


def test_a_stored_metrics_record_is_reused_only_under_the_same_criteria_and_rows(
    criteria, tmp_path
):
    n = 400
    record = metrics_record(criteria, write(tmp_path / "p.parquet", predictions_frame(n)))
    reused = stored_summary(record, criteria, n)
    assert reused is not None
    assert reused.metrics.slices.loc["overall", "support"] == n
    assert len(reused.positive_quantiles) and len(reused.curve["fpr"])
    # Another threshold is another criteria hash: the record is stale and is not reused.
    other = criteria.model_copy(
        update={"dataset": criteria.dataset.model_copy(update={"threshold": 0.9})}
    )
    assert other.digest() != criteria.digest()
    assert stored_summary(record, other, n) is None
    assert stored_summary(record, criteria, n + 1) is None
    assert stored_summary({**record, "evaluator_version": "0.0.0"}, criteria, n) is None
    assert stored_summary(None, criteria, n) is None


def test_the_streamed_evaluation_equals_the_in_memory_core_and_reuses_records(criteria, tmp_path):
    frame = predictions_frame(3000, seed=1)
    rng = np.random.default_rng(2)
    champion = np.clip(frame["score"].to_numpy() + rng.normal(0, 0.1, len(frame)), 0, 1)
    candidate_file = write(tmp_path / "c.parquet", frame)
    champion_file = write(tmp_path / "h.parquet", frame.assign(score=champion))
    result, images = evaluate_and_draw(criteria, candidate_file, None, champion_file, None)

    # The same evaluation in memory: the core on all rows at once, each plot drawn on its own.
    slices = build_slices(frame, criteria)
    groups = fairness_groups(criteria, frame)
    y, scores = frame["label"].to_numpy(), frame["score"].to_numpy()
    plain = evaluate(criteria, y, slices, groups, scores, champion)
    assert [(g.name, g.passed) for g in result.verdict.gates] == [
        (g.name, g.passed) for g in plain.verdict.gates
    ]
    # Sums run in another order, so the last bits may differ.
    pd.testing.assert_frame_equal(result.intervals, plain.intervals, rtol=1e-12, atol=1e-12)
    pd.testing.assert_frame_equal(result.candidate.slices, plain.candidate.slices, rtol=1e-12)
    pd.testing.assert_frame_equal(result.champion.slices, plain.champion.slices, rtol=1e-12)
    threshold = criteria.dataset.threshold
    key_slices = [s for s in criteria.key_slices if s in set(plain.candidate.slices.index)]
    assert list(images) == ["gate_changes.png", "roc_pr_overall.png", "confusion_matrices.png"]
    assert images["roc_pr_overall.png"] == roc_pr_curves_png(
        y, scores, champion, threshold=threshold
    )
    assert images["confusion_matrices.png"] == confusion_matrices_png(
        plain.candidate, plain.champion, [s for s in key_slices if s != "overall"], threshold
    )

    # Stored records of both models (as `slice_metrics` wrote them) give the same bytes.
    records = [metrics_record(criteria, path) for path in (candidate_file, champion_file)]
    reused, reused_images = evaluate_and_draw(
        criteria, candidate_file, records[0], champion_file, records[1]
    )
    assert to_json(reused.verdict.to_dict()) == to_json(result.verdict.to_dict())
    pd.testing.assert_frame_equal(reused.intervals, result.intervals, check_exact=True)
    assert reused_images == images

    # The champion's rows in another order: joined by id, its record not reused, same verdict.
    shuffled = write(tmp_path / "s.parquet", frame.assign(score=champion).iloc[::-1])
    joined, _ = evaluate_and_draw(criteria, candidate_file, records[0], shuffled, records[1])
    assert [(g.name, g.passed) for g in joined.verdict.gates] == [
        (g.name, g.passed) for g in result.verdict.gates
    ]
    pd.testing.assert_frame_equal(joined.intervals, result.intervals, rtol=1e-12, atol=1e-12)


def test_reading_batches_keeps_no_more_than_a_few_batches_whatever_the_file(tmp_path):
    """pyarrow's default pre-buffering keeps what it read for the life of the file (memory
    grew with the file); the batches the metric steps read must not."""
    rows, groups = PREDICT_BATCH_ROWS, 16
    path = tmp_path / "p.parquet"
    schema = pa.schema([("label", pa.int8()), ("score", pa.float64())])
    with pq.ParquetWriter(path, schema) as writer:
        for k in range(groups):
            scores = np.random.default_rng(k).random(rows)
            writer.write_table(pa.table({"label": np.zeros(rows, np.int8), "score": scores}))
    batch_bytes = rows * 9

    def peak_allocated(batches) -> float:
        base, peak = pa.total_allocated_bytes(), 0
        for _ in batches:
            peak = max(peak, pa.total_allocated_bytes() - base)
        return peak / batch_bytes

    kept = peak_allocated(pq.ParquetFile(path).iter_batches(rows, columns=["label", "score"]))
    assert kept > groups / 2  # the pitfall is real: pre-buffered reads grow with the file
    assert peak_allocated(batches(path, ["label", "score"])) < 8


def test_criteria_without_resamples_give_a_verdict_without_intervals(criteria, tmp_path):
    """`bootstrap.resamples: 0` is allowed: no intervals, point decisions, as the core decides."""
    frame = predictions_frame(500, seed=3)
    no_bootstrap = criteria.model_copy(
        update={"bootstrap": criteria.bootstrap.model_copy(update={"resamples": 0})}
    )
    path = write(tmp_path / "c.parquet", frame)
    result, _ = evaluate_and_draw(no_bootstrap, path, None, None, None)
    plain = evaluate(
        no_bootstrap,
        frame["label"].to_numpy(),
        build_slices(frame, no_bootstrap),
        fairness_groups(no_bootstrap, frame),
        frame["score"].to_numpy(),
    )
    assert result.intervals.empty and plain.intervals.empty
    assert [(g.name, g.passed) for g in result.verdict.gates] == [
        (g.name, g.passed) for g in plain.verdict.gates
    ]


def test_the_slice_plan_of_a_file_equals_the_plan_of_its_frames(tmp_path, monkeypatch):
    """`slice_plan` finds each column's distinct values in Arrow instead of planning over every
    batch in pandas: the same value slices and groups, in the same order, with batches whose
    dictionaries differ, a value seen only in the last batch, missing groups and a numeric
    `by` column."""
    monkeypatch.setattr(prediction_files, "PREDICT_BATCH_ROWS", 1_000)
    criteria = load_criteria(
        write_criteria(
            tmp_path,
            slices=[{"name": "night", "where": "hour < 6"}, {"by": "country"}, {"by": "hour"}],
        )
    )
    text = pa.dictionary(pa.int32(), pa.string())
    schema = pa.schema([("country", text), ("hour", pa.int64()), ("customer_age_band", text)])
    path = tmp_path / "p.parquet"
    rng = np.random.default_rng(7)
    with pq.ParquetWriter(path, schema) as writer:
        for part, countries in enumerate([["US", "FR"], ["FR", "BR"], ["US", "NG"]]):
            bands = rng.choice(["65+", "18-25", None], 1_500).tolist()
            if part != 1:
                bands = [band or "26-35" for band in bands]  # missing groups in one batch only
            writer.write_table(
                pa.table(
                    {
                        "country": pa.array(rng.choice(countries, 1_500)).dictionary_encode(),
                        "hour": rng.integers(0, 23 if part < 2 else 24, 1_500),
                        "customer_age_band": pa.array(bands).dictionary_encode(),
                    },
                    schema=schema,
                )
            )
    columns = ["country", "hour", "customer_age_band"]
    assert len(list(batches(path, columns))) > 3
    got = prediction_files.slice_plan(criteria, path)
    expected = plan_slices(criteria, prediction_files.frames(path, columns))
    assert got.names == expected.names
    assert "hour=23" in got.names and "country=NG" in got.names
    assert {k: v.tolist() for k, v in got.values.items()} == {
        k: v.tolist() for k, v in expected.values.items()
    }
    assert got.groups["customer_age_band"].tolist() == ["18-25", "26-35", "65+", "None"]
    assert got.groups["customer_age_band"].tolist() == expected.groups["customer_age_band"].tolist()
