"""Gating decides whether a candidate may replace the champion, so its edge cases are the product.

The metrics here are written by hand, so every boundary is exact: ties at the tolerance pass,
relative and absolute drops differ, lower-is-better metrics flip, a champion value of zero has no
finite relative change. Above all it fails closed: NaN, missing slices, tiny slices and a missing
champion never pass unless the criteria's policy names that outcome, and no gate is ever silent.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from eval_assets.core.criteria import Criteria
from eval_assets.core.evaluation import evaluate, metrics_from_json, metrics_json, to_json
from eval_assets.core.gating import (
    FAIL,
    INSUFFICIENT,
    MISSING,
    NO_CHAMPION,
    OUTCOMES,
    PASS,
    Verdict,
    decide,
)
from eval_assets.core.slicing import build_slices
from eval_assets.core.vocabulary import ModelMetrics

# --- builders -----------------------------------------------------------------------------------


def metrics(
    slices: dict[str, dict[str, float]],
    groups: list[dict] | None = None,
    disparities: dict[tuple[str, str], float] | None = None,
) -> ModelMetrics:
    """Hand-written metrics; each slice has 1000 rows, 100 of them positive, unless it says so."""
    rows = {name: {"support": 1000, "positives": 100, **values} for name, values in slices.items()}
    for row in rows.values():
        row.setdefault("negatives", row["support"] - row["positives"])
    table = pd.DataFrame.from_dict(rows, orient="index")
    group_frame = pd.DataFrame(
        groups or [],
        columns=["attribute", "group", "support", "positives", "selection_rate", "tpr", "fpr"],
    )
    disparity_frame = pd.DataFrame(
        [{"attribute": a, "metric": m, "value": v} for (a, m), v in (disparities or {}).items()],
        columns=["attribute", "metric", "value"],
    )
    return ModelMetrics(table, group_frame, disparity_frame)


def criteria(*gates: dict, slices=(), fairness=(), bootstrap=None, **policy) -> Criteria:
    return Criteria.model_validate(
        {
            "model": "m",
            "dataset": {"id_column": "id", "label_column": "y"},
            "slices": list(slices),
            "fairness": list(fairness),
            "gates": list(gates),
            "policy": policy,
            "bootstrap": bootstrap or {},
        }
    )


def _selector(slices):
    return slices if isinstance(slices, str) else list(slices)


def change(metric="roc_auc", slices=("overall",), **options) -> dict:
    if "max_absolute_drop" not in options:
        options.setdefault("max_relative_drop", 0.01)
    return {
        "name": "vs_champion",
        "kind": "change",
        "metric": metric,
        "slices": _selector(slices),
        **options,
    }


def absolute(metric="roc_auc", slices=("overall",), **bounds) -> dict:
    return {
        "name": "floor",
        "kind": "absolute",
        "metric": metric,
        "slices": _selector(slices),
        **bounds,
    }


def only(verdict: Verdict):
    """The one result of a one-gate, one-slice verdict."""
    (gate,) = verdict.gates
    (result,) = gate.results
    return result


def auc(value: float, **extra) -> ModelMetrics:
    return metrics({"overall": {"roc_auc": value, **extra}})


# --- point mode: the tolerance boundary ---------------------------------------------------------


def test_a_relative_drop_exactly_at_the_tolerance_passes():
    result = only(decide(criteria(change()), auc(0.792), auc(0.800)))

    assert result.outcome == PASS and result.passed
    assert result.champion == 0.8 and result.candidate == 0.792
    assert result.change == pytest.approx(-0.008)
    assert result.relative_change == pytest.approx(-0.01)


def test_a_relative_drop_just_beyond_the_tolerance_fails_and_says_by_how_much():
    result = only(decide(criteria(change()), auc(0.7919), auc(0.800)))

    assert result.outcome == FAIL and not result.passed
    assert "1.01%" in result.reason and "1.00%" in result.reason


def test_an_improvement_passes():
    assert only(decide(criteria(change()), auc(0.95), auc(0.80))).passed


def test_relative_and_absolute_drops_are_different_tolerances():
    candidate, champion = auc(0.785), auc(0.800)  # 0.015 absolute, 1.875% relative

    relative = only(decide(criteria(change(max_relative_drop=0.01)), candidate, champion))
    absolute_ = only(decide(criteria(change(max_absolute_drop=0.02)), candidate, champion))

    assert relative.outcome == FAIL
    assert absolute_.outcome == PASS
    assert only(decide(criteria(change(max_absolute_drop=0.015)), candidate, champion)).passed
    assert not only(decide(criteria(change(max_absolute_drop=0.0149)), candidate, champion)).passed


def test_for_a_lower_is_better_metric_an_increase_is_the_degradation():
    gate = criteria(change(metric="log_loss"))
    champion = metrics({"overall": {"log_loss": 0.300}})

    def outcome(value: float) -> str:
        return only(decide(gate, metrics({"overall": {"log_loss": value}}), champion)).outcome

    assert outcome(0.303) == PASS  # exactly 1% worse
    assert outcome(0.310) == FAIL
    assert outcome(0.100) == PASS  # much better


def test_an_explicit_direction_overrides_the_metrics_default():
    gate = criteria(change(metric="roc_auc", direction="lower_is_better"))

    assert only(decide(gate, auc(0.9), auc(0.8))).outcome == FAIL


def test_a_champion_value_of_zero_has_no_finite_relative_change():
    gate = criteria(change(metric="recall"))

    def result(candidate: float, champion: float, metric="recall", gate=gate):
        return only(
            decide(
                gate,
                metrics({"overall": {metric: candidate}}),
                metrics({"overall": {metric: champion}}),
            )
        )

    assert result(0.0, 0.0).outcome == PASS  # no change is no change
    assert result(0.0, 0.0).relative_change == 0.0
    assert result(0.2, 0.0).outcome == PASS  # any improvement
    assert result(0.2, 0.0).relative_change == math.inf
    worse = result(0.01, 0.0, metric="log_loss", gate=criteria(change(metric="log_loss")))
    assert worse.outcome == FAIL
    assert worse.relative_change == math.inf


# --- fail closed: NaN, tiny and missing slices, no champion --------------------------------------


def test_a_nan_candidate_metric_is_insufficient_evidence_and_does_not_pass():
    for gate in (change(), absolute(min=0.5)):
        result = only(decide(criteria(gate), auc(math.nan), auc(0.8)))

        assert result.outcome == INSUFFICIENT and not result.passed
        assert "undefined" in result.reason


def test_a_nan_champion_metric_is_insufficient_evidence_and_does_not_pass():
    result = only(decide(criteria(change()), auc(0.9), auc(math.nan)))

    assert result.outcome == INSUFFICIENT and not result.passed
    assert "champion" in result.reason


def test_a_slice_under_the_minimum_support_is_insufficient_evidence():
    tiny_rows = auc(0.99, support=20, positives=10)
    few_positives = auc(0.99, support=1000, positives=4)
    few_negatives = auc(0.99, support=1000, positives=996)

    for candidate in (tiny_rows, few_positives, few_negatives):
        result = only(decide(criteria(absolute(min=0.5)), candidate, None))
        assert result.outcome == INSUFFICIENT and not result.passed
    assert (
        "support 20 rows / 10 positives / 10 negatives"
        in only(decide(criteria(absolute(min=0.5)), tiny_rows, None)).reason
    )
    lenient = criteria(absolute(min=0.5), min_slice_rows=10)
    assert only(decide(lenient, tiny_rows, None)).outcome == PASS


def test_a_declared_slice_with_no_rows_is_missing():
    gate = criteria(
        absolute(slices=["high_value"], min=0.5),
        slices=[{"name": "high_value", "where": "amount > 10000"}],
    )
    candidate = metrics(
        {
            "overall": {"roc_auc": 0.9},
            "high_value": {"roc_auc": math.nan, "support": 0, "positives": 0},
        }
    )

    result = only(decide(gate, candidate, None))

    assert result.outcome == MISSING and not result.passed
    assert "'high_value' has no rows" in result.reason


def test_an_expected_value_slice_that_is_absent_is_missing():
    gate = criteria(
        absolute(slices=["country"], min=0.5),
        slices=[{"by": "country", "expected_values": ["US", "FR"]}],
    )
    candidate = metrics({"overall": {"roc_auc": 0.9}, "country=US": {"roc_auc": 0.9}})

    (verdict,) = decide(gate, candidate, None).gates

    assert [(r.slice, r.outcome) for r in verdict.results] == [
        ("country=US", PASS),
        ("country=FR", MISSING),
    ]
    assert not verdict.passed


def test_expected_values_match_a_numeric_column_that_holds_missing_values():
    gate = criteria(
        {"name": "support", "kind": "support", "slices": ["card_present"], "min_rows": 1},
        slices=[{"by": "card_present", "expected_values": [0, 1]}],
    )
    frame = pd.DataFrame({"card_present": [0, 1, np.nan, 1]})  # read as floats 0.0, 1.0
    names = [s.name for s in build_slices(frame, gate)]
    candidate = metrics({name: {"support": 2, "positives": 1} for name in names})

    (verdict,) = decide(gate, candidate, None).gates

    assert names == ["overall", "card_present=0", "card_present=1"]
    assert [(r.slice, r.outcome) for r in verdict.results] == [
        ("card_present=0", PASS),
        ("card_present=1", PASS),
    ]


def test_a_value_slice_with_no_value_at_all_is_missing_not_silent():
    gate = criteria(absolute(slices=["country"], min=0.5), slices=[{"by": "country"}])

    result = only(decide(gate, auc(0.9), None))

    assert result.slice == "country" and result.outcome == MISSING


def test_a_metric_that_was_not_computed_is_missing():
    result = only(decide(criteria(absolute(metric="brier", max=0.2)), auc(0.9), None))

    assert result.outcome == MISSING and "brier was not computed" in result.reason


def test_without_a_champion_a_change_gate_fails_closed_by_default():
    verdict = decide(criteria(change(), absolute(min=0.5)), auc(0.9), None)

    assert [r.outcome for g in verdict.gates for r in g.results] == [NO_CHAMPION, PASS]
    assert not verdict.passed
    assert not verdict.champion_present
    assert any("no champion" in note for note in verdict.notes)


def test_without_a_champion_the_absolute_only_policy_lets_change_gates_pass():
    verdict = decide(
        criteria(change(), absolute(min=0.5), no_champion="absolute_only"), auc(0.9), None
    )

    assert [(r.outcome, r.passed) for g in verdict.gates for r in g.results] == [
        (NO_CHAMPION, True),
        (PASS, True),
    ]
    assert verdict.passed
    failing_floor = decide(
        criteria(change(), absolute(min=0.95), no_champion="absolute_only"), auc(0.9), None
    )
    assert not failing_floor.passed


@pytest.mark.parametrize(
    ("policy", "allowed"),
    [
        ({"allow_insufficient_evidence": True}, {INSUFFICIENT}),
        ({"allow_missing_slices": True}, {MISSING}),
        ({"no_champion": "absolute_only"}, {NO_CHAMPION}),
        ({}, set()),
    ],
)
def test_each_allow_policy_passes_its_own_outcome_and_nothing_else(policy, allowed):
    declared = {"name": "empty", "where": "amount > 10000"}
    gates = [
        dict(absolute(slices=["overall"], min=0.5), name="nan_metric"),
        dict(absolute(slices=["empty"], min=0.5), name="missing_slice"),
        dict(change(metric="accuracy", slices=["overall"]), name="no_champion"),
        dict(absolute(metric="accuracy", slices=["overall"], min=0.95), name="plain_fail"),
    ]
    candidate = metrics(
        {
            "overall": {"roc_auc": math.nan, "accuracy": 0.9},
            "empty": {"roc_auc": math.nan, "accuracy": math.nan, "support": 0, "positives": 0},
        }
    )

    verdict = decide(criteria(*gates, slices=[declared], **policy), candidate, None)

    outcomes = {g.name: (g.results[0].outcome, g.passed) for g in verdict.gates}
    assert outcomes == {
        "nan_metric": (INSUFFICIENT, INSUFFICIENT in allowed),
        "missing_slice": (MISSING, MISSING in allowed),
        "no_champion": (NO_CHAMPION, NO_CHAMPION in allowed),
        "plain_fail": (FAIL, False),
    }
    assert not verdict.passed


# --- non-inferiority: the interval decides ------------------------------------------------------


def intervals(**bounds: float) -> pd.DataFrame:
    row = {
        "slice": "overall",
        "metric": "roc_auc",
        "candidate_low": math.nan,
        "candidate_high": math.nan,
        "champion_low": math.nan,
        "champion_high": math.nan,
        "delta_low": math.nan,
        "delta_high": math.nan,
        **bounds,
    }
    return pd.DataFrame([row])


def test_non_inferiority_judges_the_pessimistic_bound_of_the_change():
    gate = criteria(change(mode="non_inferiority"))
    candidate, champion = auc(0.80), auc(0.80)  # no change at all as a point estimate

    ok = only(decide(gate, candidate, champion, intervals(delta_low=-0.008, delta_high=0.01)))
    wide = only(decide(gate, candidate, champion, intervals(delta_low=-0.012, delta_high=0.01)))

    assert ok.outcome == PASS and ok.mode == "non_inferiority"
    assert (ok.ci_low, ok.ci_high) == (-0.008, 0.01)
    assert wide.outcome == FAIL and "interval bound" in wide.reason
    point = only(
        decide(
            criteria(change()), candidate, champion, intervals(delta_low=-0.012, delta_high=0.01)
        )
    )
    assert point.outcome == PASS


def test_non_inferiority_for_a_lower_is_better_metric_judges_the_upper_bound():
    gate = criteria(change(metric="log_loss", mode="non_inferiority"))
    table = intervals(metric="log_loss", delta_low=-0.5, delta_high=0.006)
    candidate, champion = (metrics({"overall": {"log_loss": v}}) for v in (0.3, 0.3))

    assert only(decide(gate, candidate, champion, table)).outcome == FAIL  # +2% at the bound
    table.loc[0, "delta_high"] = 0.003
    assert only(decide(gate, candidate, champion, table)).outcome == PASS  # +1% at the bound


def test_non_inferiority_without_an_interval_is_insufficient_evidence():
    for gate in (change(mode="non_inferiority"), absolute(min=0.5, mode="non_inferiority")):
        result = only(decide(criteria(gate), auc(0.9), auc(0.8), None))

        assert result.outcome == INSUFFICIENT and not result.passed
    nan_interval = intervals(delta_low=math.nan, delta_high=math.nan)
    assert (
        only(
            decide(criteria(change(mode="non_inferiority")), auc(0.9), auc(0.8), nan_interval)
        ).outcome
        == INSUFFICIENT
    )


def test_the_policy_decision_mode_applies_to_gates_that_do_not_choose():
    gate = criteria(absolute(min=0.8), decision_mode="non_inferiority")
    table = intervals(candidate_low=0.78, candidate_high=0.9)

    result = only(decide(gate, auc(0.85), None, table))

    assert result.outcome == FAIL and result.mode == "non_inferiority"
    assert "0.78 < min 0.8" in result.reason


# --- fairness and support gates -----------------------------------------------------------------


def fairness_gate(**bounds) -> dict:
    bounds = bounds or {"max": 0.1}
    return {
        "name": "age_eod",
        "kind": "fairness",
        "attribute": "age_band",
        "metric": "equalized_odds_difference",
        **bounds,
    }


def fair_metrics(value: float, small: bool = False) -> ModelMetrics:
    groups = [
        {
            "attribute": "age_band",
            "group": "18-25",
            "support": 10 if small else 400,
            "positives": 40,
            "selection_rate": 0.1,
            "tpr": 0.70,
            "fpr": 0.05,
        },
        {
            "attribute": "age_band",
            "group": "26-40",
            "support": 600,
            "positives": 60,
            "selection_rate": 0.2,
            "tpr": 0.70 + value,
            "fpr": 0.06,
        },
    ]
    return metrics(
        {"overall": {"roc_auc": 0.9}}, groups, {("age_band", "equalized_odds_difference"): value}
    )


def test_a_fairness_gate_passes_within_its_bound_and_fails_beyond_it_naming_the_groups():
    gate = criteria(fairness_gate(max=0.1), fairness=["age_band"])

    ok = only(decide(gate, fair_metrics(0.1), None))
    bad = only(decide(gate, fair_metrics(0.25), None))

    assert ok.outcome == PASS and ok.slice == "fairness:age_band" and ok.support == 1000
    assert bad.outcome == FAIL
    assert "equalized_odds_difference 0.25 > max 0.1" in bad.reason
    assert "tpr 0.7 (18-25) to 0.95 (26-40)" in bad.reason


def test_a_fairness_gate_on_a_nan_disparity_or_a_small_group_is_insufficient_evidence():
    gate = criteria(fairness_gate(), fairness=["age_band"])

    undefined = only(decide(gate, fair_metrics(math.nan), None))
    small = only(decide(gate, fair_metrics(0.0, small=True), None))

    assert undefined.outcome == INSUFFICIENT and not undefined.passed
    assert small.outcome == INSUFFICIENT and not small.passed
    assert "18-25 under 30 rows" in small.reason


def test_a_fairness_gate_without_fairness_metrics_is_missing():
    gate = criteria(fairness_gate(), fairness=["age_band"])

    result = only(decide(gate, auc(0.9), None))

    assert result.outcome == MISSING and not result.passed


def test_a_ratio_fairness_gate_uses_its_minimum():
    gate = criteria(
        fairness_gate(metric="demographic_parity_ratio", min=0.8), fairness=["age_band"]
    )
    candidate = fair_metrics(0.0)
    candidate.disparities.loc[len(candidate.disparities)] = [
        "age_band",
        "demographic_parity_ratio",
        0.5,
    ]

    result = only(decide(gate, candidate, None))

    assert result.outcome == FAIL and "< min 0.8" in result.reason
    assert "selection_rate 0.1 (18-25) to 0.2 (26-40)" in result.reason


def test_a_support_gate_checks_rows_positives_and_negatives_of_each_slice():
    gate = criteria(
        {
            "name": "support",
            "kind": "support",
            "slices": "all",
            "min_rows": 200,
            "min_positives": 20,
            "min_negatives": 20,
        },
        slices=[{"name": "high_value", "where": "amount > 10000"}],
    )
    candidate = metrics({"overall": {}, "high_value": {"support": 150, "positives": 10}})

    (verdict,) = decide(gate, candidate, None).gates

    assert [(r.slice, r.outcome) for r in verdict.results] == [
        ("overall", PASS),
        ("high_value", FAIL),
    ]
    assert verdict.results[1].reason == "rows 150 < 200, positives 10 < 20"
    assert "high_value: rows 150 < 200" in verdict.summary()


# --- the verdict as a whole ---------------------------------------------------------------------


def test_a_verdict_with_no_gates_does_not_pass():
    verdict = decide(criteria(), auc(0.99), auc(0.5))

    assert verdict.gates == ()
    assert not verdict.passed
    assert any("no gates" in note for note in verdict.notes)


def test_every_gate_yields_at_least_one_result_whatever_the_metrics_hold():
    gates = criteria(
        absolute(slices="all", min=0.5),
        dict(change(slices="key"), name="change"),
        fairness_gate(),
        {"name": "support", "kind": "support", "slices": ["country"], "min_rows": 1},
        slices=[{"name": "high_value", "where": "amount > 1", "key": True}, {"by": "country"}],
        fairness=["age_band"],
    )
    empty = ModelMetrics(
        pd.DataFrame(columns=["support", "positives", "negatives", "roc_auc"]),
        pd.DataFrame(),
        pd.DataFrame(),
    )

    for candidate, champion in [(empty, None), (empty, empty), (auc(0.9), auc(0.9))]:
        verdict = decide(gates, candidate, champion)
        assert len(verdict.gates) == 4
        assert all(gate.results for gate in verdict.gates)
        assert all(r.outcome in OUTCOMES for g in verdict.gates for r in g.results)


def test_a_gate_that_selects_no_slice_still_reports_and_fails():
    base = criteria(absolute(min=0.5))
    # The loader refuses `slices: []`; criteria built in code bypassing validation still fail.
    selects_nothing = base.model_copy(
        update={"gates": [base.gates[0].model_copy(update={"slices": []})]}
    )

    result = only(decide(selects_nothing, auc(0.9), None))

    assert result.outcome == MISSING and not result.passed
    assert result.reason == "the gate selects no slice"


def test_the_verdict_carries_the_criteria_hash_and_serialises_to_strict_json():
    gate = criteria(change(metric="log_loss"))
    verdict = decide(
        gate, metrics({"overall": {"log_loss": 0.1}}), metrics({"overall": {"log_loss": 0.0}})
    )

    record = verdict.to_dict()
    text = json.dumps(record, allow_nan=False)

    assert record["criteria_hash"] == gate.digest()
    assert record["passed"] is False
    assert record["gates"][0]["results"][0]["relative_change"] == "inf"
    assert json.loads(text)["gates"][0]["name"] == "vs_champion"
    frame = verdict.results_frame()
    assert frame.loc[0, "outcome"] == FAIL


# --- through the evaluation pipeline ------------------------------------------------------------


def synthetic_rows(seed: int, n: int, positive_rate: float, bands: list[str], signals=(0.5, 0.1)):
    """Rows with an amount and an age band, labels, and one model's scores per signal strength."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({"amount": rng.exponential(5000, n), "age_band": rng.choice(bands, n)})
    y = rng.binomial(1, positive_rate, n)
    noise = [rng.normal(0, 0.15, n) for _ in signals]
    scores = [
        np.clip(positive_rate + s * (y - positive_rate) + e, 0, 1)
        for s, e in zip(signals, noise, strict=True)
    ]
    return frame, y, *scores


