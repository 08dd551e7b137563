"""Pictures of an evaluation, rendered to PNG bytes (the caller decides where).

Every function is pure: identical inputs give identical bytes (fixed figure sizes, fixed dpi, no
timestamp or software version in the PNG metadata), so a rerun of the same evaluation key
reproduces its pictures exactly. Every text from the data is drawn as text (`_short`, and
``parse_math=False``), never as mathtext.
"""

from __future__ import annotations

import io
import math
import re
import textwrap
from collections.abc import Mapping, Sequence

import numpy as np

# Figures are made with matplotlib's object API, never pyplot: no global figure registry and no
# GUI backend, so rendering is safe in servers, in CI and off the main thread (Agg writes PNGs).
from matplotlib.axes import Axes
from matplotlib.collections import PolyCollection
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from eval_assets.core.criteria import ChangeGate, Criteria
from eval_assets.core.gating import FAIL, PASS, GateResult, GateVerdict, Verdict
from eval_assets.core.metrics.binary import validate_inputs
from eval_assets.core.metrics.curves import roc_pr_curves
from eval_assets.core.text import visible
from eval_assets.core.vocabulary import HIGHER_IS_BETTER, OVERALL, ModelMetrics

DPI = 110
CANDIDATE_COLOUR = "#1f6fb4"
CHAMPION_COLOUR = "#555555"
OUTCOME_COLOURS = {PASS: "#2e7d32", FAIL: "#c62828"}
OTHER_COLOUR = "#ef8a00"
_LABEL_CHARS = 34


# --- confusion matrices -------------------------------------------------------------------------


def confusion_matrix_png(
    candidate: ModelMetrics,
    champion: ModelMetrics | None = None,
    slice_name: str = OVERALL,
    threshold: float | None = None,
) -> bytes:
    """Confusion matrices of the candidate (and champion) on one slice, as PNG bytes."""
    at = f" at threshold {threshold:g}" if threshold is not None else ""
    return _confusion_grid(
        [slice_name],
        _models(candidate, champion),
        1,
        f"Confusion matrices: {_short(slice_name, 60)}{at}",
    )


def confusion_matrices_png(
    candidate: ModelMetrics,
    champion: ModelMetrics | None,
    slices: Sequence[str],
    threshold: float | None = None,
) -> bytes:
    """A grid of confusion matrices: overall first, then each named slice, champion beside."""
    names = list(dict.fromkeys([OVERALL, *slices]))
    at = f" at threshold {threshold:g}" if threshold is not None else ""
    heading = f"Confusion matrices{at} (colour: share of the actual class)"
    # Slices per grid row: two with the champion beside each, three without.
    return _confusion_grid(names, _models(candidate, champion), 2 if champion else 3, heading)


def _models(
    candidate: ModelMetrics, champion: ModelMetrics | None
) -> list[tuple[str, ModelMetrics]]:
    return [("candidate", candidate)] + ([("champion", champion)] if champion else [])


# A confusion grid is laid out in inches straight on the figure: no Axes, ticks or layout pass per
# matrix (eight matrices took about 0.7 s as subplots fitted by `tight_layout`, a quarter of that
# this way). Per panel: a two-line title, the row labels, the 2x2 matrix, the column labels.
_PANEL_IN = (2.55, 2.5)
_MATRIX_IN = 1.5
_ROW_LABELS_IN = 0.72
_TITLE_BAND_IN = 0.5


