"""Gating: criteria + metrics (+ the champion's metrics) -> a verdict, as data.

Each gate yields one result per slice it covers, with an outcome from a closed vocabulary:

- ``pass`` / ``fail``: the evidence decides;
- ``insufficient_evidence``: the slice is under its minimum support, or the metric is undefined
  (NaN, for example ROC AUC of a single-class slice), or the interval needed is undefined;
- ``missing``: the slice or metric the gate names does not exist in this evaluation;
- ``no_champion``: a change gate with nothing to compare against.

Only ``pass`` passes, unless the criteria's policy names another outcome explicitly
(``no_champion: absolute_only``, ``allow_insufficient_evidence``, ``allow_missing_slices``): the
gate fails closed. Point estimates decide in ``point`` mode; in ``non_inferiority`` mode the
interval's pessimistic bound must clear the tolerance.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import pandas as pd

from eval_assets.core.criteria import (
    AbsoluteGate,
    ChangeGate,
    Criteria,
    FairnessGate,
    SupportGate,
)
from eval_assets.core.slicing import select_slices
from eval_assets.core.text import visible
from eval_assets.core.vocabulary import ModelMetrics

PASS, FAIL = "pass", "fail"
INSUFFICIENT, MISSING, NO_CHAMPION = "insufficient_evidence", "missing", "no_champion"
OUTCOMES = (PASS, FAIL, INSUFFICIENT, MISSING, NO_CHAMPION)


@dataclass(frozen=True)
class GateResult:
    """One gate on one slice: the outcome and every number behind it.

    `candidate` is the metric's value, or for a support gate the slice's row count, an int.
    """

    gate: str
    kind: str
    slice: str
    metric: str
    outcome: str
    passed: bool
    threshold: str
    candidate: float | None = None
    champion: float | None = None
    change: float | None = None
    relative_change: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    support: int | None = None
    positives: int | None = None
    mode: str = "point"
    reason: str = ""


@dataclass(frozen=True)
class GateVerdict:
    """All results of one gate; it passes only when every result passed."""

    name: str
    kind: str
    description: str
    results: tuple[GateResult, ...]

    @property
    def passed(self) -> bool:
        return bool(self.results) and all(r.passed for r in self.results)

    @property
    def failures(self) -> tuple[GateResult, ...]:
        return tuple(r for r in self.results if not r.passed)

    def summary(self) -> str:
        """One line for a check result or an alert."""
        if not self.results:
            return f"{self.name}: no result (fails closed)"
        if self.passed:
            return f"{self.name}: passed on {len(self.results)} slice(s)"
        # A slice name holds a data value: a newline in it must not forge a line of output.
        return "; ".join(f"{visible(r.slice)}: {visible(r.reason)}" for r in self.failures)


@dataclass(frozen=True)
class Verdict:
    """The decision for one (candidate, snapshot, criteria) evaluation."""

    criteria_hash: str
    champion_present: bool
    gates: tuple[GateVerdict, ...]
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def passed(self) -> bool:
        # No gates at all is not evidence of anything: it fails closed.
        return bool(self.gates) and all(g.passed for g in self.gates)

    @property
    def failed_gates(self) -> tuple[GateVerdict, ...]:
        return tuple(g for g in self.gates if not g.passed)

    def results_frame(self) -> pd.DataFrame:
        """Every gate result as one row."""
        return pd.DataFrame([asdict(r) for g in self.gates for r in g.results])

    def to_dict(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "criteria_hash": self.criteria_hash,
            "champion_present": self.champion_present,
            "notes": list(self.notes),
            "gates": [
                {
                    "name": g.name,
                    "kind": g.kind,
                    "description": g.description,
                    "passed": g.passed,
                    "results": [_jsonable(asdict(r)) for r in g.results],
                }
                for g in self.gates
            ],
        }


def decide(
    criteria: Criteria,
    candidate: ModelMetrics,
    champion: ModelMetrics | None,
    intervals: pd.DataFrame | None = None,
) -> Verdict:
    """Apply every gate of the criteria; `intervals` is the paired bootstrap's long table."""
    ci = _IntervalLookup(intervals)
    present = list(candidate.slices.index)
    gates: list[GateVerdict] = []
    for gate in criteria.gates:
        if isinstance(gate, FairnessGate):
            results = [_fairness(gate, criteria, candidate, ci)]
        else:
            names = select_slices(gate.slices, criteria, present)
            results = [_slice_result(gate, criteria, s, candidate, champion, ci) for s in names]
            if not results:  # never silent: a gate that covers nothing says so, and fails closed
                results = [
                    GateResult(
                        gate=gate.name,
                        kind=gate.kind,
                        slice="(none)",
                        metric=getattr(gate, "metric", "support"),
                        outcome=MISSING,
                        passed=False,
                        threshold=_threshold_text(gate),
                        reason="the gate selects no slice",
                    )
                ]
        gates.append(
            GateVerdict(gate.name, gate.kind, gate.description or _describe(gate), tuple(results))
        )
    notes = []
    if champion is None:
        notes.append(
            f"no champion: change gates record {NO_CHAMPION} "
            f"(policy no_champion={criteria.policy.no_champion})"
        )
    if not criteria.gates:
        notes.append("the criteria declare no gates: nothing can pass")
    return Verdict(criteria.digest(), champion is not None, tuple(gates), tuple(notes))


