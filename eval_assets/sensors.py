"""Sensors on the model registry and the snapshot store, and one that labels finished runs.

Work moves in two steps, because Dagster runs one partitions definition per job: a new version or
snapshot is first ingested (`model_version` / `data_snapshot`), then its evaluation is requested.
Its run key is the pair partition plus the evaluation key (artifact, snapshot, criteria, evaluator,
champion compared against), so each version gets its own run even when its bytes equal another
version's, and a key is launched once however often the sensor ticks.

Every version ends in a recorded outcome, tagged on its runs (`eval_assets/outcome`):

- `promoted`, `passed` (every gate passed, the alias did not move to it), `blocked` (a blocking
  gate failed), `refused` (the run stopped on purpose: loading policy, digest, contract),
  `timed_out` (stopped by run monitoring past `dagster/max_runtime`), `canceled`, and `error`
  (anything else: an outage, a crash);
- an `error` is retried, a bounded number of times, by the sensor that launched it (see
  `_next_attempt` for why not by Dagster's run retries);
- a candidate that passed against a champion that has since been replaced, so that its promotion
  did not move the alias, is evaluated again against the new champion (see `_stale_comparisons`).
"""

from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

from dagster import (
    AddDynamicPartitionsRequest,
    AssetKey,
    DagsterEventType,
    DagsterInstance,
    DagsterRun,
    DagsterRunStatus,
    DefaultSensorStatus,
    RunRequest,
    RunsFilter,
    SensorEvaluationContext,
    SensorResult,
    sensor,
)

from eval_assets.assets.model_version import DIGEST_TAG
from eval_assets.assets.recorded import ingested_sha256, republished
from eval_assets.core.criteria import Criteria
from eval_assets.core.digests import evaluation_key
from eval_assets.partitions import (
    MODEL_DIM,
    model_version_partitions,
    pair_key,
    parse_version_key,
    snapshot_partitions,
    split_pair_key,
    version_key,
)
from eval_assets.resources.registry import ModelRegistry, VersionInfo
from eval_assets.resources.snapshots import SnapshotInfo, SnapshotStore