def _confusion_grid(
    names: Sequence[str], models: Sequence[tuple[str, ModelMetrics]], per_row: int, heading: str
) -> bytes:
    n_cols = min(per_row, len(names)) * len(models)
    n_rows = math.ceil(len(names) / per_row)
    width = _PANEL_IN[0] * n_cols + 0.3
    height = _PANEL_IN[1] * n_rows + _TITLE_BAND_IN
    fig = Figure(figsize=(width, height))
    inches = fig.dpi_scale_trans
    fig.text(
        width / 2,
        height - 0.12,
        heading,
        transform=inches,
        ha="center",
        va="top",
        fontsize=11,
        parse_math=False,
    )
    cells: list[np.ndarray] = []
    shades: list[float] = []
    frames: list[np.ndarray] = []
    for index, name in enumerate(names):
        row, start = divmod(index, per_row)
        for offset, (label, metrics) in enumerate(models):
            left = 0.15 + _PANEL_IN[0] * (start * len(models) + offset) + _ROW_LABELS_IN
            top = height - _TITLE_BAND_IN - _PANEL_IN[1] * row - 0.45
            middle = left + _MATRIX_IN / 2
            fig.text(
                middle,
                top + 0.08,
                f"{_short(name)}\n{label}",
                transform=inches,
                ha="center",
                va="bottom",
                fontsize=9,
                parse_math=False,
            )
            frames.append(_square(left, top, _MATRIX_IN))
            counts = _confusion_counts(metrics, name)
            if counts is None:
                fig.text(
                    middle,
                    top - _MATRIX_IN / 2,
                    "slice absent\nfrom this evaluation",
                    transform=inches,
                    ha="center",
                    va="center",
                    fontsize=9,
                    color=OTHER_COLOUR,
                )
                continue
            _draw_confusion(fig, counts, left, top, cells, shades)
    fig.add_artist(
        PolyCollection(
            cells,
            array=np.asarray(shades),
            cmap="Blues",
            norm=Normalize(0.0, 1.0),
            edgecolors="white",
            linewidths=1.0,
            transform=inches,
        )
    )
    fig.add_artist(
        PolyCollection(
            frames, facecolors="none", edgecolors="#333333", linewidths=0.8, transform=inches
        )
    )
    return _png(fig)


def _confusion_counts(metrics: ModelMetrics, slice_name: str) -> np.ndarray | None:
    """[[tn, fp], [fn, tp]] of one slice, or None when the slice is not in the table."""
    table = metrics.slices
    if slice_name not in table.index or not {"tn", "fp", "fn", "tp"} <= set(table.columns):
        return None
    row = table.loc[slice_name]
    return np.array([[row["tn"], row["fp"]], [row["fn"], row["tp"]]], dtype=float)


def _draw_confusion(
    fig: Figure,
    counts: np.ndarray,
    left: float,
    top: float,
    cells: list[np.ndarray],
    shades: list[float],
) -> None:
    """One 2x2 matrix with its labels: counts and the share of each actual class, the cell
    shaded by that share (with rare positives, raw counts would hide the positive row)."""
    inches = fig.dpi_scale_trans
    side = _MATRIX_IN / 2
    totals = counts.sum(axis=1, keepdims=True)
    shares = np.divide(counts, totals, out=np.zeros_like(counts), where=totals > 0)
    for (i, j), count in np.ndenumerate(counts):
        x, y = left + j * side, top - (i + 1) * side
        cells.append(_square(x, y + side, side))
        shades.append(float(shares[i, j]))
        share = f"{shares[i, j]:.1%}" if totals[i, 0] > 0 else "n/a"
        fig.text(
            x + side / 2,
            y + side / 2,
            f"{int(count):,}\n{share}",
            transform=inches,
            ha="center",
            va="center",
            fontsize=8.5,
            color="white" if shares[i, j] > 0.55 else "black",
        )
    for i, label in enumerate(("actual 0", "actual 1")):
        y = top - (i + 0.5) * side
        fig.text(left - 0.08, y, label, transform=inches, ha="right", va="center", fontsize=8)
    for j, label in enumerate(("pred 0", "pred 1")):
        x = left + (j + 0.5) * side
        fig.text(
            x, top - _MATRIX_IN - 0.08, label, transform=inches, ha="center", va="top", fontsize=8
        )


def _square(left: float, top: float, side: float) -> np.ndarray:
    """Corners of a square given its top-left corner, in inches from the figure's bottom left."""
    return np.array(
        [(left, top), (left + side, top), (left + side, top - side), (left, top - side)]
    )


# --- ROC and precision-recall -------------------------------------------------------------------