def test_evaluate_on_synthetic_scores_gives_a_verdict_from_real_metrics():
    frame, y, good, weak = synthetic_rows(7, 4000, 0.2, ["young", "old"])
    gates = criteria(
        absolute(min=0.7),
        change(slices="key"),
        fairness_gate(max=0.5),
        slices=[{"name": "high_value", "where": "amount > 5000", "key": True}],
        fairness=["age_band"],
        bootstrap={"resamples": 200, "seed": 1},
    )
    slices = build_slices(frame, gates)
    groups = {"age_band": frame["age_band"].to_numpy()}

    better = evaluate(gates, y, slices, groups, good, weak)
    worse = evaluate(gates, y, slices, groups, weak, good)

    assert better.verdict.passed
    assert [g.name for g in worse.verdict.failed_gates] == ["floor", "vs_champion"]
    assert set(better.intervals["slice"]) == {"overall", "high_value", "fairness:age_band"}
    result = better.verdict.gates[1].results[0]
    assert result.ci_low is not None and result.ci_low < result.change < result.ci_high
    assert better.candidate.value("overall", "roc_auc") > 0.85
    record = better.metrics_record()
    assert [s["slice"] for s in record["candidate"]["slices"]] == ["overall", "high_value"]

    # Stored champion metrics count as a champion even without its scores.
    reused = evaluate(gates, y, slices, groups, good, None, champion_metrics=better.champion)
    assert reused.verdict.champion_present
    assert reused.verdict.gates[1].results[0].champion == result.champion


