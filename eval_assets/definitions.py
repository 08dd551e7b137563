"""The one place that reads the environment and assembles the code location.

Environment variables (all optional: a fresh checkout runs on embedded defaults):

- ``EVAL_ASSETS_ENV``: ``local`` (default), ``staging`` or ``prod``.
- ``EVAL_ASSETS_STATE``: local state folder (default ``.eval_assets`` in the repository).
- ``EVAL_ASSETS_CRITERIA_DIR``: criteria folder (default ``criteria/`` in the repository).
- ``MLFLOW_TRACKING_URI``: MLflow's own variable (default: SQLite file in the state folder).
- ``EVAL_ASSETS_SNAPSHOT_BUCKET`` / ``EVAL_ASSETS_SNAPSHOT_PREFIX``: snapshots on S3 instead of
  the local folder; ``AWS_ENDPOINT_URL`` selects any S3-compatible endpoint.
- ``EVAL_ASSETS_OUTPUT_BUCKET``: evaluation outputs on S3 instead of the state folder.
- ``EVAL_ASSETS_ALERT_WEBHOOK_URL``: alerts are also posted there (read through ``EnvVar``).
- ``EVAL_ASSETS_EXECUTOR``: ``in_process`` (default) or ``multiprocess``.
- ``EVAL_ASSETS_SENSOR_INTERVAL``: seconds between sensor ticks (default 10).
- ``EVAL_ASSETS_MAX_RUNTIME``: seconds a run of a model's jobs may run before Dagster's run
  monitoring stops it (default 3600; the tag ``dagster/max_runtime``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from dagster import (
    AssetKey,
    AssetSelection,
    Definitions,
    EnvVar,
    define_asset_job,
    in_process_executor,
    multiprocess_executor,
)
from dagster_aws.s3 import S3Resource

from eval_assets.assets import build_evaluation_assets
from eval_assets.core.criteria import Criteria, CriteriaError, load_criteria
from eval_assets.resources.notifier import Notifier
from eval_assets.resources.registry import MlflowModelRegistry
from eval_assets.resources.snapshots import LocalSnapshotStore, S3SnapshotStore
from eval_assets.resources.storage import (
    LocalEvaluationStore,
    OpenFormatIOManager,
    S3EvaluationStore,
)
from eval_assets.sensors import (
    MAX_RUNTIME_TAG,
    MODEL_TAG,
    SENSOR_INTERVAL_SECONDS,
    build_outcome_sensor,
    build_registry_sensor,
    build_snapshot_sensor,
)

REPO_ROOT = Path(__file__).resolve().parent.parent
ENVIRONMENTS = ("local", "staging", "prod")


@dataclass(frozen=True)
class Settings:
    """Everything the environment decides, read once."""

    environment: str
    state_dir: Path
    criteria_dir: Path
    tracking_uri: str
    snapshot_bucket: str | None
    snapshot_prefix: str
    output_bucket: str | None
    executor: str
    sensor_interval: int
    max_runtime_s: int = 3600

    @property
    def artifact_root(self) -> str | None:
        """Where embedded MLflow keeps artifacts; a tracking server decides its own."""
        if self.tracking_uri.startswith("sqlite:"):
            return (self.state_dir / "mlartifacts").as_uri()
        return None

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Settings:
        env = dict(os.environ if env is None else env)
        environment = env.get("EVAL_ASSETS_ENV", "local")
        if environment not in ENVIRONMENTS:
            raise ValueError(f"EVAL_ASSETS_ENV={environment!r}: expected one of {ENVIRONMENTS}")
        state = Path(env.get("EVAL_ASSETS_STATE", REPO_ROOT / ".eval_assets")).resolve()
        return cls(
            environment=environment,
            state_dir=state,
            criteria_dir=Path(env.get("EVAL_ASSETS_CRITERIA_DIR", REPO_ROOT / "criteria")),
            tracking_uri=env.get("MLFLOW_TRACKING_URI") or f"sqlite:///{state / 'mlflow.db'}",
            snapshot_bucket=env.get("EVAL_ASSETS_SNAPSHOT_BUCKET") or None,
            snapshot_prefix=env.get("EVAL_ASSETS_SNAPSHOT_PREFIX", "snapshots"),
            output_bucket=env.get("EVAL_ASSETS_OUTPUT_BUCKET") or None,
            executor=env.get("EVAL_ASSETS_EXECUTOR", "in_process"),
            sensor_interval=int(env.get("EVAL_ASSETS_SENSOR_INTERVAL", SENSOR_INTERVAL_SECONDS)),
            max_runtime_s=int(env.get("EVAL_ASSETS_MAX_RUNTIME", 3600)),
        )


def load_criteria_folder(folder: Path) -> list[Criteria]:
    """Every ``*.yaml`` criteria file; one bad file stops the code location with its message."""
    files = sorted(folder.glob("*.yaml"))
    if not files:
        raise CriteriaError(f"{folder}: no criteria files (*.yaml): nothing to evaluate")
    loaded = [load_criteria(f) for f in files]
    for path, criteria in zip(files, loaded, strict=True):
        if path.stem != criteria.model:
            raise CriteriaError(
                f"{path}: model {criteria.model!r} must match the file name {path.stem!r}"
            )
    return loaded


def build_definitions(
    settings: Settings, resource_overrides: dict[str, object] | None = None
) -> Definitions:
    """The code location for one set of settings; tests replace resources by key."""
    all_criteria = load_criteria_folder(settings.criteria_dir)
    files = {c.model: settings.criteria_dir / f"{c.model}.yaml" for c in all_criteria}
    executor = in_process_executor if settings.executor == "in_process" else multiprocess_executor
    assets, jobs, sensors = [], [], []
    for criteria in all_criteria:
        model, dataset = criteria.model, criteria.dataset.name
        model_assets = build_evaluation_assets(criteria, files[model])
        assets += model_assets
        # Every run of the model's jobs carries these. `eval_assets/model` is the key of the
        # per-model limit in dagster.yaml: without it on the run the queued run coordinator
        # never applies the limit. `dagster/max_runtime` lets run monitoring stop a run that
        # hangs (a model that sleeps in predict); the sensors record it as `timed_out`.
        run_tags = {MODEL_TAG: model, MAX_RUNTIME_TAG: str(settings.max_runtime_s)}
        ingest_version = define_asset_job(
            f"{model}_model_version_job",
            selection=_select(model, "model_version"),
            executor_def=executor,
            tags=run_tags,
            description=f"Download and pin one version of {model}.",
        )
        ingest_snapshot = define_asset_job(
            f"{model}_snapshot_job",
            selection=_select(model, "data_snapshot"),
            executor_def=executor,
            tags=run_tags,
            description=f"Validate one {dataset} snapshot for {model}.",
        )
        evaluate_job = define_asset_job(
            f"{model}_evaluation_job",
            selection=_select(
                model,
                "predictions",
                "slice_metrics",
                "gate_verdict",
                "evaluation_report",
                "promotion",
            ),
            executor_def=executor,
            tags=run_tags,
            description=f"Evaluate one version of {model} on one snapshot and gate its promotion.",
        )
        jobs += [ingest_version, ingest_snapshot, evaluate_job]
        sensors += [
            build_registry_sensor(criteria, ingest_version, evaluate_job, settings.sensor_interval),
            build_snapshot_sensor(
                criteria, ingest_snapshot, evaluate_job, settings.sensor_interval
            ),
            build_outcome_sensor(criteria, evaluate_job, settings.sensor_interval),
        ]
    return Definitions(
        assets=assets,
        jobs=jobs,
        sensors=sensors,
        resources={**resources(settings), **(resource_overrides or {})},
        # Also the executor of ad-hoc materializations (UI, `dagster asset materialize`).
        executor=executor,
    )


def _select(model: str, *names: str) -> AssetSelection:
    return AssetSelection.assets(*(AssetKey([model, n]) for n in names))


def resources(settings: Settings) -> dict[str, object]:
    """Real resources for the settings; tests swap in fakes by key."""
    s3 = S3Resource()  # endpoint, region and credentials come from the AWS environment
    if settings.snapshot_bucket:
        snapshots = S3SnapshotStore(
            bucket=settings.snapshot_bucket, prefix=settings.snapshot_prefix, s3=s3
        )
    else:
        snapshots = LocalSnapshotStore(root=str(settings.state_dir / "snapshots"))
    if settings.output_bucket:
        store = S3EvaluationStore(bucket=settings.output_bucket, s3=s3)
    else:
        store = LocalEvaluationStore(root=str(settings.state_dir / "outputs"))
    webhook = (
        EnvVar("EVAL_ASSETS_ALERT_WEBHOOK_URL")
        if os.environ.get("EVAL_ASSETS_ALERT_WEBHOOK_URL")
        else None
    )
    # A value given as config is stored in every run's job snapshot and shown in the UI; an
    # `EnvVar` is stored by name. The tracking URI may carry `user:token@`, so when it comes from
    # the process environment it is passed by name (a URI given otherwise, as tests do, stays a
    # value).
    tracking_uri = (
        EnvVar("MLFLOW_TRACKING_URI")
        if os.environ.get("MLFLOW_TRACKING_URI") == settings.tracking_uri
        else settings.tracking_uri
    )
    return {
        "model_registry": MlflowModelRegistry(
            tracking_uri=tracking_uri, artifact_root=settings.artifact_root
        ),
        "snapshot_store": snapshots,
        "evaluation_store": store,
        "io_manager": OpenFormatIOManager(store=store),
        "notifier": Notifier(webhook_url=webhook),
    }


defs = build_definitions(Settings.from_env())