def roc_pr_curves_png(
    y: np.ndarray,
    candidate_scores: np.ndarray,
    champion_scores: np.ndarray | None,
    slice_mask: np.ndarray | None = None,
    title: str = OVERALL,
    threshold: float | None = None,
) -> bytes:
    """ROC and precision-recall curves side by side, candidate and champion overlaid."""
    y, candidate_scores = validate_inputs(y, candidate_scores)
    models = [("candidate", candidate_scores)]
    if champion_scores is not None:
        models.append(("champion", validate_inputs(y, champion_scores)[1]))
    if slice_mask is not None:
        slice_mask = np.asarray(slice_mask, dtype=bool)
        if slice_mask.shape != y.shape:
            raise ValueError(f"slice_mask has shape {slice_mask.shape}, labels {y.shape}")
        y = y[slice_mask]
        models = [(name, s[slice_mask]) for name, s in models]
    n_pos = int(y.sum())
    drawn = []
    for name, scores in models:
        curve = roc_pr_curves(y, scores) if n_pos and n_pos < len(y) else {}
        point = None
        if threshold is not None:
            flagged = scores >= threshold
            tp = int(np.count_nonzero(flagged & (y == 1)))
            point = (tp, int(np.count_nonzero(flagged)) - tp)
        drawn.append((name, curve, point))
    return roc_pr_png(drawn, n_pos, len(y) - n_pos, title, threshold)


def roc_pr_png(
    curves: Sequence[tuple[str, Mapping[str, object], tuple[int, int] | None]],
    n_pos: int,
    n_neg: int,
    title: str = OVERALL,
    threshold: float | None = None,
) -> bytes:
    """`roc_pr_curves_png` from curves already computed: per model (candidate first), its name,
    its `roc_pr_curves` vertices with "auc" and "ap", and its (tp, fp) at the threshold."""
    styles = {"candidate": (CANDIDATE_COLOUR, "-"), "champion": (CHAMPION_COLOUR, "--")}
    fig = Figure(figsize=(11.0, 4.8))
    # Fixed margins fit the fixed labels; a `tight_layout` pass would measure every text again.
    roc_ax, pr_ax = fig.subplots(
        1, 2, gridspec_kw={"left": 0.06, "right": 0.985, "bottom": 0.115, "top": 0.855}
    )
    fig.suptitle(
        f"ROC and precision-recall: {_short(title, 60)} "
        f"({n_pos + n_neg:,} rows, {n_pos:,} positives)",
        fontsize=11,
        parse_math=False,
    )
    roc_ax.set(
        xlim=(0, 1),
        ylim=(0, 1.01),
        xlabel="false positive rate",
        ylabel="true positive rate",
        title="ROC",
    )
    pr_ax.set(
        xlim=(0, 1), ylim=(0, 1.01), xlabel="recall", ylabel="precision", title="Precision-recall"
    )
    for ax in (roc_ax, pr_ax):
        ax.grid(True, color="#dddddd", linewidth=0.6)
        ax.set_aspect("equal")
    if n_pos == 0 or n_neg == 0:
        for ax in (roc_ax, pr_ax):
            ax.text(
                0.5,
                0.5,
                "undefined: this slice has a single class",
                ha="center",
                va="center",
                transform=ax.transAxes,
                color=OTHER_COLOUR,
            )
        return _png(fig)

    roc_ax.plot([0, 1], [0, 1], color="#aaaaaa", linewidth=0.8, linestyle=":", label="chance")
    prevalence = n_pos / (n_pos + n_neg)
    pr_ax.axhline(
        prevalence,
        color="#aaaaaa",
        linewidth=0.8,
        linestyle=":",
        label=f"prevalence {prevalence:.3g}",
    )
    for name, curve, point in curves:
        colour, style = styles[name]
        roc_ax.plot(
            curve["fpr"],
            curve["tpr"],
            color=colour,
            linestyle=style,
            linewidth=1.6,
            label=f"{name} (AUC {curve['auc']:.4f})",
        )
        pr_ax.step(
            curve["recall"],
            curve["precision"],
            where="pre",
            color=colour,
            linestyle=style,
            linewidth=1.6,
            label=f"{name} (AP {curve['ap']:.4f})",
        )
        if point is not None:
            tp, fp = point
            roc_ax.plot(fp / n_neg, tp / n_pos, "o", color=colour, markersize=5)
            if tp + fp:
                pr_ax.plot(tp / n_pos, tp / (tp + fp), "o", color=colour, markersize=5)
    if threshold is not None:
        for ax in (roc_ax, pr_ax):
            ax.plot([], [], "o", color="#333333", markersize=5, label=f"threshold {threshold:g}")
    roc_ax.legend(loc="lower right", fontsize=8.5, framealpha=0.9)
    pr_ax.legend(loc="lower left", fontsize=8.5, framealpha=0.9)
    return _png(fig)


