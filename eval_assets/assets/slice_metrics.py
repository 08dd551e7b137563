"""`slice_metrics`: per-slice and per-group metrics of one predictions file, read in batches."""

from typing import Any

from dagster import (
    AssetDep,
    AssetExecutionContext,
    AssetKey,
    AssetsDefinition,
    Failure,
    MultiPartitionsDefinition,
    Output,
    asset,
)

from eval_assets.assets.common import asset_args
from eval_assets.assets.metadata import metrics_metadata
from eval_assets.core.criteria import Criteria
from eval_assets.core.pipeline.metrics import metrics_record
from eval_assets.resources.storage import EvaluationStore


def build_slice_metrics(
    criteria: Criteria, pairs: MultiPartitionsDefinition, code_version: str
) -> AssetsDefinition:
    """The model's `slice_metrics` asset, one partition per (version, snapshot) pair."""
    model = criteria.model

    @asset(
        name="slice_metrics",
        **asset_args(model, code_version),
        partitions_def=pairs,
        # Read in batches from the stored file, not loaded whole: memory stays flat in rows.
        deps=[AssetDep(AssetKey([model, "predictions"]))],
        description="Metrics per slice and fairness group, the overall ROC and PR curves, and the "
        "score quantiles the paired bootstrap bins by (its intervals, paired with the champion's, "
        "come with the verdict).",
    )
    def slice_metrics(
        context: AssetExecutionContext, evaluation_store: EvaluationStore
    ) -> Output[dict[str, Any]]:
        path = evaluation_store.predictions(model, context.partition_key)
        with evaluation_store.local_file(path) as local:
            if local is None:
                raise Failure(f"predictions {context.partition_key} are not materialized ({path})")
            record = metrics_record(criteria, local)
        return Output(record, metadata=metrics_metadata(record))

    return slice_metrics
