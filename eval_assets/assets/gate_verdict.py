"""`gate_verdict` and `evaluation_report`: the candidate against the champion on the same rows.

One step makes both, with one blocking check per gate: a failing check stops every downstream
asset (the promotion), and a blocked candidate needs its report most.
"""

from contextlib import nullcontext
from dataclasses import replace
from pathlib import Path
from typing import Any

from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetDep,
    AssetExecutionContext,
    AssetIn,
    AssetKey,
    AssetOut,
    AssetsDefinition,
    DataVersion,
    Failure,
    MultiPartitionsDefinition,
    Output,
    multi_asset,
)

from eval_assets.assets.metadata import (
    check_metadata,
    flat_metrics,
    report_metadata,
    verdict_metadata,
)
from eval_assets.assets.model_version import DIGEST_TAG
from eval_assets.assets.predictions import champion_predictions
from eval_assets.assets.recorded import current_snapshot, recorded_metadata
from eval_assets.assets.report import write_report
from eval_assets.core import EVALUATOR_VERSION
from eval_assets.core.criteria import Criteria
from eval_assets.core.digests import evaluation_key
from eval_assets.core.evaluation import Evaluation, to_json
from eval_assets.core.pipeline.compare import evaluate_and_draw
from eval_assets.core.pipeline.prediction_files import (
    LABEL,
    ROW_ID,
    frames,
    rows_in,
    scored_snapshot_sha256,
    slice_key_columns,
)
from eval_assets.core.provenance import git_commit
from eval_assets.core.render.html import html_report
from eval_assets.partitions import SNAPSHOT_DIM, pair_key, version_key
from eval_assets.resources.notifier import Notifier
from eval_assets.resources.registry import ModelRegistry
from eval_assets.resources.snapshots import SnapshotInfo, SnapshotStore
from eval_assets.resources.storage import EvaluationStore