SENSOR_INTERVAL_SECONDS = 10
# Run tags. The model tag is the key of the per-model concurrency limit in dagster.yaml.
MODEL_TAG = "eval_assets/model"
MAX_RUNTIME_TAG = "dagster/max_runtime"
KEY_TAG = "eval_assets/evaluation_key"
ATTEMPT_TAG = "eval_assets/attempt"
OUTCOME_TAG = "eval_assets/outcome"
# Written by gate_verdict on its own run: "passed" or "blocked".
VERDICT_TAG = "eval_assets/verdict"
PARTITION_TAG = "dagster/partition"
# Attempts per (version, snapshot, evaluation key), the first one included.
MAX_ATTEMPTS = 3
RETRYABLE = "error"
FINISHED = [DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE, DagsterRunStatus.CANCELED]
# How far back the outcome sensor looks again: run records are committed a little out of order.
OUTCOME_LOOKBACK = timedelta(minutes=2)
# Runs read per tick; a version's history older than that is not consulted.
RUN_HISTORY = 1000
# Failure texts of an outage or a crash of a service, not of the input: worth another attempt.
TRANSIENT = (
    "RegistryUnavailable",
    "is unavailable",
    "Connection refused",
    "ConnectionError",
    "Max retries",
    "timed out",
    "TimeoutError",
    "EndpointConnectionError",
    "No space left",
)
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
        # evaluated is read from the instance (versions without an outcome), so nothing depends
        # on a cursor surviving, and an unreachable registry raises here: the tick fails, the
        # cursor stays, no retry is spent while MLflow is down, and the next tick catches up.
        seen = int(context.cursor or 0)
        model_registry.check_available()
        versions = model_registry.list_versions(model)
        champion = model_registry.champion(model)
        instance = context.instance
        known = set(instance.get_dynamic_partitions(versions_def.name))
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

        snapshot = _latest_ingested_snapshot(context, criteria, snapshot_store, notes)
        evaluated = {
            split_pair_key(key)[0]
            for key in instance.get_materialized_partitions(AssetKey([model, "gate_verdict"]))
        }
        runs = _runs_by_version(instance, evaluate_job.name)
        ingest_runs = _runs_by_partition(instance, ingest_job.name)
        stale = _stale_comparisons(instance, model, champion)
        for info in versions:
            partition = version_key(model, info.version)
            if partition not in known:
                continue
            history = runs.get(partition, [])
            # A version whose evaluation is queued or running must not be requested again: if a
            # newer snapshot was ingested meanwhile, that would be a second evaluation of it.
            if any(r.status in IN_FLIGHT for r in history):
                notes.append(f"v{info.version}: evaluation in progress")
                continue
            finished = [r for r in history if r.status in FINISHED]
            last = _outcome(instance, finished[0], evaluate_job.name) if finished else None
            is_champion = champion is not None and champion.version == info.version
            if partition not in evaluated:
                if last not in (None, RETRYABLE):
                    # Refused, timed out or canceled: that is its recorded outcome.
                    notes.append(f"v{info.version}: {last}, not evaluated again")
                    continue
                why = "evaluation"
            elif last == RETRYABLE and not is_champion:
                why = "retry of a failed evaluation"  # e.g. MLflow lost after the verdict
            elif partition in stale and not is_champion:
                why = stale[partition]
            else:
                continue
            digest = info.tags.get(DIGEST_TAG)
            if snapshot is None or digest is None:
                if digest is None:
                    request, note = _ingest_retry(
                        ingest_job, evaluate_job, partition, ingest_runs, instance
                    )
                    if request is not None:
                        requests.append(request)
                    notes.append(f"v{info.version} waiting: {note}")
                else:
                    notes.append(f"v{info.version} waiting: no ingested snapshot yet")
                continue
            request, note = _evaluation_request(
                context, criteria, evaluate_job, info.version, digest, champion, snapshot, why
            )
            if request is not None:
                requests.append(request)
            notes.append(f"v{info.version}: {note}")
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
        latest = _latest_ingested_snapshot(context, criteria, snapshot_store, notes, snapshots)
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
                request, note = _evaluation_request(
                    context,
                    criteria,
                    evaluate_job,
                    champion.version,
                    digest,
                    champion,
                    latest,
                    "champion on a new snapshot",
                    trigger="snapshot_sensor",
                )
                if request is not None:
                    requests.append(request)
                notes.append(f"champion v{champion.version}: {note}")
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


def build_outcome_sensor(
    criteria: Criteria, evaluate_job: Job, interval: int = SENSOR_INTERVAL_SECONDS
):
    """Outcome sensor: tags each finished run of the model's jobs with `eval_assets/outcome`."""
    model = criteria.model

    @sensor(
        name=f"{model}_outcome_sensor",
        minimum_interval_seconds=interval,
        default_status=DefaultSensorStatus.RUNNING,
        description=f"Tags each finished run of {model}'s jobs with its outcome "
        "(promoted, passed, blocked, refused, timed_out, canceled, error).",
    )
    def outcome_sensor(context: SensorEvaluationContext) -> SensorResult:
        # Needs no registry: runs that failed during an MLflow outage are labelled meanwhile.
        # Runs that never finish (a killed worker) stay STARTED, visibly pending.
        since = datetime.fromtimestamp(float(context.cursor or 0), UTC) - OUTCOME_LOOKBACK
        records = context.instance.get_run_records(
            RunsFilter(tags={MODEL_TAG: model}, statuses=FINISHED, updated_after=since),
            limit=RUN_HISTORY,
        )
        counts: dict[str, int] = defaultdict(int)
        newest = float(context.cursor or 0)
        for record in records:
            newest = max(newest, record.update_timestamp.timestamp())
            if OUTCOME_TAG in record.dagster_run.tags:
                continue
            outcome = _outcome(context.instance, record.dagster_run, evaluate_job.name)
            context.instance.add_run_tags(record.dagster_run.run_id, {OUTCOME_TAG: outcome})
            counts[outcome] += 1
        tagged = ", ".join(f"{n} {outcome}" for outcome, n in sorted(counts.items()))
        return SensorResult(
            cursor=str(newest),
            skip_reason=f"tagged {tagged}" if counts else "no newly finished run",
        )

    return outcome_sensor


