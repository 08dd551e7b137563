"""The per-evaluation audit record: what was decided, on which bytes, by which code, and why.

One record per evaluation key. It holds no clock: who or what triggered the run and the run ids
are inputs, so the same evaluation renders to the same bytes on any machine, and a record is
written once and never changed in place (`write_audit_record`). `audit_json_schema()` is the
published JSON Schema every record validates against.
"""

from __future__ import annotations

import math
import os
import tempfile
from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from eval_assets.core.digests import file_digest
from eval_assets.core.evaluation import to_json
from eval_assets.core.gating import Verdict

AUDIT_SCHEMA_VERSION = 1
SHA256 = r"^[0-9a-f]{64}$"
# The closed vocabulary of gating.OUTCOMES (a test keeps the two equal).
Outcome = Literal["pass", "fail", "insufficient_evidence", "missing", "no_champion"]
Decision = Literal["eligible", "blocked", "promoted", "not_moved"]
TriggerKind = Literal["sensor", "schedule", "manual", "backfill", "cli"]


def _json_number(value: Any) -> Any:
    """NaN becomes null and infinities the strings "inf"/"-inf", as in verdict.json."""
    if isinstance(value, float) and not math.isfinite(value):
        return None if math.isnan(value) else ("inf" if value > 0 else "-inf")
    return value


# A finite number, an infinite one spelled as a string (a relative change against zero), or null.
Number = Annotated[
    Annotated[float, Field(allow_inf_nan=False)] | Literal["inf", "-inf"] | None,
    BeforeValidator(_json_number),
]
Sha256 = Annotated[str, Field(pattern=SHA256)]


class _Part(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, coerce_numbers_to_str=True)


class ModelRecord(_Part):
    """The candidate model version and the bytes that were scored."""

    name: str = Field(min_length=1)
    version: str = Field(min_length=1)
    artifact_digest: str = Field(min_length=1, description="SHA-256 of the artifact as scored")
    format: str | None = Field(None, description="artifact format, for example skops")
    run_id: str | None = Field(None, description="MLflow run that produced the version")
    source: str | None = Field(None, description="registry source URI of the artifact")


class SnapshotRecord(_Part):
    """The golden data snapshot the model was evaluated on."""

    dataset: str = Field(min_length=1)
    id: str = Field(min_length=1)
    sha256: Sha256
    rows: int = Field(ge=0)
    location: str | None = None


class CriteriaRecord(_Part):
    """The criteria that decided: canonical content hash, and the file it came from."""

    model: str = Field(min_length=1)
    hash: Sha256 = Field(description="canonical hash stamped on the verdict")
    file_sha256: Sha256 | None = Field(None, description="SHA-256 of the criteria file's bytes")
    path: str | None = None


class CodeRecord(_Part):
    """The code that evaluated: commit, evaluator version, locked dependencies."""

    git_commit: str | None = None
    evaluator_version: str = Field(min_length=1)
    lock_file_sha256: Sha256 | None = None


class ChampionRecord(_Part):
    """The champion compared against, and where its side of the comparison came from."""

    version: str = Field(min_length=1)
    evaluation: str | None = Field(
        None, description="reference to the champion's predictions (partition or materialization)"
    )
    artifact_digest: str | None = None


class GateRecord(_Part):
    """One gate on one slice: every field of gating.GateResult."""

    gate: str
    kind: Literal["absolute", "change", "fairness", "support"]
    slice: str
    metric: str
    outcome: Outcome
    passed: bool
    threshold: str
    candidate: Number = None
    champion: Number = None
    change: Number = None
    relative_change: Number = None
    ci_low: Number = None
    ci_high: Number = None
    support: int | None = None
    positives: int | None = None
    mode: Literal["point", "non_inferiority"] = "point"
    reason: str = ""


class PromotionRecord(_Part):
    """What happened to the champion alias, and why."""

    decision: Decision
    reason: str


class TriggerRecord(_Part):
    """Who or what started the run."""

    kind: TriggerKind
    name: str | None = Field(None, description="sensor, schedule or user name")
    dagster_run_id: str | None = None


class AuditRecord(_Part):
    """The audit record of one evaluation."""

    schema_version: Literal[1] = AUDIT_SCHEMA_VERSION
    evaluation_key: Sha256
    model: ModelRecord
    snapshot: SnapshotRecord
    criteria: CriteriaRecord
    code: CodeRecord
    champion: ChampionRecord | None
    gates: list[GateRecord]
    passed: bool
    promotion: PromotionRecord
    trigger: TriggerRecord
    mlflow_run_id: str | None = None

    @model_validator(mode="after")
    def _consistent(self) -> AuditRecord:
        every_gate_passed = bool(self.gates) and all(g.passed for g in self.gates)
        if self.passed != every_gate_passed:
            raise ValueError(
                f"passed is {self.passed} but the gate results say {every_gate_passed}"
            )
        decision = self.promotion.decision
        if decision in ("eligible", "promoted") and not self.passed:
            raise ValueError(f"promotion decision {decision!r} on a failed verdict")
        if decision == "blocked" and self.passed:
            raise ValueError("promotion decision 'blocked' on a passed verdict")
        return self


