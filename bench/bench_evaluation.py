"""Benchmark: one candidate's whole evaluation against loading the data and predicting alone.

Run `python bench/bench_evaluation.py [--rows 100000 1000000 5000000 10000000]`. The Dagster
instance is the project's `dagster.yaml` on embedded SQLite; `--dagster-postgres URL` (with
`uv sync --extra postgres`) puts its storage in an empty PostgreSQL database instead.

Setup (not timed): a throwaway state folder with embedded MLflow (SQLite) and the project's
own definitions; two versions of `fraud_detector` registered, v1 the champion and v2 the
candidate; one generated snapshot per size, published from a Parquet file written in chunks; the
champion's predictions on each snapshot already stored. The versions are `--models`:

- `issue` (the default): the workload the performance issue measured its targets on, "two
  HistGradientBoosting models on synthetic card-fraud data: predicting with both models takes
  about 10 s per million rows" on 2 cores. Both are the demo's gradient boosting with 300 trees
  (4.8 s per million rows each on this 2-core machine); the candidate sees one more feature and
  more rows, and passes the gates, so promotion runs.
- `demo`: the demo's v1 (logistic regression) and v2 (gradient boosting, 100 trees: 1.6 to
  2.0 s per million rows), a candidate about three times cheaper to predict than the issue's,
  against which everything the project adds weighs about three times as much.

Timed, each in its own fresh process so that peak memory (VmHWM) belongs to it alone and
imports are done before the clock starts (at up to `--repeat-max-rows` rows, floor and ours run
`--repeat` times, alternately, and the table shows the medians: one run of a 10 s job on a shared
machine swings by a third):

- floor: what a user would do by hand: `mlflow.sklearn.load_model` of the candidate,
  `pd.read_parquet` of the snapshot, `predict_proba` on every row.
- floor in batches: the same, but the snapshot's features read and predicted in 100,000-row
  Parquet batches, as our predictions step does (one call on every row is slower per row).
- ours: the project's evaluation job for the candidate, as the registry sensor launches it:
  predictions (download, digest check, policy load, streamed Parquet batches), slice metrics with
  intervals, the 1000-resample paired bootstrap, the gates and their blocking checks, plots, the
  HTML report and audit record, the MLflow run, and promotion.
- ingest: validating the snapshot into `data_snapshot`, once per snapshot whatever the number of
  candidates (reported beside, not part of the candidate's evaluation).
- Dagster alone: the evaluation job's shape (the same partitions, four steps, inputs, outputs and
  blocking checks) with steps that do nothing, on the same instance: what orchestration costs
  before any work, run after each of ours.

Checked in the run: the candidate's stored scores equal the floor's `predict_proba` bit for bit;
the evaluation reused the champion's stored predictions instead of predicting again; the verdict
carries paired intervals.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
MODEL, DATASET = "fraud_detector", "card_fraud_golden"
CHAMPION, CANDIDATE = "1", "2"
MODEL_SETS = {
    "issue": "the issue's workload: v1 and v2 both gradient boosting with 300 trees",
    "demo": "the demo's v1 (logistic regression) and v2 (gradient boosting, 100 trees)",
}
CHUNK_ROWS = 1_000_000
RESULT = "BENCH-RESULT "


# --- the parent: setup, one worker process per measurement, the table --------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--rows", type=int, nargs="+", default=[100_000, 1_000_000, 5_000_000, 10_000_000]
    )
    parser.add_argument("--state", type=Path, help="keep the state here (default: a temp dir)")
    parser.add_argument("--repeat", type=int, default=3, help="runs of floor and ours per size")
    parser.add_argument(
        "--repeat-max-rows",
        type=int,
        default=1_000_000,
        help="repeat only up to this size (each 10M run takes about 2 minutes)",
    )
    parser.add_argument(
        "--dagster-postgres",
        metavar="URL",
        help="Dagster instance storage in this empty PostgreSQL database (dagster-postgres, the "
        "production setting) instead of the embedded SQLite; e.g. "
        "postgresql+psycopg2://user@127.0.0.1:5432/bench",
    )
    parser.add_argument(
        "--models",
        choices=sorted(MODEL_SETS),
        default="issue",
        help="the champion and candidate: the issue's workload (default) or the demo's v1 and v2",
    )
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--snapshot", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        _environment(args.state)
        result = WORKERS[args.worker](args.snapshot, args.state)
        print(RESULT + json.dumps(result), flush=True)
        return
    with tempfile.TemporaryDirectory(prefix="bench-eval-") as temp:
        state = args.state or Path(temp)
        state.mkdir(parents=True, exist_ok=True)
        storage = _instance_settings(state, args.dagster_postgres)
        started = time.perf_counter()
        _worker("prepare", args.models, state)
        rows = []
        for n_rows in sorted(args.rows):
            snapshot = f"bench-{n_rows}"
            _publish(state, snapshot, n_rows)
            ingest = _worker("ingest", snapshot, state)
            _worker("champion_side", snapshot, state)
            runs, bare, batched = [], [], []
            for _ in range(args.repeat if n_rows <= args.repeat_max_rows else 1):
                floor = _worker("floor", snapshot, state)
                ours = _worker("evaluate", snapshot, state)
                _check(state, snapshot, floor, ours)
                runs.append((floor, ours))
                by_batch = _worker("floor_batched", snapshot, state)
                _check(state, snapshot, by_batch, ours)
                batched.append(by_batch["seconds"])
                bare.append(_worker("dagster_alone", snapshot, state)["seconds"])
            rows.append((n_rows, ingest, runs, statistics.median(batched), statistics.median(bare)))
            print(f"{n_rows:,} rows done ({time.perf_counter() - started:.0f} s)", flush=True)
        _table(rows)
        print(f"\nModels: {MODEL_SETS[args.models]}")
        print(f"\nDagster instance storage: {storage}")
        print(f"\nwhole benchmark: {time.perf_counter() - started:.0f} s")


def _instance_settings(state: Path, postgres_url: str | None) -> str:
    """The project's `dagster.yaml` in the state's Dagster home (as `make` links it), with
    dagster-postgres storage when a database is given; the storage's description."""
    import yaml

    settings = yaml.safe_load((REPO / "dagster.yaml").read_text())
    if postgres_url:
        settings["storage"] = {"postgres": {"postgres_url": postgres_url}}
    home = state / "dagster_home"
    home.mkdir(parents=True, exist_ok=True)
    (home / "dagster.yaml").write_text(yaml.safe_dump(settings))
    if not postgres_url:
        return "SQLite (embedded, the default)"
    return "PostgreSQL " + postgres_url.rsplit("@", 1)[-1]


