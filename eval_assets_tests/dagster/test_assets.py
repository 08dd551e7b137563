"""The asset graph with fake services: gates block promotion, the champion moves only on a full
pass, every gate emits a check result, and the champion's predictions are computed once."""

from __future__ import annotations

import uuid
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from dagster import AssetKey, DagsterInstance

from eval_assets.core.pipeline.prediction_files import row_ids_digest
from eval_assets.definitions import Settings, build_definitions
from eval_assets.partitions import model_version_partitions, pair_key, snapshot_partitions
from eval_assets.resources.snapshots import LocalSnapshotStore
from eval_assets.resources.storage import LocalEvaluationStore, OpenFormatIOManager
from eval_assets_tests.support.factories import (
    DATASET,
    MODEL,
    golden_frame,
    save_mlflow_model,
    train,
    write_criteria,
)
from eval_assets_tests.support.fakes import FakeModelRegistry, RecordingNotifier

SNAPSHOT = "snap-001"


class World:
    """Definitions over fakes, an ephemeral instance, and helpers to run the jobs."""

    def __init__(self, tmp: Path, models: dict[str, object]):
        self.registry = FakeModelRegistry(namespace=uuid.uuid4().hex)
        self.snapshots = LocalSnapshotStore(root=str(tmp / "snapshots"))
        self.store = LocalEvaluationStore(root=str(tmp / "outputs"))
        RecordingNotifier.sent.clear()
        settings = Settings.from_env(
            {
                "EVAL_ASSETS_STATE": str(tmp / "state"),
                "EVAL_ASSETS_CRITERIA_DIR": str(write_criteria(tmp / "criteria").parent),
            }
        )
        self.defs = build_definitions(
            settings,
            {
                "model_registry": self.registry,
                "snapshot_store": self.snapshots,
                "evaluation_store": self.store,
                "io_manager": OpenFormatIOManager(store=self.store),
                "notifier": RecordingNotifier(),
            },
        )
        self.instance = DagsterInstance.ephemeral()
        self.snapshots.publish(DATASET, SNAPSHOT, golden_frame())
        self.instance.add_dynamic_partitions(snapshot_partitions(DATASET).name, [SNAPSHOT])
        assert self.run(f"{MODEL}_snapshot_job", SNAPSHOT).success
        for name, model in models.items():
            info = self.registry.register(MODEL, save_mlflow_model(model, tmp / "models" / name))
            key = f"{MODEL}.v{info.version}"
            self.instance.add_dynamic_partitions(model_version_partitions(MODEL).name, [key])
            assert self.run(f"{MODEL}_model_version_job", key).success

    def run(self, job: str, partition: str):
        return self.defs.resolve_job_def(job).execute_in_process(
            partition_key=partition, instance=self.instance, raise_on_error=False
        )

    def evaluate(self, version: int):
        return self.run(f"{MODEL}_evaluation_job", pair_key(f"{MODEL}.v{version}", SNAPSHOT))

    def materialized(self, asset: str, version: int) -> bool:
        done = self.instance.get_materialized_partitions(AssetKey([MODEL, asset]))
        return f"{MODEL}.v{version}|{SNAPSHOT}" in done

    def checks(self, result) -> dict[str, bool]:
        return {e.check_name: e.passed for e in result.get_asset_check_evaluations()}


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    return World(
        tmp_path_factory.mktemp("world"),
        {
            "v1": train("weak"),
            "v2": train("good"),
            "v3": train("bad"),
            "v4": train("good", seed=9),
            "v5": train("good", seed=13),
        },
    )


GATES = {
    "overall_roc_auc_floor",
    "key_slice_roc_auc_vs_champion",
    "age_band_equalized_odds",
    "key_slice_support",
}