def audit_json_schema() -> dict[str, Any]:
    """The published JSON Schema of `AuditRecord` (draft 2020-12)."""
    schema = AuditRecord.model_json_schema()
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "eval-assets audit record",
        **{k: v for k, v in schema.items() if k != "title"},
    }


def build_audit_record(
    *,
    evaluation_key: str,
    verdict: Verdict,
    model: Mapping[str, Any] | ModelRecord,
    snapshot: Mapping[str, Any] | SnapshotRecord,
    criteria: Mapping[str, Any] | CriteriaRecord,
    code: Mapping[str, Any] | CodeRecord,
    champion: Mapping[str, Any] | ChampionRecord | None,
    trigger: Mapping[str, Any] | TriggerRecord,
    promotion: Mapping[str, Any] | PromotionRecord | None = None,
    mlflow_run_id: str | None = None,
) -> AuditRecord:
    """An audit record from the verdict and plain dicts; cross-checks what both state.

    The criteria hash defaults to the verdict's and must equal it; a champion is given exactly
    when the verdict compared against one. Without `promotion` the decision is ``eligible`` or
    ``blocked`` from the verdict (the promotion step records ``promoted`` or ``not_moved``).
    """
    criteria = _plain(criteria)
    stated = criteria.setdefault("hash", verdict.criteria_hash)
    if stated != verdict.criteria_hash:
        raise ValueError(
            f"criteria hash {stated} is not the hash the verdict was decided under "
            f"({verdict.criteria_hash})"
        )
    if (champion is not None) != verdict.champion_present:
        raise ValueError(
            "the verdict "
            + (
                "compared against a champion but none is recorded"
                if verdict.champion_present
                else "had no champion but one is recorded"
            )
        )
    return AuditRecord.model_validate(
        {
            "evaluation_key": evaluation_key,
            "model": _plain(model),
            "snapshot": _plain(snapshot),
            "criteria": criteria,
            "code": _plain(code),
            "champion": None if champion is None else _plain(champion),
            "gates": [asdict(r) for g in verdict.gates for r in g.results],
            "passed": verdict.passed,
            "promotion": default_promotion(verdict) if promotion is None else _plain(promotion),
            "trigger": _plain(trigger),
            "mlflow_run_id": mlflow_run_id,
        }
    )


def default_promotion(verdict: Verdict) -> dict[str, str]:
    """``eligible`` when every gate passed, else ``blocked`` naming the failed gates and slices."""
    if verdict.passed:
        return {"decision": "eligible", "reason": "every gate passed"}
    failed = [
        f"{g.name} ({', '.join(dict.fromkeys(r.slice for r in g.failures)) or 'no result'})"
        for g in verdict.failed_gates
    ]
    return {"decision": "blocked", "reason": "failed: " + "; ".join(failed or ["no gates"])}


def render_audit_record(record: AuditRecord) -> str:
    """Canonical JSON: sorted keys, NaN as null, a final newline; same record, same bytes."""
    return to_json(record.model_dump(mode="json"))


def write_audit_record(path: str | Path, record: AuditRecord) -> Path:
    """Write the record once: an identical existing record is kept, a different one refused."""
    path = Path(path)
    data = render_audit_record(record).encode("utf-8")
    if path.exists():
        if path.read_bytes() == data:
            return path
        raise FileExistsError(
            f"{path}: a different audit record exists; records are never rewritten"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        # A hard link fails if the name exists: two concurrent writers cannot both win.
        os.link(tmp, path)
    except FileExistsError:
        if path.read_bytes() != data:
            raise FileExistsError(
                f"{path}: a different audit record exists; records are never rewritten"
            ) from None
    finally:
        Path(tmp).unlink(missing_ok=True)
    return path


def lock_file_sha256(path: str | Path) -> str | None:
    """SHA-256 of the dependency lock file, or None when there is none (an installed package)."""
    path = Path(path)
    return file_digest(path) if path.is_file() else None


def _plain(part: Mapping[str, Any] | BaseModel) -> dict[str, Any]:
    return part.model_dump() if isinstance(part, BaseModel) else dict(part)