def _slice_result(
    gate: AbsoluteGate | ChangeGate | SupportGate,
    criteria: Criteria,
    slice_name: str,
    candidate: ModelMetrics,
    champion: ModelMetrics | None,
    ci: _IntervalLookup,
) -> GateResult:
    policy = criteria.policy
    metric = getattr(gate, "metric", "support")
    base = dict(gate=gate.name, kind=gate.kind, slice=slice_name, metric=metric)
    threshold = _threshold_text(gate)
    if (
        slice_name not in candidate.slices.index
        or int(candidate.slices.at[slice_name, "support"]) == 0
    ):
        return GateResult(
            **base,
            outcome=MISSING,
            passed=policy.allow_missing_slices,
            threshold=threshold,
            reason=f"slice {slice_name!r} has no rows in this snapshot",
        )
    row = candidate.slices.loc[slice_name]
    support, positives = int(row["support"]), int(row["positives"])
    negatives = int(row["negatives"])
    base |= dict(support=support, positives=positives, threshold=threshold)

    if isinstance(gate, SupportGate):
        short = [
            f"{what} {have} < {need}"
            for what, have, need in (
                ("rows", support, gate.min_rows),
                ("positives", positives, gate.min_positives),
                ("negatives", negatives, gate.min_negatives),
            )
            if have < need
        ]
        ok = not short
        return GateResult(
            **base,
            outcome=PASS if ok else FAIL,
            passed=ok,
            candidate=support,  # a count: shown as one, never as 6e+04
            reason="support is sufficient" if ok else ", ".join(short),
        )

    mode = gate.mode or policy.decision_mode
    base["mode"] = mode
    if (
        support < policy.min_slice_rows
        or positives < policy.min_slice_positives
        or negatives < policy.min_slice_negatives
    ):
        return GateResult(
            **base,
            outcome=INSUFFICIENT,
            passed=policy.allow_insufficient_evidence,
            reason=(
                f"support {support} rows / {positives} positives / {negatives} negatives is under "
                f"the minimum {policy.min_slice_rows} / {policy.min_slice_positives} / "
                f"{policy.min_slice_negatives}"
            ),
        )
    value = candidate.value(slice_name, metric)
    if value is None:
        return GateResult(
            **base,
            outcome=MISSING,
            passed=policy.allow_missing_slices,
            reason=f"metric {metric} was not computed",
        )
    base["candidate"] = value
    if math.isnan(value):
        return GateResult(
            **base,
            outcome=INSUFFICIENT,
            passed=policy.allow_insufficient_evidence,
            reason=f"{metric} is undefined on this slice",
        )
    if isinstance(gate, AbsoluteGate):
        return _absolute(gate, base, value, ci, policy.allow_insufficient_evidence)
    return _change(gate, base, value, champion, criteria, ci)


