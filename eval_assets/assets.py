"""The evaluation asset graph of one registered model, built from its criteria file.

snapshot + model version -> predictions -> slice_metrics -> gate_verdict (blocking checks, one per
gate) -> promotion. Each asset is a few lines over `eval_assets.core`; the champion's side of a
comparison is the champion's own `predictions` partition on the same snapshot, computed once.
"""

import base64
import tempfile
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetDep,
    AssetExecutionContext,
    AssetIn,
    AssetKey,
    AssetMaterialization,
    AssetOut,
    AssetsDefinition,
    DataVersion,
    Failure,
    MaterializeResult,
    MetadataValue,
    Output,
    TableColumn,
    TableRecord,
    TableSchema,
    asset,
    multi_asset,
)

from eval_assets.core import EVALUATOR_VERSION
from eval_assets.core.audit import build_audit_record, lock_file_sha256, render_audit_record
from eval_assets.core.bootstrap import Binning, BootstrapConfig, PairedCells
from eval_assets.core.contract import positive_labels, validate_dataset, validate_scores
from eval_assets.core.criteria import Criteria, PredicateSlice
from eval_assets.core.digests import artifact_digest, evaluation_key, file_digest
from eval_assets.core.evaluation import (
    Evaluation,
    bootstrap_config,
    metrics_from_json,
    metrics_json,
    to_json,
)
from eval_assets.core.gating import GateVerdict, decide
from eval_assets.core.metrics import METRIC_NAMES
from eval_assets.core.models import PREDICT_BATCH_ROWS, ModelLoadError, load_model
from eval_assets.core.predicates import parse_predicate, predicate_columns
from eval_assets.core.provenance import git_commit
from eval_assets.core.report import (
    confusion_matrices_png,
    gate_changes_png,
    html_report,
    roc_pr_png,
)
from eval_assets.core.slicing import OVERALL, unpack_slices
from eval_assets.core.streamed import SortedSummary, streamed_metrics
from eval_assets.partitions import (
    SNAPSHOT_DIM,
    evaluation_partitions,
    model_version_partitions,
    pair_partition,
    parse_version_key,
    snapshot_partitions,
    version_key,
)
from eval_assets.prediction_files import (
    LABEL,
    ROW_ID,
    SCORE,
    RowIdsDigest,
    champion_scores,
    frames,
    paired_batches,
    read_ahead,
    rows_in,
    same_rows_in_order,
    score_batches,
    slice_plan,
    streamed_parquet,
    written_behind,
)
from eval_assets.resources.notifier import Notifier
from eval_assets.resources.registry import ModelRegistry
from eval_assets.resources.snapshots import DATA_FILE, SnapshotInfo, SnapshotStore
from eval_assets.resources.storage import ARROW_STRINGS, EvaluationStore, output_path

DIGEST_TAG = "eval_assets.artifact_sha256"
REPO_ROOT = Path(__file__).resolve().parent.parent
# A promotion waits this long for another's compare-and-set of the same model's champion: longer
# than the S3 store's lock lease, so a dead holder's lock is taken over before a waiter gives up.
CHAMPION_LOCK_WAIT_S = 600.0


