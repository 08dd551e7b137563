"""Data values that look like markup, through the whole Dagster graph (fake registry, local stores).

A slice name is ``column=value`` with the value taken from the snapshot, so a snapshot decides
what text reaches the Markdown verdict, the check metadata, the HTML report, the PNG plots and the
MLflow metric names. A value such as ``$x^{$`` crashed every evaluation of its snapshot inside
matplotlib's mathtext, ``a|b`` forged a cell of the verdict table, and a column named ``plan=tier``
lost its key slices ("has no rows" though it has). Here such a snapshot is evaluated end to end.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import numpy as np
import pytest
import yaml
from dagster import AssetKey, DagsterInstance
from sklearn.metrics import average_precision_score, roc_auc_score

from eval_assets.definitions import Settings, build_definitions
from eval_assets.partitions import model_version_partitions, pair_key, snapshot_partitions
from eval_assets.resources.snapshots import LocalSnapshotStore
from eval_assets.resources.storage import LocalEvaluationStore, OpenFormatIOManager
from eval_assets_tests.support.factories import (
    CATEGORICAL,
    DATASET,
    MODEL,
    NUMERIC,
    REPO,
    golden_frame,
    save_mlflow_model,
    train,
    write_criteria,
)
from eval_assets_tests.support.fakes import FakeModelRegistry, RecordingNotifier

ROWS = 6000
SNAPSHOT = "hostile"
SEGMENTS = ["$x^{$", "a|b", "<script>alert(1)</script>"]
TIERS = ["gold", "basic*_[x](y)"]


def _criteria(folder: Path) -> Path:
    """The real criteria plus two key value slices: `segment` (hostile values) and a column whose
    name holds "=" (`plan=tier`); test-sized support, bootstrap and fairness bound."""
    data = yaml.safe_load((REPO / "criteria" / f"{MODEL}.yaml").read_text())
    data["dataset"]["columns"] |= {"segment": "string", "plan=tier": "string"}
    data["slices"] += [{"by": "segment", "key": True}, {"by": "plan=tier", "key": True}]
    for gate in data["gates"]:
        if gate["kind"] == "support":
            gate["min_rows"], gate["min_positives"] = 50, 5
        if gate["kind"] == "fairness":
            gate["max"] = 0.5
    return write_criteria(
        folder,
        dataset=data["dataset"],
        slices=data["slices"],
        gates=data["gates"],
        bootstrap={"resamples": 100, "seed": 7, "confidence": 0.95},
    )


def _cells(row: str) -> int:
    """Cells of one Markdown table row: unescaped pipes, less one."""
    pipes, escaped = 0, False
    for character in row:
        if escaped:
            escaped = False
        elif character == "\\":
            escaped = True
        elif character == "|":
            pipes += 1
    return pipes - 1


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory: pytest.TempPathFactory):
    tmp = tmp_path_factory.mktemp("hostile")
    registry = FakeModelRegistry(namespace=uuid.uuid4().hex)
    snapshots = LocalSnapshotStore(root=str(tmp / "snapshots"))
    store = LocalEvaluationStore(root=str(tmp / "outputs"))
    settings = Settings.from_env(
        {
            "EVAL_ASSETS_STATE": str(tmp / "state"),
            "EVAL_ASSETS_CRITERIA_DIR": str(_criteria(tmp / "criteria").parent),
        }
    )
    defs = build_definitions(
        settings,
        {
            "model_registry": registry,
            "snapshot_store": snapshots,
            "evaluation_store": store,
            "io_manager": OpenFormatIOManager(store=store),
            "notifier": RecordingNotifier(),
        },
    )
    instance = DagsterInstance.ephemeral()

    def run(job: str, partition: str):
        return defs.resolve_job_def(f"{MODEL}_{job}").execute_in_process(
            partition_key=partition, instance=instance, raise_on_error=False
        )

    frame = golden_frame(rows=ROWS)
    frame["segment"] = np.array(SEGMENTS, dtype=object)[np.arange(ROWS) % len(SEGMENTS)]
    frame["plan=tier"] = np.array(TIERS, dtype=object)[np.arange(ROWS) % len(TIERS)]
    snapshots.publish(DATASET, SNAPSHOT, frame)
    instance.add_dynamic_partitions(snapshot_partitions(DATASET).name, [SNAPSHOT])
    assert run("snapshot_job", SNAPSHOT).success
    model = train("good", rows=ROWS)
    for version in ("1", "2"):  # v2 is the same model: on these rows it passes every gate
        info = registry.register(MODEL, save_mlflow_model(model, tmp / "models" / version))
        instance.add_dynamic_partitions(
            model_version_partitions(MODEL).name, [f"{MODEL}.v{version}"]
        )
        assert run("model_version_job", f"{MODEL}.v{info.version}").success
    assert registry.move_champion(MODEL, "1", None)[0]
    result = run("evaluation_job", pair_key(f"{MODEL}.v2", SNAPSHOT))
    scores = model.predict_proba(frame[NUMERIC + CATEGORICAL])[:, 1]
    return result, instance, store, registry, frame, scores


def test_an_evaluation_over_hostile_values_completes_and_promotes(evaluated):
    """Before, the gate picture's mathtext raised on "$x^{$" and the run failed at gate_verdict."""
    result, instance, _, registry, _, _ = evaluated
    checks = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
    assert result.success, checks
    assert checks and all(checks.values())
    pair = f"{MODEL}.v2|{SNAPSHOT}"
    for asset in ("gate_verdict", "evaluation_report", "promotion"):
        assert pair in instance.get_materialized_partitions(AssetKey([MODEL, asset])), asset
    assert registry.champion(MODEL).version == "2"