def _absolute(
    gate: AbsoluteGate, base: dict, value: float, ci: _IntervalLookup, allow_insufficient: bool
) -> GateResult:
    low, high = ci.get(base["slice"], gate.metric, "candidate")
    base |= dict(ci_low=low, ci_high=high)
    if base["mode"] == "non_inferiority":
        if low is None or high is None:
            return GateResult(
                **base,
                outcome=INSUFFICIENT,
                passed=allow_insufficient,
                reason="non_inferiority mode needs a confidence interval and none is defined",
            )
        judged_low, judged_high = low, high
    else:
        judged_low = judged_high = value
    problems = []
    if gate.min is not None and judged_low < gate.min:
        problems.append(f"{gate.metric} {_fmt(judged_low)} < min {_fmt(gate.min)}")
    if gate.max is not None and judged_high > gate.max:
        problems.append(f"{gate.metric} {_fmt(judged_high)} > max {_fmt(gate.max)}")
    ok = not problems
    reason = (
        f"{gate.metric} {_fmt(value)} within {base['threshold']}" if ok else "; ".join(problems)
    )
    return GateResult(**base, outcome=PASS if ok else FAIL, passed=ok, reason=reason)


def _change(
    gate: ChangeGate,
    base: dict,
    value: float,
    champion: ModelMetrics | None,
    criteria: Criteria,
    ci: _IntervalLookup,
) -> GateResult:
    policy = criteria.policy
    if champion is None:
        allowed = policy.no_champion == "absolute_only"
        return GateResult(
            **base,
            outcome=NO_CHAMPION,
            passed=allowed,
            reason="no champion to compare with"
            + (" (policy absolute_only: change gates pass)" if allowed else " (fails closed)"),
        )
    reference = champion.value(base["slice"], gate.metric)
    if reference is None or math.isnan(reference):
        return GateResult(
            **base,
            champion=reference,
            outcome=INSUFFICIENT if reference is not None else MISSING,
            passed=policy.allow_insufficient_evidence
            if reference is not None
            else policy.allow_missing_slices,
            reason=f"champion's {gate.metric} is undefined or missing on this slice",
        )
    change = value - reference
    relative = _relative(change, reference)
    low, high = ci.get(base["slice"], gate.metric, "delta")
    base |= dict(
        champion=reference, change=change, relative_change=relative, ci_low=low, ci_high=high
    )

    better_up = gate.higher_is_better
    if base["mode"] == "non_inferiority":
        bound = low if better_up else high
        if bound is None:
            return GateResult(
                **base,
                outcome=INSUFFICIENT,
                passed=policy.allow_insufficient_evidence,
                reason="non_inferiority mode needs a confidence interval of the change",
            )
        judged = bound
    else:
        judged = change
    degradation = -judged if better_up else judged
    if gate.max_relative_drop is not None:
        measured = _relative(degradation, reference)
        tolerance = gate.max_relative_drop
        unit = "relative"
    else:
        measured, tolerance, unit = degradation, gate.max_absolute_drop or 0.0, "absolute"
    ok = measured <= tolerance + 1e-12
    what = "interval bound" if base["mode"] == "non_inferiority" else "point estimate"
    reason = (
        f"{gate.metric} {_fmt(value)} vs champion {_fmt(reference)}: {unit} degradation "
        f"{_pct(measured) if unit == 'relative' else _fmt(measured)} ({what}) "
        f"{'<=' if ok else '>'} tolerance "
        f"{_pct(tolerance) if unit == 'relative' else _fmt(tolerance)}"
    )
    return GateResult(**base, outcome=PASS if ok else FAIL, passed=ok, reason=reason)


def _fairness(
    gate: FairnessGate, criteria: Criteria, candidate: ModelMetrics, ci: _IntervalLookup
) -> GateResult:
    policy = criteria.policy
    slice_name = f"fairness:{gate.attribute}"
    base = dict(
        gate=gate.name,
        kind=gate.kind,
        slice=slice_name,
        metric=gate.metric,
        threshold=_threshold_text(gate),
        mode="point",
    )
    groups = candidate.fairness_groups
    groups = groups[groups["attribute"] == gate.attribute] if len(groups) else groups
    value = candidate.disparity(gate.attribute, gate.metric)
    if value is None or groups.empty:
        return GateResult(
            **base,
            outcome=MISSING,
            passed=policy.allow_missing_slices,
            reason=f"no fairness metrics for attribute {gate.attribute!r}",
        )
    base |= dict(support=int(groups["support"].sum()), positives=int(groups["positives"].sum()))
    low, high = ci.get(slice_name, gate.metric, "candidate")
    base |= dict(candidate=value, ci_low=low, ci_high=high)
    small = groups[groups["support"] < policy.min_slice_rows]
    if len(small) or math.isnan(value):
        detail = (
            f"group(s) {', '.join(map(str, small['group']))} under {policy.min_slice_rows} rows"
            if len(small)
            else f"{gate.metric} is undefined (a group has no positives or no negatives)"
        )
        return GateResult(
            **base, outcome=INSUFFICIENT, passed=policy.allow_insufficient_evidence, reason=detail
        )
    problems = []
    if gate.max is not None and value > gate.max:
        problems.append(f"{gate.metric} {_fmt(value)} > max {_fmt(gate.max)}")
    if gate.min is not None and value < gate.min:
        problems.append(f"{gate.metric} {_fmt(value)} < min {_fmt(gate.min)}")
    ok = not problems
    if not ok:
        worst = _worst_groups(groups, gate.metric)
        problems.append(worst)
    reason = (
        f"{gate.metric} {_fmt(value)} within {base['threshold']}" if ok else "; ".join(problems)
    )
    return GateResult(**base, outcome=PASS if ok else FAIL, passed=ok, reason=reason)


