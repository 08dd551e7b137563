"""A snapshot larger than the contract's max_rows is refused before it is read, with a message
that names the file and the limit: memory stays bounded by the contract, never by luck."""

from __future__ import annotations

import uuid

import yaml
from dagster import DagsterInstance

from eval_assets.definitions import Settings, build_definitions
from eval_assets.partitions import snapshot_partitions
from eval_assets.resources.snapshots import LocalSnapshotStore
from eval_assets.resources.storage import LocalEvaluationStore, OpenFormatIOManager
from eval_assets_tests.support.factories import DATASET, MODEL, golden_frame, write_criteria
from eval_assets_tests.support.fakes import FakeModelRegistry


def test_a_snapshot_over_max_rows_is_refused_before_reading(tmp_path):
    path = write_criteria(tmp_path / "criteria")
    data = yaml.safe_load(path.read_text())
    data["dataset"]["max_rows"] = 100
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    snapshots = LocalSnapshotStore(root=str(tmp_path / "snapshots"))
    store = LocalEvaluationStore(root=str(tmp_path / "outputs"))
    defs = build_definitions(
        Settings.from_env(
            {
                "EVAL_ASSETS_STATE": str(tmp_path / "state"),
                "EVAL_ASSETS_CRITERIA_DIR": str(path.parent),
            }
        ),
        {
            "model_registry": FakeModelRegistry(namespace=uuid.uuid4().hex),
            "snapshot_store": snapshots,
            "evaluation_store": store,
            "io_manager": OpenFormatIOManager(store=store),
        },
    )
    snapshots.publish(DATASET, "big-001", golden_frame(rows=500))
    instance = DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(snapshot_partitions(DATASET).name, ["big-001"])

    result = defs.resolve_job_def(f"{MODEL}_snapshot_job").execute_in_process(
        partition_key="big-001", instance=instance, raise_on_error=False
    )

    assert not result.success
    (failure,) = [e for e in result.all_events if e.is_step_failure]
    message = failure.step_failure_data.error.message
    assert "big-001/data.parquet" in message and "500 rows" in message and "max_rows" in message
    assert not (tmp_path / "outputs" / MODEL / "data_snapshot").exists()
