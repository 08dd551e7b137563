"""Stale data is never promoted: the rows scored and the snapshot hash recorded are the same bytes.

A snapshot id names immutable content. These tests re-publish an id with other content, alter
the ingested copy, or publish a snapshot a golden dataset cannot be (zero bytes, one class), and
prove, through the Dagster graph over a fake registry and the real local stores, that each
evaluation records the hash of the bytes it actually read, and that any disagreement stops the
evaluation before a verdict, an audit record or a promotion.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
from dagster import build_sensor_context

from eval_assets.core.digests import file_digest
from eval_assets.partitions import snapshot_partitions
from eval_assets_tests.reliability.test_graph_over_fakes import (
    ROWS,
    Graph,
    assert_nothing_downstream,
    failed_steps,
)
from eval_assets_tests.support.factories import (
    DATASET,
    MODEL,
    golden_frame,
    save_mlflow_model,
    train,
)
from eval_assets_tests.support.runs import failure_text, stub_plots

SNAPSHOT = "golden-001"


@pytest.fixture()
def graph(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Graph:
    """v1 is the champion; v2 is the same fitted model, so on good data it passes every gate."""
    stub_plots(monkeypatch)
    g = Graph(tmp_path)
    assert g.publish(SNAPSHOT, golden_frame(rows=ROWS)).success
    good = train("good", rows=ROWS)
    for version in ("1", "2"):
        registered, result = g.register(save_mlflow_model(good, tmp_path / "models" / version))
        assert result.success and registered == version
    assert g.registry.move_champion(MODEL, "1", None)[0]
    return g


def _audit_records(g: Graph) -> list[dict]:
    folder = Path(g.store.root) / MODEL / "audit"
    return [json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))]


def _republish(g: Graph, snapshot: str, frame: pd.DataFrame) -> str:
    """Overwrite a published snapshot in place, as a careless producer would; its new SHA-256."""
    info = g.snapshots.publish(DATASET, snapshot, frame)
    return info.sha256


def test_the_recorded_hash_and_rows_are_those_of_the_bytes_scored(graph: Graph):
    result = graph.evaluate("2", SNAPSHOT)
    assert result.success, failure_text(result)

    (record,) = _audit_records(graph)
    published = Path(graph.snapshots.root) / DATASET / SNAPSHOT / "data.parquet"
    ingested = Path(graph.store.root) / MODEL / "data_snapshot" / f"{SNAPSHOT}.parquet"
    # The ingested copy is the published file's bytes, and the verdict names exactly those.
    assert file_digest(ingested) == file_digest(published) == record["snapshot"]["sha256"]
    assert record["snapshot"]["rows"] == ROWS
    predictions = Path(graph.store.root) / MODEL / "predictions"
    footer = pq.ParquetFile(next(predictions.rglob("*.parquet"))).metadata.metadata
    assert footer[b"eval_assets.snapshot_sha256"].decode() == record["snapshot"]["sha256"]


def test_a_snapshot_republished_under_its_id_is_never_scored_as_the_new_content(graph: Graph):
    assert graph.evaluate("1", SNAPSHOT).success  # the champion's predictions on the old bytes
    new_sha = _republish(graph, SNAPSHOT, golden_frame(rows=ROWS // 2, seed=99))

    result = graph.evaluate("2", SNAPSHOT)

    assert not result.success
    text = failure_text(result)
    assert "re-published" in text and new_sha[:12] in text, text
    assert graph.champion() == "1"
    for record in _audit_records(graph):
        # Whatever was recorded before names the bytes it scored: the old ones.
        assert record["snapshot"]["sha256"] != new_sha
        assert record["model"]["version"] == "1"
    assert not graph.materialized("promotion", f"{MODEL}.v2|{SNAPSHOT}")
    assert "eval_assets.verdict" not in graph.registry.get_version(MODEL, "2").tags


def test_ingesting_a_republished_id_again_is_refused_naming_both_hashes(graph: Graph):
    ingested = file_digest(Path(graph.snapshots.root) / DATASET / SNAPSHOT / "data.parquet")
    new_sha = _republish(graph, SNAPSHOT, golden_frame(rows=ROWS, seed=12))

    result = graph.run("snapshot_job", SNAPSHOT)

    assert not result.success
    text = failure_text(result)
    assert ingested[:12] in text and new_sha[:12] in text and "immutable" in text, text
    # The copy evaluations read is still the one first ingested.
    copy = Path(graph.store.root) / MODEL / "data_snapshot" / f"{SNAPSHOT}.parquet"
    assert file_digest(copy) == ingested


def test_an_altered_ingested_copy_is_detected_before_anything_is_recorded(graph: Graph):
    copy = Path(graph.store.root) / MODEL / "data_snapshot" / f"{SNAPSHOT}.parquet"
    golden_frame(rows=ROWS, seed=13).to_parquet(copy, index=False)

    result = graph.evaluate("2", SNAPSHOT)

    assert not result.success
    assert "does not match" in failure_text(result) or "re-published" in failure_text(result)
    assert_nothing_downstream(graph, "2", SNAPSHOT)


def test_a_zero_byte_snapshot_is_refused_naming_the_file(graph: Graph):
    folder = Path(graph.snapshots.root) / DATASET / "empty-file"
    folder.mkdir(parents=True)
    (folder / "data.parquet").write_bytes(b"")
    with pytest.raises(ValueError, match=r"data\.parquet.*(empty|0 bytes|not a Parquet)"):
        graph.snapshots.publish_file(DATASET, "empty-file", folder / "data.parquet")

    # Published by hand with a manifest anyway: ingestion names the file, not pyarrow's words.
    manifest = {
        "dataset": DATASET,
        "snapshot_id": "empty-file",
        "sha256": file_digest(folder / "data.parquet"),
        "rows": 0,
        "created_at": "2026-12-08T00:00:00+00:00",
    }
    (folder / "manifest.json").write_text(json.dumps(manifest))
    graph.instance.add_dynamic_partitions(snapshot_partitions(DATASET).name, ["empty-file"])
    result = graph.run("snapshot_job", "empty-file")
    assert not result.success
    assert failed_steps(result) == {f"{MODEL}__data_snapshot"}
    assert str(folder / "data.parquet") in failure_text(result), failure_text(result)


def test_a_one_class_snapshot_is_refused_as_a_golden_snapshot(graph: Graph):
    frame = golden_frame(rows=2000)
    frame["is_fraud"] = 0
    result = graph.publish("no-fraud", frame)

    assert not result.success
    text = failure_text(result)
    assert "'is_fraud'" in text and "only" in text and "class" in text, text
    assert not graph.materialized("data_snapshot", "no-fraud")


def _tick(g: Graph, sensor: str):
    with build_sensor_context(
        instance=g.instance, definitions=g.defs, sensor_name=sensor, resources=g.defs.resources
    ) as context:
        return g.defs.resolve_sensor_def(sensor)(context)


def test_the_sensors_say_a_republished_snapshot_is_not_evaluated_on_and_request_nothing(
    graph: Graph,
):
    new_sha = _republish(graph, SNAPSHOT, golden_frame(rows=ROWS // 2, seed=99))

    for sensor in (f"{MODEL}_registry_sensor", f"{MODEL}_snapshot_sensor"):
        result = _tick(graph, sensor)
        assert not [r for r in result.run_requests if "|" in str(r.partition_key)], sensor
        reason = result.skip_reason.skip_message
        assert "re-published" in reason and new_sha[:12] in reason, reason


def test_the_sensors_say_a_refused_snapshot_is_not_evaluated_on(graph: Graph):
    for version in ("1", "2"):  # nothing else left to request: the tick says why it skips
        assert graph.evaluate(version, SNAPSHOT).success
    frame = golden_frame(rows=2000)
    frame["is_fraud"] = 0
    assert not graph.publish("no-fraud", frame).success

    result = _tick(graph, f"{MODEL}_registry_sensor")

    assert not result.run_requests
    assert "no-fraud not ingested" in result.skip_reason.skip_message
