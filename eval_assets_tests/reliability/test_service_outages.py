"""Outages seen from a sensor tick and an ingestion run, with real network endpoints:

- MLflow slow: a TCP server on 127.0.0.1 that accepts connections and never answers;
- S3 down: the harness's moto server stopped, then started again.

The tick must fail within bounded time with a message naming what is down, change nothing (no
partition added, no run requested, so nothing is consumed), and catch up once the service is back.
The daemon-level variant (a real `dagster-daemon`, MLflow stopped and restarted, the failed tick
visible in the UI) is eval_assets_tests/e2e/test_sensors_e2e.py::test_3_mlflow_outage_...
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from dagster import AssetKey, DagsterInstance, build_sensor_context

from eval_assets.definitions import Settings, build_definitions
from eval_assets.resources.registry import MlflowModelRegistry
from eval_assets_tests.support.factories import DATASET, MODEL, golden_frame, write_criteria
from eval_assets_tests.support.fakes import FakeModelRegistry
from eval_assets_tests.support.services import MotoS3Server

pytestmark = pytest.mark.integration


@contextlib.contextmanager
def black_hole() -> Iterator[str]:
    """http://127.0.0.1:PORT of a server that accepts every connection and never answers."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    listener.settimeout(0.2)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                held.append(listener.accept()[0])

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        stop.set()
        thread.join(5)
        for connection in held:
            connection.close()
        listener.close()
        assert held, "nothing ever connected to the black hole"


def tick(defs, instance: DagsterInstance, name: str, cursor: str | None = None):
    with build_sensor_context(
        instance=instance,
        cursor=cursor,
        definitions=defs,
        sensor_name=name,
        resources=defs.resources,
    ) as context:
        return defs.resolve_sensor_def(name)(context)


def chain(exc: BaseException | None) -> str:
    texts = []
    while exc is not None:
        texts.append(f"{type(exc).__name__}: {exc}")
        exc = exc.__cause__ or exc.__context__
    return "\n".join(texts)


def settings(tmp: Path, **env: str) -> Settings:
    criteria = write_criteria(tmp / "criteria")
    return Settings.from_env(
        {
            "EVAL_ASSETS_STATE": str(tmp / "state"),
            "EVAL_ASSETS_CRITERIA_DIR": str(criteria.parent),
            **env,
        }
    )


# --- MLflow slow: accepts, never answers ----------------------------------------------------------


def test_a_registry_that_never_answers_fails_the_tick_in_bounded_time_and_changes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "2")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    with black_hole() as url:
        defs = build_definitions(settings(tmp_path, MLFLOW_TRACKING_URI=url))
        instance = DagsterInstance.ephemeral()
        # (The snapshot sensor starts with the same availability probe.)
        began = time.monotonic()
        with pytest.raises(Exception) as caught:
            tick(defs, instance, f"{MODEL}_registry_sensor", cursor="3")
        elapsed = time.monotonic() - began
        text = chain(caught.value)
        assert f"MLflow at {url} is unavailable" in text, text
        assert "RegistryUnavailable" in text
        assert elapsed < 30, elapsed  # the health probe's own 10 s bound
        # The failed ticks returned no result: no cursor, no partition, no run request.
        assert instance.get_dynamic_partitions(f"{MODEL}_versions") == []
        assert instance.get_runs() == []

        # Inside a run the MLflow client itself is bounded by MLflow's variables (set above).
        registry = MlflowModelRegistry(tracking_uri=url)
        began = time.monotonic()
        with pytest.raises(Exception) as caught:
            registry.get_version(MODEL, "1")
        assert f"MLflow at {url} is unavailable: could not read {MODEL} v1" in chain(caught.value)
        assert time.monotonic() - began < 20


# --- S3 down, then back ---------------------------------------------------------------------------


def test_s3_down_fails_the_snapshot_tick_and_ingestion_naming_the_bucket_then_catches_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    bucket = f"golden-{uuid.uuid4().hex[:8]}"
    frame = golden_frame(rows=500)
    with MotoS3Server(tmp_path / "moto") as moto:
        for key, value in moto.env().items():
            monkeypatch.setenv(key, value)
        boto3.client("s3").create_bucket(Bucket=bucket)
        defs = build_definitions(
            settings(tmp_path, EVAL_ASSETS_SNAPSHOT_BUCKET=bucket),
            {"model_registry": FakeModelRegistry(namespace=uuid.uuid4().hex)},
        )
        store = defs.resources["snapshot_store"]
        sensor = f"{MODEL}_snapshot_sensor"
        instance = DagsterInstance.ephemeral()
        store.publish(DATASET, "snap-1", frame)

        moto.stop()
        began = time.monotonic()
        with pytest.raises(Exception) as caught:
            tick(defs, instance, sensor)
        elapsed = time.monotonic() - began
        assert f"S3 bucket {bucket} is unavailable" in chain(caught.value), chain(caught.value)
        assert elapsed < 60, elapsed
        assert instance.get_dynamic_partitions(f"{DATASET}_snapshots") == []  # nothing consumed
        # An ingestion run started meanwhile (by hand) fails the same way, and stores nothing.
        instance.add_dynamic_partitions(f"{DATASET}_snapshots", ["snap-1"])
        job = defs.resolve_job_def(f"{MODEL}_snapshot_job")
        result = job.execute_in_process(
            partition_key="snap-1", instance=instance, raise_on_error=False
        )
        assert not result.success
        failure = next(e for e in result.all_events if e.is_step_failure)
        error = failure.step_failure_data.error
        assert f"S3 bucket {bucket} is unavailable" in (error.message + str(error.cause)), error
        assert not instance.get_materialized_partitions(AssetKey([MODEL, "data_snapshot"]))
        instance.delete_dynamic_partition(f"{DATASET}_snapshots", "snap-1")

        # The endpoint returns. moto keeps its objects in memory, so they are put back as the
        # durable store would still hold them (same bytes, same SHA-256).
        moto.start()
        boto3.client("s3").create_bucket(Bucket=bucket)
        info = store.publish(DATASET, "snap-1", frame)
        result = tick(defs, instance, sensor)
        assert [r.partition_key for r in result.run_requests] == ["snap-1"]
        assert result.run_requests[0].run_key == f"ingest:snap-1:{info.sha256}"
        for request in result.dynamic_partitions_requests:
            instance.add_dynamic_partitions(
                request.partitions_def_name, list(request.partition_keys)
            )
        assert job.execute_in_process(partition_key="snap-1", instance=instance).success
        assert instance.get_materialized_partitions(AssetKey([MODEL, "data_snapshot"])) == {
            "snap-1"
        }
        assert tick(defs, instance, sensor).run_requests == []  # known now: not requested twice