def _worst_groups(groups: pd.DataFrame, metric: str) -> str:
    rate = "selection_rate" if metric.startswith("demographic") else None
    columns = [rate] if rate else ["tpr", "fpr"]
    parts = []
    for column in columns:
        ordered = groups.sort_values(column)
        lo, hi = ordered.iloc[0], ordered.iloc[-1]
        parts.append(
            f"{column} {_fmt(lo[column])} ({lo['group']}) to {_fmt(hi[column])} ({hi['group']})"
        )
    return ", ".join(parts)


class _IntervalLookup:
    """(slice, metric) -> (low, high) from the bootstrap's long table."""

    def __init__(self, intervals: pd.DataFrame | None):
        self._table = (
            intervals.set_index(["slice", "metric"])
            if intervals is not None and len(intervals)
            else None
        )

    def get(self, slice_name: str, metric: str, side: str) -> tuple[float | None, float | None]:
        if self._table is None or (slice_name, metric) not in self._table.index:
            return None, None
        row = self._table.loc[(slice_name, metric)]
        low, high = float(row[f"{side}_low"]), float(row[f"{side}_high"])
        if math.isnan(low) or math.isnan(high):
            return None, None
        return low, high


def _relative(change: float, reference: float) -> float:
    if reference == 0:
        # A change against zero has no finite relative size; no change is still no change.
        return 0.0 if change == 0 else math.copysign(math.inf, change)
    return change / abs(reference)


def _threshold_text(gate: Any) -> str:
    if isinstance(gate, SupportGate):
        return (
            f"rows >= {gate.min_rows}, positives >= {gate.min_positives}, "
            f"negatives >= {gate.min_negatives}"
        )
    if isinstance(gate, ChangeGate):
        if gate.max_relative_drop is not None:
            return f"relative drop <= {_pct(gate.max_relative_drop)}"
        return f"absolute drop <= {_fmt(gate.max_absolute_drop or 0.0)}"
    bounds = []
    if gate.min is not None:
        bounds.append(f">= {_fmt(gate.min)}")
    if gate.max is not None:
        bounds.append(f"<= {_fmt(gate.max)}")
    return " and ".join(bounds)


def _describe(gate: Any) -> str:
    if isinstance(gate, FairnessGate):
        return f"{gate.metric} across {gate.attribute} {_threshold_text(gate)}"
    if isinstance(gate, SupportGate):
        return f"minimum support on {_selector_text(gate.slices)} slices"
    if isinstance(gate, ChangeGate):
        direction = "higher" if gate.higher_is_better else "lower"
        return (
            f"{gate.metric} ({direction} is better) vs champion on {_selector_text(gate.slices)} "
            f"slices: {_threshold_text(gate)}"
        )
    return f"{gate.metric} {_threshold_text(gate)} on {_selector_text(gate.slices)} slices"


def _selector_text(selector: Any) -> str:
    return selector if isinstance(selector, str) else ", ".join(selector)


def _fmt(value: float | None) -> str:
    if value is None:
        return "n/a"
    if math.isinf(value) or math.isnan(value):
        return str(value)
    return f"{value:.4g}"


def _pct(value: float) -> str:
    return f"{value:.2%}" if math.isfinite(value) else str(value)


def _jsonable(record: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for key, value in record.items():
        if isinstance(value, float) and not math.isfinite(value):
            value = None if math.isnan(value) else str(value)
        out[key] = value
    return out