def run_outcome(instance: DagsterInstance, run: DagsterRun, evaluate_job: str) -> str:
    """What a finished run of a model's job came to (see the module docstring)."""
    if run.status == DagsterRunStatus.SUCCESS:
        if run.job_name != evaluate_job:
            return "ingested"
        return "promoted" if _promotion_moved(instance, run.run_id) else "passed"
    texts, refused = _failure_texts(instance, run.run_id)
    if any("maximum runtime" in t for t in texts):
        return "timed_out"
    if run.tags.get(VERDICT_TAG) == "blocked":
        return "blocked"
    if any(marker in t for t in texts for marker in TRANSIENT):
        return "error"
    if run.status == DagsterRunStatus.CANCELED:
        return "canceled"
    # A `Failure` is a deliberate stop that names its reason (policy, digest, contract): another
    # attempt would stop the same way. Anything else is a crash, worth another attempt.
    return "refused" if refused else "error"


def _outcome(instance: DagsterInstance, run: DagsterRun, evaluate_job: str) -> str:
    """The run's outcome tag, or its outcome read from its events when not tagged yet."""
    return run.tags.get(OUTCOME_TAG) or run_outcome(instance, run, evaluate_job)


def _promotion_moved(instance: DagsterInstance, run_id: str) -> bool:
    for entry in instance.all_logs(run_id, of_type=DagsterEventType.ASSET_MATERIALIZATION):
        materialization = entry.asset_materialization
        if materialization is not None and materialization.asset_key.path[-1] == "promotion":
            return _text(materialization.metadata.get("moved")) == "True"
    return False


def _failure_texts(instance: DagsterInstance, run_id: str) -> tuple[list[str], bool]:
    """Every failure message of a run with its causes, and whether a step raised `Failure`."""
    texts: list[str] = []
    refused = False
    kinds = {
        DagsterEventType.STEP_FAILURE,
        DagsterEventType.RUN_FAILURE,
        DagsterEventType.RUN_CANCELING,
        DagsterEventType.RUN_CANCELED,
        DagsterEventType.ENGINE_EVENT,
    }
    for entry in instance.all_logs(run_id, of_type=kinds):
        texts.append(entry.message or "")
        event = entry.dagster_event
        if event is None:
            continue
        texts.append(event.message or "")
        error = None
        if event.is_step_failure:
            data = event.step_failure_data
            refused = refused or data.user_failure_data is not None
            error = data.error
        elif getattr(event.event_specific_data, "error", None) is not None:
            error = event.event_specific_data.error
        while error is not None:
            texts.append(f"{error.cls_name}: {error.message}")
            error = error.cause
    return texts, refused


def _text(value: Any) -> str | None:
    return None if value is None else str(getattr(value, "value", value))


def _runs_by_version(instance: DagsterInstance, job_name: str) -> dict[str, list[DagsterRun]]:
    """The job's recent runs per model-version partition, newest first."""
    found: dict[str, list[DagsterRun]] = defaultdict(list)
    for run in instance.get_runs(RunsFilter(job_name=job_name), limit=RUN_HISTORY):
        version = run.tags.get(f"{PARTITION_TAG}/{MODEL_DIM}")
        if version:
            found[version].append(run)
    return found