def build_evaluation_assets(
    criteria: Criteria, source: Path | None = None
) -> list[AssetsDefinition]:
    """The seven assets of one model, keyed under the model's name."""
    model, dataset = criteria.model, criteria.dataset.name
    pairs = evaluation_partitions(model, dataset)
    key = lambda name: AssetKey([model, name])  # noqa: E731
    # The criteria are part of each asset's code: a changed threshold or slice marks every
    # evaluation of the model stale in the UI, as a new evaluator version does.
    code_version = f"{EVALUATOR_VERSION}+criteria.{criteria.digest()[:12]}"
    common = dict(key_prefix=[model], group_name=model, code_version=code_version)
    out_common = dict(
        group_name=model,
        code_version=code_version,
        tags={"eval_assets/model": model},
        owners=["team:ml-platform"],
    )
    tags = {"eval_assets/model": model}

    @asset(
        name="data_snapshot",
        partitions_def=snapshot_partitions(dataset),
        description="The validated golden rows of one snapshot, with content hash, rows, schema.",
        owners=["team:ml-platform"],
        tags=tags,
        **common,
    )
    def data_snapshot(
        context: AssetExecutionContext, snapshot_store: SnapshotStore
    ) -> Output[pd.DataFrame]:
        with tempfile.TemporaryDirectory() as folder:
            info, path = snapshot_store.fetch(dataset, context.partition_key, Path(folder))
            if info.rows > criteria.dataset.max_rows:
                raise Failure(
                    f"{info.location}/data.parquet: {info.rows:,} rows is more than the contract's "
                    f"dataset.max_rows ({criteria.dataset.max_rows:,}); refused before reading. "
                    "Split the snapshot or raise max_rows if the machine has the memory."
                )
            frame = pd.read_parquet(path)
        # Name the data file itself, so the error points at what to fix.
        validated = validate_dataset(frame, criteria.dataset, f"{info.location}/{DATA_FILE}")
        return Output(
            frame,
            data_version=DataVersion(info.sha256),
            metadata={
                "sha256": info.sha256,
                "rows": len(frame),
                "positives": int(validated.labels.sum()),
                "location": info.location,
                "created_at": info.created_at,
                "dagster/column_schema": _schema(frame),
            },
        )

    @asset(
        name="model_version",
        partitions_def=model_version_partitions(model),
        description="A registered model version: its artifact digest, pinned at first sight.",
        owners=["team:ml-platform"],
        tags=tags,
        **common,
    )
    def model_version(
        context: AssetExecutionContext, model_registry: ModelRegistry
    ) -> Output[dict[str, Any]]:
        facts = version_facts(criteria, context.partition_key, model_registry)
        return Output(
            facts,
            data_version=DataVersion(facts["digest"]),
            metadata={
                "version": facts["version"],
                "digest": facts["digest"],
                "format": facts["format"],
                "run_id": MetadataValue.text(facts["run_id"] or ""),
                "source": MetadataValue.text(facts["source"] or ""),
                "aliases": ", ".join(facts["aliases"]) or "none",
                "status": facts["status"],
            },
        )

    @asset(
        name="predictions",
        partitions_def=pairs,
        ins={"model_version": AssetIn(key=key("model_version"))},
        deps=[AssetDep(key("data_snapshot"))],
        description="One score per snapshot row with label and slice keys (Parquet).",
        tags=tags,
        **common,
    )
    def predictions(
        context: AssetExecutionContext,
        model_version: dict[str, Any],
        model_registry: ModelRegistry,
        evaluation_store: EvaluationStore,
    ) -> MaterializeResult:
        snapshot_id = context.partition_key.keys_by_dimension[SNAPSHOT_DIM]  # type: ignore[attr-defined]
        # Written batch by batch to where the IO manager reads it for the downstream assets.
        path = output_path([model, "predictions"], context.partition_key, ".parquet")
        summary = score_snapshot(
            criteria, snapshot_id, model_version, model_registry, evaluation_store, path
        )
        return MaterializeResult(
            metadata={
                **_prediction_metadata(summary),
                "stored_at": evaluation_store.location(path),
            }
        )

    @asset(
        name="slice_metrics",
        partitions_def=pairs,
        # Read in batches from the stored file, not loaded whole: memory stays flat in rows.
        deps=[AssetDep(key("predictions"))],
        description="Metrics per slice and fairness group, the overall ROC and PR curves, and the "
        "score quantiles the paired bootstrap bins by (its intervals, paired with the champion's, "
        "come with the verdict).",
        tags=tags,
        **common,
    )
    def slice_metrics(
        context: AssetExecutionContext, evaluation_store: EvaluationStore
    ) -> Output[dict[str, Any]]:
        path = output_path([model, "predictions"], context.partition_key, ".parquet")
        with evaluation_store.local_file(path) as local:
            if local is None:
                raise Failure(f"predictions {context.partition_key} are not materialized ({path})")
            record = metrics_record(criteria, local)
        return Output(record, metadata=_metrics_metadata(record))

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
        snapshot = _snapshot_info(snapshot_store, dataset, snapshot_id)
        champion = model_registry.champion(model)
        candidate_path = output_path([model, "predictions"], context.partition_key, ".parquet")
        champion_path = champion_record = None
        if champion is not None:
            champion_key = version_key(model, champion.version)
            champion_path = champion_predictions(
                context, criteria, champion_key, snapshot_id, model_registry, evaluation_store
            )
            champion_record = evaluation_store.read_json(
                output_path(
                    [model, "slice_metrics"], pair_partition(champion_key, snapshot_id), ".json"
                )
            )
        with (
            evaluation_store.local_file(candidate_path) as candidate_file,
            (
                evaluation_store.local_file(champion_path) if champion_path else nullcontext()
            ) as champion_file,
        ):
            if candidate_file is None or (champion_path and champion_file is None):
                raise Failure(f"predictions are missing: {candidate_path}, {champion_path}")
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
            metrics=_flat_metrics(result),
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
            metadata=_verdict_metadata(record, result, run.url),
        )
        yield Output(
            report,
            output_name="evaluation_report",
            data_version=DataVersion(key_),
            metadata=_report_metadata(report, images, run.url),
        )
        for gate in result.verdict.gates:
            yield AssetCheckResult(
                asset_key=key("gate_verdict"),
                check_name=gate.name,
                passed=gate.passed,
                severity=AssetCheckSeverity.ERROR,
                description=gate.summary(),
                metadata=_check_metadata(gate),
            )

    @asset(
        name="promotion",
        partitions_def=pairs,
        ins={"gate_verdict": AssetIn(key=key("gate_verdict"))},
        description="Moves the `champion` alias, only after every blocking gate passed.",
        owners=["team:ml-platform"],
        tags=tags,
        **common,
    )
    def promotion(
        context: AssetExecutionContext,
        gate_verdict: dict[str, Any],
        model_registry: ModelRegistry,
        evaluation_store: EvaluationStore,
        notifier: Notifier,
    ) -> Output[dict[str, Any]]:
        holder = f"run {context.run_id} promoting {model} v{gate_verdict['version']}"
        decision = promote(criteria, gate_verdict, model_registry, evaluation_store, holder)
        notifier.notify(
            "promoted" if decision["moved"] else "promotion_skipped",
            {"model": model, "version": gate_verdict["version"], "summary": decision["reason"]},
        )
        return Output(decision, metadata={k: str(v) for k, v in decision.items()})

    return [data_snapshot, model_version, predictions, slice_metrics, gate_verdict, promotion]


