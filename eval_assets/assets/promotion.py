"""`promotion`: moves the `champion` alias after a full pass, compare-and-set."""

from typing import Any

from dagster import (
    AssetExecutionContext,
    AssetIn,
    AssetKey,
    AssetsDefinition,
    Failure,
    MultiPartitionsDefinition,
    Output,
    asset,
)

from eval_assets.assets.common import asset_args
from eval_assets.core.criteria import Criteria
from eval_assets.resources.notifier import Notifier
from eval_assets.resources.registry import ModelRegistry
from eval_assets.resources.storage import EvaluationStore

# A promotion waits this long for another's compare-and-set of the same model's champion: longer
# than the S3 store's lock lease, so a dead holder's lock is taken over before a waiter gives up.
CHAMPION_LOCK_WAIT_S = 600.0


def build_promotion(
    criteria: Criteria, pairs: MultiPartitionsDefinition, code_version: str
) -> AssetsDefinition:
    """The model's `promotion` asset; its input's blocking checks stop it on any failed gate."""
    model = criteria.model

    @asset(
        name="promotion",
        **asset_args(model, code_version),
        partitions_def=pairs,
        ins={"gate_verdict": AssetIn(key=AssetKey([model, "gate_verdict"]))},
        description="Moves the `champion` alias, only after every blocking gate passed.",
        owners=["team:ml-platform"],
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

    return promotion


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
        with store.lock(store.champion_lock(model), holder=holder, wait_s=CHAMPION_LOCK_WAIT_S):
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