def _runs_by_partition(instance: DagsterInstance, job_name: str) -> dict[str, list[DagsterRun]]:
    found: dict[str, list[DagsterRun]] = defaultdict(list)
    for run in instance.get_runs(RunsFilter(job_name=job_name), limit=RUN_HISTORY):
        if run.tags.get(PARTITION_TAG):
            found[run.tags[PARTITION_TAG]].append(run)
    return found


def _stale_comparisons(
    instance: DagsterInstance, model: str, champion: VersionInfo | None
) -> dict[str, str]:
    """Versions to compare again with the current champion, each with the reason.

    Only a candidate that passed every gate against a champion that has since been replaced, so
    that its promotion's compare-and-set did not move the alias: it may well beat the new
    champion too, and nothing else would ever evaluate it again. A blocked candidate stays
    blocked, and a version that was promoted once is never re-requested: re-judging former
    champions on every promotion could hand the alias back and forth. Each re-evaluation has a
    new key (the champion is in it), and ends promoted, blocked or stale again against a newer
    champion, so this converges.
    """
    if champion is None:
        return {}
    records = instance.fetch_materializations(AssetKey([model, "promotion"]), limit=RUN_HISTORY)
    latest: dict[str, tuple[str | None, str | None]] = {}
    promoted: set[str] = set()
    for record in records.records:  # newest first
        materialization = record.asset_materialization
        if materialization is None or not materialization.partition:
            continue
        version = split_pair_key(materialization.partition)[0]
        moved = _text(materialization.metadata.get("moved"))
        previous = _text(materialization.metadata.get("previous_champion"))
        if moved == "True":
            promoted.add(version)
        latest.setdefault(version, (moved, previous))
    current = champion.version
    return {
        version: f"passed against {'v' + previous if previous != 'None' else 'no champion'}, "
        f"but the champion is now v{current}: compared again"
        for version, (moved, previous) in latest.items()
        if moved == "False"
        and previous not in (current, None)
        # It was the champion itself when judged ("already the champion"): a former champion.
        and previous != parse_version_key(version)[1]
        and version not in promoted
    }


def _next_attempt(
    instance: DagsterInstance, job_name: str, partition: str, key: str
) -> tuple[int | None, str]:
    """The attempt number to request for (partition, key), or None and why not.

    Retries are requested here, by the sensor, not by Dagster's run retries: the daemon
    re-launches a failed run as soon as it sees the failure, with no delay, so an MLflow outage
    longer than a run's own client retries would use up every attempt while MLflow is still
    down; an op RetryPolicy with backoff holds the run (and the model's concurrency slot) for a
    bounded time. The sensor first checks the registry answers (`check_available`), so a retry
    is requested only once it does, however long the outage lasted, and the attempts are
    counted from the runs in the instance, so a daemon restart does not reset them.
    """
    runs = instance.get_runs(
        RunsFilter(job_name=job_name, tags={PARTITION_TAG: partition, KEY_TAG: key})
    )
    if not runs:
        return 1, "requested"
    if any(r.status in IN_FLIGHT for r in runs):
        return None, "in progress"
    outcome = _outcome(instance, runs[0], job_name)
    if outcome != RETRYABLE:
        return None, f"already evaluated ({outcome})"
    if len(runs) >= MAX_ATTEMPTS:
        return None, f"{RETRYABLE} after {len(runs)} attempts, not retried: see its runs"
    return len(runs) + 1, f"attempt {len(runs) + 1} of {MAX_ATTEMPTS} after an {RETRYABLE}"


