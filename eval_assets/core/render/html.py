"""The HTML report of an evaluation: one self-contained page, rendered to a string.

It is pure: identical inputs give an identical page (styles inline, images as data URIs, no clock),
so a rerun of the same evaluation key reproduces its report exactly. Every value from the data is
escaped, with invisible characters shown (`_e`).
"""

from __future__ import annotations

import base64
import html
import math
import re
from collections.abc import Mapping

import numpy as np
import pandas as pd

from eval_assets.core.gating import FAIL, PASS, GateVerdict, Verdict
from eval_assets.core.text import visible
from eval_assets.core.vocabulary import ModelMetrics

_SLICE_COLUMNS = (
    "support",
    "positives",
    "roc_auc",
    "pr_auc",
    "log_loss",
    "brier",
    "accuracy",
    "precision",
    "recall",
    "f1",
    "fpr",
    "selection_rate",
)
_COUNT_COLUMNS = {"support", "positives", "negatives", "tp", "fp", "tn", "fn"}
_CSS = """
body{font-family:-apple-system,"Segoe UI",Helvetica,Arial,sans-serif;margin:0;color:#222;
background:#f6f7f9;font-size:14px}
main{max-width:1280px;margin:0 auto;padding:0 24px 48px}
header{padding:20px 24px;color:#fff}
header.passed{background:#2e7d32}header.blocked{background:#c62828}
header.ungated{background:#455a64}
header h1{margin:0 0 6px;font-size:22px}
.badge{display:inline-block;font-weight:700;letter-spacing:.05em;border:2px solid #fff;
padding:2px 10px;border-radius:4px;margin-right:12px}
section{background:#fff;border:1px solid #dde1e6;border-radius:6px;margin:18px 0;padding:14px 18px;
overflow-x:auto}
h2{font-size:17px;margin:2px 0 10px}h3{font-size:14px;margin:14px 0 6px}
table{border-collapse:collapse;font-size:12.5px}
th,td{border:1px solid #dde1e6;padding:4px 8px;text-align:left;vertical-align:top}
th{background:#eef1f4;position:sticky;top:0}
td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
tr.fail td{background:#fdecea}tr.other td{background:#fff4e0}
td.outcome-pass{color:#2e7d32;font-weight:600}td.outcome-fail{color:#c62828;font-weight:700}
td.outcome-other{color:#b26500;font-weight:700}
table.kv th{width:220px}table.kv td{font-family:ui-monospace,Menlo,Consolas,monospace;
word-break:break-all}
ul.why{margin:6px 0 0;padding-left:20px}
figure{margin:12px 0 22px}figure img{max-width:100%;border:1px solid #dde1e6}
figcaption{font-size:12px;color:#555;margin-top:4px}
.note{color:#555;font-size:12.5px}
"""


