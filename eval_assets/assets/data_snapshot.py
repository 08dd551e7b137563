"""`data_snapshot`: one golden snapshot, validated against the contract and copied as published."""

import tempfile
from pathlib import Path

import pyarrow.parquet as pq
from dagster import (
    AssetExecutionContext,
    AssetKey,
    AssetsDefinition,
    DataVersion,
    Failure,
    MaterializeResult,
    asset,
)

from eval_assets.assets.common import asset_args
from eval_assets.assets.metadata import schema_metadata
from eval_assets.assets.recorded import ingested_sha256, republished
from eval_assets.core.contract import require_both_classes
from eval_assets.core.criteria import Criteria
from eval_assets.core.pipeline.dataset import streamed_dataset
from eval_assets.partitions import snapshot_partitions
from eval_assets.resources.snapshots import DATA_FILE, SnapshotStore, parquet_rows
from eval_assets.resources.storage import EvaluationStore


def build_data_snapshot(criteria: Criteria, code_version: str) -> AssetsDefinition:
    """The model's `data_snapshot` asset, partitioned by the snapshots of its dataset."""
    model, dataset = criteria.model, criteria.dataset.name

    @asset(
        name="data_snapshot",
        **asset_args(model, code_version),
        partitions_def=snapshot_partitions(dataset),
        description="The validated golden rows of one snapshot, with content hash, rows, schema.",
        owners=["team:ml-platform"],
    )
    def data_snapshot(
        context: AssetExecutionContext,
        snapshot_store: SnapshotStore,
        evaluation_store: EvaluationStore,
    ) -> MaterializeResult:
        snapshot_id = context.partition_key
        ingested = ingested_sha256(
            context.instance, AssetKey([model, "data_snapshot"]), snapshot_id
        )
        with tempfile.TemporaryDirectory() as folder:
            info, path = snapshot_store.fetch(dataset, snapshot_id, Path(folder))
            if ingested is not None and ingested != info.sha256:
                raise Failure(republished(info, ingested))
            # Name the data file itself, so the error points at what to fix.
            data_file = f"{info.location}/{DATA_FILE}"
            rows = parquet_rows(path, data_file)
            if rows > criteria.dataset.max_rows:
                raise Failure(
                    f"{data_file}: {rows:,} rows is more than the contract's "
                    f"dataset.max_rows ({criteria.dataset.max_rows:,}); refused before reading. "
                    "Split the snapshot or raise max_rows if the machine has the memory."
                )
            # Validated batch by batch, as the command-line tool validates its input: memory does
            # not grow with the snapshot.
            scratch = Path(folder) / "scratch"
            scratch.mkdir()
            with streamed_dataset(path, criteria.dataset, scratch, source=data_file) as data:
                require_both_classes(data.rows, data.positives, criteria.dataset, data_file)
            schema = pq.read_schema(path)
            # The published bytes themselves, not a re-encoding: what every evaluation reads then
            # hashes to the manifest's SHA-256, which is what its verdict records.
            stored = evaluation_store.snapshot_copy(model, snapshot_id)
            location = evaluation_store.write_file(stored, path)
        return MaterializeResult(
            data_version=DataVersion(info.sha256),
            metadata={
                "sha256": info.sha256,
                "rows": rows,
                "positives": data.positives,
                "location": info.location,
                "created_at": info.created_at,
                "stored_at": location,
                "dagster/column_schema": schema_metadata(schema),
            },
        )

    return data_snapshot