# --- what the assets do, as plain functions (tested directly and reused by the CLI's twin) ----


def version_facts(
    criteria: Criteria, partition_key: str, registry: ModelRegistry
) -> dict[str, Any]:
    """Registry facts and the artifact digest, pinned as a version tag when first seen."""
    model, version = parse_version_key(partition_key)
    info = registry.get_version(model, version)
    if not info.ready:
        raise Failure(f"{model} v{version} is {info.status}, not READY: evaluate it later")
    with tempfile.TemporaryDirectory() as folder:
        local = registry.download(model, version, Path(folder))
        digest = artifact_digest(local)
        try:
            loaded = load_model(
                local,
                allow_pickle=criteria.loading.allow_pickle,
                trusted_skops_types=criteria.loading.trusted_skops_types,
            )
        except ModelLoadError as exc:
            # Name the version and the file where it is registered, not a deleted download folder.
            where = info.source or f"{model} v{version}"
            text = str(exc).replace(str(local.resolve()), where).replace(str(local), where)
            raise Failure(f"{model} v{version} refused: {text}") from exc
        signature = (local / "MLmodel").read_text() if (local / "MLmodel").is_file() else ""
    pinned = info.tags.get(DIGEST_TAG)
    if pinned and pinned != digest:
        raise Failure(
            f"{model} v{version}: artifact digest {digest[:12]}... differs from the digest "
            f"{pinned[:12]}... recorded when the version was first seen; refusing to evaluate"
        )
    if not pinned:
        registry.set_version_tags(model, version, {DIGEST_TAG: digest})
    return {
        "model": model,
        "version": version,
        "partition": partition_key,
        "digest": digest,
        "format": loaded.format,
        "run_id": info.run_id,
        "source": info.source,
        "status": info.status,
        "aliases": list(info.aliases),
        "signature": _signature(signature),
    }


