"""Staleness in the UI follows the criteria: changing a gate changes every asset's code version,
so Dagster marks the model's evaluations stale, while an unchanged file changes nothing."""

from __future__ import annotations

from eval_assets.assets import build_evaluation_assets
from eval_assets.core.criteria import load_criteria
from eval_assets_tests.support.factories import REPO


def _code_versions(criteria) -> dict[str, str | None]:
    return {
        spec.key.to_user_string(): spec.code_version
        for assets in build_evaluation_assets(criteria)
        for spec in assets.specs
    }


def test_a_changed_gate_changes_every_code_version_and_nothing_else_does():
    criteria = load_criteria(REPO / "criteria" / "fraud_detector.yaml")
    same = _code_versions(criteria)
    assert same == _code_versions(load_criteria(REPO / "criteria" / "fraud_detector.yaml"))
    assert len(same) == 7 and len(set(same.values())) == 1

    stricter = criteria.model_copy(
        update={"policy": criteria.policy.model_copy(update={"min_slice_rows": 99})}
    )
    changed = _code_versions(stricter)
    assert changed.keys() == same.keys()
    assert all(changed[k] != same[k] for k in same)