def _ingest_retry(
    job: Job,
    evaluate_job: Job,
    partition: str,
    runs: dict[str, list[DagsterRun]],
    instance: DagsterInstance,
) -> tuple[RunRequest | None, str]:
    """Re-request a version's ingestion that failed with an error (MLflow lost mid-download)."""
    history = runs.get(partition, [])
    if not history or history[0].status not in FINISHED:
        return None, "ingestion not finished"
    outcome = _outcome(instance, history[0], evaluate_job.name)
    if outcome != RETRYABLE:
        return None, f"ingestion {outcome}"
    if len(history) >= MAX_ATTEMPTS:
        return None, f"ingestion {RETRYABLE} after {len(history)} attempts, not retried"
    attempt = len(history) + 1
    request = RunRequest(
        job_name=job.name,
        partition_key=partition,
        run_key=f"ingest:{partition}:attempt-{attempt}",
        tags={"eval_assets/trigger": "registry_sensor", ATTEMPT_TAG: str(attempt)},
    )
    return request, f"ingestion attempt {attempt} of {MAX_ATTEMPTS} after an {RETRYABLE}"


def _latest_ingested_snapshot(
    context: SensorEvaluationContext,
    criteria: Criteria,
    store: SnapshotStore,
    notes: list[str],
    snapshots: list[SnapshotInfo] | None = None,
) -> SnapshotInfo | None:
    """The newest complete snapshot whose `data_snapshot` partition is materialized, unless it
    was re-published with other content since (nothing is evaluated on it then). Snapshots not
    ingested (refused, or still running) and a re-published one are said in `notes`."""
    dataset = criteria.dataset.name
    snapshots = snapshots if snapshots is not None else store.list_snapshots(dataset)
    key = AssetKey([criteria.model, "data_snapshot"])
    done = context.instance.get_materialized_partitions(key)
    known = set(context.instance.get_dynamic_partitions(snapshot_partitions(dataset).name))
    pending = [s.snapshot_id for s in snapshots if s.snapshot_id in known - done]
    if pending:
        notes.append(
            f"snapshot(s) {', '.join(pending)} not ingested (refused, or still running: see "
            f"{criteria.model}_snapshot_job): not evaluated on"
        )
    ingested = [s for s in snapshots if s.snapshot_id in done]
    if not ingested:
        return None
    latest = ingested[-1]
    sha = ingested_sha256(context.instance, key, latest.snapshot_id)
    if sha is not None and sha != latest.sha256:
        notes.append(republished(latest, sha))
        return None
    return latest


def _evaluation_request(
    context: SensorEvaluationContext,
    criteria: Criteria,
    job: Job,
    version: str,
    digest: str,
    champion: VersionInfo | None,
    snapshot: SnapshotInfo,
    why: str,
    trigger: str = "registry_sensor",
) -> tuple[RunRequest | None, str]:
    """The evaluation of `version` on `snapshot` against the current champion, or why not."""
    champion_digest = None
    if champion is not None:
        # A champion set by hand and never ingested has no pinned digest: the run pins it (and
        # records the real key); this stand-in only keeps the run key stable until then.
        champion_digest = champion.tags.get(DIGEST_TAG) or f"unpinned:{champion.version}"
    key = evaluation_key(
        digest, snapshot.sha256, criteria.digest(), champion_digest=champion_digest
    )
    pair = str(pair_key(version_key(criteria.model, version), snapshot.snapshot_id))
    attempt, note = _next_attempt(context.instance, job.name, pair, key)
    if attempt is None:
        return None, f"{why} on {snapshot.snapshot_id}: {note}"
    # The partition is in the run key: two versions with the same bytes, compared with the same
    # champion, share an evaluation key (and its MLflow run) but each gets its own verdict.
    run_key = f"{pair}:{key}" + (f":attempt-{attempt}" if attempt > 1 else "")
    request = RunRequest(
        job_name=job.name,
        partition_key=pair_key(version_key(criteria.model, version), snapshot.snapshot_id),
        run_key=run_key,
        tags={KEY_TAG: key, "eval_assets/trigger": trigger, ATTEMPT_TAG: str(attempt)},
    )
    against = f"v{champion.version}" if champion is not None else "no champion"
    return request, f"{why} requested on {snapshot.snapshot_id} against {against} ({note})"
