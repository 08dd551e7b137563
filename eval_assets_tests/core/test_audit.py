"""The audit record is what an auditor follows from a promotion back to data, model and code.

It must validate against the published JSON Schema, render to identical bytes for the same
evaluation (records are written once and a rerun must reproduce them), refuse unknown fields,
and refuse to state things the verdict contradicts (another criteria hash, a champion the verdict
never saw, a promotion of a failed candidate).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import fields
from typing import get_args

import numpy as np
import pytest
from pydantic import ValidationError

from eval_assets.core import EVALUATOR_VERSION
from eval_assets.core.audit import (
    AuditRecord,
    GateRecord,
    Outcome,
    audit_json_schema,
    build_audit_record,
    lock_file_sha256,
    render_audit_record,
    write_audit_record,
)
from eval_assets.core.criteria import parse_criteria
from eval_assets.core.evaluation import evaluate
from eval_assets.core.gating import OUTCOMES, GateResult
from eval_assets.core.slicing import Slice

CRITERIA = """
model: toy
dataset: {id_column: id, label_column: y}
gates:
  - {name: auc_floor, kind: absolute, metric: roc_auc, min: 0.6}
  - {name: auc_vs_champion, kind: change, metric: roc_auc, slices: [overall],
     max_relative_drop: 0.01}
