"""Evaluation results as Dagster UI metadata: tables, Markdown, check metadata, and the flat
metric names MLflow accepts.

Every text cell that holds a data value (a slice name) is escaped or cut here, once.
"""

import base64
import hashlib
import posixpath
from typing import Any

import numpy as np
import pyarrow as pa
from dagster import MetadataValue, TableColumn, TableRecord, TableSchema

from eval_assets.core.evaluation import Evaluation
from eval_assets.core.gating import GateVerdict
from eval_assets.core.text import markdown, visible
from eval_assets.core.vocabulary import METRIC_NAMES


def schema_metadata(schema: pa.Schema) -> TableSchema:
    """The column schema Dagster shows for a table, as its Parquet file types it."""
    return TableSchema(columns=[TableColumn(f.name, str(f.type)) for f in schema])


def prediction_metadata(summary: dict[str, Any]) -> dict[str, Any]:
    """A predictions file's rows, snapshot hash, mean score and flagged rate."""
    rows = summary["rows"]
    return {
        "rows": rows,
        "snapshot_sha256": summary["snapshot_sha256"],
        "mean_score": summary["score_sum"] / rows if rows else None,
        "predicted_positive_rate": summary["flagged"] / rows if rows else None,
    }


_TABLE_METRICS = (
    "support",
    "positives",
    "roc_auc",
    "pr_auc",
    "log_loss",
    "brier",
    "precision",
    "recall",
    "f1",
)


def metrics_metadata(record: dict[str, Any]) -> dict[str, Any]:
    """The per-slice metrics table and the overall AUCs of a `slice_metrics` record."""
    columns = [TableColumn("slice", "string")] + [
        TableColumn(m, "int" if m in _COUNTS else "float") for m in _TABLE_METRICS
    ]
    rows = [
        TableRecord(
            {
                "slice": visible(r["slice"], _NAME_CHARS),
                **{m: _count(r.get(m)) if m in _COUNTS else _num(r.get(m)) for m in _TABLE_METRICS},
            }
        )
        for r in record["slices"]
    ]
    overall = next((r for r in record["slices"] if r["slice"] == "overall"), {})
    return {
        "slices": MetadataValue.table(rows, schema=TableSchema(columns=columns)),
        "overall_roc_auc": _num(overall.get("roc_auc")),
        "overall_pr_auc": _num(overall.get("pr_auc")),
        "slice_count": len(record["slices"]),
    }


def verdict_metadata(record: dict[str, Any], result: Evaluation, url: str | None) -> dict[str, Any]:
    """The verdict as a Markdown table, one row per gate result, with the identity facts."""
    lines = [
        "| gate | slice | candidate | champion | change | interval | threshold | outcome |",
        "|---|---|---|---|---|---|---|---|",
    ]
    # Every text cell is escaped: a slice name holds a data value, and a "|" in it would forge a
    # cell, a "*" or "[" would turn into emphasis or a link.
    for gate in result.verdict.gates:
        for r in gate.results:
            lines.append(
                f"| {markdown(gate.name)} | {markdown(r.slice, _NAME_CHARS)} | "
                f"{_fmt(r.candidate)} | {_fmt(r.champion)} | {_fmt(r.change)} | "
                f"{_interval(r.ci_low, r.ci_high)} | {markdown(r.threshold)} | "
                f"**{markdown(r.outcome)}** |"
            )
    headline = (
        "PASSED: every gate passed"
        if result.verdict.passed
        else ("BLOCKED by " + ", ".join(markdown(g.name) for g in result.verdict.failed_gates))
    )
    metadata: dict[str, Any] = {
        "verdict": MetadataValue.md(f"### {headline}\n\n" + "\n".join(lines)),
        "passed": result.verdict.passed,
        "evaluation_key": record["evaluation_key"],
        "criteria_hash": record["criteria_hash"],
        "champion_version": str(record["champion_version"]),
        "champion_predictions": str(record["champion_partition"]),
        "snapshot_sha256": record["snapshot_sha256"],
        "artifact_digest": record["artifact_digest"],
        "mlflow_run_id": record["mlflow_run_id"],
    }
    if url:
        metadata["mlflow_run"] = MetadataValue.url(url)
    return metadata


def report_metadata(
    report: dict[str, Any], images: dict[str, bytes], url: str | None
) -> dict[str, Any]:
    """The report's gate picture inline, and where the report and audit record are stored."""
    encoded = base64.b64encode(images["gate_changes.png"]).decode()
    metadata: dict[str, Any] = {
        "gate_changes": MetadataValue.md(
            f"![changes against the champion with intervals and tolerance]"
            f"(data:image/png;base64,{encoded})"
        ),
        "report": MetadataValue.path(report["html"]),
        "audit_record": MetadataValue.path(report["audit"]),
    }
    if url:
        metadata["mlflow_run"] = MetadataValue.url(url)
    return metadata


