"""The HTML report is what auditors read: it must be right, stable and safe.

The page must be self-contained (no network), must name the gate and slice that blocked a model,
must never let a slice name inject markup or reorder text, and must be identical for identical
inputs.
"""

from __future__ import annotations

import re
from dataclasses import replace

import pytest

from eval_assets.core.evaluation import Evaluation
from eval_assets.core.gating import GateResult, GateVerdict, Verdict
from eval_assets.core.render.html import html_report
from eval_assets.core.render.plots import gate_changes_png
from eval_assets_tests.support.toy_evaluation import EVIL, HOSTILE, change_result, toy_case


@pytest.fixture(scope="module")
def case() -> dict:
    return toy_case()


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
    result = replace(change_result(HOSTILE[5]), gate="g")
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
