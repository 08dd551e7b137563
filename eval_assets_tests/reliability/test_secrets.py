"""Secrets never reach what Dagster, MLflow and the project keep (issue 22, item 4).

The alert webhook's URL carries its token, and the MLflow tracking URI may carry `user:token@` or
a token in its query. When the webhook or MLflow fails, the failure must be recorded, but without
the secret: not in the event log, the compute logs, the job snapshots Dagster stores, metadata,
tags, the report or the audit record.

The end-to-end tests run an evaluation that alerts (a blocked candidate sends `gate_failed`)
on a real on-disk Dagster instance (SQLite storage, a compute log manager writing files), loaded
from the code location module as the daemon loads it and executed with the multiprocess executor,
so that step subprocesses write compute logs; the webhook is a closed port, then a local server
answering 500. Every file the run left behind is then searched for the token.
"""

from __future__ import annotations

import contextlib
import http.server
import json
import logging
import socket
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from dagster import (
    AssetKey,
    DagsterEventType,
    DagsterInstance,
    MultiPartitionKey,
    execute_job,
    get_dagster_logger,
)
from dagster._core.definitions.reconstruct import ReconstructableJob

from eval_assets.definitions import Settings, build_definitions
from eval_assets.partitions import model_version_partitions, pair_key, snapshot_partitions
from eval_assets.resources.notifier import Notifier
from eval_assets.resources.registry import MlflowModelRegistry, RegistryUnavailable
from eval_assets_tests.support.factories import (
    DATASET,
    MODEL,
    golden_frame,
    train,
    write_criteria,
)

ROWS = 4000
SNAPSHOT = "golden"
HOST = "127.0.0.1"
# Secrets that are set in the environment of every run; none may be found in what runs leave.
ENV_SECRETS = {
    "MLFLOW_TRACKING_TOKEN": f"mlflowtok{uuid.uuid4().hex}",
    "MLFLOW_TRACKING_PASSWORD": f"mlflowpw{uuid.uuid4().hex}",
    "AWS_SECRET_ACCESS_KEY": f"awssecret{uuid.uuid4().hex}",
}


def closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (bound, then released)."""
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return probe.getsockname()[1]


class FailingWebhook(http.server.ThreadingHTTPServer):
    """A webhook on 127.0.0.1 that answers every POST with 500 and keeps the bodies it got."""

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                server.received.append(json.loads(self.rfile.read(length)))
                self.send_response(500)
                self.end_headers()
                self.wfile.write(b"internal error")

            def log_message(self, *args: Any) -> None:
                pass  # the test's output is not the place for the server's access log

        super().__init__((HOST, 0), Handler)
        self.thread = threading.Thread(target=self.serve_forever, daemon=True)

    @property
    def port(self) -> int:
        return self.server_address[1]

    def __enter__(self) -> FailingWebhook:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()
        self.server_close()
        self.thread.join(timeout=10)


def files_containing(root: Path, secret: str) -> list[str]:
    """Every file under `root` whose bytes contain `secret` (SQLite databases and WAL included)."""
    needle = secret.encode()
    return sorted(
        str(path.relative_to(root))
        for path in root.rglob("*")
        if path.is_file() and needle in path.read_bytes()
    )


# --- the end-to-end proof ---------------------------------------------------------------------


class Stack:
    """An on-disk Dagster instance and embedded MLflow, with the project's real definitions."""

    def __init__(self, tmp: Path, patch: pytest.MonkeyPatch):
        self.tmp = tmp
        self.home = tmp / "dagster_home"
        self.compute_logs = self.home / "compute_logs"
        self.home.mkdir()
        (self.home / "dagster.yaml").write_text(
            "telemetry:\n  enabled: false\n"
            "compute_logs:\n"
            "  module: dagster._core.storage.local_compute_log_manager\n"
            "  class: LocalComputeLogManager\n"
            f"  config:\n    base_dir: {self.compute_logs}\n"
        )
        state = tmp / "state"
        criteria = write_criteria(
            tmp / "criteria", bootstrap={"resamples": 50, "seed": 7, "confidence": 0.95}
        )
        # The environment the step subprocesses inherit: they load the code location from it.
        self.env = {
            "DAGSTER_HOME": str(self.home),
            "EVAL_ASSETS_STATE": str(state),
            "EVAL_ASSETS_CRITERIA_DIR": str(criteria.parent),
            "EVAL_ASSETS_EXECUTOR": "multiprocess",
            "MLFLOW_TRACKING_URI": f"sqlite:///{state / 'mlflow.db'}",
            "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
            "GIT_PYTHON_REFRESH": "quiet",
            **ENV_SECRETS,
        }
        for name, value in self.env.items():
            patch.setenv(name, value)
        patch.setenv("EVAL_ASSETS_ALERT_WEBHOOK_URL", f"http://{HOST}:{closed_port()}/setup")
        self.instance = DagsterInstance.from_config(str(self.home))
        self.defs = build_definitions(Settings.from_env())

    def set_webhook(self, patch: pytest.MonkeyPatch, url: str) -> None:
        patch.setenv("EVAL_ASSETS_ALERT_WEBHOOK_URL", url)

    def job(self, name: str):
        """The job rebuilt from the environment in each process, as a code location is loaded
        (`eval_assets.definitions` itself was imported, with its `defs`, before the test set its
        environment)."""
        return ReconstructableJob.for_file(__file__, f"{name}_from_environment")

    def prepare(self, name: str, partition: str) -> None:
        """Ingestion runs, in this process: only the evaluation is what the test is about."""
        job = self.defs.resolve_job_def(f"{MODEL}_{name}")
        assert job.execute_in_process(partition_key=partition, instance=self.instance).success

    def run(self, name: str, partition: str | MultiPartitionKey):
        tags = {"dagster/partition": str(partition)}
        if isinstance(partition, MultiPartitionKey):
            tags |= {f"dagster/partition/{d}": k for d, k in partition.keys_by_dimension.items()}
        with execute_job(
            self.job(name), instance=self.instance, tags=tags, raise_on_error=False
        ) as result:
            return result.run_id, result.success

    def register(self, kind: str) -> str:
        """Log a model as a new registered version and ingest it, as the registry sensor does."""
        import mlflow
        import mlflow.sklearn

        mlflow.set_tracking_uri(self.env["MLFLOW_TRACKING_URI"])
        experiment = mlflow.get_experiment_by_name("training")
        experiment_id = (
            experiment.experiment_id
            if experiment
            else mlflow.create_experiment(
                "training", artifact_location=(self.tmp / "training").as_uri()
            )
        )
        with mlflow.start_run(experiment_id=experiment_id):
            logged = mlflow.sklearn.log_model(
                train(kind, rows=ROWS), name="model", registered_model_name=MODEL
            )
        version = str(logged.registered_model_version)
        self.instance.add_dynamic_partitions(
            model_version_partitions(MODEL).name, [f"{MODEL}.v{version}"]
        )
        self.prepare("model_version_job", f"{MODEL}.v{version}")
        return version


def evaluation_job_from_environment():
    return build_definitions(Settings.from_env()).resolve_job_def(f"{MODEL}_evaluation_job")


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("secrets")
    with pytest.MonkeyPatch.context() as patch:
        s = Stack(tmp, patch)
        from eval_assets.resources.snapshots import LocalSnapshotStore

        LocalSnapshotStore(root=s.env["EVAL_ASSETS_STATE"] + "/snapshots").publish(
            DATASET, SNAPSHOT, golden_frame(rows=ROWS)
        )
        s.instance.add_dynamic_partitions(snapshot_partitions(DATASET).name, [SNAPSHOT])
        s.prepare("snapshot_job", SNAPSHOT)
        champion = s.register("good")
        MlflowModelRegistry(tracking_uri=s.env["MLFLOW_TRACKING_URI"]).move_champion(
            MODEL, champion, None
        )
        try:
            yield s
        finally:
            import mlflow

            mlflow.set_tracking_uri(None)
            s.instance.dispose()


