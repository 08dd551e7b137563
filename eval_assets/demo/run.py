"""The demo: a golden snapshot, four versions of `fraud_detector`, each gated as a sensor would.

It uses the project's own definitions, sensors and jobs on a persistent Dagster home and an
embedded MLflow (SQLite), so `make ui` shows the whole history afterwards. Nothing else runs:
no servers, no network.
"""

from __future__ import annotations

import logging
import os
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import pandas as pd
from dagster import DagsterInstance, Definitions, build_resources, build_sensor_context

from eval_assets.definitions import REPO_ROOT, Settings, build_definitions
from eval_assets.demo.synthetic import GOLDEN_ROWS, GOLDEN_SEED, generate_transactions
from eval_assets.partitions import pair_key, version_key

MODEL = "fraud_detector"
TRUSTED_TYPES = ["sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor"]
SNAPSHOT_ID = "golden-001"
STORIES = {
    "1": "baseline: becomes champion (absolute and fairness gates only)",
    "2": "better overall and on every key slice: promoted",
    "3": "better overall, worse on transactions above $10,000: blocked",
    "4": "unfair across age bands: blocked by the fairness gate",
}


def main() -> int:
    started = time.perf_counter()
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    warnings.filterwarnings("ignore")  # library deprecation notes would bury the verdicts
    logging.getLogger("mlflow").setLevel(logging.ERROR)
    settings = Settings.from_env()
    home = Path(os.environ.setdefault("DAGSTER_HOME", str(settings.state_dir / "dagster_home")))
    home.mkdir(parents=True, exist_ok=True)
    if not (home / "dagster.yaml").exists():
        (home / "dagster.yaml").symlink_to(REPO_ROOT / "dagster.yaml")
    os.environ.setdefault("MLFLOW_TRACKING_URI", settings.tracking_uri)
    defs = build_definitions(settings)
    instance = DagsterInstance.get()
    # Initialized as a run initializes them: values passed by `EnvVar` (the tracking URI) are
    # read from the environment only here.
    with build_resources(defs.resources or {}) as resources:
        return demo(settings, defs, instance, resources, started)


def demo(
    settings: Settings,
    defs: Definitions,
    instance: DagsterInstance,
    resources: Any,
    started: float,
) -> int:
    """Publish, train, register, let the sensors evaluate, print the verdicts."""
    registry = resources.model_registry
    store = resources.snapshot_store

    say(f"state folder: {settings.state_dir}")
    if not any(s.snapshot_id == SNAPSHOT_ID for s in store.list_snapshots("card_fraud_golden")):
        say(f"1. generating the golden snapshot {SNAPSHOT_ID} ({GOLDEN_ROWS:,} rows)")
        store.publish(
            "card_fraud_golden", SNAPSHOT_ID, generate_transactions(GOLDEN_ROWS, GOLDEN_SEED)
        )
    else:
        say(f"1. golden snapshot {SNAPSHOT_ID} already published")
    drive(defs, instance, f"{MODEL}_snapshot_sensor")

    existing = registry.list_versions(MODEL)
    if len(existing) >= 4:
        say("2. four versions are already registered: reusing them")
        drive(defs, instance, f"{MODEL}_registry_sensor")
    else:
        say("2. training four versions of fraud_detector")
        models = train()
        for name, model in list(models.items())[len(existing) :]:
            version = register(settings.tracking_uri, settings.artifact_root, model, name)
            say(f"   registered {MODEL} v{version} ({STORIES[version]}); the sensor takes it")
            drive(defs, instance, f"{MODEL}_registry_sensor")

    say("3. verdicts")
    evaluations = resources.evaluation_store
    for info in registry.list_versions(MODEL)[:4]:
        path = evaluations.gate_verdict(
            MODEL, pair_key(version_key(MODEL, info.version), SNAPSHOT_ID)
        )
        print_verdict(info.version, evaluations.read_json(path))
    champion = registry.champion(MODEL)
    say(f"final champion: {MODEL} v{champion.version if champion else 'none'}")
    say(
        f"done in {time.perf_counter() - started:.0f} s. Open the UI with `make ui` "
        "(http://127.0.0.1:3000): assets, runs, checks and lineage of every evaluation."
    )
    return 0


