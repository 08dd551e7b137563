"""Bad inputs and a full disk, proven THROUGH the Dagster graph (fake registry, local stores,
in-process runs).

The core unit tests (eval_assets_tests/core/test_{contract,models,gating}.py) prove each check on
its own; here the same inputs go through the jobs a sensor launches, and each must fail the right
asset with the file, column and value in the run's failure, leave nothing downstream, write no
half file, record no tracking run and never move the champion.
"""

from __future__ import annotations

import builtins
import contextlib
import json
import os
import pickle
import subprocess
import tracemalloc
import uuid
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import skops.io
import yaml
from dagster import AssetKey, DagsterInstance

from eval_assets.assets.model_version import DIGEST_TAG
from eval_assets.definitions import Settings, build_definitions
from eval_assets.partitions import model_version_partitions, pair_key, snapshot_partitions
from eval_assets.resources.snapshots import LocalSnapshotStore
from eval_assets.resources.storage import LocalEvaluationStore, OpenFormatIOManager
from eval_assets_tests.support.factories import (
    DATASET,
    MODEL,
    REPO,
    golden_frame,
    save_mlflow_model,
    train,
    write_criteria,
)
from eval_assets_tests.support.fakes import FakeModelRegistry, RecordingNotifier
from eval_assets_tests.support.malformed import MALFORMED_TYPE, MalformedOutput
from eval_assets_tests.support.runs import failure_text, stub_plots

ROWS = 6000
GOLDEN = "golden"
EVALUATION_ASSETS = (
    "predictions",
    "slice_metrics",
    "gate_verdict",
    "evaluation_report",
    "promotion",
)


class Canary:
    """Unpickling this creates `marker`: proof that code inside a pickle ran."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return builtins.open, (str(self.marker), "w")


class Graph:
    """The project's definitions over a fake registry and local stores, on an ephemeral instance."""

    def __init__(self, tmp: Path, store_root: Path | None = None):
        self.tmp = tmp
        self.registry = FakeModelRegistry(namespace=uuid.uuid4().hex)
        self.snapshots = LocalSnapshotStore(root=str(tmp / "snapshots"))
        self.store = LocalEvaluationStore(root=str(store_root or tmp / "outputs"))
        criteria = sized_criteria(tmp / "criteria")
        settings = Settings.from_env(
            {
                "EVAL_ASSETS_STATE": str(tmp / "state"),
                "EVAL_ASSETS_CRITERIA_DIR": str(criteria.parent),
            }
        )
        self.defs = build_definitions(
            settings,
            {
                "model_registry": self.registry,
                "snapshot_store": self.snapshots,
                "evaluation_store": self.store,
                "io_manager": OpenFormatIOManager(store=self.store),
                "notifier": RecordingNotifier(),
            },
        )
        self.instance = DagsterInstance.ephemeral()

    def run(self, job: str, partition: str):
        return self.defs.resolve_job_def(f"{MODEL}_{job}").execute_in_process(
            partition_key=partition, instance=self.instance, raise_on_error=False
        )

    def publish(self, snapshot: str, frame: pd.DataFrame):
        """Publish a snapshot as a producer would and run its ingestion job (as the sensor does)."""
        self.snapshots.publish(DATASET, snapshot, frame)
        self.instance.add_dynamic_partitions(snapshot_partitions(DATASET).name, [snapshot])
        return self.run("snapshot_job", snapshot)

    def register(self, folder: Path):
        """Register a model folder and run its ingestion job; returns (version, result)."""
        info = self.registry.register(MODEL, folder)
        key = f"{MODEL}.v{info.version}"
        self.instance.add_dynamic_partitions(model_version_partitions(MODEL).name, [key])
        return info.version, self.run("model_version_job", key)

    def evaluate(self, version: str, snapshot: str = GOLDEN):
        return self.run("evaluation_job", pair_key(f"{MODEL}.v{version}", snapshot))

    def materialized(self, asset: str, partition: str) -> bool:
        return partition in self.instance.get_materialized_partitions(AssetKey([MODEL, asset]))

    def champion(self) -> str | None:
        info = self.registry.champion(MODEL)
        return info.version if info else None

    def leftovers(self) -> list[Path]:
        """Temporary files left under the outputs: a half-written output would show here."""
        return [p for p in Path(self.store.root).rglob("*") if p.name.endswith(".tmp")]