def score_snapshot(
    criteria: Criteria,
    snapshot_id: str,
    facts: dict[str, Any],
    registry: ModelRegistry,
    store: EvaluationStore,
    destination: str,
) -> dict[str, Any]:
    """Download the version, check its digest, load it under the policy, and score the stored
    snapshot in Parquet batches. Each batch's id, label, score and slice keys are appended to the
    Parquet file `destination` in the store as soon as they exist, so memory holds one batch
    whatever the number of rows; the file appears whole, or not at all on any error.

    Returns the rows, the sum of the scores and the rows flagged at the threshold.
    """
    contract = criteria.dataset
    source = output_path([criteria.model, "data_snapshot"], snapshot_id, ".parquet")
    keep = slice_key_columns(criteria)
    summary = {"rows": 0, "score_sum": 0.0, "flagged": 0}
    with tempfile.TemporaryDirectory() as folder, store.local_file(source) as parquet:
        if parquet is None:
            raise Failure(f"data_snapshot {snapshot_id} is not materialized ({source})")
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
        )
        data = streamed_parquet(parquet)
        schema = data.schema_arrow
        features = (
            [c for c in schema.names if c not in (contract.id_column, contract.label_column)]
            if contract.features == "all"
            else list(contract.features)
        )
        # The model sees its features as pandas gives them (the same as a whole-file read); the
        # id stays Arrow-backed (no Python string per row), and unused columns are not read.
        model_columns = list(dict.fromkeys([*features, contract.label_column]))
        read = list(dict.fromkeys([*model_columns, contract.id_column, *keep]))
        stored = _predictions_schema(schema, contract.id_column, keep)
        # Ids are unique and floats (scores, amounts) nearly so: a dictionary for them would be
        # built page by page only to be dropped, which took 40% of the writing time at 1M rows.
        encoded = [f.name for f in stored if f.name != ROW_ID and not pa.types.is_floating(f.type)]
        ids_digest = RowIdsDigest()

        def write(part: tuple[pa.RecordBatch, np.ndarray, np.ndarray]) -> None:
            batch, labels, scores = part
            columns = [
                batch.column(contract.id_column),
                pa.array(labels),
                pa.array(scores),
                # Text slice keys as dictionaries: a few bytes a row, read back as categories.
                *(_dictionary(batch.column(c)) for c in keep),
            ]
            writer.write_table(pa.Table.from_arrays(columns, schema=stored))
            ids_digest.update(columns[0])

        # Only the writing is inside `writing`: an error there (a full disk) names this file.
        with (
            store.writing(destination) as written,
            pq.ParquetWriter(written, stored, use_dictionary=encoded) as writer,
        ):
            # Each batch is encoded and written on another thread while the next is predicted;
            # the footer's digest once the last batch is written.
            with written_behind(write) as write_behind:
                for batch, frame in read_ahead(
                    (batch, batch.select(model_columns).to_pandas())
                    for batch in data.iter_batches(batch_size=PREDICT_BATCH_ROWS, columns=read)
                ):
                    if contract.id_column not in frame.columns:  # it names rows in score errors
                        ids = batch.column(contract.id_column)
                        frame[contract.id_column] = ids.to_pandas(types_mapper=ARROW_STRINGS.get)
                    scores = loaded.predict_scores(frame, features, contract.positive_class)
                    validate_scores(
                        scores, frame, contract.id_column, facts["partition"], summary["rows"]
                    )
                    labels = positive_labels(frame[contract.label_column], contract)
                    write_behind((batch, labels, scores))
                    summary["rows"] += len(scores)
                    summary["score_sum"] += float(scores.sum())
                    summary["flagged"] += int(np.count_nonzero(scores >= contract.threshold))
            writer.add_key_value_metadata(ids_digest.footer())
    return summary


def _is_text(type_: pa.DataType) -> bool:
    return pa.types.is_string(type_) or pa.types.is_large_string(type_)


def _predictions_schema(snapshot: pa.Schema, id_column: str, keep: list[str]) -> pa.Schema:
    """id, label (0/1), score, then the slice keys: text ones dictionary-encoded."""
    keys = [
        pa.field(c, pa.dictionary(pa.int32(), pa.string()) if _is_text(t) else t)
        for c, t in ((c, snapshot.field(c).type) for c in keep)
    ]
    return pa.schema(
        [
            pa.field(ROW_ID, snapshot.field(id_column).type),
            pa.field(LABEL, pa.int8()),
            pa.field(SCORE, pa.float64()),
            *keys,
        ]
    )


def _dictionary(values: pa.Array) -> pa.Array:
    if not _is_text(values.type):
        return values
    return values.cast(pa.string()).dictionary_encode()


def slice_key_columns(criteria: Criteria) -> list[str]:
    """Columns the slices and fairness attributes read, kept beside each score."""
    columns: list[str] = []
    for spec in criteria.slices:
        used = (
            predicate_columns(parse_predicate(spec.where))
            if isinstance(spec, PredicateSlice)
            else {spec.by}
        )
        columns += sorted(used)
    columns += criteria.fairness
    return list(dict.fromkeys(c for c in columns if c not in (ROW_ID, LABEL, SCORE)))


