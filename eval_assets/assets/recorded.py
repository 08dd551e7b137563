"""What earlier materializations recorded on the Dagster instance, and the snapshot they name.

An evaluation reads the snapshot bytes its inputs were made from, never whatever the store holds
now: these look the recorded SHA-256 up and refuse a snapshot re-published with other content.
"""

from dagster import AssetKey, AssetRecordsFilter, DagsterInstance, Failure

from eval_assets.resources.snapshots import SnapshotInfo, SnapshotStore


def recorded_metadata(instance: DagsterInstance, asset_key: AssetKey, partition: str) -> dict:
    """The latest materialization's metadata values of one partition (empty when there is none)."""
    found = instance.fetch_materializations(
        AssetRecordsFilter(asset_key=asset_key, asset_partitions=[partition]), limit=1
    ).records
    if not found or found[0].asset_materialization is None:
        return {}
    return {k: v.value for k, v in found[0].asset_materialization.metadata.items()}


def ingested_sha256(instance: DagsterInstance, asset_key: AssetKey, snapshot_id: str) -> str | None:
    """The SHA-256 a snapshot had when its `data_snapshot` partition was last materialized."""
    return recorded_metadata(instance, asset_key, snapshot_id).get("sha256")


def republished(info: SnapshotInfo, ingested: str) -> str:
    """Why a snapshot whose bytes changed since they were ingested is refused."""
    return (
        f"snapshot {info.snapshot_id} of {info.dataset} was re-published with other content: "
        f"ingested as SHA-256 {ingested[:12]}..., the store now holds {info.sha256[:12]}... "
        f"({info.location}). Snapshots are immutable: publish new content under a new snapshot "
        "id. Nothing is evaluated or promoted on it."
    )


def current_snapshot(
    store: SnapshotStore, dataset: str, snapshot_id: str, recorded: str | None, by: str
) -> SnapshotInfo:
    """The snapshot's manifest, when it still names the bytes `by` (an asset partition) recorded
    as ingested or scored."""
    info = store.manifest(dataset, snapshot_id)
    if recorded is None:
        raise Failure(
            f"snapshot {snapshot_id} of {dataset}: {by} is not materialized, so nothing records "
            "which bytes to evaluate; materialize it first"
        )
    if recorded != info.sha256:
        raise Failure(republished(info, recorded))
    return info