def check_metadata(gate: GateVerdict) -> dict[str, Any]:
    """A gate's check result numbers: its worst result's slice, values, change and interval."""
    worst = gate.failures[0] if gate.failures else gate.results[0] if gate.results else None
    metadata: dict[str, Any] = {"outcomes": ", ".join(sorted({r.outcome for r in gate.results}))}
    if worst is not None:
        metadata |= {
            "slice": visible(worst.slice),
            "metric": worst.metric,
            "outcome": worst.outcome,
            "candidate": _count(worst.candidate)
            if worst.metric == "support"
            else _num(worst.candidate),
            "champion": _num(worst.champion),
            "change": _num(worst.change),
            "relative_change": _num(worst.relative_change),
            "interval": _interval(worst.ci_low, worst.ci_high),
            "threshold": worst.threshold,
            "support": worst.support if worst.support is not None else -1,
            "reason": worst.reason,
        }
    metadata["results"] = MetadataValue.json(
        [{k: v for k, v in r.__dict__.items()} for r in gate.results]
    )
    return metadata


def flat_metrics(result: Evaluation) -> dict[str, float]:
    """MLflow metrics: ``<metric>.<slice>`` for the candidate, finite values only."""
    out = {}
    names = _mlflow_names([str(s) for s in result.candidate.slices.index])
    for slice_name, row in result.candidate.slices.iterrows():
        for metric in METRIC_NAMES:
            value = row[metric]
            if np.isfinite(value):
                out[f"{metric}.{names[str(slice_name)]}"] = float(value)
    attributes = _mlflow_names([str(a) for a in result.candidate.disparities["attribute"]])
    for _, row in result.candidate.disparities.iterrows():
        if np.isfinite(row["value"]):
            out[f"{row['metric']}.{attributes[str(row['attribute'])]}"] = float(row["value"])
    return out


# MLflow refuses a metric name over 250 characters; the longest metric prefix is 31.
_MLFLOW_NAME_CHARS = 250 - 32


def _mlflow_names(texts: list[str]) -> dict[str, str]:
    """Each text's `_mlflow_name`, distinct: two texts that map to the same name (``a|b`` and
    ``a_b``) would log into one metric, the second silently replacing the first; each later
    one gets a digest of its own text appended."""
    out: dict[str, str] = {}
    taken: set[str] = set()
    for text in dict.fromkeys(texts):
        name = _mlflow_name(text)
        if name in taken:
            name = _mlflow_name(text, digest=True)
        out[text] = name
        taken.add(name)
    return out


def _mlflow_name(text: str, digest: bool = False) -> str:
    """`text` as the tail of an MLflow metric name, which MLflow refuses unless it is letters,
    digits and ``_-./ ``, at most 250 characters, and a path that does not resolve elsewhere
    (``a/../b``, ``a//b``, ``a/``). Ordinary names keep their text; any other character becomes
    ``_``, and a name that would still be refused loses its slashes or is cut, with a digest of
    the whole text so that cut names stay distinct."""
    name = "".join(c if c.isalnum() or c in "_-./ " else "_" for c in text)
    if "/" in name and posixpath.normpath(f"m.{name}") != f"m.{name}":
        name = name.replace("/", "_")
    if digest or len(name) > _MLFLOW_NAME_CHARS:
        tag = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:12]
        name = f"{name[: _MLFLOW_NAME_CHARS - len(tag) - 1]}-{tag}"
    return name


# Slice names in tables and Markdown are cut to this many characters (a value can be any size).
_NAME_CHARS = 200
_COUNTS = frozenset({"support", "positives"})


def _count(value: Any) -> int | None:
    """A count as the integer it is (a JSON or pandas round trip may have made it 60000.0)."""
    number = _num(value)
    return None if number is None else int(number)


def _num(value: Any) -> float | None:
    if value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if np.isfinite(number) else None


def _fmt(value: float | None) -> str:
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return f"{value:,}"  # a count (a support gate's rows): 60,000, not 60000.0000
    return "n/a" if value is None or not np.isfinite(value) else f"{value:.4f}"


def _interval(low: float | None, high: float | None) -> str:
    return "n/a" if low is None or high is None else f"[{low:.4f}, {high:.4f}]"