def metrics_record(criteria: Criteria, path: Path) -> dict[str, Any]:
    """The `slice_metrics` value of a predictions file: per-slice table, fairness groups and
    disparities, the overall curves and the bootstrap's score quantiles, read in batches.

    Intervals are not computed here: `gate_verdict` bootstraps once, paired with the champion,
    and its intervals cover the candidate's own metrics too.
    """
    plan = slice_plan(criteria, path)
    summary = streamed_metrics(
        score_batches(plan, path, slice_key_columns(criteria)),
        plan,
        criteria.dataset.threshold,
        BootstrapConfig().bins,
    )
    return {
        **metrics_json(summary.metrics),
        **summary.record(),
        **_metrics_stamp(criteria, rows_in(path)),
    }


def _metrics_stamp(criteria: Criteria, rows: int) -> dict[str, Any]:
    """What a stored metrics record must match to be reused instead of recomputed."""
    return {
        "criteria_hash": criteria.digest(),
        "evaluator_version": EVALUATOR_VERSION,
        "rows": rows,
    }


def stored_summary(
    record: dict[str, Any] | None, criteria: Criteria, rows: int
) -> SortedSummary | None:
    """A `slice_metrics` record as tables, curves and quantiles, when it was computed under these
    criteria by this evaluator on as many rows; None otherwise (recompute: a stale record is
    never reused)."""
    stamp = _metrics_stamp(criteria, rows)
    if record is None or any(record.get(k) != v for k, v in stamp.items()):
        return None
    quantiles = record["score_quantiles"]
    return SortedSummary(
        metrics_from_json(record),
        {k: np.asarray(v, dtype=np.float64) for k, v in record["curve"].items()},
        np.asarray(quantiles["positive"], dtype=np.float64),
        np.asarray(quantiles["negative"], dtype=np.float64),
    )


def evaluate_and_draw(
    criteria: Criteria,
    candidate: Path,
    candidate_record: dict[str, Any] | None,
    champion: Path | None,
    champion_record: dict[str, Any] | None,
) -> tuple[Evaluation, dict[str, bytes]]:
    """The paired evaluation of two predictions files, read in batches, and the report's plots.

    Each model's point metrics, curves and score quantiles come from its `slice_metrics` record
    when that is current (see `stored_summary`), and are computed here otherwise; the champion's
    only when its rows are in the candidate's order (in another order, sums could differ in the
    last bit). The paired bootstrap's count tables take one more pass over both files. The
    curves and confusion matrices need only point metrics, so they are drawn on a second thread
    while the bootstrap resamples: its draws release the GIL, where the count pass holds it as
    much as matplotlib does (drawn during the pass, the two took as long as one after the
    other). The gate picture needs the verdict.
    """
    plan = slice_plan(criteria, candidate)
    rows = rows_in(candidate)
    threshold = criteria.dataset.threshold
    keys = slice_key_columns(criteria)
    bins = BootstrapConfig().bins

    def computed(scores: Any = None) -> SortedSummary:
        return streamed_metrics(score_batches(plan, candidate, keys, scores), plan, threshold, bins)

    summaries = [stored_summary(candidate_record, criteria, rows) or computed()]
    in_order = champion is not None and same_rows_in_order(candidate, champion)
    if champion is not None:
        stored = stored_summary(champion_record, criteria, rows) if in_order else None
        summaries.append(stored or computed(champion_scores(candidate, champion, in_order)))
    config = bootstrap_config(criteria)
    cells = None
    if config is not None:
        cells = PairedCells(
            [
                Binning.from_quantiles(
                    s.positive_quantiles, s.negative_quantiles, threshold=threshold
                )
                for s in summaries
            ],
            plan.names,
            {attribute: len(groups) for attribute, groups in plan.groups.items()},
        )
        other = None if champion is None else champion_scores(candidate, champion, in_order)
        for batch, champion_batch in paired_batches(plan, candidate, keys, other):
            models = [batch.score] if champion_batch is None else [batch.score, champion_batch]
            cells.add(batch.y, models, unpack_slices(batch.bits, len(plan.names)), batch.groups)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="plots") as painter:
        drawn = painter.submit(point_images, criteria, summaries)
        metrics = [s.metrics for s in summaries]
        intervals = (
            pd.DataFrame()
            if cells is None
            else cells.intervals([m.slices for m in metrics], config)
        )
        champion_metrics = metrics[1] if len(metrics) > 1 else None
        verdict = decide(criteria, metrics[0], champion_metrics, intervals)
        images = drawn.result()
    result = Evaluation(metrics[0], champion_metrics, intervals, verdict)
    # One matplotlib figure at a time: the gate picture only once the other thread is done.
    return result, {"gate_changes.png": gate_changes_png(result.verdict, criteria), **images}


