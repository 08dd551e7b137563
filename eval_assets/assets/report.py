"""The `evaluation_report` files: HTML report and plots per partition, and the write-once JSON
audit record per evaluation key."""

from pathlib import Path
from typing import Any

from dagster import AssetExecutionContext

from eval_assets.core import EVALUATOR_VERSION
from eval_assets.core.audit import build_audit_record, lock_file_sha256, render_audit_record
from eval_assets.core.criteria import Criteria
from eval_assets.core.digests import file_digest
from eval_assets.core.evaluation import Evaluation
from eval_assets.resources.snapshots import SnapshotInfo
from eval_assets.resources.storage import EvaluationStore

REPO_ROOT = Path(__file__).resolve().parents[2]


def write_report(
    context: AssetExecutionContext,
    criteria: Criteria,
    source: Path | None,
    result: Evaluation,
    record: dict[str, Any],
    facts: dict[str, Any],
    snapshot: SnapshotInfo,
    store: EvaluationStore,
    html: str,
    images: dict[str, bytes],
) -> dict[str, Any]:
    """Store the HTML, the plots and the audit record; the record is written once per key."""
    folder = store.report_folder(criteria.model, context.partition_key)
    locations = {"html": store.write(f"{folder}/report.html", html.encode())}
    for name, data in images.items():
        locations[name] = store.write(f"{folder}/{name}", data)
    tags = context.run.tags
    sensor = tags.get("dagster/sensor_name")
    audit = build_audit_record(
        evaluation_key=record["evaluation_key"],
        verdict=result.verdict,
        model={
            "name": criteria.model,
            "version": facts["version"],
            "artifact_digest": facts["digest"],
            "format": facts["format"],
            "run_id": facts["run_id"],
            "source": facts["source"],
        },
        snapshot={
            "dataset": criteria.dataset.name,
            "id": snapshot.snapshot_id,
            "sha256": snapshot.sha256,
            "rows": snapshot.rows,
            "location": snapshot.location,
        },
        criteria={
            "model": criteria.model,
            "hash": criteria.digest(),
            "file_sha256": file_digest(source) if source else None,
            "path": _relative(source) if source else None,
        },
        code={
            "git_commit": record["git_commit"],
            "evaluator_version": EVALUATOR_VERSION,
            "lock_file_sha256": lock_file_sha256(REPO_ROOT / "uv.lock"),
        },
        champion=(
            {"version": record["champion_version"], "evaluation": record["champion_partition"]}
            if record["champion_version"]
            else None
        ),
        trigger={
            "kind": "sensor" if sensor else "manual",
            "name": sensor or tags.get("user"),
            "dagster_run_id": context.run.run_id,
        },
        mlflow_run_id=record["mlflow_run_id"],
    )
    audit_path = store.audit(criteria.model, record["evaluation_key"])
    existing = store.read(audit_path)
    if existing is None:
        locations["audit"] = store.write(audit_path, render_audit_record(audit).encode())
    else:
        # Write once: the first evaluation of this key (and who triggered it) stands.
        context.log.info(f"audit record for {record['evaluation_key'][:12]} exists; kept as is")
        locations["audit"] = store.location(audit_path)
    return {"evaluation_key": record["evaluation_key"], "passed": record["passed"], **locations}


def _relative(path: Path) -> str:
    # Repository-relative, so the same evaluation gives the same record on any checkout.
    try:
        return path.resolve().relative_to(REPO_ROOT).as_posix()
    except ValueError:
        return str(path)
