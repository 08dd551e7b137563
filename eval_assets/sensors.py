"""Sensors on the model registry and the snapshot store, one pair per registered model.

Work moves in two steps, because Dagster runs one partitions definition per job: a new version or
snapshot is first ingested (`model_version` / `data_snapshot`), then its evaluation is requested
with the evaluation key as run key, so each (artifact, snapshot, criteria, evaluator) is
evaluated once however often the sensor ticks.
"""

from typing import Any

from dagster import (
    AddDynamicPartitionsRequest,
    AssetKey,
    DagsterRunStatus,
    DefaultSensorStatus,
    RunRequest,
    RunsFilter,
    SensorEvaluationContext,
    SensorResult,
    sensor,
)

from eval_assets.assets.model_version import DIGEST_TAG
from eval_assets.core.criteria import Criteria
from eval_assets.core.digests import evaluation_key
from eval_assets.partitions import (
    MODEL_DIM,
    model_version_partitions,
    pair_key,
    snapshot_partitions,
    split_pair_key,
    version_key,
)
from eval_assets.resources.registry import ModelRegistry, VersionInfo
from eval_assets.resources.snapshots import SnapshotInfo, SnapshotStore

SENSOR_INTERVAL_SECONDS = 10
IN_FLIGHT = [
    DagsterRunStatus.QUEUED,
    DagsterRunStatus.NOT_STARTED,
    DagsterRunStatus.STARTING,
    DagsterRunStatus.STARTED,
]
Job = Any  # a job definition, resolved or not


def build_registry_sensor(
    criteria: Criteria, ingest_job: Job, evaluate_job: Job, interval: int = SENSOR_INTERVAL_SECONDS
):
    """Registry sensor: new READY versions are ingested, then evaluated on the latest snapshot."""
    model = criteria.model
    versions_def = model_version_partitions(model)

    @sensor(
        name=f"{model}_registry_sensor",
        jobs=[ingest_job, evaluate_job],
        minimum_interval_seconds=interval,
        default_status=DefaultSensorStatus.RUNNING,
        description=f"Evaluates each new version of {model} on the latest snapshot.",
    )
    def registry_sensor(
        context: SensorEvaluationContext,
        model_registry: ModelRegistry,
        snapshot_store: SnapshotStore,
    ) -> SensorResult:
        # The cursor is the highest version number handed to ingestion. What is still to be
        # evaluated is read from the instance (versions without any gate_verdict), so nothing
        # depends on a cursor surviving, and an unreachable registry raises here: the tick fails,
        # the cursor stays, and the next tick catches up.
        seen = int(context.cursor or 0)
        model_registry.check_available()
        versions = model_registry.list_versions(model)
        known = set(context.instance.get_dynamic_partitions(versions_def.name))
        notes: list[str] = []
        new: list[VersionInfo] = []
        for info in versions:
            if version_key(model, info.version) in known:
                continue
            if not info.ready:
                notes.append(f"v{info.version} is {info.status}: waiting for READY")
                continue
            new.append(info)
        keys = [version_key(model, v.version) for v in new]
        requests = [
            RunRequest(
                job_name=ingest_job.name,
                partition_key=k,
                run_key=f"ingest:{k}",
                tags={"eval_assets/trigger": "registry_sensor"},
            )
            for k in keys
        ]
        if new:
            notes.append(f"new version(s) {', '.join('v' + v.version for v in new)}: ingesting")
            seen = max([seen, *(int(v.version) for v in new)])

        snapshot = _latest_ingested_snapshot(context, criteria, snapshot_store)
        evaluated = {
            split_pair_key(key)[0]
            for key in context.instance.get_materialized_partitions(
                AssetKey([model, "gate_verdict"])
            )
        }
        # A version whose evaluation is queued or running is not evaluated yet, but must not be
        # requested again: if a newer snapshot was ingested meanwhile, that would be a second
        # evaluation (another run key) of the same version.
        in_flight = {
            run.tags.get(f"dagster/partition/{MODEL_DIM}")
            for run in context.instance.get_runs(
                RunsFilter(job_name=evaluate_job.name, statuses=IN_FLIGHT)
            )
        }
        for info in versions:
            partition = version_key(model, info.version)
            if partition not in known or partition in evaluated:
                continue
            if partition in in_flight:
                notes.append(f"v{info.version}: evaluation in progress")
                continue
            digest = info.tags.get(DIGEST_TAG)
            if snapshot is None or digest is None:
                reason = (
                    "no ingested snapshot yet" if snapshot is None else "ingestion not finished"
                )
                notes.append(f"v{info.version} waiting: {reason}")
                continue
            requests.append(
                _evaluation_request(
                    criteria, evaluate_job, info.version, digest, snapshot, "registry_sensor"
                )
            )
            notes.append(f"v{info.version}: evaluation requested on {snapshot.snapshot_id}")
        for note in notes:
            context.log.info(note)
        return SensorResult(
            run_requests=requests,
            dynamic_partitions_requests=(
                [AddDynamicPartitionsRequest(versions_def.name, keys)] if keys else []
            ),
            cursor=str(seen),
            skip_reason=None if requests else ("; ".join(notes) or f"no new version of {model}"),
        )

    return registry_sensor


