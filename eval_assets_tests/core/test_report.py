"""Reports are what reviewers and auditors read, so they must be right, stable and safe.

Each picture must render for every verdict shape (a champion or none, undefined intervals, absent
slices) and give identical bytes for identical inputs, or a rerun of the same evaluation key would
not reproduce its report. The HTML page must be self-contained (no network), must name the gate
and slice that blocked a model, and must never let a slice name inject markup.
"""

from __future__ import annotations

import re
import struct
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from eval_assets.core.criteria import parse_criteria
from eval_assets.core.evaluation import Evaluation, evaluate
from eval_assets.core.gating import FAIL, GateResult, GateVerdict, Verdict
from eval_assets.core.metrics.curves import roc_pr_curves
from eval_assets.core.render.html import html_report
from eval_assets.core.render.plots import (
    DPI,
    confusion_matrices_png,
    confusion_matrix_png,
    gate_changes_png,
    roc_pr_curves_png,
)
from eval_assets.core.slicing import build_slices

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
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


def _data() -> tuple[pd.DataFrame, np.ndarray, np.ndarray, np.ndarray]:
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


@pytest.fixture(scope="module")
def case() -> dict:
    criteria = parse_criteria(CRITERIA)
    frame, y, candidate, champion = _data()
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


def png_size(data: bytes) -> tuple[int, int]:
    assert data.startswith(PNG_MAGIC)
    return struct.unpack(">II", data[16:24])


def render_html(evaluation: Evaluation, **extra) -> str:
    return html_report(
        title="toy v2 on snap-1",
        summary={"model": "toy", "version": "2", "snapshot": "snap-1"},
        verdict=evaluation.verdict,
        candidate=evaluation.candidate,
        champion=evaluation.champion,
        images={"gate changes": gate_changes_png(evaluation.verdict)},
        **extra,
    )


def test_the_toy_case_is_blocked_on_the_big_slice(case):
    failures = [(r.gate, r.slice) for g in case["evaluation"].verdict.gates for r in g.failures]
    assert ("auc_vs_champion", "big") in failures


def test_every_picture_is_a_png_and_identical_for_identical_inputs(case):
    ev, y = case["evaluation"], case["y"]
    big = (case["frame"]["amount"] > 400).to_numpy()
    renders = [
        lambda: roc_pr_curves_png(y, case["candidate"], case["champion"]),
        lambda: roc_pr_curves_png(y, case["candidate"], None, big, title="big", threshold=0.5),
        lambda: gate_changes_png(ev.verdict),
        lambda: gate_changes_png(ev.verdict, case["criteria"]),
        lambda: confusion_matrices_png(ev.candidate, ev.champion, ["big", "absent"], 0.5),
        lambda: confusion_matrices_png(ev.candidate, None, ["big"], None),
        lambda: confusion_matrix_png(ev.candidate, ev.champion, "big", 0.5),
        lambda: confusion_matrix_png(ev.candidate),
    ]
    for render in renders:
        first, second = render(), render()
        assert first.startswith(PNG_MAGIC)
        assert first == second


def test_a_confusion_grid_has_a_panel_per_slice_and_model_and_draws_the_counts(case):
    ev = case["evaluation"]
    # overall and big, each with the champion beside: four panels in a row; alone: two.
    paired = confusion_matrices_png(ev.candidate, ev.champion, ["big"], 0.5)
    alone = confusion_matrices_png(ev.candidate, None, ["big"], 0.5)
    assert png_size(paired)[0] == round((4 * 2.55 + 0.3) * DPI)
    assert png_size(alone)[0] == round((2 * 2.55 + 0.3) * DPI)
    table = ev.candidate.slices.copy()
    table.loc["big", "tp"] += 1
    moved = confusion_matrices_png(replace(ev.candidate, slices=table), None, ["big"], 0.5)
    assert moved != alone


