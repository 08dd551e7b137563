"""Prove the service harness the integration and end-to-end tests stand on.

Those tests trust that MLflow, moto S3 and Dagster really come up healthy, really serve what the
project needs (a registry with aliases and artifacts, an S3 API, a webserver with a live daemon),
survive a restart on the same port, and never outlive the test that started them. If any of that
silently broke, every test above it would fail in confusing ways or leak processes; these tests say
so directly, and they also cover the harness's own failure paths (exit during start-up, start-up
timeout, SIGTERM ignored by the service or inherited as ignored).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path
from typing import Any

import boto3
import pytest

from eval_assets_tests.support.services import (
    DagsterDaemon,
    DagsterDev,
    DagsterWebserver,
    MlflowServer,
    MotoS3Server,
    ServiceProcess,
    ServiceStartError,
    dagster_daemon,
    dagster_dev,
    dagster_webserver,
    group_alive,
    http_request,
    process_group_members,
)

pytest_plugins = ["eval_assets_tests.support.services"]

pytestmark = pytest.mark.integration

CLIENT_TIMEOUT_S = 300


class _ScriptService(ServiceProcess):
    """A throwaway service running a Python snippet; healthy once its log says READY."""

    name = "script"

    def __init__(self, log_dir: Path, script: str, **kwargs: Any) -> None:
        super().__init__(log_dir, **kwargs)
        self.script = textwrap.dedent(script)
        self.seen_pgid: int | None = None

    def command(self) -> list[str]:
        return [sys.executable, "-c", self.script]

    def is_healthy(self) -> bool:
        self.seen_pgid = self.pgid
        return "READY" in self.log_text()


def _assert_group_gone(pgid: int) -> None:
    with pytest.raises(ProcessLookupError):
        os.killpg(pgid, 0)


# ---------------------------------------------------------------------------------------------
# The harness's own failure paths (fast)
# ---------------------------------------------------------------------------------------------


def test_exit_during_startup_names_exit_code_and_log_tail(tmp_path: Path) -> None:
    service = _ScriptService(
        tmp_path, "import sys; print('boom-marker', flush=True); sys.exit(3)", startup_timeout=20
    )
    with pytest.raises(ServiceStartError) as caught:
        service.start()
    message = str(caught.value)
    assert "exited with code 3" in message
    assert "boom-marker" in message
    assert str(service.log_path) in message
    assert not service.running


def test_startup_timeout_stops_whole_group(tmp_path: Path) -> None:
    # The leader starts a child in its group and never becomes healthy.
    script = """
        import subprocess, sys, time
        subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])
        print("never ready", flush=True)
        time.sleep(300)
    """
    service = _ScriptService(tmp_path, script, startup_timeout=2)
    began = time.monotonic()
    with pytest.raises(ServiceStartError, match="not healthy after 2 s") as caught:
        service.start()
    assert time.monotonic() - began < 20
    assert "never ready" in str(caught.value)
    assert service.seen_pgid is not None
    _assert_group_gone(service.seen_pgid)


def test_stop_escalates_to_sigkill_when_sigterm_is_ignored(tmp_path: Path) -> None:
    script = """
        import signal, subprocess, sys, time
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])
        print("READY", flush=True)
        time.sleep(300)
    """
    service = _ScriptService(tmp_path, script, startup_timeout=20, stop_timeout=1)
    with service:
        pgid = service.pgid
        assert pgid is not None
        assert len(process_group_members(pgid)) >= 2
        began = time.monotonic()
    assert 0.9 < time.monotonic() - began < 10
    _assert_group_gone(pgid)
    assert "killed script" in service.log_path.read_text()


def test_inherited_ignored_sigterm_is_reset_before_exec(tmp_path: Path) -> None:
    # What happens when tests run from a background script: ignored signals are inherited.
    script = """
        import signal, time
        print("SIGTERM default:", signal.getsignal(signal.SIGTERM) == signal.SIG_DFL, flush=True)
        print("READY", flush=True)
        time.sleep(300)
    """
    service = _ScriptService(tmp_path, script, startup_timeout=20)
    previous = signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        service.start()
    finally:
        signal.signal(signal.SIGTERM, previous)
    try:
        assert "SIGTERM default: True" in service.log_text()
    finally:
        service.stop()
    assert "terminated script" in service.log_path.read_text()


# ---------------------------------------------------------------------------------------------
# MLflow
# ---------------------------------------------------------------------------------------------

_MLFLOW_CLIENT = """
import json, sys

import mlflow
import numpy as np
from mlflow import MlflowClient
from sklearn.linear_model import LogisticRegression

name, mode = sys.argv[1], sys.argv[2]
client = MlflowClient()
if mode == "register":
    features = np.array([[0.0], [1.0], [2.0], [3.0]])
    model = LogisticRegression().fit(features, np.array([0, 0, 1, 1]))
    mlflow.set_experiment(name)
    with mlflow.start_run():
        info = mlflow.sklearn.log_model(model, name="model", registered_model_name=name)
    client.set_registered_model_alias(name, "champion", str(info.registered_model_version))