def build_snapshot_sensor(
    criteria: Criteria, ingest_job: Job, evaluate_job: Job, interval: int = SENSOR_INTERVAL_SECONDS
):
    """Snapshot sensor: complete new snapshots are ingested, then the champion evaluated on them."""
    model, dataset = criteria.model, criteria.dataset.name
    snapshots_def = snapshot_partitions(dataset)

    @sensor(
        name=f"{model}_snapshot_sensor",
        jobs=[ingest_job, evaluate_job],
        minimum_interval_seconds=interval,
        default_status=DefaultSensorStatus.RUNNING,
        description=f"Ingests each complete {dataset} snapshot; re-evaluates the champion on it.",
    )
    def snapshot_sensor(
        context: SensorEvaluationContext,
        model_registry: ModelRegistry,
        snapshot_store: SnapshotStore,
    ) -> SensorResult:
        # Only snapshots whose manifest exists are listed: a half-upload is invisible here.
        model_registry.check_available()
        snapshots = snapshot_store.list_snapshots(dataset)
        known = set(context.instance.get_dynamic_partitions(snapshots_def.name))
        new = [s for s in snapshots if s.snapshot_id not in known]
        requests = [
            RunRequest(
                job_name=ingest_job.name,
                partition_key=s.snapshot_id,
                run_key=f"ingest:{s.snapshot_id}:{s.sha256}",
                tags={"eval_assets/trigger": "snapshot_sensor"},
            )
            for s in new
        ]
        notes = [f"new snapshot {s.snapshot_id} ({s.rows} rows): ingesting" for s in new]
        latest = _latest_ingested_snapshot(context, criteria, snapshot_store, snapshots)
        champion = model_registry.champion(model)
        evaluated = context.instance.get_materialized_partitions(AssetKey([model, "gate_verdict"]))
        if latest is not None and champion is not None:
            digest = champion.tags.get(DIGEST_TAG)
            pair = pair_key(version_key(model, champion.version), latest.snapshot_id)
            if pair in evaluated:
                notes.append(
                    f"champion v{champion.version} already evaluated on {latest.snapshot_id}"
                )
            elif digest:
                requests.append(
                    _evaluation_request(
                        criteria, evaluate_job, champion.version, digest, latest, "snapshot_sensor"
                    )
                )
                notes.append(f"champion v{champion.version} evaluated on {latest.snapshot_id}")
            else:
                notes.append(f"champion v{champion.version} has no pinned digest yet")
        elif champion is None:
            notes.append(f"{model} has no champion yet")
        for note in notes:
            context.log.info(note)
        return SensorResult(
            run_requests=requests,
            dynamic_partitions_requests=[
                AddDynamicPartitionsRequest(snapshots_def.name, [s.snapshot_id for s in new])
            ]
            if new
            else [],
            skip_reason=None if requests else ("; ".join(notes) or "no new snapshot"),
        )

    return snapshot_sensor


def _latest_ingested_snapshot(
    context: SensorEvaluationContext,
    criteria: Criteria,
    store: SnapshotStore,
    snapshots: list[SnapshotInfo] | None = None,
) -> SnapshotInfo | None:
    """The newest complete snapshot whose `data_snapshot` partition is materialized."""
    snapshots = snapshots if snapshots is not None else store.list_snapshots(criteria.dataset.name)
    done = context.instance.get_materialized_partitions(AssetKey([criteria.model, "data_snapshot"]))
    ingested = [s for s in snapshots if s.snapshot_id in done]
    return ingested[-1] if ingested else None


def _evaluation_request(
    criteria: Criteria,
    job: Job,
    version: str,
    digest: str,
    snapshot: SnapshotInfo,
    trigger: str,
) -> RunRequest:
    key = evaluation_key(digest, snapshot.sha256, criteria.digest())
    return RunRequest(
        job_name=job.name,
        partition_key=pair_key(version_key(criteria.model, version), snapshot.snapshot_id),
        run_key=key,
        tags={"eval_assets/evaluation_key": key, "eval_assets/trigger": trigger},
    )