def sized_criteria(folder: Path) -> Path:
    """The real criteria sized for a few thousand rows: smaller support, looser fairness bound
    (a fairness gate on ~100 positives is noise), fewer bootstrap resamples. The test's
    malformed-output model is a trusted skops type, so it loads and only its output is at fault;
    pickles stay forbidden."""
    gates = yaml.safe_load((REPO / "criteria" / f"{MODEL}.yaml").read_text())["gates"]
    for gate in gates:
        if gate["kind"] == "support":
            gate["min_rows"], gate["min_positives"] = 50, 5
        if gate["kind"] == "fairness":
            gate["max"] = 0.5
    return write_criteria(
        folder,
        gates=gates,
        bootstrap={"resamples": 100, "seed": 7, "confidence": 0.95},
        loading={"allow_pickle": False, "trusted_skops_types": [MALFORMED_TYPE]},
    )


def failed_steps(result) -> set[str]:
    return {e.step_key for e in result.all_events if e.is_step_failure}


@pytest.fixture()
def fast_plots(monkeypatch: pytest.MonkeyPatch) -> None:
    stub_plots(monkeypatch)


@pytest.fixture(scope="module")
def graph(tmp_path_factory: pytest.TempPathFactory) -> Graph:
    tmp = tmp_path_factory.mktemp("graph")
    g = Graph(tmp)
    assert g.publish(GOLDEN, golden_frame(rows=ROWS)).success
    g.good = train("good", rows=ROWS)  # type: ignore[attr-defined]
    version, result = g.register(save_mlflow_model(g.good, tmp / "models" / "v1"))
    assert result.success and version == "1"
    moved, _ = g.registry.move_champion(MODEL, "1", None)
    assert moved
    # v2: the same fitted model as the champion, so on good data it passes every gate.
    version, result = g.register(save_mlflow_model(g.good, tmp / "models" / "v2"))
    assert result.success and version == "2"
    return g


def assert_nothing_downstream(g: Graph, version: str, snapshot: str) -> None:
    """No evaluation output, no promotion, no tracking run, the champion where it was."""
    pair = f"{MODEL}.v{version}|{snapshot}"
    for asset in EVALUATION_ASSETS:
        assert not g.materialized(asset, pair), asset
    assert not (Path(g.store.root) / MODEL / "gate_verdict" / f"{MODEL}.v{version}").exists()
    assert not g.registry.state.runs
    assert g.champion() == "1"
    assert "eval_assets.verdict" not in g.registry.get_version(MODEL, version).tags
    assert g.leftovers() == []


# --- bad snapshots: `data_snapshot` fails naming the file, the column and the value -------------


def _with(frame: pd.DataFrame, column: str, row: int, value: object, dtype: str | None = None):
    frame = frame.copy()
    if dtype:
        frame[column] = frame[column].astype(dtype)
    frame.loc[row, column] = value
    return frame


def _duplicate_id(frame: pd.DataFrame) -> pd.DataFrame:
    frame = frame.copy()
    frame.loc[5, "transaction_id"] = frame.loc[4, "transaction_id"]
    return frame


BAD_SNAPSHOTS = {
    # name: (make the bad frame from a good one, fragments the failure must contain)
    "missing-label": (lambda f: f.drop(columns=["is_fraud"]), ["'is_fraud'", "missing"]),
    "missing-feature": (lambda f: f.drop(columns=["hour"]), ["'hour'", "missing"]),
    "extra-column": (lambda f: f.assign(notes="x"), ["'notes'", "not in the contract"]),
    "wrong-type": (
        lambda f: _with(f.assign(amount=f["amount"].astype(str)), "amount", 7, "12.5 USD"),
        ["'amount'", "expected float", "'12.5 USD'", "row 7"],
    ),
    "nan-label": (
        lambda f: _with(f, "is_fraud", 3, np.nan, dtype="float64"),
        ["'is_fraud'", "missing label", "row 3"],
    ),
    "label-outside-classes": (
        lambda f: _with(f, "is_fraud", 2, 2),
        ["'is_fraud'", "value 2", "row 2"],
    ),
    "infinite-feature": (
        lambda f: _with(f, "amount", 9, np.inf),
        ["'amount'", "infinite value inf", "row 9"],
    ),
    "nan-feature": (
        lambda f: _with(f, "tx_count_24h", 11, np.nan, dtype="float64"),
        ["'tx_count_24h'", "missing value (NaN)", "row 11"],
    ),
    "duplicate-ids": (_duplicate_id, ["'transaction_id'", "duplicate id", "row 4", "row 5"]),
    "empty": (lambda f: f.iloc[:0], ["no rows"]),
}