def test_first_version_without_champion_is_judged_on_absolute_gates_and_promoted(world: World):
    result = world.evaluate(1)
    assert result.success
    checks = world.checks(result)
    assert set(checks) == GATES and all(checks.values())
    assert world.materialized("promotion", 1)
    assert world.registry.champion(MODEL).version == "1"
    tags = world.registry.get_version(MODEL, "1").tags
    assert tags["eval_assets.verdict"] == "passed" and len(tags["eval_assets.evaluation_key"]) == 64


def test_better_candidate_passes_every_gate_and_moves_the_alias(world: World):
    result = world.evaluate(2)
    assert result.success, world.checks(result)
    assert all(world.checks(result).values())
    assert world.registry.champion(MODEL).version == "2"
    verdict = world.store.read_json(f"{MODEL}/gate_verdict/{MODEL}.v2/{SNAPSHOT}.json")
    assert verdict["champion_version"] == "1"
    assert verdict["champion_partition"] == f"{MODEL}.v1|{SNAPSHOT}"


def test_failing_gate_blocks_promotion_and_alerts(world: World):
    result = world.evaluate(3)
    assert not result.success  # a failed blocking check fails the run
    checks = world.checks(result)
    assert set(checks) == GATES
    assert checks["overall_roc_auc_floor"] is False
    assert checks["key_slice_roc_auc_vs_champion"] is False
    assert world.materialized("gate_verdict", 3)
    assert not world.materialized("promotion", 3)
    assert world.registry.champion(MODEL).version == "2"
    alerts = [a for a in RecordingNotifier.sent if a["event"] == "gate_failed"]
    assert alerts and alerts[-1]["version"] == "3"
    assert "overall_roc_auc_floor" in alerts[-1]["summary"] or "roc_auc" in alerts[-1]["summary"]


def test_check_metadata_carries_the_numbers(world: World):
    result = world.evaluate(3)
    evaluation = next(
        e
        for e in result.get_asset_check_evaluations()
        if e.check_name == "key_slice_roc_auc_vs_champion"
    )
    assert evaluation.partition == f"{MODEL}.v3|{SNAPSHOT}"  # each pair keeps its own result
    metadata = {k: v.value for k, v in evaluation.metadata.items()}
    for key in (
        "slice",
        "metric",
        "candidate",
        "champion",
        "change",
        "interval",
        "threshold",
        "support",
        "outcome",
    ):
        assert key in metadata, key
    assert metadata["outcome"] == "fail"
    assert metadata["champion"] > metadata["candidate"]


def test_rerun_of_the_same_evaluation_reuses_its_tracking_run(world: World):
    runs_before = dict(world.registry.state.runs)
    world.evaluate(3)  # still compared with v2: the same evaluation
    assert world.registry.state.runs.keys() == runs_before.keys()


def test_champion_predictions_are_computed_in_the_run_once_then_reused(world: World):
    # v5 becomes champion by hand, never evaluated on this snapshot: the next evaluation computes
    # its predictions in the same run, and later candidates reuse them.
    key = AssetKey([MODEL, "predictions"])
    partition = f"{MODEL}.v5|{SNAPSHOT}"

    def champion_materializations() -> int:
        records = world.instance.fetch_materializations(key, limit=1000).records
        return sum(r.partition_key == partition for r in records)

    moved, _ = world.registry.move_champion(MODEL, "5", expected="2")
    assert moved and champion_materializations() == 0
    world.evaluate(3)  # blocked: v5 stays champion
    assert champion_materializations() == 1
    world.evaluate(1)  # blocked too, against the same stored champion predictions
    assert champion_materializations() == 1
    assert world.registry.champion(MODEL).version == "5"
    verdict = world.store.read_json(f"{MODEL}/gate_verdict/{MODEL}.v1/{SNAPSHOT}.json")
    assert verdict["champion_partition"] == partition


def test_predictions_files_of_one_snapshot_carry_the_same_ids_digest(world: World):
    # The gate compares the two files' row order by these footers instead of reading the ids.
    digests = []
    for version in (1, 2):
        path = f"{MODEL}/predictions/{MODEL}.v{version}/{SNAPSHOT}.parquet"
        with world.store.local_file(path) as local:
            assert local is not None, path
            digests.append(row_ids_digest(local))
    assert digests[0] is not None and digests[0] == digests[1]