def champion_predictions(
    context: AssetExecutionContext,
    criteria: Criteria,
    champion_key: str,
    snapshot_id: str,
    registry: ModelRegistry,
    store: EvaluationStore,
) -> str:
    """Where the champion's predictions on this snapshot are stored (materialized here when
    missing)."""
    model = criteria.model
    pair = pair_partition(champion_key, snapshot_id)
    path = output_path([model, "predictions"], pair, ".parquet")
    if store.exists(path):
        context.log.info(f"reusing the champion's predictions {pair} ({store.location(path)})")
        return path
    context.log.info(f"the champion's predictions {pair} are missing: computing them in this run")
    instance = context.instance
    versions = model_version_partitions(model)
    if not instance.has_dynamic_partition(versions.name, champion_key):
        instance.add_dynamic_partitions(versions.name, [champion_key])
    facts_path = output_path([model, "model_version"], champion_key, ".json")
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
    summary = score_snapshot(criteria, snapshot_id, facts, registry, store, path)
    context.log_event(
        AssetMaterialization(
            asset_key=AssetKey([model, "predictions"]),
            partition=pair,
            metadata={
                **_prediction_metadata(summary),
                "stored_at": store.location(path),
                "materialized_by": "gate_verdict (champion side)",
            },
        )
    )
    return path