def build_gate_verdict(
    criteria: Criteria,
    source: Path | None,
    pairs: MultiPartitionsDefinition,
    code_version: str,
) -> AssetsDefinition:
    """The model's `gate_verdict` and `evaluation_report`, with one blocking check per gate
    (`source`: the criteria file, recorded in the audit record)."""
    model, dataset = criteria.model, criteria.dataset.name

    def key(name: str) -> AssetKey:
        return AssetKey([model, name])

    out_common: dict[str, Any] = dict(
        group_name=model,
        code_version=code_version,
        tags={"eval_assets/model": model},
        owners=["team:ml-platform"],
    )

    check_specs = [
        AssetCheckSpec(
            name=gate.name,
            asset=key("gate_verdict"),
            blocking=True,
            description=gate.description or f"{gate.kind} gate {gate.name}",
            # Partitioned like the verdict, so each (version, snapshot) keeps its own result.
            partitions_def=pairs,
        )
        for gate in criteria.gates
    ]

    @multi_asset(
        outs={
            "gate_verdict": AssetOut(
                key=key("gate_verdict"),
                description="The candidate against the champion on the same rows; one blocking "
                "check per gate.",
                **out_common,
            ),
            "evaluation_report": AssetOut(
                key=key("evaluation_report"),
                description="HTML report with plots and the write-once JSON audit record.",
                **out_common,
            ),
        },
        partitions_def=pairs,
        deps=[AssetDep(key("predictions"))],
        ins={
            "slice_metrics": AssetIn(key=key("slice_metrics")),
            "model_version": AssetIn(key=key("model_version")),
        },
        check_specs=check_specs,
        name=f"{model}__gate_verdict",
    )
    def gate_verdict(
        context: AssetExecutionContext,
        slice_metrics: dict[str, Any],
        model_version: dict[str, Any],
        model_registry: ModelRegistry,
        snapshot_store: SnapshotStore,
        evaluation_store: EvaluationStore,
        notifier: Notifier,
    ):
        # The report is an output of this same step: a failing blocking check stops every
        # downstream asset, and a blocked candidate needs its report most.
        keys = context.partition_key.keys_by_dimension  # type: ignore[attr-defined]
        snapshot_id = keys[SNAPSHOT_DIM]
        # The snapshot as the candidate's predictions were scored from it, and still published so.
        scored = recorded_metadata(context.instance, key("predictions"), context.partition_key)
        snapshot = current_snapshot(
            snapshot_store,
            dataset,
            snapshot_id,
            scored.get("snapshot_sha256"),
            f"{model}/predictions {context.partition_key}",
        )
        champion = model_registry.champion(model)
        candidate_path = evaluation_store.predictions(model, context.partition_key)
        champion_path = champion_record = None
        if champion is not None:
            champion_key = version_key(model, champion.version)
            champion_path = champion_predictions(
                context, criteria, champion_key, snapshot, model_registry, evaluation_store
            )
            champion_record = evaluation_store.read_json(
                evaluation_store.slice_metrics(model, pair_key(champion_key, snapshot_id))
            )
        with (
            evaluation_store.local_file(candidate_path) as candidate_file,
            (
                evaluation_store.local_file(champion_path) if champion_path else nullcontext()
            ) as champion_file,
        ):
            if candidate_file is None or (champion_path and champion_file is None):
                raise Failure(f"predictions are missing: {candidate_path}, {champion_path}")
            # Proven on the very files compared: both were scored from the bytes recorded.
            for path, local in ((candidate_path, candidate_file), (champion_path, champion_file)):
                if local is not None and scored_snapshot_sha256(local) != snapshot.sha256:
                    raise Failure(
                        f"{evaluation_store.location(path)} was not scored from snapshot "
                        f"{snapshot_id} as published (SHA-256 {snapshot.sha256[:12]}...); "
                        "refusing to compare"
                    )
            snapshot = replace(snapshot, rows=rows_in(candidate_file))
            result, images = evaluate_and_draw(
                criteria, candidate_file, slice_metrics, champion_file, champion_record
            )
            # MLflow infers the logged dataset's schema from its first rows.
            sample = next(frames(candidate_file, [ROW_ID, LABEL, *slice_key_columns(criteria)]))
        # A verdict is a comparison: the champion's bytes are part of its key. A champion first
        # seen here was pinned by champion_predictions; an unpinned one fails closed.
        champion_digest = None
        if champion is not None:
            champion_digest = champion.tags.get(DIGEST_TAG) or (
                model_registry.get_version(model, champion.version).tags.get(DIGEST_TAG)
            )
            if not champion_digest:
                raise Failure(f"champion v{champion.version} has no pinned artifact digest")
        key_ = evaluation_key(
            model_version["digest"],
            snapshot.sha256,
            criteria.digest(),
            champion_digest=champion_digest,
        )
        # On the run, so that the runs list can be filtered by decision and a run shows the key
        # it really evaluated (the sensor's, unless the champion moved since its request).
        context.instance.add_run_tags(
            context.run.run_id,
            {
                "eval_assets/evaluation_key": key_,
                "eval_assets/champion": f"v{champion.version}" if champion else "none",
                "eval_assets/verdict": "passed" if result.verdict.passed else "blocked",
            },
        )
        record = verdict_record(
            criteria, result, model_version, snapshot, champion, key_, champion_digest
        )
        summary = report_summary(record)
        html = html_report(
            title=f"{model_version['partition']} on {snapshot_id}",
            summary=summary,
            verdict=result.verdict,
            candidate=result.candidate,
            champion=result.champion,
            images=images,
        )
        run = model_registry.record_evaluation(
            model,
            key_,
            params=record["params"],
            tags=record["tags"] | {"dagster.run_id": context.run.run_id},
            metrics=flat_metrics(result),
            artifacts={
                "verdict.json": _json_bytes(record["verdict"]),
                "metrics.json": _json_bytes(result.metrics_record()),
                "report.html": html.encode(),
                **{f"plots/{name}": data for name, data in images.items()},
            },
            dataset={
                "frame": sample,
                "source": snapshot.location,
                "name": f"{dataset}@{snapshot_id}",
                "digest": snapshot.sha256,
                "targets": LABEL,
            },
        )
        record["mlflow_run_id"] = run.run_id
        record["mlflow_run_url"] = run.url
        report = write_report(
            context,
            criteria,
            source,
            result,
            record,
            model_version,
            snapshot,
            evaluation_store,
            html,
            images,
        )
        if not result.verdict.passed:
            notifier.notify(
                "gate_failed",
                {
                    "model": model,
                    "version": model_version["version"],
                    "snapshot": snapshot_id,
                    "evaluation_key": key_,
                    "summary": "; ".join(g.summary() for g in result.verdict.failed_gates),
                },
            )
        yield Output(
            record,
            output_name="gate_verdict",
            data_version=DataVersion(key_),
            metadata=verdict_metadata(record, result, run.url),
        )
        yield Output(
            report,
            output_name="evaluation_report",
            data_version=DataVersion(key_),
            metadata=report_metadata(report, images, run.url),
        )
        for gate in result.verdict.gates:
            yield AssetCheckResult(
                asset_key=key("gate_verdict"),
                check_name=gate.name,
                passed=gate.passed,
                severity=AssetCheckSeverity.ERROR,
                description=gate.summary(),
                metadata=check_metadata(gate),
            )

    return gate_verdict