def test_predictions_files_dictionary_encode_keys_but_not_ids_or_floats(world: World):
    # A dictionary tried on nearly unique values is built page by page and dropped: it made
    # writing the file 40% slower at 1M rows. Text keys and labels keep theirs (a few bytes a row).
    if not world.materialized("predictions", 1):  # run alone
        assert world.evaluate(1).success
    path = f"{MODEL}/predictions/{MODEL}.v1/{SNAPSHOT}.parquet"
    with world.store.local_file(path) as local:
        assert local is not None, path
        metadata = pq.ParquetFile(local).metadata
    group = metadata.row_group(0)
    encodings = {
        group.column(i).path_in_schema: set(group.column(i).encodings)
        for i in range(group.num_columns)
    }
    dictionary = {"PLAIN_DICTIONARY", "RLE_DICTIONARY"}
    for column in ("row_id", "score", "amount"):
        assert not encodings[column] & dictionary, (column, encodings[column])
    for column in ("label", "country", "merchant_category", "customer_age_band"):
        assert encodings[column] & dictionary, (column, encodings[column])


def test_blocked_evaluation_still_gets_its_report_and_a_write_once_audit_record(world: World):
    import json

    import jsonschema

    from eval_assets.core.audit import audit_json_schema

    assert world.materialized("evaluation_report", 3)
    folder = Path(world.store.root) / MODEL / "evaluation_report" / f"{MODEL}.v3" / SNAPSHOT
    html = (folder / "report.html").read_text()
    assert "key_slice_roc_auc_vs_champion" in html and "http://" not in html
    assert (folder / "gate_changes.png").read_bytes().startswith(b"\x89PNG")
    verdict = world.store.read_json(f"{MODEL}/gate_verdict/{MODEL}.v3/{SNAPSHOT}.json")
    audit_path = Path(world.store.root) / MODEL / "audit" / f"{verdict['evaluation_key']}.json"
    record = json.loads(audit_path.read_text())
    jsonschema.validate(record, audit_json_schema())
    assert record["passed"] is False and record["promotion"]["decision"] == "blocked"
    assert record["snapshot"]["sha256"] == verdict["snapshot_sha256"]
    before = audit_path.read_bytes()
    world.evaluate(3)
    assert audit_path.read_bytes() == before


# --- slice names as MLflow metric names ----------------------------------------------------------


def test_every_slice_value_gives_a_distinct_metric_name_that_mlflow_accepts():
    """A slice name holds a data value, and MLflow refuses a metric name that is too long or
    resolves as a path (``a/../b``, ``a//b``): logging the evaluation failed. Two values that
    clean to the same name (``a|b``, ``a_b``) logged into one metric, the second overwriting."""
    from types import SimpleNamespace

    import pandas as pd
    from mlflow.utils.validation import _validate_metric_name

    from eval_assets.assets.metadata import flat_metrics
    from eval_assets.core.vocabulary import METRIC_NAMES, ModelMetrics

    values = ["US", "a|b", "a_b", "x/../y", "x//y", "trail/", "..", "$x^{$", "w" * 400, "w" * 401]
    names = ["overall", *(f"country={v}" for v in values)]
    table = pd.DataFrame(0.5, index=names, columns=list(METRIC_NAMES))
    disparities = pd.DataFrame(columns=["attribute", "metric", "value"])
    result = SimpleNamespace(candidate=ModelMetrics(table, pd.DataFrame(), disparities))

    metrics = flat_metrics(result)

    assert len(metrics) == len(names) * len(METRIC_NAMES)  # none overwritten
    for key in metrics:
        _validate_metric_name(key)
        assert len(key) <= 250, key
    # Ordinary names are unchanged.
    assert "roc_auc.overall" in metrics and "roc_auc.country_US" in metrics