policy: {no_champion: absolute_only}
bootstrap: {resamples: 0}
"""
KEY = "a" * 64


@pytest.fixture(scope="module")
def evaluations():
    criteria = parse_criteria(CRITERIA)
    rng = np.random.default_rng(5)
    y = (rng.random(800) < 0.3).astype(np.int64)
    champion = np.clip(0.4 * y + rng.normal(0.3, 0.15, 800), 0, 1)
    worse = np.clip(0.2 * y + rng.normal(0.3, 0.15, 800), 0, 1)
    slices = [Slice("overall", np.ones(800, dtype=bool), key=True, kind="overall")]
    return {
        "criteria": criteria,
        "blocked": evaluate(criteria, y, slices, {}, worse, champion),
        "first": evaluate(criteria, y, slices, {}, champion, None),
    }


def parts(verdict, **overrides):
    base = dict(
        evaluation_key=KEY,
        verdict=verdict,
        model={
            "name": "toy",
            "version": 3,
            "artifact_digest": "b" * 64,
            "format": "skops",
            "run_id": "r1",
            "source": "models:/toy/3",
        },
        snapshot={
            "dataset": "golden",
            "id": "snap-1",
            "sha256": "c" * 64,
            "rows": 800,
            "location": "/data/golden/snap-1",
        },
        criteria={"model": "toy", "file_sha256": "d" * 64, "path": "criteria/toy.yaml"},
        code={
            "git_commit": "0123456789ab",
            "evaluator_version": EVALUATOR_VERSION,
            "lock_file_sha256": "e" * 64,
        },
        champion={"version": "2", "evaluation": "2|snap-1"} if verdict.champion_present else None,
        trigger={"kind": "sensor", "name": "toy_registry_sensor", "dagster_run_id": "run-1"},
        mlflow_run_id="mlflow-run-1",
    )
    return base | overrides


def test_a_built_record_validates_against_the_published_schema(evaluations):
    jsonschema = pytest.importorskip("jsonschema")
    schema = audit_json_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    for name in ("blocked", "first"):
        record = build_audit_record(**parts(evaluations[name].verdict))
        document = json.loads(render_audit_record(record))
        jsonschema.validate(document, schema, cls=jsonschema.Draft202012Validator)
        assert AuditRecord.model_validate(document) == record


def test_the_record_states_the_verdict_and_its_numbers(evaluations):
    verdict = evaluations["blocked"].verdict
    document = json.loads(render_audit_record(build_audit_record(**parts(verdict))))
    assert document["passed"] is False
    assert document["promotion"]["decision"] == "blocked"
    assert "auc_vs_champion (overall)" in document["promotion"]["reason"]
    assert document["criteria"]["hash"] == verdict.criteria_hash
    assert document["model"]["version"] == "3"
    gate = next(g for g in document["gates"] if g["gate"] == "auc_vs_champion")
    result = verdict.gates[1].results[0]
    assert gate["relative_change"] == result.relative_change
    assert gate["ci_low"] is None  # no bootstrap: the undefined interval is null, not NaN


def test_the_same_inputs_render_the_same_bytes(evaluations):
    verdict = evaluations["blocked"].verdict
    first = render_audit_record(build_audit_record(**parts(verdict)))
    second = render_audit_record(build_audit_record(**parts(verdict)))
    assert first == second
    assert first.endswith("\n") and "NaN" not in first
    assert list(json.loads(first)) == sorted(json.loads(first))
    reparsed = AuditRecord.model_validate_json(first)
    assert render_audit_record(reparsed) == first


def test_non_finite_numbers_become_null_or_a_string():
    gate = GateRecord(
        gate="g",
        kind="change",
        slice="s",
        metric="roc_auc",
        outcome="fail",
        passed=False,
        threshold="t",
        change=float("nan"),
        relative_change=float("-inf"),
    )
    assert gate.change is None and gate.relative_change == "-inf"


@pytest.mark.parametrize(
    "where", [(), ("model",), ("snapshot",), ("trigger",), ("code",), ("champion",)]
)
def test_unknown_fields_are_rejected(evaluations, where):
    document = json.loads(
        render_audit_record(build_audit_record(**parts(evaluations["blocked"].verdict)))
    )
    target = document
    for key in where:
        target = target[key]
    target["surprise"] = 1
    with pytest.raises(ValidationError, match="surprise"):
        AuditRecord.model_validate(document)


def test_an_unknown_gate_field_is_rejected(evaluations):
    document = json.loads(
        render_audit_record(build_audit_record(**parts(evaluations["blocked"].verdict)))
    )
    document["gates"][0]["surprise"] = 1
    with pytest.raises(ValidationError):
        AuditRecord.model_validate(document)


def test_gate_records_carry_every_gate_result_field_and_outcome():
    assert [f.name for f in fields(GateResult)] == list(GateRecord.model_fields)
    assert set(get_args(Outcome)) == set(OUTCOMES)


def test_a_criteria_hash_other_than_the_verdicts_is_refused(evaluations):
    verdict = evaluations["blocked"].verdict
    criteria = {"model": "toy", "hash": "f" * 64}
    with pytest.raises(ValueError, match="criteria hash"):
        build_audit_record(**parts(verdict, criteria=criteria))


def test_the_champion_must_match_the_verdict(evaluations):
    with pytest.raises(ValueError, match="champion"):
        build_audit_record(**parts(evaluations["blocked"].verdict, champion=None))
    with pytest.raises(ValueError, match="champion"):
        build_audit_record(
            **parts(evaluations["first"].verdict, champion={"version": "1", "evaluation": None})
        )


def test_a_failed_verdict_cannot_be_recorded_as_promoted(evaluations):
    verdict = evaluations["blocked"].verdict
    promotion = {"decision": "promoted", "reason": "someone insisted"}
    with pytest.raises(ValidationError, match="failed verdict"):
        build_audit_record(**parts(verdict, promotion=promotion))


def test_a_passed_first_version_is_eligible_and_can_record_the_move(evaluations):
    verdict = evaluations["first"].verdict
    assert verdict.passed
    assert build_audit_record(**parts(verdict)).promotion.decision == "eligible"
    moved = build_audit_record(
        **parts(verdict, promotion={"decision": "promoted", "reason": "alias moved"})
    )
    assert moved.champion is None and moved.promotion.decision == "promoted"


def test_records_are_written_once(evaluations, tmp_path):
    blocked = build_audit_record(**parts(evaluations["blocked"].verdict))
    path = tmp_path / "audit" / f"{KEY}.json"
    write_audit_record(path, blocked)
    write_audit_record(path, blocked)  # the same record again: kept as is
    assert path.read_text() == render_audit_record(blocked)
    other = build_audit_record(**parts(evaluations["blocked"].verdict, mlflow_run_id="other"))
    with pytest.raises(FileExistsError, match="never rewritten"):
        write_audit_record(path, other)
    assert path.read_text() == render_audit_record(blocked)
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary left behind


def test_lock_file_hash(tmp_path):
    lock = tmp_path / "uv.lock"
    lock.write_bytes(b"version = 1\n")
    assert lock_file_sha256(lock) == hashlib.sha256(b"version = 1\n").hexdigest()
    assert lock_file_sha256(tmp_path / "missing.lock") is None