def test_stored_metrics_read_back_bit_for_bit_and_decide_the_same_verdict():
    # `gate_verdict` reuses the `slice_metrics` record instead of recomputing it: the JSON round
    # trip must give the very tables, NaN (a single-class slice) and empty slices included.
    frame, y, good, weak = synthetic_rows(3, 3000, 0.1, ["a", "b"], signals=(0.5, 0.2))
    y[frame["amount"].to_numpy() > 30000] = 0  # a slice with one class: NaN AUC and AP
    gates = criteria(
        absolute(min=0.7),
        change(slices="all"),
        fairness_gate(max=0.5),
        slices=[
            {"name": "huge", "where": "amount > 30000"},
            {"name": "nobody", "where": "amount < 0"},
        ],
        fairness=["age_band"],
        bootstrap={"resamples": 100, "seed": 2},
    )
    slices = build_slices(frame, gates)
    groups = {"age_band": frame["age_band"].to_numpy()}
    fresh = evaluate(gates, y, slices, groups, good, weak)
    assert np.isnan(fresh.candidate.value("huge", "roc_auc"))

    def stored(model):
        return metrics_from_json(json.loads(to_json(metrics_json(model))))

    for original, back in (
        (fresh.candidate, stored(fresh.candidate)),
        (fresh.champion, stored(fresh.champion)),
    ):
        for name in ("slices", "fairness_groups", "disparities"):
            pd.testing.assert_frame_equal(
                getattr(original, name), getattr(back, name), check_exact=True
            )
    reused = evaluate(
        gates,
        y,
        slices,
        groups,
        good,
        weak,
        candidate_metrics=stored(fresh.candidate),
        champion_metrics=stored(fresh.champion),
    )
    assert to_json(reused.verdict.to_dict()) == to_json(fresh.verdict.to_dict())
    pd.testing.assert_frame_equal(reused.intervals, fresh.intervals, check_exact=True)