def test_slices_of_hostile_values_and_of_a_column_named_with_equals_have_the_right_metrics(
    evaluated,
):
    """Each value slice holds exactly its rows (the key slices of `plan=tier` were "missing")."""
    _, _, store, _, frame, scores = evaluated
    record = store.read_json(f"{MODEL}/slice_metrics/{MODEL}.v2/{SNAPSHOT}.json")
    slices = {row["slice"]: row for row in record["slices"]}
    y = frame["is_fraud"].to_numpy()
    for column, values in (("segment", SEGMENTS), ("plan=tier", TIERS)):
        for value in values:
            rows = (frame[column] == value).to_numpy()
            got = slices[f"{column}={value}"]
            assert got["support"] == rows.sum()
            assert got["positives"] == y[rows].sum()
            assert got["roc_auc"] == pytest.approx(roc_auc_score(y[rows], scores[rows]), abs=1e-9)
            assert got["pr_auc"] == pytest.approx(
                average_precision_score(y[rows], scores[rows]), abs=1e-9
            )
    verdict = store.read_json(f"{MODEL}/gate_verdict/{MODEL}.v2/{SNAPSHOT}.json")
    support = next(g for g in verdict["verdict"]["gates"] if g["kind"] == "support")
    covered = {r["slice"] for r in support["results"]}
    assert {f"plan=tier={t}" for t in TIERS} <= covered
    assert {f"segment={s}" for s in SEGMENTS} <= covered
    assert all(r["outcome"] == "pass" for r in support["results"])


def test_the_markdown_verdict_has_eight_cells_in_every_row_and_shows_values_as_text(evaluated):
    """An unescaped "|" in `a|b` made a ninth cell; "*", "_", "[", "<" became formatting."""
    _, instance, _, _, _, _ = evaluated
    event = instance.get_latest_materialization_event(AssetKey([MODEL, "gate_verdict"]))
    markdown = event.asset_materialization.metadata["verdict"].value
    rows = [line for line in markdown.splitlines() if line.startswith("|")]
    assert len(rows) > 2 + len(SEGMENTS) + len(TIERS)
    assert {_cells(row) for row in rows} == {8}, rows
    assert "<script>" not in markdown and "a|b" not in markdown
    assert r"segment\=a\|b" in markdown and r"\$x\^\{\$" in markdown
    # Support counts are integers wherever they are shown.
    support = next(r for r in rows if "key\\_slice\\_support" in r)
    assert ".0000" not in support.split("|")[3]


def test_the_metrics_table_shows_hostile_slice_names_and_integer_counts(evaluated):
    """The slice table's int columns received floats (60000.0); names arrive as their text."""
    _, instance, _, _, frame, _ = evaluated
    event = instance.get_latest_materialization_event(AssetKey([MODEL, "slice_metrics"]))
    records = event.asset_materialization.metadata["slices"].value.records
    by_name = {r.data["slice"]: r.data for r in records}
    for value in SEGMENTS:
        row = by_name[f"segment={value}"]
        assert isinstance(row["support"], int) and isinstance(row["positives"], int)
        assert row["support"] == int((frame["segment"] == value).sum())