def _worker(name: str, snapshot: str | None, state: Path) -> dict[str, Any]:
    command = [sys.executable, __file__, "--worker", name, "--state", str(state)]
    if snapshot:
        command += ["--snapshot", snapshot]
    log = state / f"{name}-{snapshot or 'setup'}.log"
    with log.open("w") as handle:
        done = subprocess.run(command, stdout=subprocess.PIPE, stderr=handle, text=True)
    lines = [line for line in done.stdout.splitlines() if line.startswith(RESULT)]
    if done.returncode != 0 or not lines:
        tail = log.read_text()[-3000:]
        raise SystemExit(f"worker {name} {snapshot} failed ({done.returncode}):\n{tail}")
    return json.loads(lines[-1][len(RESULT) :])


def _publish(state: Path, snapshot: str, n_rows: int) -> None:
    """Generate the snapshot in chunks into one Parquet file, then publish that file."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from eval_assets.demo.synthetic import generate_transactions
    from eval_assets.resources.snapshots import LocalSnapshotStore

    path = state / f"{snapshot}.parquet"
    writer = None
    for index, start in enumerate(range(0, n_rows, CHUNK_ROWS)):
        # Each chunk's seed also prefixes its ids, so ids stay unique across chunks.
        chunk = generate_transactions(min(CHUNK_ROWS, n_rows - start), seed=1000 + index)
        table = pa.Table.from_pandas(chunk, preserve_index=False)
        writer = writer or pq.ParquetWriter(path, table.schema)
        writer.write_table(table)
    assert writer is not None
    writer.close()
    LocalSnapshotStore(root=str(state / "snapshots")).publish_file(DATASET, snapshot, path)
    path.unlink()


def _check(state: Path, snapshot: str, floor: dict[str, Any], ours: dict[str, Any]) -> None:
    """The approaches agree, and the evaluation did what the table claims it did."""
    import numpy as np
    import pandas as pd

    stored = pd.read_parquet(
        state / "outputs" / MODEL / "predictions" / f"{MODEL}.v{CANDIDATE}" / f"{snapshot}.parquet",
        columns=["score"],
    )["score"].to_numpy()
    by_hand = np.load(floor["scores"])
    assert len(stored) == len(by_hand) == floor["rows"], (len(stored), len(by_hand))
    assert np.array_equal(stored, by_hand), "stored scores differ from predict_proba's"
    champion_side = f"{MODEL}.v{CHAMPION}|{snapshot}"
    assert champion_side not in ours["predicted"], "the champion was predicted again"
    assert ours["success"] and ours["reused_champion"], ours
    assert ours["paired_intervals"] > 0, "no paired intervals in the verdict"
    assert ours["promoted"], "the candidate was not promoted: the promotion step did not run"
    Path(floor["scores"]).unlink()


def _table(
    rows: list[tuple[int, dict[str, Any], list[tuple[dict, dict]], float, float]],
) -> None:
    print("\n### One candidate's whole evaluation against load + candidate predict\n")
    print(
        "| rows | runs | floor: load + predict s | ours: whole evaluation s | ours / floor | "
        "ours / floor, each run | floor in 100k batches s | ours / batched floor | "
        "floor peak MB | ours peak MB | ours peak vs 1M | ingest s | ingest peak MB | "
        "Dagster alone s |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    medians = {n_rows: _medians(runs) for n_rows, _, runs, _, _ in rows}
    reference = medians.get(1_000_000)
    for n_rows, ingest, runs, batched, bare in rows:
        floor, ours = medians[n_rows]
        versus = f"{ours['peak_mb'] / reference[1]['peak_mb']:.2f}x" if reference else "n/a"
        each = ", ".join(f"{o['seconds'] / f['seconds']:.2f}x" for f, o in runs)
        print(
            f"| {n_rows:,} | {len(runs)} | {floor['seconds']:.2f} | {ours['seconds']:.2f} | "
            f"{ours['seconds'] / floor['seconds']:.2f}x | {each} | {batched:.2f} | "
            f"{ours['seconds'] / batched:.2f}x | {floor['peak_mb']:.0f} | "
            f"{ours['peak_mb']:.0f} | {versus} | {ingest['seconds']:.2f} | "
            f"{ingest['peak_mb']:.0f} | {bare:.2f} |"
        )
    print("\nWhere the evaluation's time goes (Dagster step durations, s; medians):\n")
    steps = sorted({s for _, _, runs, _, _ in rows for _, ours in runs for s in ours["steps"]})
    print("| rows | " + " | ".join(steps) + " | import + definitions (before the clock) |")
    print("|---:|" + "---:|" * (len(steps) + 1))
    for n_rows, _, runs, _, _ in rows:
        ours = [o for _, o in runs]
        cells = " | ".join(
            f"{statistics.median(o['steps'].get(s, float('nan')) for o in ours):.2f}" for s in steps
        )
        startup = statistics.median(o["startup_seconds"] for o in ours)
        print(f"| {n_rows:,} | {cells} | {startup:.1f} |")
    print(
        "\nMedians over the runs (floor and ours alternately, each in a fresh process; the "
        "ratio column is median ours over median floor, then each run's own ratio). Peak MB is "
        "the worker process's peak resident memory (VmHWM), imports included. Checked in every "
        "run: the candidate's stored scores equal predict_proba's bit for bit, the champion's "
        "stored predictions were reused (not predicted again), the verdict carries paired "
        "bootstrap intervals, and the candidate was promoted. Dagster alone: the evaluation "
        "job's shape (the same partitions, steps, inputs, outputs and blocking checks) with "
        "steps that do nothing, on the same instance, run after each ours (median): what "
        "orchestration costs before any work. "
        "The batched floor reads the snapshot's features and predicts in 100,000-row batches, "
        "as our predictions step does (run after each ours; median; its scores checked too): one "
        "`predict_proba` on every row is slower per row."
    )


def _medians(runs: list[tuple[dict[str, Any], dict[str, Any]]]) -> tuple[dict, dict]:
    """Median seconds and peak of the floor's runs and of ours."""
    return tuple(
        {k: statistics.median(r[k] for r in side) for k in ("seconds", "peak_mb")}
        for side in zip(*runs, strict=True)
    )