def error_logs(instance: DagsterInstance, run_id: str) -> list[str]:
    return [
        e.user_message
        for e in instance.all_logs(run_id)
        if e.level >= logging.ERROR and e.user_message
    ]


@pytest.mark.integration
def test_a_failing_webhook_is_recorded_but_its_token_is_found_nowhere(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
):
    """One full evaluation (about two minutes in CI) alerting a webhook that answers 500. A closed
    port takes the same path in the notifier:
    test_an_undeliverable_alert_never_raises_and_never_logs_the_url proves it on its own."""
    token = f"hooktok{uuid.uuid4().hex}"
    with FailingWebhook() as server:
        port = server.port
        url = f"http://{HOST}:{port}/hooks/{token}?token={token}"
        stack.set_webhook(monkeypatch, url)
        version = stack.register("bad")  # learns shuffled labels: blocked by the change gates
        pair = pair_key(f"{MODEL}.v{version}", SNAPSHOT)
        run_id, _ = stack.run("evaluation_job", pair)
        assert [body["event"] for body in server.received] == ["gate_failed"]

    # The token is nowhere: event log and run databases, compute logs, job snapshots, and the
    # project's own outputs (report, audit record, MLflow's tags and params).
    leaked = {
        name: files_containing(stack.tmp, secret)
        for name, secret in {"webhook token": token, **ENV_SECRETS}.items()
    }
    assert leaked == {name: [] for name in leaked}, leaked

    # The failure itself is recorded, with the webhook named as far as it is safe to.
    errors = error_logs(stack.instance, run_id)
    delivery = [m for m in errors if "alert not delivered" in m]
    assert len(delivery) == 1, errors
    assert f"webhook http://{HOST}:{port}/***?token=***" in delivery[0]
    assert "HTTP Error 500" in delivery[0]
    assert delivery[0] in "\n".join(p.read_text() for p in stack.compute_logs.rglob("*.err"))
    # And the notifier did not fail the evaluation: the verdict is recorded, the champion stays.
    assert str(pair) in stack.instance.get_materialized_partitions(
        AssetKey([MODEL, "gate_verdict"])
    )
    checks = stack.instance.all_logs(run_id, of_type=DagsterEventType.ASSET_CHECK_EVALUATION)
    assert any(not e.dagster_event.event_specific_data.passed for e in checks)
    registry = MlflowModelRegistry(tracking_uri=stack.env["MLFLOW_TRACKING_URI"])
    assert registry.champion(MODEL).version == "1"


# --- the notifier on its own --------------------------------------------------------------------


@contextlib.contextmanager
def dagster_log() -> Iterator[list[str]]:
    """What the notifier logs through Dagster's logger, outside a run."""
    lines: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: lines.append(record.getMessage())  # type: ignore[method-assign]
    logger = get_dagster_logger()
    logger.addHandler(handler)
    try:
        yield lines
    finally:
        logger.removeHandler(handler)


@pytest.mark.parametrize(
    "url",
    [
        # userinfo: urllib cannot send it, and looks "user:TOKEN@host" up as a host name
        "http://alerts:{token}@127.0.0.1:{port}/hook",
        # no scheme: urllib refuses it in Request(), before any connection
        "127.0.0.1:{port}/hooks/{token}",
        # a control character: http.client refuses the URL quoting it
        "http://127.0.0.1:{port}/hooks/{token} x?k={token}",
        "http://127.0.0.1:{port}/hooks/{token}?token={token}",
    ],
)
def test_an_undeliverable_alert_never_raises_and_never_logs_the_url(url: str):
    """Malformed URLs raise ValueError, not OSError, with the URL in the message."""
    token = f"tok{uuid.uuid4().hex}"
    notifier = Notifier(webhook_url=url.format(token=token, port=closed_port()), timeout_seconds=2)

    with dagster_log() as lines:
        delivered = notifier.notify("gate_failed", {"summary": "v2 blocked"})

    assert delivered is False
    assert any("alert not delivered to webhook" in line for line in lines), lines
    assert not [line for line in lines if token in line], lines