# --- the reviewer picture: gated changes --------------------------------------------------------


def gate_changes_png(verdict: Verdict, criteria: Criteria | None = None) -> bytes:
    """Each change gate's candidate-minus-champion change per slice, its interval and tolerance.

    Relative gates are drawn in percent of the champion's value, absolute gates in metric units.
    `criteria` (optional) supplies each gate's direction and exact tolerance; without it they
    come from the metric's usual direction and the verdict's threshold text.
    """
    gates = [g for g in verdict.gates if g.kind == "change" and g.results]
    compared = [g for g in gates if any(r.champion is not None for r in g.results)]
    if not verdict.champion_present or not compared:
        return _notice_png(verdict, gates)

    specs = {g.name: g for g in (criteria.gates if criteria else []) if isinstance(g, ChangeGate)}
    longest = max(len(_short(r.slice)) for g in gates for r in g.results)
    # Bold 9 pt labels take up to about 0.085 in per character.
    left_in, axes_w_in, right_in = 0.3 + 0.085 * longest, 5.2, 2.75
    fig_w = left_in + axes_w_in + right_in
    headline = _headline(verdict, width=int(fig_w * 8.5))
    row_in, head_in, foot_in = 0.36, 0.42, 0.55
    top_in = 0.3 + 0.25 * (headline.count("\n") + 1)
    legend_in = 0.45
    heights = [head_in + row_in * max(len(g.results), 1) + foot_in for g in gates]
    fig_h = top_in + sum(heights) + legend_in
    fig = Figure(figsize=(fig_w, fig_h))
    fig.text(
        0.5,
        1 - 0.12 / fig_h,
        headline,
        ha="center",
        va="top",
        fontsize=11.5,
        fontweight="bold",
        color=OUTCOME_COLOURS[PASS if verdict.passed else FAIL],
        parse_math=False,
    )
    y_top = fig_h - top_in
    for gate, height in zip(gates, heights, strict=True):
        bottom = y_top - height + foot_in
        ax = fig.add_axes(
            (
                left_in / fig_w,
                bottom / fig_h,
                axes_w_in / fig_w,
                (height - head_in - foot_in) / fig_h,
            )
        )
        _draw_change_panel(ax, gate, specs.get(gate.name), right_text_x=1.03)
        y_top -= height

    handles = [
        Line2D([], [], marker="o", color=OUTCOME_COLOURS[PASS], linestyle="none", label="pass"),
        Line2D([], [], marker="o", color=OUTCOME_COLOURS[FAIL], linestyle="none", label="fail"),
        Line2D(
            [],
            [],
            marker="D",
            color=OTHER_COLOUR,
            linestyle="none",
            label="other outcome (not a pass)",
        ),
        Line2D([], [], color="#444444", linewidth=1.2, label="confidence interval of the change"),
        Line2D([], [], color=OUTCOME_COLOURS[FAIL], linestyle="--", label="tolerance"),
        Patch(facecolor=OUTCOME_COLOURS[FAIL], alpha=0.08, label="blocked region"),
    ]
    fig.legend(
        handles=handles,
        loc="lower center",
        ncol=6,
        fontsize=8,
        frameon=False,
        bbox_to_anchor=(0.5, 0.08 / fig_h),
        handletextpad=0.4,
        columnspacing=1.2,
    )
    return _png(fig)