# --- the workers: each runs in a fresh process ----------------------------------------------


def _environment(state: Path) -> None:
    home = state / "dagster_home"
    home.mkdir(parents=True, exist_ok=True)
    os.environ.update(
        {
            "DAGSTER_HOME": str(home),
            "EVAL_ASSETS_STATE": str(state),
            "MLFLOW_TRACKING_URI": f"sqlite:///{state / 'mlflow.db'}",
            "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
            "MLFLOW_DISABLE_TELEMETRY": "true",
            "DO_NOT_TRACK": "1",
        }
    )


def _code_location() -> tuple[Any, Any, Any]:
    import warnings

    # What the floor imports before its clock, imported before ours too: MLflow (2.5 s) and
    # skops (6 s: it imports every scikit-learn estimator). The table reports them apart.
    import mlflow.artifacts  # noqa: F401
    import mlflow.data  # noqa: F401
    import mlflow.tracking  # noqa: F401
    import skops.io  # noqa: F401
    from dagster import DagsterInstance

    _import_sql_stores()

    from eval_assets.definitions import Settings, build_definitions

    warnings.filterwarnings("ignore")
    settings = Settings.from_env()
    return settings, build_definitions(settings), DagsterInstance.get()


def _resource(defs: Any, name: str) -> Any:
    """A resource initialized as a run initializes it: the tracking URI reaches the registry as
    an `EnvVar`, read from the environment only then."""
    from dagster import build_resources

    with build_resources({name: defs.resources[name]}) as ready:
        return getattr(ready, name)


