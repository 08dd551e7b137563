"""The curves drawn in a report must tell the same story as the metrics that were gated."""

from __future__ import annotations

import pytest

from eval_assets.core.metrics.curves import roc_pr_curves
from eval_assets_tests.support.toy_evaluation import toy_case


@pytest.fixture(scope="module")
def case() -> dict:
    return toy_case()


def test_the_curves_report_the_same_auc_and_ap_as_the_gated_metrics(case):
    y, scores = case["y"], case["candidate"]
    curve = roc_pr_curves(y, scores)
    overall = case["evaluation"].candidate.slices.loc["overall"]
    assert curve["auc"] == pytest.approx(overall["roc_auc"], abs=1e-12)
    assert curve["ap"] == pytest.approx(overall["pr_auc"], abs=1e-12)
    assert curve["fpr"][0] == 0.0 and curve["tpr"][-1] == 1.0