def verdict_record(
    criteria: Criteria,
    result: Evaluation,
    facts: dict[str, Any],
    snapshot: SnapshotInfo,
    champion: Any,
    key: str,
    champion_digest: str | None = None,
) -> dict[str, Any]:
    """The `gate_verdict` value: decision, identity and provenance."""
    commit = git_commit(Path(__file__).parent) or "unknown"
    champion_version = champion.version if champion is not None else None
    return {
        "model": criteria.model,
        "version": facts["version"],
        "partition": facts["partition"],
        "snapshot": snapshot.snapshot_id,
        "snapshot_sha256": snapshot.sha256,
        "artifact_digest": facts["digest"],
        "criteria_hash": criteria.digest(),
        "evaluator_version": EVALUATOR_VERSION,
        "evaluation_key": key,
        "git_commit": commit,
        "champion_version": champion_version,
        "champion_partition": (
            str(pair_key(version_key(criteria.model, champion_version), snapshot.snapshot_id))
            if champion_version
            else None
        ),
        "champion_digest": champion_digest,
        "passed": result.verdict.passed,
        "verdict": result.verdict.to_dict(),
        "params": {
            "model_version": facts["version"],
            "snapshot_id": snapshot.snapshot_id,
            "snapshot_sha256": snapshot.sha256,
            "criteria_hash": criteria.digest(),
            "evaluator_version": EVALUATOR_VERSION,
            "champion_version": str(champion_version),
            "champion_digest": str(champion_digest),
            "git_commit": commit,
        },
        "tags": {
            "mlflow.runName": f"{facts['partition']} on {snapshot.snapshot_id}",
            "eval_assets.model": criteria.model,
            "eval_assets.version": facts["version"],
            "eval_assets.snapshot": snapshot.snapshot_id,
            "eval_assets.verdict": "passed" if result.verdict.passed else "failed",
            "eval_assets.criteria_hash": criteria.digest(),
        },
    }


def report_summary(record: dict[str, Any]) -> dict[str, str]:
    """Key facts for the report's header table."""
    return {
        "model": f"{record['model']} v{record['version']}",
        "snapshot": f"{record['snapshot']} (sha256 {record['snapshot_sha256'][:16]})",
        "artifact digest": record["artifact_digest"][:16],
        "champion": f"v{record['champion_version']}" if record["champion_version"] else "none",
        "criteria hash": record["criteria_hash"][:16],
        "evaluation key": record["evaluation_key"],
        "evaluator": record["evaluator_version"],
        "git commit": record["git_commit"],
    }


def _json_bytes(value: Any) -> bytes:
    return to_json(value).encode()