def test_the_curves_report_the_same_auc_and_ap_as_the_gated_metrics(case):
    y, scores = case["y"], case["candidate"]
    curve = roc_pr_curves(y, scores)
    overall = case["evaluation"].candidate.slices.loc["overall"]
    assert curve["auc"] == pytest.approx(overall["roc_auc"], abs=1e-12)
    assert curve["ap"] == pytest.approx(overall["pr_auc"], abs=1e-12)
    assert curve["fpr"][0] == 0.0 and curve["tpr"][-1] == 1.0


def test_curves_of_a_single_class_slice_render_an_explanation_instead_of_failing(case):
    y = case["y"]
    png = roc_pr_curves_png(y, case["candidate"], case["champion"], y == 1, title="positives")
    assert png.startswith(PNG_MAGIC)


def test_a_mask_of_the_wrong_length_is_refused(case):
    with pytest.raises(ValueError, match="slice_mask"):
        roc_pr_curves_png(case["y"], case["candidate"], None, np.ones(3, dtype=bool))


def test_without_a_champion_the_change_picture_explains_itself(case):
    verdict = case["first"].verdict
    assert not verdict.champion_present
    png = gate_changes_png(verdict)
    # The small notice figure (8 x 2.4 inches at 110 dpi), not an empty chart.
    assert png_size(png) == (880, 264)
    assert png == gate_changes_png(verdict)


def test_undefined_changes_and_intervals_are_drawn_without_failing():
    results = (
        GateResult(
            gate="g",
            kind="change",
            slice="nan_interval",
            metric="roc_auc",
            outcome=FAIL,
            passed=False,
            threshold="relative drop <= 1.00%",
            candidate=0.8,
            champion=0.9,
            change=-0.1,
            relative_change=-0.111,
            ci_low=float("nan"),
            ci_high=float("nan"),
        ),
        GateResult(
            gate="g",
            kind="change",
            slice="zero_champion",
            metric="roc_auc",
            outcome=FAIL,
            passed=False,
            threshold="relative drop <= 1.00%",
            candidate=0.0,
            champion=0.0,
            change=-0.0,
            relative_change=float("-inf"),
        ),
        GateResult(
            gate="g",
            kind="change",
            slice="tiny",
            metric="roc_auc",
            outcome="insufficient_evidence",
            passed=False,
            threshold="relative drop <= 1.00%",
            candidate=float("nan"),
        ),
        GateResult(
            gate="g",
            kind="change",
            slice="gone",
            metric="roc_auc",
            outcome="missing",
            passed=False,
            threshold="relative drop <= 1.00%",
            champion=None,
        ),
    )
    verdict = Verdict("0" * 64, True, (GateVerdict("g", "change", "", results),))
    png = gate_changes_png(verdict)
    assert png.startswith(PNG_MAGIC)
    assert png_size(png)[1] > 264  # a real chart, not the no-champion notice


def test_the_html_report_is_self_contained_and_names_what_blocked(case):
    html = render_html(case["evaluation"], mlflow_url="http://127.0.0.1:5000/#/runs/abc")

    urls = re.findall(r"https?://[^\s\"'<>]+", html)
    assert set(urls) == {"http://127.0.0.1:5000/#/runs/abc"}
    assert "<script" not in html.lower() and "<link" not in html.lower()
    assert "BLOCKED" in html
    failed_rows = [r for r in html.split("<tr") if 'class="fail"' in r]
    assert any("<td>auc_vs_champion</td><td>big</td>" in r for r in failed_rows)
    assert re.search(r'<img src="data:image/png;base64,[A-Za-z0-9+/=]+"', html)


def test_the_html_report_has_no_url_at_all_without_an_mlflow_link(case):
    html = render_html(case["first"])
    assert "http://" not in html and "https://" not in html
    assert "PASSED" in html