def _import_sql_stores() -> None:
    """MLflow's SQL store modules, imported lazily by the first registry call on a `sqlite:`
    tracking URI: about 2.3 s of imports (SQLAlchemy models, alembic) that both the floor's
    `load_model("models:/...")` and ours would otherwise pay inside the clock, where they made a
    third of the floor. Imported before the clock in both, like every other import."""
    import mlflow.store.model_registry.sqlalchemy_store  # noqa: F401
    import mlflow.store.tracking.sqlalchemy_store  # noqa: F401


def _peak_mb() -> float:
    """This process's peak resident memory since it started (VmHWM).

    Not `ru_maxrss`: Linux carries the parent's peak at fork into a child's `ru_maxrss` across
    `exec`, so a worker started by a large parent would report the parent's memory.
    """
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status: peak memory needs Linux")


def _run(defs: Any, instance: Any, job: str, partition: Any) -> Any:
    return defs.resolve_job_def(job).execute_in_process(
        instance=instance,
        partition_key=partition,
        raise_on_error=True,
        run_config={"loggers": {"console": {"config": {"log_level": "WARNING"}}}},
    )


def prepare(models: str | None, state: Path) -> dict[str, Any]:
    """Register `models` (a key of MODEL_SETS) as the champion and the candidate, and pin both
    versions."""
    from eval_assets.demo.run import register
    from eval_assets.demo.training import train_demo_models
    from eval_assets.partitions import model_version_partitions, version_key

    settings, defs, instance = _code_location()
    trained = _issue_models() if models == "issue" else train_demo_models()
    for name in ("v1", "v2"):
        register(settings.tracking_uri, settings.artifact_root, trained[name], name)
    keys = [version_key(MODEL, v) for v in (CHAMPION, CANDIDATE)]
    instance.add_dynamic_partitions(model_version_partitions(MODEL).name, keys)
    for key in keys:
        _run(defs, instance, f"{MODEL}_model_version_job", key)
    return {}


