"""`predictions`: one score per snapshot row, scored by a verified download of the version.

The champion's side of a comparison is the champion's own `predictions` partition on the same
snapshot; `champion_predictions` materializes it when `gate_verdict` finds it missing.
"""

import tempfile
from contextlib import nullcontext
from pathlib import Path
from typing import Any

from dagster import (
    AssetDep,
    AssetExecutionContext,
    AssetIn,
    AssetKey,
    AssetMaterialization,
    AssetsDefinition,
    Failure,
    MaterializeResult,
    MultiPartitionsDefinition,
    asset,
)

from eval_assets.assets.common import asset_args
from eval_assets.assets.metadata import prediction_metadata
from eval_assets.assets.model_version import version_facts
from eval_assets.assets.recorded import current_snapshot, ingested_sha256, recorded_metadata
from eval_assets.core.criteria import Criteria
from eval_assets.core.digests import artifact_digest, handle_digest
from eval_assets.core.models import load_model
from eval_assets.core.pipeline.scoring import score_into
from eval_assets.partitions import SNAPSHOT_DIM, model_version_partitions, pair_key
from eval_assets.resources.registry import ModelRegistry
from eval_assets.resources.snapshots import SnapshotInfo, SnapshotStore
from eval_assets.resources.storage import EvaluationStore


def build_predictions(
    criteria: Criteria, pairs: MultiPartitionsDefinition, code_version: str
) -> AssetsDefinition:
    """The model's `predictions` asset, one partition per (version, snapshot) pair."""
    model, dataset = criteria.model, criteria.dataset.name

    @asset(
        name="predictions",
        **asset_args(model, code_version),
        partitions_def=pairs,
        ins={"model_version": AssetIn(key=AssetKey([model, "model_version"]))},
        deps=[AssetDep(AssetKey([model, "data_snapshot"]))],
        description="One score per snapshot row with label and slice keys (Parquet).",
    )
    def predictions(
        context: AssetExecutionContext,
        model_version: dict[str, Any],
        model_registry: ModelRegistry,
        snapshot_store: SnapshotStore,
        evaluation_store: EvaluationStore,
    ) -> MaterializeResult:
        snapshot_id = context.partition_key.keys_by_dimension[SNAPSHOT_DIM]  # type: ignore[attr-defined]
        ingested = ingested_sha256(
            context.instance, AssetKey([model, "data_snapshot"]), snapshot_id
        )
        snapshot = current_snapshot(
            snapshot_store, dataset, snapshot_id, ingested, f"{model}/data_snapshot {snapshot_id}"
        )
        # Written batch by batch to where the IO manager reads it for the downstream assets.
        path = evaluation_store.predictions(model, context.partition_key)
        summary = score_snapshot(
            criteria, snapshot, model_version, model_registry, evaluation_store, path
        )
        return MaterializeResult(
            metadata={
                **prediction_metadata(summary),
                "stored_at": evaluation_store.location(path),
            }
        )

    return predictions


def score_snapshot(
    criteria: Criteria,
    snapshot: SnapshotInfo,
    facts: dict[str, Any],
    registry: ModelRegistry,
    store: EvaluationStore,
    destination: str,
) -> dict[str, Any]:
    """Download the version, check its digest, load it under the policy, and score the stored
    snapshot in Parquet batches into the file `destination` in the store (see
    `core.pipeline.scoring.score_into`); the file appears whole, or not at all on any error.

    The stored copy is hashed through the handle it is then read from, and scored only when that
    is `snapshot`'s SHA-256; the file's footer records it.

    Returns the rows, the sum of the scores, the rows flagged at the threshold and that SHA-256.
    """
    snapshot_id = snapshot.snapshot_id
    source = store.snapshot_copy(criteria.model, snapshot_id)
    with (
        tempfile.TemporaryDirectory() as folder,
        store.local_file(source) as parquet,
        open(parquet, "rb") if parquet is not None else nullcontext() as handle,
    ):
        if handle is None:
            raise Failure(f"data_snapshot {snapshot_id} is not materialized ({source})")
        read = handle_digest(handle)
        if read != snapshot.sha256:
            raise Failure(
                f"{store.location(source)}: the stored copy of snapshot {snapshot_id} has "
                f"SHA-256 {read[:12]}..., which does not match the {snapshot.sha256[:12]}... "
                "ingested and published; refusing to score it (re-ingest the snapshot)"
            )
        local = registry.download(facts["model"], facts["version"], Path(folder))
        digest = artifact_digest(local)
        if digest != facts["digest"]:
            raise Failure(
                f"{facts['partition']}: downloaded artifact digest {digest[:12]}... is not the "
                f"recorded {facts['digest'][:12]}...; refusing to score"
            )
        loaded = load_model(
            local,
            allow_pickle=criteria.loading.allow_pickle,
            trusted_skops_types=criteria.loading.trusted_skops_types,
            name=facts["partition"],  # errors name the version, not the download folder
        )
        # Only the writing is inside `writing`: an error there (a full disk) names this file.
        with store.writing(destination) as written:
            return score_into(
                criteria, handle, loaded, facts["partition"], snapshot.sha256, written
            )


def champion_predictions(
    context: AssetExecutionContext,
    criteria: Criteria,
    champion_key: str,
    snapshot: SnapshotInfo,
    registry: ModelRegistry,
    store: EvaluationStore,
) -> str:
    """Where the champion's predictions on this snapshot are stored (materialized here when
    missing, or when they were not recorded as scored from the same snapshot bytes)."""
    model = criteria.model
    pair = str(pair_key(champion_key, snapshot.snapshot_id))
    path = store.predictions(model, pair)
    scored = recorded_metadata(context.instance, AssetKey([model, "predictions"]), pair)
    if scored.get("snapshot_sha256") == snapshot.sha256 and store.exists(path):
        context.log.info(f"reusing the champion's predictions {pair} ({store.location(path)})")
        return path
    context.log.info(
        f"the champion's predictions {pair} are missing or not recorded as scored from "
        f"SHA-256 {snapshot.sha256[:12]}...: computing them in this run"
    )
    instance = context.instance
    versions = model_version_partitions(model)
    if not instance.has_dynamic_partition(versions.name, champion_key):
        instance.add_dynamic_partitions(versions.name, [champion_key])
    facts_path = store.model_version(model, champion_key)
    facts = store.read_json(facts_path)
    if facts is None:
        facts = version_facts(criteria, champion_key, registry)
        store.write_json(facts_path, facts)
        context.log_event(
            AssetMaterialization(
                asset_key=AssetKey([model, "model_version"]),
                partition=champion_key,
                metadata={"digest": facts["digest"], "materialized_by": "gate_verdict"},
            )
        )
    summary = score_snapshot(criteria, snapshot, facts, registry, store, path)
    context.log_event(
        AssetMaterialization(
            asset_key=AssetKey([model, "predictions"]),
            partition=pair,
            metadata={
                **prediction_metadata(summary),
                "stored_at": store.location(path),
                "materialized_by": "gate_verdict (champion side)",
            },
        )
    )
    return path