def test_slice_names_and_summary_values_are_escaped(case):
    html = render_html(case["evaluation"])
    assert EVIL not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    evil_summary = html_report(
        title=EVIL,
        summary={EVIL: EVIL},
        verdict=case["first"].verdict,
        candidate=case["first"].candidate,
        champion=None,
        images={EVIL: b"\x89PNG\r\n\x1a\nxx"},
    )
    assert "<script" not in evil_summary.lower()


def test_only_an_http_mlflow_link_is_accepted(case):
    with pytest.raises(ValueError, match="mlflow_url"):
        render_html(case["evaluation"], mlflow_url="javascript:alert(1)")


def test_the_html_report_is_identical_for_identical_inputs(case):
    assert render_html(case["evaluation"]) == render_html(case["evaluation"])


# --- values from the data, drawn and written as text --------------------------------------------

HOSTILE = [
    "country=$x^{$",  # mathtext that does not parse: raised inside savefig
    "country=$\\frac$",
    "country=$$",
    "country=a|b*_[x](y)<b>&amp;",
    "country=line\nbreak\ttab\x00",
    "country=\u202eright-to-left",
    "country=" + "w" * 5000,
]


def _change_result(name: str) -> GateResult:
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


def test_every_picture_draws_any_slice_value_as_text(case):
    """A category such as "$x^{$" was parsed as mathtext and raised, failing every evaluation of
    its snapshot with no file or column named; every picture that shows a slice name must
    draw any value (markup, control characters, 5000 characters) and stay reproducible."""
    ev, y = case["evaluation"], case["y"]
    verdict = Verdict(
        "0" * 64, True, (GateVerdict("g", "change", "", tuple(map(_change_result, HOSTILE))),)
    )
    renamed = {
        "big": HOSTILE[0],
        **{name: HOSTILE[i + 1] for i, name in enumerate(ev.candidate.slices.index[2:5])},
    }
    candidate = replace(ev.candidate, slices=ev.candidate.slices.rename(index=renamed))
    champion = replace(ev.champion, slices=ev.champion.slices.rename(index=renamed))
    renders = [
        lambda: gate_changes_png(verdict),
        lambda: confusion_matrices_png(candidate, champion, list(renamed.values()), 0.5),
        lambda: confusion_matrix_png(candidate, None, HOSTILE[0], 0.5),
        *[
            lambda name=name: roc_pr_curves_png(y, case["candidate"], None, title=name)
            for name in HOSTILE
        ],
    ]
    for render in renders:
        first = render()
        assert first.startswith(PNG_MAGIC)
        assert first == render()


def test_support_counts_are_integers_in_the_html_report(case):
    """A support gate's candidate is a row count: it read 6e+04 in the gate table."""
    result = GateResult(
        gate="support",
        kind="support",
        slice="overall",
        metric="support",
        outcome="pass",
        passed=True,
        threshold="rows >= 50000",
        candidate=60_000,
        support=60_000,
        positives=6_000,
    )
    verdict = Verdict("0" * 64, False, (GateVerdict("support", "support", "", (result,)),))
    page = html_report(
        title="t",
        summary={},
        verdict=verdict,
        candidate=case["first"].candidate,
        champion=None,
        images={},
    )
    row = next(r for r in page.split("<tr") if "<td>support</td>" in r)
    assert '<td class="num">60,000</td>' in row
    assert "6e+04" not in page and "60000.0" not in page


def test_the_html_report_shows_invisible_characters_instead_of_obeying_them(case):
    """html.escape leaves a right-to-left override or a NUL in place: the first reverses the
    rest of its table row on screen. They are shown as escapes."""
    result = replace(_change_result(HOSTILE[5]), gate="g")
    verdict = Verdict("0" * 64, True, (GateVerdict("g", "change", "", (result,)),))
    page = html_report(
        title="t",
        summary={"note": "a\x00b"},
        verdict=verdict,
        candidate=case["first"].candidate,
        champion=None,
        images={},
    )
    assert "\u202e" not in page and "\x00" not in page
    assert "country=\\u202eright-to-left" in page and "a\\x00b" in page
