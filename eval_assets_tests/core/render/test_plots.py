"""Pictures are what reviewers read, so they must be right, stable and safe.

Each picture must render for every verdict shape (a champion or none, undefined intervals, absent
slices), draw any slice value as text, and give identical bytes for identical inputs, or a rerun
of the same evaluation key would not reproduce its report.
"""

from __future__ import annotations

import struct
from dataclasses import replace

import numpy as np
import pytest

from eval_assets.core.gating import FAIL, GateResult, GateVerdict, Verdict
from eval_assets.core.render.plots import (
    DPI,
    confusion_matrices_png,
    confusion_matrix_png,
    gate_changes_png,
    roc_pr_curves_png,
)
from eval_assets_tests.support.toy_evaluation import HOSTILE, change_result, toy_case

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def case() -> dict:
    return toy_case()


def png_size(data: bytes) -> tuple[int, int]:
    assert data.startswith(PNG_MAGIC)
    return struct.unpack(">II", data[16:24])


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


def test_every_picture_draws_any_slice_value_as_text(case):
    """A category such as "$x^{$" was parsed as mathtext and raised, failing every evaluation of
    its snapshot with no file or column named; every picture that shows a slice name must
    draw any value (markup, control characters, 5000 characters) and stay reproducible."""
    ev, y = case["evaluation"], case["y"]
    verdict = Verdict(
        "0" * 64, True, (GateVerdict("g", "change", "", tuple(map(change_result, HOSTILE))),)
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