def point_images(criteria: Criteria, summaries: list[SortedSummary]) -> dict[str, bytes]:
    """The report's plots of point metrics: ROC/PR curves, confusion matrices of key slices."""
    threshold = criteria.dataset.threshold
    overall = [s.metrics.slices.loc[OVERALL] for s in summaries]
    curves = [
        (
            name,
            {**s.curve, "auc": row["roc_auc"], "ap": row["pr_auc"]},
            (int(row["tp"]), int(row["fp"])),
        )
        for name, s, row in zip(("candidate", "champion"), summaries, overall, strict=False)
    ]
    candidate = summaries[0].metrics
    champion = summaries[1].metrics if len(summaries) > 1 else None
    present = set(candidate.slices.index)
    key_slices = [s for s in criteria.key_slices if s in present and s != OVERALL]
    return {
        "roc_pr_overall.png": roc_pr_png(
            curves, int(overall[0]["positives"]), int(overall[0]["negatives"]), threshold=threshold
        ),
        "confusion_matrices.png": confusion_matrices_png(
            candidate, champion, key_slices, threshold
        ),
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


def write_report(
    context: AssetExecutionContext,
    criteria: Criteria,
    source: Path | None,
    result: Evaluation,
    record: dict[str, Any],
    facts: dict[str, Any],
    snapshot: SnapshotInfo,
    store: EvaluationStore,
    html: str,
    images: dict[str, bytes],
) -> dict[str, Any]:
    """Store the HTML, the plots and the audit record; the record is written once per key."""
    folder = output_path([criteria.model, "evaluation_report"], context.partition_key, "")
    locations = {"html": store.write(f"{folder}/report.html", html.encode())}
    for name, data in images.items():
        locations[name] = store.write(f"{folder}/{name}", data)
    tags = context.run.tags
    sensor = tags.get("dagster/sensor_name")
    audit = build_audit_record(
        evaluation_key=record["evaluation_key"],
        verdict=result.verdict,
        model={
            "name": criteria.model,
            "version": facts["version"],
            "artifact_digest": facts["digest"],
            "format": facts["format"],
            "run_id": facts["run_id"],
            "source": facts["source"],
        },
        snapshot={
            "dataset": criteria.dataset.name,
            "id": snapshot.snapshot_id,
            "sha256": snapshot.sha256,
            "rows": snapshot.rows,
            "location": snapshot.location,
        },
        criteria={
            "model": criteria.model,
            "hash": criteria.digest(),
            "file_sha256": file_digest(source) if source else None,
            "path": _relative(source) if source else None,
        },
        code={
            "git_commit": record["git_commit"],
            "evaluator_version": EVALUATOR_VERSION,
            "lock_file_sha256": lock_file_sha256(REPO_ROOT / "uv.lock"),
        },
        champion=(
            {"version": record["champion_version"], "evaluation": record["champion_partition"]}
            if record["champion_version"]
            else None
        ),
        trigger={
            "kind": "sensor" if sensor else "manual",
            "name": sensor or tags.get("user"),
            "dagster_run_id": context.run.run_id,
        },
        mlflow_run_id=record["mlflow_run_id"],
    )
    audit_path = f"{criteria.model}/audit/{record['evaluation_key']}.json"
    existing = store.read(audit_path)
    if existing is None:
        locations["audit"] = store.write(audit_path, render_audit_record(audit).encode())
    else:
        # Write once: the first evaluation of this key (and who triggered it) stands.
        context.log.info(f"audit record for {record['evaluation_key'][:12]} exists; kept as is")
        locations["audit"] = store.location(audit_path)
    return {"evaluation_key": record["evaluation_key"], "passed": record["passed"], **locations}


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
            pair_partition(version_key(criteria.model, champion_version), snapshot.snapshot_id)
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


def promote(
    criteria: Criteria,
    verdict: dict[str, Any],
    registry: ModelRegistry,
    store: EvaluationStore,
    holder: str,
) -> dict[str, Any]:
    """Move the alias on a full pass, compare-and-set against the champion compared with.

    The compare and the set hold the model's champion lock in the store, so two promotions at once
    (the same version launched twice, or two candidates compared with the same champion) move the
    alias once; the other sees the champion already moved and records why it did not move it.
    """
    model, version = criteria.model, verdict["version"]
    if not verdict["passed"]:
        # Blocking checks stop this asset first; this guards any other path that reaches here.
        raise Failure(f"{model} v{version} did not pass every gate; not promoting")
    if verdict["criteria_hash"] != criteria.digest():
        raise Failure("the criteria changed since this verdict; re-evaluate before promoting")
    expected = verdict["champion_version"]
    if expected == version:
        moved, reason = False, f"v{version} is already the champion"
    else:
        with store.lock(f"{model}/champion.lock", holder=holder, wait_s=CHAMPION_LOCK_WAIT_S):
            moved, reason = registry.move_champion(model, version, expected)
    registry.set_version_tags(
        model,
        version,
        {
            "eval_assets.verdict": "passed",
            "eval_assets.evaluation_key": verdict["evaluation_key"],
            "eval_assets.criteria_hash": verdict["criteria_hash"],
            "eval_assets.snapshot": verdict["snapshot"],
            "eval_assets.promotion": "promoted" if moved else reason,
        },
    )
    return {
        "moved": moved,
        "reason": reason,
        "version": version,
        "previous_champion": expected,
        "evaluation_key": verdict["evaluation_key"],
    }


# --- metadata for the UI ----------------------------------------------------------------------


def _schema(frame: pd.DataFrame) -> TableSchema:
    return TableSchema(columns=[TableColumn(str(c), str(t)) for c, t in frame.dtypes.items()])


def _prediction_metadata(summary: dict[str, Any]) -> dict[str, Any]:
    rows = summary["rows"]
    return {
        "rows": rows,
        "mean_score": summary["score_sum"] / rows if rows else None,
        "predicted_positive_rate": summary["flagged"] / rows if rows else None,
    }


_TABLE_METRICS = (
    "support",
    "positives",
    "roc_auc",
    "pr_auc",
    "log_loss",
    "brier",
    "precision",
    "recall",
    "f1",
)


def _metrics_metadata(record: dict[str, Any]) -> dict[str, Any]:
    columns = [TableColumn("slice", "string")] + [
        TableColumn(m, "int" if m in ("support", "positives") else "float") for m in _TABLE_METRICS
    ]
    rows = [
        TableRecord({"slice": r["slice"], **{m: _num(r.get(m)) for m in _TABLE_METRICS}})
        for r in record["slices"]
    ]
    overall = next((r for r in record["slices"] if r["slice"] == "overall"), {})
    return {
        "slices": MetadataValue.table(rows, schema=TableSchema(columns=columns)),
        "overall_roc_auc": _num(overall.get("roc_auc")),
        "overall_pr_auc": _num(overall.get("pr_auc")),
        "slice_count": len(record["slices"]),
    }


def _verdict_metadata(
    record: dict[str, Any], result: Evaluation, url: str | None
) -> dict[str, Any]:
    lines = [
        "| gate | slice | candidate | champion | change | interval | threshold | outcome |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for gate in result.verdict.gates:
        for r in gate.results:
            lines.append(
                f"| {gate.name} | {r.slice} | {_fmt(r.candidate)} | {_fmt(r.champion)} | "
                f"{_fmt(r.change)} | {_interval(r.ci_low, r.ci_high)} | {r.threshold} | "
                f"**{r.outcome}** |"
            )
    headline = (
        "PASSED: every gate passed"
        if result.verdict.passed
        else ("BLOCKED by " + ", ".join(g.name for g in result.verdict.failed_gates))
    )
    metadata: dict[str, Any] = {
        "verdict": MetadataValue.md(f"### {headline}\n\n" + "\n".join(lines)),
        "passed": result.verdict.passed,
        "evaluation_key": record["evaluation_key"],
        "criteria_hash": record["criteria_hash"],
        "champion_version": str(record["champion_version"]),
        "champion_predictions": str(record["champion_partition"]),
        "snapshot_sha256": record["snapshot_sha256"],
        "artifact_digest": record["artifact_digest"],
        "mlflow_run_id": record["mlflow_run_id"],
    }
    if url:
        metadata["mlflow_run"] = MetadataValue.url(url)
    return metadata


def _report_metadata(
    report: dict[str, Any], images: dict[str, bytes], url: str | None
) -> dict[str, Any]:
    encoded = base64.b64encode(images["gate_changes.png"]).decode()
    metadata: dict[str, Any] = {
        "gate_changes": MetadataValue.md(
            f"![changes against the champion with intervals and tolerance]"
            f"(data:image/png;base64,{encoded})"
        ),
        "report": MetadataValue.path(report["html"]),
        "audit_record": MetadataValue.path(report["audit"]),
    }
    if url:
        metadata["mlflow_run"] = MetadataValue.url(url)
    return metadata


def _check_metadata(gate: GateVerdict) -> dict[str, Any]:
    worst = gate.failures[0] if gate.failures else gate.results[0] if gate.results else None
    metadata: dict[str, Any] = {"outcomes": ", ".join(sorted({r.outcome for r in gate.results}))}
    if worst is not None:
        metadata |= {
            "slice": worst.slice,
            "metric": worst.metric,
            "outcome": worst.outcome,
            "candidate": _num(worst.candidate),
            "champion": _num(worst.champion),
            "change": _num(worst.change),
            "relative_change": _num(worst.relative_change),
            "interval": _interval(worst.ci_low, worst.ci_high),
            "threshold": worst.threshold,
            "support": worst.support if worst.support is not None else -1,
            "reason": worst.reason,
        }
    metadata["results"] = MetadataValue.json(
        [{k: v for k, v in r.__dict__.items()} for r in gate.results]
    )
    return metadata


def _flat_metrics(result: Evaluation) -> dict[str, float]:
    """MLflow metrics: ``<metric>.<slice>`` for the candidate, finite values only."""
    out = {}
    for slice_name, row in result.candidate.slices.iterrows():
        for metric in METRIC_NAMES:
            value = row[metric]
            if np.isfinite(value):
                out[f"{metric}.{_mlflow_name(str(slice_name))}"] = float(value)
    for _, row in result.candidate.disparities.iterrows():
        if np.isfinite(row["value"]):
            out[f"{row['metric']}.{_mlflow_name(row['attribute'])}"] = float(row["value"])
    return out


def _mlflow_name(text: str) -> str:
    return "".join(c if c.isalnum() or c in "_-./ " else "_" for c in text)


def _relative(path: Path) -> str:
    # Repository-relative, so the same evaluation gives the same record on any checkout.
    try:
        return path.resolve().relative_to(REPO_ROOT).as_posix()
    except ValueError:
        return str(path)


def _snapshot_info(store: SnapshotStore, dataset: str, snapshot_id: str) -> SnapshotInfo:
    for info in store.list_snapshots(dataset):
        if info.snapshot_id == snapshot_id:
            return info
    raise Failure(f"snapshot {snapshot_id} of {dataset} is not in the snapshot store")


def _signature(mlmodel: str) -> str:
    marker = "signature:"
    return mlmodel[mlmodel.index(marker) :][:2000] if marker in mlmodel else "none"


def _json_bytes(value: Any) -> bytes:
    return to_json(value).encode()


def _num(value: Any) -> float | None:
    if value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if np.isfinite(number) else None


def _fmt(value: float | None) -> str:
    return "n/a" if value is None or not np.isfinite(value) else f"{value:.4f}"


def _interval(low: float | None, high: float | None) -> str:
    return "n/a" if low is None or high is None else f"[{low:.4f}, {high:.4f}]"