def _draw_change_panel(
    ax: Axes, gate: GateVerdict, spec: ChangeGate | None, right_text_x: float
) -> None:
    """One change gate: a row per slice, the change, its interval, the tolerance line."""
    results = list(gate.results)
    metric = results[0].metric
    relative, tolerance = _tolerance(results[0].threshold, spec)
    higher_is_better = (
        spec.higher_is_better if spec is not None else HIGHER_IS_BETTER.get(metric, True)
    )
    scale = 100.0 if relative else 1.0
    tolerance_x = (-tolerance if higher_is_better else tolerance) * scale

    points: list[tuple[float | None, float | None, float | None]] = []
    for r in results:
        value, low, high = _change_coordinates(r, relative)
        points.append((value, low, high))
    finite = [v for p in points for v in p if v is not None]
    span = [0.0, tolerance_x, *finite]
    lo, hi = min(span), max(span)
    pad = max((hi - lo) * 0.12, 0.5 if relative else 0.005)
    lo, hi = lo - pad, hi + pad
    ax.set_xlim(lo, hi)
    ax.set_ylim(len(results) - 0.5, -0.5)
    if higher_is_better:
        ax.axvspan(lo, tolerance_x, color=OUTCOME_COLOURS[FAIL], alpha=0.08, linewidth=0)
    else:
        ax.axvspan(tolerance_x, hi, color=OUTCOME_COLOURS[FAIL], alpha=0.08, linewidth=0)
    ax.axvline(0.0, color="#888888", linewidth=0.8)
    ax.axvline(tolerance_x, color=OUTCOME_COLOURS[FAIL], linestyle="--", linewidth=1.2)

    for i, (r, (value, low, high)) in enumerate(zip(results, points, strict=True)):
        colour = OUTCOME_COLOURS.get(r.outcome, OTHER_COLOUR)
        if value is None:
            ax.plot(0.0, i, marker="D", color=OTHER_COLOUR, markersize=6, linestyle="none")
        else:
            if low is not None and high is not None:
                ax.errorbar(
                    value,
                    i,
                    xerr=[[value - low], [high - value]],
                    fmt="none",
                    ecolor="#444444",
                    elinewidth=1.2,
                    capsize=3,
                )
            marker = "o" if r.outcome in OUTCOME_COLOURS else "D"
            ax.plot(
                value,
                i,
                marker=marker,
                color=colour,
                markersize=7,
                linestyle="none",
                markeredgecolor="white",
                markeredgewidth=0.6,
            )
        ax.text(
            right_text_x,
            i,
            _point_text(r, value, low, high, relative),
            ha="left",
            va="center",
            fontsize=8.5,
            color=colour,
            transform=ax.get_yaxis_transform(),
            clip_on=False,
            fontweight="bold" if not r.passed else "normal",
        )
    ax.set_yticks(
        range(len(results)), [_short(r.slice) for r in results], fontsize=9, parse_math=False
    )
    for label, r in zip(ax.get_yticklabels(), results, strict=True):
        if not r.passed:
            label.set_color(OUTCOME_COLOURS[FAIL])
            label.set_fontweight("bold")
    unit = "% of champion" if relative else "metric units"
    direction = "higher" if higher_is_better else "lower"
    ax.set_xlabel(f"candidate - champion {metric} ({unit}; {direction} is better)", fontsize=9)
    tolerance_text = f"{tolerance_x:+.2f}%" if relative else f"{tolerance_x:+.4g}"
    mode = results[0].mode
    decided = (
        "decided on the interval bound"
        if mode == "non_inferiority"
        else ("decided on the point estimate")
    )
    state = "passed" if gate.passed else "FAILED"
    ax.set_title(
        f"{gate.name}: {state}  (tolerance {tolerance_text}, {decided})",
        fontsize=9.5,
        loc="left",
        color=OUTCOME_COLOURS[PASS if gate.passed else FAIL],
        parse_math=False,
    )
    ax.tick_params(axis="x", labelsize=8.5)
    ax.grid(True, axis="x", color="#e4e4e4", linewidth=0.6)
    ax.set_axisbelow(True)