# --- the registry's messages and links with a credentialed tracking URI ------------------------


def credentialed_uri(token: str, port: int) -> str:
    return f"http://mlops:{token}@{HOST}:{port}/?token={token}"


def chain_text(exc: BaseException | None) -> str:
    """An error and every cause Dagster would store with it (it honours `from None`)."""
    texts = []
    while exc is not None:
        texts.append(f"{type(exc).__name__}: {exc}")
        exc = exc.__cause__ or (None if exc.__suppress_context__ else exc.__context__)
    return "\n".join(texts)


def test_mlflow_unavailable_names_the_server_but_not_its_credentials(
    monkeypatch: pytest.MonkeyPatch,
):
    """MLflow quotes the URI it was given ("API request to http://user:token@..."), and Dagster
    keeps the whole cause chain of a step's error."""
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "2")
    token, port = f"tok{uuid.uuid4().hex}", closed_port()
    registry = MlflowModelRegistry(tracking_uri=credentialed_uri(token, port))

    for call in (lambda: registry.get_version(MODEL, "1"), registry.check_available):
        with pytest.raises(RegistryUnavailable) as caught:
            call()
        text = chain_text(caught.value)
        assert token not in text, text
        assert f"MLflow at http://***@{HOST}:{port}/?token=*** is unavailable" in text


def test_other_registry_errors_that_quote_the_uri_are_scrubbed():
    from mlflow.exceptions import MlflowException

    from eval_assets.resources.registry import RegistryError, _unavailable

    token = f"tok{uuid.uuid4().hex}"
    uri = credentialed_uri(token, 5000)

    with pytest.raises(RegistryError) as caught, _unavailable("read", "m v1", uri):
        raise MlflowException(f"Bad response from {uri}api/2.0/x: 403 for mlops:{token}")

    assert token not in chain_text(caught.value)
    assert "403" in str(caught.value)


def test_the_mlflow_run_link_and_the_version_source_carry_no_credential():
    """Both go into Dagster metadata and the audit record."""
    from eval_assets.resources.registry import _info

    token = f"tok{uuid.uuid4().hex}"
    registry = MlflowModelRegistry(tracking_uri=f"https://mlops:{token}@mlflow.example.com/")
    version = SimpleNamespace(
        name=MODEL,
        version=3,
        status="READY",
        run_id="r1",
        source=f"https://mlops:{token}@files.example.com/models/3",
        creation_timestamp=0,
        aliases=[],
        tags={},
    )

    assert registry._run_url("7", "abc") == "https://mlflow.example.com/#/experiments/7/runs/abc"
    assert _info(version).source == "https://***@files.example.com/models/3"


def test_a_credentialed_tracking_uri_is_not_stored_in_the_job_snapshots(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """Dagster stores every run's job snapshot, resource config included, and shows it in the UI:
    the URI is passed by the name of its variable, like the webhook."""
    from dagster._serdes import serialize_value

    token = f"tok{uuid.uuid4().hex}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", credentialed_uri(token, 5000))
    monkeypatch.setenv("EVAL_ASSETS_ALERT_WEBHOOK_URL", f"https://hooks.example.com/{token}")
    monkeypatch.setenv("EVAL_ASSETS_STATE", str(tmp_path / "state"))
    monkeypatch.setenv("EVAL_ASSETS_CRITERIA_DIR", str(write_criteria(tmp_path / "c").parent))

    defs = build_definitions(Settings.from_env())

    for name in ("evaluation_job", "model_version_job", "snapshot_job"):
        snapshot = serialize_value(defs.resolve_job_def(f"{MODEL}_{name}").get_job_snapshot())
        assert token not in snapshot
        assert "MLFLOW_TRACKING_URI" in snapshot