def _issue_models() -> dict[str, Any]:
    """The issue's workload: two gradient-boosting versions of 300 trees each (see MODEL_SETS)."""
    from threadpoolctl import threadpool_limits

    from eval_assets.demo.synthetic import generate_transactions
    from eval_assets.demo.training import FEATURES, LABEL, boosting_pipeline

    categorical = ["merchant_category", "country"]
    numeric = ["amount", "card_present", "hour", "customer_tenure_days"]
    versions = {
        "v1": (boosting_pipeline(categorical, numeric, 300), 120_000, 11),
        "v2": (boosting_pipeline(categorical, [*numeric, "tx_count_24h"], 300), 300_000, 12),
    }
    # One OpenMP thread, as the demo trains: the same trees on any machine.
    with threadpool_limits(limits=1, user_api="openmp"):
        for model, rows, seed in versions.values():
            data = generate_transactions(rows, seed=seed)
            model.fit(data[FEATURES], data[LABEL])
    return {name: model for name, (model, _, _) in versions.items()}


def ingest(snapshot: str, state: Path) -> dict[str, Any]:
    """Validate the snapshot into `data_snapshot`, as the snapshot sensor's run does."""
    from eval_assets.partitions import snapshot_partitions

    _, defs, instance = _code_location()
    instance.add_dynamic_partitions(snapshot_partitions(DATASET).name, [snapshot])
    start = time.perf_counter()
    _run(defs, instance, f"{MODEL}_snapshot_job", snapshot)
    return {"seconds": time.perf_counter() - start, "peak_mb": _peak_mb()}


def champion_side(snapshot: str, state: Path) -> dict[str, Any]:
    """Make v1 the champion with its predictions and slice metrics on this snapshot stored (not
    timed)."""
    from dagster import AssetKey, materialize

    from eval_assets.partitions import pair_key, version_key

    _, defs, instance = _code_location()
    registry = _resource(defs, "model_registry")
    partition = pair_key(version_key(MODEL, CHAMPION), snapshot)
    if registry.champion(MODEL) is None:
        # The first version is judged on absolute gates and becomes the champion.
        _run(defs, instance, f"{MODEL}_evaluation_job", partition)
        assert registry.champion(MODEL).version == CHAMPION
    else:
        materialize(
            defs.assets,
            # The champion's evaluation of a snapshot is there before any candidate comes.
            selection=[AssetKey([MODEL, "predictions"]), AssetKey([MODEL, "slice_metrics"])],
            partition_key=partition,
            instance=instance,
            resources=defs.resources,
        )
    return {}


def floor(snapshot: str, state: Path) -> dict[str, Any]:
    """Load the candidate and the data, predict every row: the least any evaluation does."""
    return _floor(snapshot, state, batch_rows=None)


def floor_batched(snapshot: str, state: Path) -> dict[str, Any]:
    """The floor read and predicted in 100,000-row batches, as our predictions step does: one
    call on every row is slower per row (above 1M rows, slower than our whole evaluation)."""
    from eval_assets.core.models import PREDICT_BATCH_ROWS

    return _floor(snapshot, state, batch_rows=PREDICT_BATCH_ROWS)