def html_report(
    *,
    title: str,
    summary: Mapping[str, str],
    verdict: Verdict,
    candidate: ModelMetrics,
    champion: ModelMetrics | None,
    images: Mapping[str, bytes],
    mlflow_url: str | None = None,
    gated: bool = True,
) -> str:
    """A self-contained HTML page: verdict, summary, gate, slice and fairness tables, plots.

    Nothing is fetched from the network: styles are inline and images are data URIs. The only
    link is `mlflow_url`, when given (http or https). `gated=False` is a run that asked for no
    gates (the CLI without criteria gates or a champion): the page then shows metrics under a
    "no gates" header instead of a verdict, as the command itself says.
    """
    if mlflow_url is not None and not re.match(r"^https?://", mlflow_url):
        raise ValueError(f"mlflow_url must be an http(s) URL, got {mlflow_url!r}")
    state = ("passed" if verdict.passed else "blocked") if gated else "ungated"
    badge = "NO GATES" if state == "ungated" else state.upper()
    failed_slices = {r.slice for g in verdict.gates for r in g.results if not r.passed}
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{_e(title)} - {badge}</title>",
        f"<style>{_CSS}</style></head><body>",
        f'<header class="{state}"><h1><span class="badge">{badge}</span>{_e(title)}</h1>',
        f"<div>criteria hash {_e(verdict.criteria_hash)}; "
        f"champion {'compared on the same rows' if verdict.champion_present else 'absent'}</div>",
    ]
    if not gated:
        parts.append(
            "<div>no gates were asked for: these are metrics only, not a verdict "
            "(give criteria with gates, or a champion, to gate)</div>"
        )
    elif not verdict.passed:
        reasons = [_failure_item(g) for g in verdict.failed_gates] or [
            "<li>no gate produced a result: the verdict fails closed</li>"
        ]
        parts.append(f'<ul class="why">{"".join(reasons)}</ul>')
    parts.append("</header><main>")

    rows = [(key, _e(value)) for key, value in summary.items()]
    if mlflow_url is not None:
        rows.append(("MLflow run", f'<a href="{_e(mlflow_url)}">{_e(mlflow_url)}</a>'))
    parts.append("<section><h2>Summary</h2>" + _kv_table(rows))
    if verdict.notes:
        parts.append("".join(f'<p class="note">{_e(n)}</p>' for n in verdict.notes))
    parts.append("</section>")

    parts.append("<section><h2>Gate results</h2>" + _gate_table(verdict) + "</section>")

    parts.append("<section><h2>Per-slice metrics</h2>")
    parts.append("<h3>Candidate</h3>" + _slice_table(candidate.slices, failed_slices))
    if champion is not None:
        parts.append("<h3>Champion (same rows)</h3>" + _slice_table(champion.slices, failed_slices))
    parts.append("</section>")

    parts.append("<section><h2>Fairness groups</h2>")
    for label, metrics in [("Candidate", candidate)] + (
        [("Champion", champion)] if champion is not None else []
    ):
        parts.append(
            f"<h3>{label}</h3>"
            + _frame_table(metrics.fairness_groups, "no fairness attributes")
            + _frame_table(metrics.disparities, "")
        )
    parts.append("</section>")

    if images:
        parts.append("<section><h2>Plots</h2>")
        for name, data in images.items():
            uri = f"data:{_image_type(name, data)};base64,{base64.b64encode(data).decode('ascii')}"
            parts.append(
                f'<figure><img src="{uri}" alt="{_e(name)}"><figcaption>{_e(name)}'
                "</figcaption></figure>"
            )
        parts.append("</section>")
    parts.append("</main></body></html>\n")
    return "\n".join(parts)


def _failure_item(gate: GateVerdict, shown: int = 5) -> str:
    """One failed gate for the header: how many slices failed, and the first few reasons."""
    failures = gate.failures
    if not failures:
        return f"<li><b>{_e(gate.name)}</b>: {_e(gate.summary())}</li>"
    items = "".join(f"<li>{_e(r.slice)}: {_e(r.reason)}</li>" for r in failures[:shown])
    if len(failures) > shown:
        items += f"<li>and {len(failures) - shown} more (see the gate results)</li>"
    return (
        f"<li><b>{_e(gate.name)}</b> failed on {len(failures)} of {len(gate.results)} "
        f"slice(s)<ul>{items}</ul></li>"
    )


def _kv_table(rows: list[tuple[str, str]]) -> str:
    body = "".join(f"<tr><th>{_e(k)}</th><td>{v}</td></tr>" for k, v in rows)
    return f'<table class="kv">{body}</table>'