def _change_coordinates(
    r: GateResult, relative: bool
) -> tuple[float | None, float | None, float | None]:
    """The plotted change and its interval; None where it is undefined or infinite."""
    if r.change is None or r.champion is None or not _finite(r.change):
        return None, None, None
    low = r.ci_low if _finite(r.ci_low) else None
    high = r.ci_high if _finite(r.ci_high) else None
    if low is None or high is None:
        low = high = None
    if not relative:
        return r.change, low, high
    if r.relative_change is None or not _finite(r.relative_change) or r.champion == 0:
        return None, None, None
    # The interval is of the absolute change; in percent it is scaled by the champion's value.
    base = abs(r.champion) / 100.0
    return (
        r.relative_change * 100.0,
        None if low is None else low / base,
        None if high is None else high / base,
    )


def _point_text(
    r: GateResult, value: float | None, low: float | None, high: float | None, relative: bool
) -> str:
    if value is None:
        return f"{r.outcome.replace('_', ' ')}"
    fmt = (lambda v: f"{v:+.2f}%") if relative else (lambda v: f"{v:+.4f}")
    interval = (
        f" [{fmt(low)}, {fmt(high)}]"
        if low is not None and high is not None
        else (" (no interval)")
    )
    return f"{fmt(value)}{interval}  {r.outcome.replace('_', ' ')}"


def _tolerance(threshold: str, spec: ChangeGate | None) -> tuple[bool, float]:
    """(relative?, tolerance) of a change gate, from its spec or from its threshold text."""
    if spec is not None:
        if spec.max_relative_drop is not None:
            return True, float(spec.max_relative_drop)
        return False, float(spec.max_absolute_drop or 0.0)
    match = re.search(r"(relative|absolute) drop <= ([-+0-9.eE]+)(%?)", threshold)
    if not match:
        return True, 0.0
    number = float(match.group(2)) / (100.0 if match.group(3) else 1.0)
    return match.group(1) == "relative", number


def _headline(verdict: Verdict, width: int = 90) -> str:
    """BLOCKED with the failed gates and their slices, or PASSED."""
    if verdict.passed:
        return "PASSED: every gate passed"
    parts = []
    for gate in verdict.failed_gates:
        slices = list(dict.fromkeys(r.slice for r in gate.failures))
        shown = ", ".join(_short(s, 24) for s in slices[:3])
        more = f" +{len(slices) - 3} more" if len(slices) > 3 else ""
        parts.append(f"{gate.name} ({shown}{more})")
    text = "BLOCKED by " + "; ".join(parts) if parts else "BLOCKED: no gate results"
    lines = textwrap.wrap(text, width)
    if len(lines) > 2:
        lines = [lines[0], textwrap.shorten(" ".join(lines[1:]), width, placeholder=" …")]
    return "\n".join(lines)


def _notice_png(verdict: Verdict, change_gates: list[GateVerdict]) -> bytes:
    """A small figure explaining why there is no change to draw."""
    fig = Figure(figsize=(8.0, 2.4))
    if not change_gates:
        reason = "the criteria declare no change gate: nothing is compared with a champion"
    else:
        outcomes = sorted({r.outcome for g in change_gates for r in g.results})
        reason = (
            "no champion: change gates not applicable\n"
            f"({len(change_gates)} change gate(s) recorded {', '.join(outcomes)})"
        )
    fig.text(
        0.5,
        0.72,
        _headline(verdict, width=68),
        ha="center",
        va="center",
        fontsize=11,
        fontweight="bold",
        color=OUTCOME_COLOURS[PASS if verdict.passed else FAIL],
        parse_math=False,
    )
    fig.text(0.5, 0.36, reason, ha="center", va="center", fontsize=10.5, color="#333333")
    return _png(fig)


# --- helpers ------------------------------------------------------------------------------------


def _finite(value: object) -> bool:
    return isinstance(value, (int, float, np.number)) and math.isfinite(float(value))


def _short(text: str, limit: int = _LABEL_CHARS) -> str:
    # Every text from data in a picture goes through here, and is drawn with parse_math=False:
    # a value such as "$x^{$" is mathtext that does not parse, and raised inside savefig.
    return visible(text, limit)


def _png(fig: Figure) -> bytes:
    buffer = io.BytesIO()
    # A fixed metadata block keeps the bytes identical for identical inputs.
    fig.savefig(buffer, format="png", dpi=DPI, metadata={"Software": None})
    return buffer.getvalue()