def _floor(snapshot: str, state: Path, batch_rows: int | None) -> dict[str, Any]:
    import mlflow
    import mlflow.sklearn
    import numpy as np
    import pandas as pd
    import pyarrow.parquet as pq
    import skops.io  # noqa: F401  imported before the clock, as in `evaluate`

    from eval_assets.core.criteria import load_criteria

    _import_sql_stores()
    features = list(load_criteria(REPO / "criteria" / f"{MODEL}.yaml").dataset.features)
    mlflow.set_tracking_uri(os.environ["MLFLOW_TRACKING_URI"])
    data_file = state / "snapshots" / DATASET / snapshot / "data.parquet"
    with tempfile.TemporaryDirectory() as folder:
        start = time.perf_counter()
        model = mlflow.sklearn.load_model(f"models:/{MODEL}/{CANDIDATE}", dst_path=folder)
        if batch_rows is None:
            frame = pd.read_parquet(data_file)
            scores = model.predict_proba(frame[features])[:, 1]
        else:
            batches = pq.ParquetFile(data_file, pre_buffer=False).iter_batches(
                batch_size=batch_rows, columns=features
            )
            scores = np.concatenate([model.predict_proba(b.to_pandas())[:, 1] for b in batches])
        seconds = time.perf_counter() - start
    out = state / f"floor-{snapshot}-{batch_rows or 'whole'}.npy"
    np.save(out, scores)
    return {"seconds": seconds, "peak_mb": _peak_mb(), "rows": len(scores), "scores": str(out)}


def evaluate(snapshot: str, state: Path) -> dict[str, Any]:
    """The project's evaluation job for the candidate, then the champion alias put back and the
    evaluation's MLflow run and audit record removed (after the clock)."""
    from eval_assets.partitions import pair_key, version_key

    import_seconds = time.perf_counter() - STARTED
    _, defs, instance = _code_location()
    startup = time.perf_counter() - STARTED
    partition = pair_key(version_key(MODEL, CANDIDATE), snapshot)
    rss_before = _peak_mb()
    start = time.perf_counter()
    result = _run(defs, instance, f"{MODEL}_evaluation_job", partition)
    seconds = time.perf_counter() - start
    peak = _peak_mb()
    steps = {
        s.step_key: s.end_time - s.start_time
        for s in instance.get_run_step_stats(result.run_id)
        if s.end_time and s.start_time
    }
    predicted = [
        str(e.partition)
        for e in result.all_events
        if e.event_type_value == "ASSET_MATERIALIZATION" and e.asset_key.path[-1] == "predictions"
    ]
    logs = " ".join(
        r.user_message for r in instance.all_logs(result.run_id) if r.user_message is not None
    )
    store = _resource(defs, "evaluation_store")
    verdict = store.read_json(store.gate_verdict(MODEL, partition))
    paired = [
        r
        for gate in verdict["verdict"]["gates"]
        for r in gate["results"]
        if r["ci_low"] is not None and r["champion"] is not None
    ]
    registry = _resource(defs, "model_registry")
    promoted = registry.champion(MODEL).version == CANDIDATE
    if promoted:
        registry.move_champion(MODEL, CHAMPION, CANDIDATE)  # the next run starts the same way
    # The next run must do the same work: the MLflow run of an evaluation key is reused when it
    # exists, and the audit record is written once.
    registry.client.delete_run(verdict["mlflow_run_id"])
    (state / "outputs" / MODEL / "audit" / f"{verdict['evaluation_key']}.json").unlink()
    return {
        "seconds": seconds,
        "peak_mb": peak,
        "peak_before_mb": rss_before,
        "import_seconds": import_seconds,
        "startup_seconds": startup,
        "steps": steps,
        "success": result.success,
        "promoted": promoted,
        "predicted": predicted,
        "reused_champion": "reusing the champion's predictions" in logs,
        "paired_intervals": len(paired),
    }