def _gate_table(verdict: Verdict) -> str:
    head = (
        "gate",
        "slice",
        "metric",
        "candidate",
        "champion",
        "change",
        "relative change",
        "interval",
        "threshold",
        "support",
        "outcome",
        "reason",
    )
    body = []
    for gate in verdict.gates:
        for r in gate.results:
            css = "" if r.outcome == PASS and r.passed else ("fail" if not r.passed else "other")
            outcome_css = (
                "pass" if r.passed and r.outcome == PASS else ("fail" if not r.passed else "other")
            )
            interval = (
                f"[{_num(r.ci_low)}, {_num(r.ci_high)}]"
                if r.ci_low is not None and r.ci_high is not None
                else "n/a"
            )
            support = "n/a" if r.support is None else f"{r.support:,}"
            if r.positives is not None:
                support += f" ({r.positives:,} pos)"
            cells = [
                f"<td>{_e(r.gate)}</td>",
                f"<td>{_e(r.slice)}</td>",
                f"<td>{_e(r.metric)}</td>",
                f'<td class="num">{_num(r.candidate)}</td>',
                f'<td class="num">{_num(r.champion)}</td>',
                f'<td class="num">{_num(r.change, signed=True)}</td>',
                f'<td class="num">{_pct(r.relative_change)}</td>',
                f'<td class="num">{_e(interval)}</td>',
                f"<td>{_e(r.threshold)}</td>",
                f'<td class="num">{_e(support)}</td>',
                f'<td class="outcome-{outcome_css}">{_e(r.outcome)}'
                f"{'' if r.passed or r.outcome == FAIL else ' (not a pass)'}"
                f"{' (allowed by policy)' if r.passed and r.outcome != PASS else ''}</td>",
                f"<td>{_e(r.reason)}</td>",
            ]
            body.append(f'<tr class="{css}">{"".join(cells)}</tr>')
    if not body:
        body.append(
            f'<tr class="fail"><td colspan="{len(head)}">no gate results: the verdict '
            "fails closed</td></tr>"
        )
    header = "".join(f"<th>{h}</th>" for h in head)
    return f"<table><thead><tr>{header}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _slice_table(table: pd.DataFrame, failed: set[str]) -> str:
    columns = [c for c in _SLICE_COLUMNS if c in table.columns]
    header = "<th>slice</th>" + "".join(f"<th>{_e(c)}</th>" for c in columns)
    body = []
    for name, row in table.iterrows():
        cells = "".join(f'<td class="num">{_cell(c, row[c])}</td>' for c in columns)
        css = ' class="fail"' if str(name) in failed else ""
        body.append(f"<tr{css}><td>{_e(name)}</td>{cells}</tr>")
    return f"<table><thead><tr>{header}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _frame_table(frame: pd.DataFrame, empty: str) -> str:
    if frame is None or frame.empty:
        return f'<p class="note">{_e(empty)}</p>' if empty else ""
    columns = list(frame.columns)
    if "attribute" in columns:  # the attribute first: it groups the rows
        columns = ["attribute"] + [c for c in columns if c != "attribute"]
    header = "".join(f"<th>{_e(c)}</th>" for c in columns)
    body = []
    for _, row in frame[columns].iterrows():
        cells = "".join(
            f'<td class="num">{_cell(c, row[c])}</td>'
            if isinstance(row[c], (int, float, np.number)) and not isinstance(row[c], bool)
            else f"<td>{_e(row[c])}</td>"
            for c in columns
        )
        body.append(f"<tr>{cells}</tr>")
    return (
        f'<table style="margin-bottom:10px"><thead><tr>{header}</tr></thead>'
        f"<tbody>{''.join(body)}</tbody></table>"
    )


def _cell(column: str, value: object) -> str:
    if column in _COUNT_COLUMNS and _finite(value):
        return f"{int(value):,}"  # type: ignore[arg-type]
    return _num(value)  # type: ignore[arg-type]


def _image_type(name: str, data: bytes) -> str:
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    raise ValueError(f"image {name!r} is neither PNG nor JPEG")


# --- helpers ------------------------------------------------------------------------------------


def _e(value: object) -> str:
    # Escaped for HTML, and invisible characters shown: a right-to-left override in a slice name
    # would otherwise reverse the rest of its table row.
    return html.escape(visible(value), quote=True)


def _finite(value: object) -> bool:
    return isinstance(value, (int, float, np.number)) and math.isfinite(float(value))


def _num(value: float | None, signed: bool = False) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return f"{value:,}"  # a count (a support gate's rows): 60,000, not 6e+04
    if not _finite(value):
        return _e(value)
    return f"{float(value):+.4g}" if signed else f"{float(value):.4g}"


def _pct(value: float | None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if not math.isfinite(value):
        return _e(value)
    return f"{value:+.2%}"