@pytest.mark.parametrize("name", list(BAD_SNAPSHOTS))
def test_a_bad_snapshot_fails_data_snapshot_naming_file_column_value_and_nothing_follows(
    graph: Graph, name: str
):
    make, fragments = BAD_SNAPSHOTS[name]
    snapshot = f"bad-{name}"
    result = graph.publish(snapshot, make(golden_frame(rows=400)))

    assert not result.success
    assert failed_steps(result) == {f"{MODEL}__data_snapshot"}
    text = failure_text(result)
    data_file = Path(graph.snapshots.root) / DATASET / snapshot / "data.parquet"
    assert str(data_file) in text, text
    for fragment in fragments:
        assert fragment in text, (fragment, text)
    assert not graph.materialized("data_snapshot", snapshot)
    assert not (Path(graph.store.root) / MODEL / "data_snapshot" / f"{snapshot}.parquet").exists()

    # An evaluation launched on it anyway (by hand) stops before anything is computed or promoted.
    evaluation = graph.evaluate("2", snapshot)
    assert not evaluation.success
    assert f"{MODEL}/data_snapshot" in failure_text(evaluation)
    assert_nothing_downstream(graph, "2", snapshot)


# --- untrusted or damaged artifacts: `model_version` refuses them before any code runs -----------


def _mlmodel(folder: Path, pickled_model: str, fmt: str = "cloudpickle") -> None:
    folder.mkdir(parents=True, exist_ok=True)
    spec = {
        "flavors": {
            "python_function": {"loader_module": "mlflow.sklearn", "model_path": pickled_model},
            "sklearn": {
                "pickled_model": pickled_model,
                "serialization_format": fmt,
                "sklearn_version": "1.9.1",
            },
        }
    }
    (folder / "MLmodel").write_text(yaml.safe_dump(spec))


def _pickle_canary(folder: Path) -> tuple[Path, list[str]]:
    marker = folder.parent / f"{folder.name}.ran"
    _mlmodel(folder, "model.pkl")
    (folder / "model.pkl").write_bytes(pickle.dumps(Canary(marker)))
    return marker, [str(folder / "model.pkl"), "loading policy forbids"]


def _outside(folder: Path) -> tuple[Path, list[str]]:
    outside = folder.parent / f"{folder.name}-outside"
    outside.mkdir(parents=True)
    marker = outside / "ran"
    (outside / "model.pkl").write_bytes(pickle.dumps(Canary(marker)))
    _mlmodel(folder, f"../{outside.name}/model.pkl")
    return marker, ["MLmodel", "points outside the model folder"]


