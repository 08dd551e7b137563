"""The evaluation asset graph of one registered model, built from its criteria file.

snapshot + model version -> predictions -> slice_metrics -> gate_verdict (blocking checks, one per
gate) and evaluation_report -> promotion. Each module declares one asset (or one step's assets)
over `eval_assets.core.pipeline`; this one assembles them.
"""

from pathlib import Path

from dagster import AssetsDefinition

from eval_assets.assets.data_snapshot import build_data_snapshot
from eval_assets.assets.gate_verdict import build_gate_verdict
from eval_assets.assets.model_version import build_model_version
from eval_assets.assets.predictions import build_predictions
from eval_assets.assets.promotion import build_promotion
from eval_assets.assets.slice_metrics import build_slice_metrics
from eval_assets.core import EVALUATOR_VERSION
from eval_assets.core.criteria import Criteria
from eval_assets.partitions import evaluation_partitions


def build_evaluation_assets(
    criteria: Criteria, source: Path | None = None
) -> list[AssetsDefinition]:
    """The seven assets of one model, keyed under the model's name (`source`: its criteria file,
    recorded in each audit record)."""
    pairs = evaluation_partitions(criteria.model, criteria.dataset.name)
    # The criteria are part of each asset's code: a changed threshold or slice marks every
    # evaluation of the model stale in the UI, as a new evaluator version does.
    code_version = f"{EVALUATOR_VERSION}+criteria.{criteria.digest()[:12]}"
    return [
        build_data_snapshot(criteria, code_version),
        build_model_version(criteria, code_version),
        build_predictions(criteria, pairs, code_version),
        build_slice_metrics(criteria, pairs, code_version),
        build_gate_verdict(criteria, source, pairs, code_version),
        build_promotion(criteria, pairs, code_version),
    ]