# --- values from the data, shown as text ---------------------------------------------------------


def test_a_support_gates_candidate_is_the_row_count_as_an_integer():
    """The support gate recorded float(rows), which every renderer then showed as a float
    (6e+04 in the HTML report, 60000.0000 in the Markdown verdict): a count is an int."""
    gate = criteria({"name": "support", "kind": "support", "slices": "all", "min_rows": 70_000})
    candidate = metrics({"overall": {"support": 60_000, "positives": 6_000}})

    (result,) = decide(gate, candidate, None).gates[0].results

    assert result.candidate == 60_000 and isinstance(result.candidate, int)
    assert result.reason == "rows 60000 < 70000"
    record = decide(gate, candidate, None).to_dict()["gates"][0]["results"][0]
    assert json.dumps(record["candidate"]) == "60000"


def test_a_key_value_slice_of_a_column_whose_name_holds_equals_covers_its_values():
    """Slice names are column=value; a column named "plan=tier" gives "plan=tier=gold", which
    the first "=" split into column "plan", so its key slice was reported as having no rows."""
    rng = np.random.default_rng(5)
    n = 2000
    frame = pd.DataFrame({"plan=tier": rng.choice(["gold", "basic", "a=b"], n)})
    y = rng.binomial(1, 0.3, n)
    scores = np.clip(0.3 + 0.4 * (y - 0.3) + rng.normal(0, 0.2, n), 0, 1)
    gates = criteria(
        {"name": "support", "kind": "support", "slices": "key", "min_rows": 100},
        absolute(slices="key", min=0.6),
        slices=[{"by": "plan=tier", "key": True}],
        bootstrap={"resamples": 0},
    )
    result = evaluate(gates, y, build_slices(frame, gates), {}, scores)

    expected = {"overall", "plan=tier=a=b", "plan=tier=basic", "plan=tier=gold"}
    for gate in result.verdict.gates:
        assert {r.slice for r in gate.results} == expected, gate.name
        assert all(r.outcome == PASS for r in gate.results), gate.summary()
    assert result.verdict.passed


def test_a_summary_shows_a_newline_in_a_slice_value_instead_of_starting_a_new_line():
    """The CLI prints one line per gate from `summary()`: a value with a newline could forge a
    line such as "✓ all_gates: passed"."""
    name = "country=US\n✓  floor: passed on 1 slice(s)"
    gate = criteria(absolute(slices=[name.split("=")[0]], min=0.9), slices=[{"by": "country"}])
    candidate = metrics({"overall": {"roc_auc": 0.95}, name: {"roc_auc": 0.5}})

    summary = decide(gate, candidate, None).gates[0].summary()

    assert "\n" not in summary
    assert "country=US\\n✓  floor" in summary