def _truncated_skops(folder: Path, good) -> tuple[Path, list[str]]:
    save_mlflow_model(good, folder)
    model_file = folder / "model.skops"
    model_file.write_bytes(model_file.read_bytes()[: model_file.stat().st_size // 2])
    return folder / "never-created", [str(model_file), "corrupt or truncated"]


@pytest.mark.parametrize("kind", ["pickle-canary", "points-outside", "truncated-skops"])
def test_an_artifact_the_policy_refuses_fails_model_version_and_runs_none_of_its_code(
    graph: Graph, tmp_path: Path, kind: str
):
    folder = tmp_path / kind
    if kind == "pickle-canary":
        marker, fragments = _pickle_canary(folder)
    elif kind == "points-outside":
        marker, fragments = _outside(folder)
    else:
        marker, fragments = _truncated_skops(folder, graph.good)  # type: ignore[attr-defined]
    version, result = graph.register(folder)

    assert not result.success
    assert failed_steps(result) == {f"{MODEL}__model_version"}
    text = failure_text(result)
    for fragment in fragments:
        assert fragment in text, (fragment, text)
    assert not marker.exists(), "the refused artifact's code ran"
    assert DIGEST_TAG not in graph.registry.get_version(MODEL, version).tags  # never pinned
    assert not graph.materialized("model_version", f"{MODEL}.v{version}")
    evaluation = graph.evaluate(version)
    assert not evaluation.success
    assert_nothing_downstream(graph, version, GOLDEN)
    if kind == "pickle-canary":
        # The canary is real: were the pickle loaded, its code would create the marker.
        pickle.loads((folder / "model.pkl").read_bytes())
        assert marker.exists()


def test_an_artifact_that_changes_after_first_sight_is_refused(graph: Graph, tmp_path: Path):
    folder = save_mlflow_model(graph.good, tmp_path / "swapped")  # type: ignore[attr-defined]
    version, result = graph.register(folder)
    assert result.success
    pinned = graph.registry.get_version(MODEL, version).tags[DIGEST_TAG]

    # Someone replaces the registered bytes with another (valid, loadable) model.
    other = save_mlflow_model(train("bad", rows=500), tmp_path / "other")
    (folder / "model.skops").write_bytes((other / "model.skops").read_bytes())

    evaluation = graph.evaluate(version)
    assert not evaluation.success
    assert failed_steps(evaluation) == {f"{MODEL}__predictions"}
    text = failure_text(evaluation)
    assert f"{MODEL}.v{version}" in text and pinned[:12] in text and "refusing to score" in text
    assert_nothing_downstream(graph, version, GOLDEN)

    again = graph.run("model_version_job", f"{MODEL}.v{version}")
    assert not again.success
    assert "recorded when the version was first seen" in failure_text(again)
    assert graph.registry.get_version(MODEL, version).tags[DIGEST_TAG] == pinned  # not re-pinned


# --- a model whose output breaks the contract: `predictions` fails naming the version ------------

MALFORMED = {
    # kind: what the run's failure must say
    "three-columns": "returned 3 columns for the model's 2 classes",
    "one-dimensional": f"returned an array of shape ({ROWS},)",
    "too-few-rows": f"returned {ROWS - 1} rows for {ROWS} input rows",
    "too-many-rows": f"returned {ROWS + 1} rows for {ROWS} input rows",
    "text": "returned values of dtype <U",
    "nan": "model score nan for row 3",
    "out-of-range": "model score 1.5 for row 5",
}


@pytest.mark.parametrize("kind", list(MALFORMED))
def test_a_model_whose_output_breaks_the_contract_fails_predictions_and_promotes_nothing(
    graph: Graph, tmp_path: Path, fast_plots: None, kind: str
):
    """Issue 22 item 3 through the graph: a three-column (or text) output for a binary model was
    scored and promoted to champion, and 1-D or wrongly sized outputs failed with numpy errors
    that named neither the version nor the problem. Each must fail `predictions` naming the
    version partition, with nothing downstream and the champion where it was."""
    folder = tmp_path / kind
    _mlmodel(folder, "model.skops", fmt="skops")
    skops.io.dump(MalformedOutput(graph.good, kind), folder / "model.skops")  # type: ignore[attr-defined]
    version, registered = graph.register(folder)
    assert registered.success, failure_text(registered)  # it loads: only its output is wrong

    result = graph.evaluate(version)

    assert not result.success
    assert failed_steps(result) == {f"{MODEL}__predictions"}
    text = failure_text(result)
    assert f"{MODEL}.v{version}: " in text, text
    assert MALFORMED[kind] in text, text
    assert_nothing_downstream(graph, version, GOLDEN)
    stored = Path(graph.store.root) / MODEL / "predictions" / f"{MODEL}.v{version}"
    assert not (stored / f"{GOLDEN}.parquet").exists()  # no partial predictions file either


# --- two sensor ticks racing for the same new version ---------------------------------------------


def test_two_ticks_racing_for_a_new_version_request_the_same_run_keys(graph: Graph, tmp_path: Path):
    """Both ticks ask for the same runs under the same run keys, so Dagster launches each once
    (a run key is launched at most once per sensor; the daemon-level proof is
    e2e/test_sensors_e2e.py::test_2_daemon_restart_launches_nothing_twice)."""
    import threading

    from dagster import build_sensor_context

    info = graph.registry.register(MODEL, save_mlflow_model(graph.good, tmp_path / "raced"))  # type: ignore[attr-defined]
    name = f"{MODEL}_registry_sensor"
    results: list = [None, None]
    barrier = threading.Barrier(2)

    def tick(slot: int) -> None:
        with build_sensor_context(
            instance=graph.instance,
            definitions=graph.defs,
            sensor_name=name,
            resources=graph.defs.resources,
        ) as context:
            barrier.wait()
            results[slot] = graph.defs.resolve_sensor_def(name)(context)

    threads = [threading.Thread(target=tick, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    keys = [sorted(r.run_key for r in result.run_requests) for result in results]
    assert keys[0] == keys[1]
    assert f"ingest:{MODEL}.v{info.version}" in keys[0]
    assert len(set(keys[0])) == len(keys[0])  # and no tick asks for one run twice


# --- a very large snapshot: what grows with its size, and what does not --------------------------


def test_inference_memory_is_bounded_by_the_batch_not_by_the_snapshot(graph: Graph):
    from eval_assets.core.models import LoadedModel

    model = LoadedModel(graph.good, "skops", Path("in-memory"), "0" * 64)  # type: ignore[attr-defined]
    features = list(graph.good.feature_names_in_)  # type: ignore[attr-defined]
    big = golden_frame(rows=120_000, seed=3)

    def peak(frame: pd.DataFrame, batch_rows: int) -> int:
        tracemalloc.start()
        try:
            base = tracemalloc.get_traced_memory()[0]
            scores = model.predict_scores(frame, features, 1, batch_rows=batch_rows)
            top = tracemalloc.get_traced_memory()[1] - base
        finally:
            tracemalloc.stop()
        assert len(scores) == len(frame) and np.isfinite(scores).all()
        return top - scores.nbytes

    batched_small = peak(big.iloc[:30_000], 5_000)
    batched_big = peak(big, 5_000)
    whole = peak(big, len(big))
    # Four times the rows, the same working memory (beyond the one score per row returned) ...
    assert batched_big < 1.5 * batched_small, (batched_small, batched_big)
    # ... while scoring the whole snapshot at once needs several times more.
    assert whole > 4 * batched_big, (batched_big, whole)


# --- disk full while writing outputs -----------------------------------------------------------


@contextlib.contextmanager
def small_filesystem(folder: Path, size: str):
    """A tmpfs of `size` mounted at `folder` (root only); skips where mounting is not allowed."""
    folder.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
        capture_output=True,
        text=True,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({mounted.stderr.strip()}); see the /dev/full test")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


def fill(folder: Path, leave: int) -> Path:
    """Fill the filesystem of `folder`, then give back `leave` bytes."""
    filler = folder / "filler"
    with open(filler, "wb") as handle, contextlib.suppress(OSError):
        while True:
            handle.write(b"\0" * 65536)
            handle.flush()
    os.truncate(filler, max(0, filler.stat().st_size - leave))
    return filler


def assert_outputs_whole(root: Path) -> None:
    """No temporary is left, and every output reads back completely in its format."""
    files = [p for p in root.rglob("*") if p.is_file() and p.name != "filler"]
    assert files
    assert [p for p in files if p.name.endswith(".tmp")] == []
    for path in files:
        if path.suffix == ".parquet":
            pd.read_parquet(path)
        elif path.suffix == ".json":
            json.loads(path.read_text())
        elif path.suffix == ".png":
            assert path.read_bytes().startswith(b"\x89PNG")


def test_disk_full_mid_run_leaves_no_half_file_and_a_clear_error_then_recovers(
    graph: Graph, tmp_path: Path
):
    with small_filesystem(tmp_path / "small", "4m") as small:
        g = Graph(tmp_path, store_root=small / "outputs")
        assert g.publish(GOLDEN, golden_frame(rows=ROWS)).success
        for name in ("v1", "v2"):
            version, result = g.register(save_mlflow_model(graph.good, tmp_path / name))  # type: ignore[attr-defined]
            assert result.success
        g.registry.move_champion(MODEL, "1", None)
        # Room for the first outputs of the evaluation (~250 kB), not for all of them (~1.5 MB).
        filler = fill(small, leave=400_000)

        result = g.evaluate("2")
        assert not result.success
        text = failure_text(result)
        assert "No space left on device" in text and str(small / "outputs") in text, text
        assert_outputs_whole(small / "outputs")
        assert not g.materialized("promotion", f"{MODEL}.v2|{GOLDEN}")
        assert g.champion() == "1"
        assert len(g.registry.state.runs) <= 1

        filler.unlink()  # space comes back: the same evaluation completes
        again = g.evaluate("2")
        assert again.success, failure_text(again)
        assert g.champion() == "2"
        assert len(g.registry.state.runs) == 1  # one tracking run for the key, not two
        assert_outputs_whole(small / "outputs")


def test_an_unwritable_device_keeps_the_old_file_whole_and_names_the_file(tmp_path, monkeypatch):
    """Where no tmpfs can be mounted: every write goes to /dev/full (ENOSPC on flush)."""
    from eval_assets.core import atomic
    from eval_assets.resources.storage import LocalEvaluationStore

    store = LocalEvaluationStore(root=str(tmp_path))
    store.write_json("model/gate_verdict/v1.json", {"passed": False})

    def full_device(file, mode="r", *args, **kwargs):
        # What `atomic` opens for writing is /dev/full; reads are left alone.
        return open("/dev/full" if "w" in mode else file, mode, *args, **kwargs)

    monkeypatch.setattr(atomic, "open", full_device, raising=False)
    with pytest.raises(OSError, match="No space left on device") as caught:
        store.write_json("model/gate_verdict/v1.json", {"passed": True})
    assert caught.value.filename == str(tmp_path / "model/gate_verdict/v1.json")
    monkeypatch.undo()
    assert store.read_json("model/gate_verdict/v1.json") == {"passed": False}
    assert [p.name for p in tmp_path.rglob("*.tmp")] == []


# --- a key slice without evidence blocks promotion under the default policy ----------------------
# (kept last in the module: its control case promotes v2)


def _check(result, name: str) -> tuple[bool, dict]:
    evaluation = next(e for e in result.get_asset_check_evaluations() if e.check_name == name)
    return evaluation.passed, {k: v.value for k, v in evaluation.metadata.items()}


@pytest.mark.parametrize(
    "snapshot, transform, outcome",
    [
        # every transaction over $10k is legitimate: AUC is undefined on `high_value`
        (
            "single-class-slice",
            lambda f: f.assign(is_fraud=f["is_fraud"].where(f["amount"] <= 10000, 0)),
            "insufficient_evidence",
        ),
        # no transaction over $10k at all: the key slice `high_value` has no rows
        ("empty-slice", lambda f: f[f["amount"] <= 10000].reset_index(drop=True), "missing"),
    ],
)
def test_a_key_slice_without_evidence_blocks_promotion(
    graph: Graph, fast_plots: None, snapshot, transform, outcome
):
    frame = transform(golden_frame(rows=ROWS))
    assert graph.publish(snapshot, frame).success  # the data itself is valid

    result = graph.evaluate("2", snapshot)
    assert not result.success  # stopped by its blocking checks, not by an error
    assert failed_steps(result) == {f"{MODEL}__gate_verdict"}
    text = failure_text(result)
    assert "DagsterAssetCheckFailedError" in text and "key_slice_roc_auc_vs_champion" in text, text
    passed, metadata = _check(result, "key_slice_roc_auc_vs_champion")
    assert not passed and metadata["slice"] == "high_value" and metadata["outcome"] == outcome
    support_passed, support = _check(result, "key_slice_support")
    assert not support_passed and support["slice"] == "high_value"
    pair = f"{MODEL}.v2|{snapshot}"
    assert graph.materialized("gate_verdict", pair)  # the outcome is recorded ...
    verdict = graph.store.read_json(f"{MODEL}/gate_verdict/{MODEL}.v2/{snapshot}.json")
    assert verdict["passed"] is False and verdict["champion_version"] == "1"
    assert not graph.materialized("promotion", pair)  # ... and nothing is promoted
    assert graph.champion() == "1"


def test_control_the_same_candidate_on_good_data_is_promoted(graph: Graph, fast_plots: None):
    # Proves the two blocks above come from the slices, not from the candidate.
    result = graph.evaluate("2", GOLDEN)
    assert result.success, failure_text(result)
    assert graph.champion() == "2"
    assert graph.leftovers() == []
