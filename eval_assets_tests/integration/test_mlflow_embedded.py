"""The asset graph against the real MLflow library on a SQLite store (no server): the champion
alias, version tags and tracking runs are MLflow's own, driven by the project's sensors. The tests
that drive it run twice: on an ephemeral Dagster instance, and on one whose `dagster.yaml` keeps
its storage in a real PostgreSQL server (dagster-postgres, the production setting)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import mlflow
import pytest
import yaml
from dagster import AssetKey, DagsterEventType, DagsterInstance, DagsterRunStatus
from mlflow.tracking import MlflowClient

from eval_assets.definitions import Settings, build_definitions
from eval_assets.demo.run import drive
from eval_assets.resources.registry import EVAL_KEY_TAG
from eval_assets_tests.support.factories import DATASET, MODEL, golden_frame, train, write_criteria
from eval_assets_tests.support.postgres import connect, postgres_server

pytestmark = pytest.mark.integration
SNAPSHOT = "snap-001"


@pytest.fixture(scope="module", params=["ephemeral", "postgres"])
def instance_storage(request: pytest.FixtureRequest):
    """None for an ephemeral instance, else the URL of an empty PostgreSQL database."""
    if request.param == "ephemeral":
        yield None
        return
    with postgres_server() as url:
        yield url


def instance_on(storage: str | None, home: Path) -> DagsterInstance:
    if storage is None:
        return DagsterInstance.ephemeral()
    # As README "Environments" says to configure it: the driver named in the URL.
    settings = {"storage": {"postgres": {"postgres_url": storage}}, "telemetry": {"enabled": False}}
    home.mkdir()
    (home / "dagster.yaml").write_text(yaml.safe_dump(settings))
    return DagsterInstance.from_config(str(home))


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory, instance_storage: str | None):
    tmp = tmp_path_factory.mktemp("mlflow")
    uri = f"sqlite:///{tmp / 'mlflow.db'}"
    settings = Settings.from_env(
        {
            "EVAL_ASSETS_STATE": str(tmp / "state"),
            "EVAL_ASSETS_CRITERIA_DIR": str(write_criteria(tmp / "criteria").parent),
            "MLFLOW_TRACKING_URI": uri,
        }
    )
    defs = build_definitions(settings)
    instance = instance_on(instance_storage, tmp / "dagster_home")
    defs.resources["snapshot_store"].publish(DATASET, SNAPSHOT, golden_frame())
    drive(defs, instance, f"{MODEL}_snapshot_sensor")
    mlflow.set_tracking_uri(uri)
    experiment = mlflow.create_experiment("training", artifact_location=(tmp / "art").as_uri())
    client = MlflowClient(uri)

    def register(kind: str, **kw: object) -> str:
        with mlflow.start_run(experiment_id=experiment):
            logged = mlflow.sklearn.log_model(
                train(kind, **kw), name="model", registered_model_name=MODEL
            )
        drive(defs, instance, f"{MODEL}_registry_sensor")
        return str(logged.registered_model_version)

    yield defs, instance, client, register
    mlflow.set_tracking_uri(None)
    instance.dispose()


def evaluation_runs(client: MlflowClient) -> list:
    experiment = client.get_experiment_by_name(f"eval-assets/{MODEL}")
    return client.search_runs([experiment.experiment_id], max_results=100)


def test_sensor_driven_evaluations_move_the_alias_only_on_a_full_pass(env):
    defs, instance, client, register = env
    assert register("weak") == "1"
    assert str(client.get_model_version_by_alias(MODEL, "champion").version) == "1"

    assert register("good") == "2"
    assert str(client.get_model_version_by_alias(MODEL, "champion").version) == "2"
    tags = client.get_model_version(MODEL, "2").tags
    assert tags["eval_assets.verdict"] == "passed"
    assert {"eval_assets.evaluation_key", "eval_assets.criteria_hash"} <= set(tags)

    assert register("bad") == "3"
    assert str(client.get_model_version_by_alias(MODEL, "champion").version) == "2"
    promoted = instance.get_materialized_partitions(AssetKey([MODEL, "promotion"]))
    assert f"{MODEL}.v3|{SNAPSHOT}" not in promoted
    assert "eval_assets.verdict" not in client.get_model_version(MODEL, "3").tags
    verdicts = {
        r.data.tags["eval_assets.version"]: r.data.tags["eval_assets.verdict"]
        for r in evaluation_runs(client)
    }
    assert verdicts == {"1": "passed", "2": "passed", "3": "failed"}


def test_rerun_of_an_evaluation_key_creates_no_second_mlflow_run(env):
    defs, instance, client, _ = env
    before = evaluation_runs(client)
    keys = [r.data.tags[EVAL_KEY_TAG] for r in before]
    assert len(keys) == len(set(keys))
    # The same evaluation key needs the same champion: v2 was judged against v1, and the
    # champion is part of the key (against itself, v2 would be another evaluation).
    client.set_registered_model_alias(MODEL, "champion", "1")
    job = defs.resolve_job_def(f"{MODEL}_evaluation_job")
    job.execute_in_process(
        partition_key=f"{MODEL}.v2|{SNAPSHOT}", instance=instance, raise_on_error=False
    )
    assert client.get_model_version_by_alias(MODEL, "champion").version in ("2", 2)
    drive(defs, instance, f"{MODEL}_registry_sensor")  # a further tick requests nothing new
    assert sorted(r.info.run_id for r in evaluation_runs(client)) == sorted(
        r.info.run_id for r in before
    )


def test_evaluation_run_logs_metrics_params_artifacts_and_the_dataset(env):
    _, _, client, _ = env
    run = next(r for r in evaluation_runs(client) if r.data.tags["eval_assets.version"] == "2")
    assert run.data.params["snapshot_id"] == SNAPSHOT
    assert run.data.params["champion_version"] == "1"
    assert "roc_auc.overall" in run.data.metrics and "roc_auc.high_value" in run.data.metrics
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"verdict.json", "metrics.json"} <= artifacts
    assert [d.dataset.name for d in run.inputs.dataset_inputs] == [f"{DATASET}@{SNAPSHOT}"]
    dataset = run.inputs.dataset_inputs[0].dataset
    # Profiled on every row, typed from a sample; the candidate's score is not part of the data.
    assert json.loads(dataset.profile)["num_rows"] == len(golden_frame())
    columns = {c["name"]: c for c in json.loads(dataset.schema)["mlflow_colspec"]}
    assert {"row_id", "label", "amount", "country"} <= set(columns)
    assert "score" not in columns
    assert columns["label"]["required"] is True


def test_loading_a_version_through_mlflow_does_not_look_like_a_changed_artifact(env):
    defs, instance, _, _ = env
    # On a local store MLflow writes `registered_model_meta` into the stored model folder.
    mlflow.sklearn.load_model(f"models:/{MODEL}/2")
    job = defs.resolve_job_def(f"{MODEL}_evaluation_job")
    result = job.execute_in_process(
        partition_key=f"{MODEL}.v2|{SNAPSHOT}", instance=instance, raise_on_error=False
    )
    assert result.success


def test_runs_and_gate_results_are_kept_by_the_configured_storage(env, instance_storage):
    _, instance, _, _ = env
    runs = instance.get_runs()
    evaluations = [r for r in runs if r.job_name == f"{MODEL}_evaluation_job"]
    assert {r.status for r in evaluations} == {DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE}
    # The blocking checks' results, read back through the instance.
    check_events = [
        e
        for r in evaluations
        for e in instance.all_logs(r.run_id, of_type=DagsterEventType.ASSET_CHECK_EVALUATION)
    ]
    assert any(not e.dagster_event.event_specific_data.passed for e in check_events)
    if instance_storage is None:
        assert instance.is_ephemeral
        return
    # Straight from PostgreSQL: every run and its events are there, not in a local fallback.
    connection = connect(instance_storage)
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM runs")
            assert cursor.fetchone()[0] == len(runs)
            cursor.execute(
                "SELECT count(*) FROM event_logs WHERE dagster_event_type = %s",
                (DagsterEventType.ASSET_CHECK_EVALUATION.value,),
            )
            assert cursor.fetchone()[0] == len(check_events)
    finally:
        connection.close()


def test_a_plain_postgresql_url_selects_a_driver_that_is_not_installed(tmp_path):
    """Why README "Environments" names psycopg2 in the URL: SQLAlchemy 2.1 maps a plain
    `postgresql://` to psycopg 3, which dagster-postgres does not install (no server needed)."""
    settings = {"storage": {"postgres": {"postgres_url": "postgresql://u@127.0.0.1:9/d"}}}
    (tmp_path / "dagster.yaml").write_text(yaml.safe_dump(settings))
    with pytest.raises(ModuleNotFoundError, match="psycopg"):
        DagsterInstance.from_config(str(tmp_path))


def test_definitions_load_with_no_environment_and_no_network():
    env = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/tmp")}
    # An unroutable proxy makes any attempted network call fail loudly.
    env |= {"HTTP_PROXY": "http://127.0.0.1:9", "HTTPS_PROXY": "http://127.0.0.1:9"}
    code = (
        "from eval_assets.definitions import defs; print(len(list(defs.resolve_all_asset_specs())))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "7"