def drive(
    defs: Definitions, instance: DagsterInstance, sensor_name: str, max_ticks: int = 6
) -> None:
    """Tick a sensor and run what it requests, until it has nothing more to do."""
    sensor = defs.resolve_sensor_def(sensor_name)
    cursor, done = None, set()
    for _ in range(max_ticks):
        with build_sensor_context(
            instance=instance,
            cursor=cursor,
            definitions=defs,
            sensor_name=sensor_name,
            resources=defs.resources,
        ) as context:
            result = sensor(context)
        cursor = result.cursor or cursor
        for request in result.dynamic_partitions_requests or []:
            instance.add_dynamic_partitions(
                request.partitions_def_name, list(request.partition_keys)
            )
        # The daemon skips a run key it has launched before; so does this loop.
        requests = [r for r in result.run_requests or [] if r.run_key not in done]
        if not requests:
            return
        for request in requests:
            done.add(request.run_key)
            job = defs.resolve_job_def(request.job_name)
            outcome = job.execute_in_process(
                instance=instance,
                partition_key=request.partition_key,
                tags={**request.tags, "dagster/sensor_name": sensor_name},
                raise_on_error=False,
                # The console gets this script's summary; every event stays in the instance.
                run_config={"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}},
            )
            state = "succeeded" if outcome.success else "stopped by a blocking check or an error"
            say(f"   run {outcome.run_id[:8]} {request.job_name} {request.partition_key}: {state}")


def train() -> dict[str, Any]:
    from eval_assets.demo.training import train_demo_models

    return train_demo_models()


def register(tracking_uri: str, artifact_root: str | None, model: Any, name: str) -> str:
    """Log a trained model to MLflow and register it as the next version of fraud_detector."""
    import mlflow
    import sklearn
    import skops
    from mlflow.models import infer_signature

    from eval_assets.demo.training import FEATURES

    mlflow.set_tracking_uri(tracking_uri)
    experiment = mlflow.get_experiment_by_name("fraud_detector-training")
    experiment_id = (
        experiment.experiment_id
        if experiment
        else mlflow.create_experiment(
            "fraud_detector-training",
            artifact_location=f"{artifact_root}/training" if artifact_root else None,
        )
    )
    sample = generate_transactions(200, seed=1)[FEATURES]
    signature = infer_signature(sample, model.predict_proba(sample)[:, 1])
    with mlflow.start_run(experiment_id=experiment_id, run_name=f"train {name}"):
        mlflow.log_param("story", name)
        logged = mlflow.sklearn.log_model(
            model,
            name="model",
            registered_model_name=MODEL,
            signature=signature,
            skops_trusted_types=TRUSTED_TYPES,
            # Explicit requirements spare MLflow an environment export per model.
            pip_requirements=[
                f"scikit-learn=={sklearn.__version__}",
                f"skops=={skops.__version__}",
            ],
        )
    return str(logged.registered_model_version)


def print_verdict(version: str, record: dict[str, Any] | None) -> None:
    if record is None:
        say(f"\n{MODEL} v{version}: no verdict (evaluation pending or failed)")
        return
    against = f"v{record['champion_version']}" if record["champion_version"] else "no champion"
    status = "PASSED" if record["passed"] else "BLOCKED"
    say(f"\n{MODEL} v{version} vs {against}: {status}")
    rows = [
        {
            "gate": r["gate"],
            "slice": r["slice"],
            "champion": _f(r["champion"]),
            "candidate": _f(r["candidate"]),
            "change": _f(r["change"]),
            "interval": "" if r["ci_low"] is None else f"[{r['ci_low']:+.4f}, {r['ci_high']:+.4f}]",
            "outcome": r["outcome"],
        }
        for gate in record["verdict"]["gates"]
        for r in gate["results"]
    ]
    say(pd.DataFrame(rows).to_string(index=False))


def _f(value: Any) -> str:
    if value is None:
        return ""
    # A support gate's candidate is a row count: shown as one, not as 60000.0000.
    return f"{value:,}" if isinstance(value, int) else f"{value:.4f}"


def say(text: str) -> None:
    print(text, flush=True)


if __name__ == "__main__":
    sys.exit(main())