def dagster_alone(snapshot: str, state: Path) -> dict[str, Any]:
    """Dagster's own share of a run: the evaluation job's shape with steps that do nothing,
    under their own asset keys, on the same instance, inputs loaded by a no-op IO
    manager. The upstream partitions are materialized before the clock."""
    from dagster import (
        AssetCheckResult,
        AssetCheckSpec,
        AssetIn,
        AssetKey,
        AssetOut,
        Definitions,
        IOManager,
        MaterializeResult,
        Output,
        asset,
        define_asset_job,
        in_process_executor,
        multi_asset,
    )

    from eval_assets.core.criteria import load_criteria
    from eval_assets.partitions import (
        evaluation_partitions,
        model_version_partitions,
        pair_key,
        snapshot_partitions,
        version_key,
    )

    class NoIO(IOManager):
        def handle_output(self, context: Any, obj: Any) -> None:
            pass

        def load_input(self, context: Any) -> dict[str, Any]:
            return {}

    _, _, instance = _code_location()
    gates = [gate.name for gate in load_criteria(REPO / "criteria" / f"{MODEL}.yaml").gates]
    pairs = evaluation_partitions(MODEL, DATASET)
    key = lambda name: AssetKey(["dagster_alone", name])  # noqa: E731

    # No annotations below: Dagster resolves them, and under `from __future__ import annotations`
    # a class local to this function cannot be resolved from its name.
    @asset(key=key("data_snapshot"), partitions_def=snapshot_partitions(DATASET))
    def data_snapshot():
        return {}

    @asset(key=key("model_version"), partitions_def=model_version_partitions(MODEL))
    def model_version():
        return {}

    @asset(
        key=key("predictions"),
        partitions_def=pairs,
        ins={"model_version": AssetIn(key=key("model_version"))},
        deps=[key("data_snapshot")],
    )
    def predictions(model_version):
        return MaterializeResult()

    @asset(key=key("slice_metrics"), partitions_def=pairs, deps=[key("predictions")])
    def slice_metrics():
        return {}

    @multi_asset(
        outs={
            "gate_verdict": AssetOut(key=key("gate_verdict")),
            "evaluation_report": AssetOut(key=key("evaluation_report")),
        },
        partitions_def=pairs,
        deps=[key("predictions")],
        ins={
            "slice_metrics": AssetIn(key=key("slice_metrics")),
            "model_version": AssetIn(key=key("model_version")),
        },
        check_specs=[
            AssetCheckSpec(name, asset=key("gate_verdict"), blocking=True, partitions_def=pairs)
            for name in gates
        ],
    )
    def gate_verdict(slice_metrics, model_version):
        yield Output({}, output_name="gate_verdict")
        yield Output({}, output_name="evaluation_report")
        for name in gates:
            yield AssetCheckResult(asset_key=key("gate_verdict"), check_name=name, passed=True)

    @asset(
        key=key("promotion"),
        partitions_def=pairs,
        ins={"gate_verdict": AssetIn(key=key("gate_verdict"))},
    )
    def promotion(gate_verdict):
        return {}

    upstream = {
        "dagster_alone_versions": (key("model_version"), version_key(MODEL, CANDIDATE)),
        "dagster_alone_snapshots": (key("data_snapshot"), snapshot),
    }
    job = define_asset_job(
        "dagster_alone",
        selection=[
            key(n)
            for n in (
                "predictions",
                "slice_metrics",
                "gate_verdict",
                "evaluation_report",
                "promotion",
            )
        ],
        executor_def=in_process_executor,
    )
    jobs = [job] + [
        define_asset_job(name, selection=[asset_key], executor_def=in_process_executor)
        for name, (asset_key, _) in upstream.items()
    ]
    defs = Definitions(
        assets=[data_snapshot, model_version, predictions, slice_metrics, gate_verdict, promotion],
        jobs=jobs,
        resources={"io_manager": NoIO()},
    )
    for name, (_, partition) in upstream.items():
        _run(defs, instance, name, partition)
    partition = pair_key(version_key(MODEL, CANDIDATE), snapshot)
    start = time.perf_counter()
    result = _run(defs, instance, "dagster_alone", partition)
    seconds = time.perf_counter() - start
    assert result.success
    return {"seconds": seconds}


WORKERS = {
    "prepare": prepare,
    "dagster_alone": dagster_alone,
    "ingest": ingest,
    "champion_side": champion_side,
    "floor": floor,
    "floor_batched": floor_batched,
    "evaluate": evaluate,
}
STARTED = time.perf_counter()

if __name__ == "__main__":
    main()
