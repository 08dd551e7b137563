"""One small evaluation, blocked on a key slice, and slice names that try to be markup: the
inputs the picture, HTML and curve tests share."""

from __future__ import annotations

import numpy as np
import pandas as pd

from eval_assets.core.criteria import parse_criteria
from eval_assets.core.evaluation import evaluate
from eval_assets.core.gating import FAIL, GateResult
from eval_assets.core.slicing import build_slices

EVIL = "<script>alert(1)</script>"
CRITERIA = """
model: toy
dataset: {id_column: id, label_column: y, threshold: 0.5}
slices:
  - {name: big, where: amount > 400, key: true}
  - {by: country}
fairness: [band]
gates:
  - {name: auc_floor, kind: absolute, metric: roc_auc, min: 0.6}
  - {name: auc_vs_champion, kind: change, metric: roc_auc, slices: key, max_relative_drop: 0.01}
  - {name: brier_vs_champion, kind: change, metric: brier, slices: [overall],
     max_absolute_drop: 0.01}
  - {name: band_eod, kind: fairness, attribute: band, metric: equalized_odds_difference, max: 0.5}
policy: {no_champion: absolute_only}
bootstrap: {resamples: 60, seed: 7}
"""

HOSTILE = [
    "country=$x^{$",  # mathtext that does not parse: raised inside savefig
    "country=$\\frac$",
    "country=$$",
    "country=a|b*_[x](y)<b>&amp;",
    "country=line\nbreak\ttab\x00",
    "country=\u202eright-to-left",
    "country=" + "w" * 5000,
]


def toy_data() -> tuple[pd.DataFrame, np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(11)
    n = 3000
    frame = pd.DataFrame(
        {
            "id": np.arange(n),
            "amount": rng.exponential(200.0, n),
            "country": rng.choice(["US", "CA", EVIL], n, p=[0.6, 0.3, 0.1]),
            "band": rng.choice(["young", "old"], n),
        }
    )
    y = (rng.random(n) < 0.25).astype(np.int64)
    champion = np.clip(0.45 * y + rng.normal(0.3, 0.15, n), 0.0, 1.0)
    # The candidate is as good overall but much noisier on big amounts: it must be blocked there.
    noise = np.where(frame["amount"] > 400, rng.normal(0.0, 0.45, n), 0.0)
    candidate = np.clip(0.45 * y + rng.normal(0.3, 0.15, n) + noise, 0.0, 1.0)
    return frame, y, candidate, champion


def toy_case() -> dict:
    criteria = parse_criteria(CRITERIA)
    frame, y, candidate, champion = toy_data()
    slices = build_slices(frame, criteria)
    fairness = {"band": frame["band"].to_numpy()}
    with_champion = evaluate(criteria, y, slices, fairness, candidate, champion)
    without = evaluate(criteria, y, slices, fairness, candidate, None)
    return {
        "criteria": criteria,
        "frame": frame,
        "y": y,
        "candidate": candidate,
        "champion": champion,
        "evaluation": with_champion,
        "first": without,
    }


def change_result(name: str) -> GateResult:
    return GateResult(
        gate="g",
        kind="change",
        slice=name,
        metric="roc_auc",
        outcome=FAIL,
        passed=False,
        threshold="relative drop <= 1.00%",
        candidate=0.8,
        champion=0.9,
        change=-0.1,
        relative_change=-0.111,
        ci_low=-0.15,
        ci_high=-0.05,
    )