found = client.get_model_version_by_alias(name, "champion")
loaded = mlflow.sklearn.load_model(f"models:/{name}@champion")
print(json.dumps({
    "tracking_uri": mlflow.get_tracking_uri(),
    "version": str(found.version),
    "aliases": list(found.aliases),
    "predictions": loaded.predict(np.array([[0.0], [3.0]])).tolist(),
}))
"""


def _run_mlflow_client(server: MlflowServer, cwd: Path, name: str, mode: str) -> dict[str, object]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env.update(server.env())
    env["MLFLOW_DISABLE_TELEMETRY"] = "true"
    done = subprocess.run(
        [sys.executable, "-c", _MLFLOW_CLIENT, name, mode],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=CLIENT_TIMEOUT_S,
        check=False,
    )
    assert done.returncode == 0, f"client failed:\n{done.stderr[-3000:]}"
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_mlflow_registry_alias_artifacts_and_restart(
    mlflow_service: MlflowServer, tmp_path: Path
) -> None:
    name = f"svc-test-{uuid.uuid4().hex[:8]}"
    first = _run_mlflow_client(mlflow_service, tmp_path, name, "register")
    assert first["tracking_uri"] == mlflow_service.url
    assert first["aliases"] == ["champion"]
    assert first["predictions"] == [0, 1]
    assert not (tmp_path / "mlruns").exists()  # artifacts went through the server
    assert mlflow_service.rss_bytes() > 50 * 2**20

    port, pgid = mlflow_service.port, mlflow_service.pgid
    assert pgid is not None
    mlflow_service.stop()
    _assert_group_gone(pgid)
    with pytest.raises(OSError):
        http_request(f"{mlflow_service.url}/health", timeout=2)

    mlflow_service.start()
    assert mlflow_service.port == port
    again = _run_mlflow_client(mlflow_service, tmp_path, name, "read")
    assert again["version"] == first["version"]
    assert again["predictions"] == [0, 1]


# ---------------------------------------------------------------------------------------------
# S3
# ---------------------------------------------------------------------------------------------


def test_moto_s3_create_put_list_through_env(
    s3_service: MotoS3Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key, value in s3_service.env().items():
        monkeypatch.setenv(key, value)
    s3 = boto3.client("s3")  # endpoint, credentials and region all from env()
    bucket = f"svc-test-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="snapshots/2026-11-01/rows.csv", Body=b"id,label\n1,0\n")
    listed = s3.list_objects_v2(Bucket=bucket, Prefix="snapshots/")
    assert [item["Key"] for item in listed["Contents"]] == ["snapshots/2026-11-01/rows.csv"]
    body = s3.get_object(Bucket=bucket, Key="snapshots/2026-11-01/rows.csv")["Body"].read()
    assert body == b"id,label\n1,0\n"


# ---------------------------------------------------------------------------------------------
# Dagster
# ---------------------------------------------------------------------------------------------

_THROWAWAY_DEFS = """
from dagster import Definitions, asset


@asset
def services_probe() -> int:
    return 1


defs = Definitions(assets=[services_probe])
"""

_ASSET_KEYS_QUERY = "{ assetNodes { assetKey { path } } }"


@pytest.fixture
def throwaway_location(tmp_path: Path) -> tuple[Path, Path, str]:
    """(code directory, DAGSTER_HOME, module) for a one-asset code location."""
    code = tmp_path / "code"
    code.mkdir()
    (code / "services_probe_defs.py").write_text(_THROWAWAY_DEFS)
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    return code, home, "services_probe_defs"


def _asset_paths(server: DagsterWebserver | DagsterDev) -> list[list[str]]:
    data = server.graphql(_ASSET_KEYS_QUERY)
    return [node["assetKey"]["path"] for node in data["assetNodes"]]


def test_dagster_dev_healthy_then_fully_stopped(
    tmp_path: Path, throwaway_location: tuple[Path, Path, str]
) -> None:
    code, home, module = throwaway_location
    with dagster_dev(tmp_path / "logs", home, {}, code, module=module) as dev:
        assert http_request(f"{dev.url}/server_info")[0] == 200
        assert ["services_probe"] in _asset_paths(dev)
        assert dev.daemons_healthy(since=dev.started_at)
        pgid = dev.pgid
        assert pgid is not None
        members = process_group_members(pgid)
        assert len(members) >= 3  # dagster dev, webserver, daemon (+ code server)
    _assert_group_gone(pgid)
    assert not group_alive(pgid)
    assert not any(Path(f"/proc/{pid}").exists() for pid in members)


def test_webserver_and_daemon_separately_with_daemon_restart(
    tmp_path: Path, throwaway_location: tuple[Path, Path, str]
) -> None:
    code, home, module = throwaway_location
    logs = tmp_path / "logs"
    with (
        dagster_webserver(logs, home, {}, code, module=module) as web,
        dagster_daemon(logs, home, {}, code, module=module) as daemon,
    ):
        assert isinstance(daemon, DagsterDaemon)
        assert daemon.port is None and daemon.url is None
        assert ["services_probe"] in _asset_paths(web)
        assert web.daemons_healthy(since=daemon.started_at)

        pgid = daemon.pgid
        assert pgid is not None
        daemon.stop()
        _assert_group_gone(pgid)
        assert web.running

        daemon.start()
        assert daemon.start_count == 2
        assert daemon.pgid != pgid
        assert web.daemons_healthy(since=daemon.started_at)
