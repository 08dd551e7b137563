"""Faults around a real `mlflow server` (the harness's MlflowServer on 127.0.0.1), with the
project's real definitions, a persistent Dagster instance and local stores:

- MLflow down during an evaluation run, then back: the run fails naming MLflow, the re-run
  records one MLflow run and moves the alias once;
- the run process SIGKILLed at four points of an evaluation (from outside, mid-write, with its
  MLflow run half-logged, right after the alias moved), then re-run;
- two runs racing for the same evaluation (two processes; and two writers forced through the
  search-then-create window of `record_evaluation`);
- the champion alias moved by someone else between the verdict and the promotion.

After each: at most one finished MLflow run per evaluation key, the alias moved only after a full
pass and at most once, no half-written output, the version's outcome recorded.

Runs that get killed execute in a forked child process (a real process, without paying the
import time of a fresh interpreter), which builds its own definitions, Dagster instance handle
and MLflow HTTP sessions.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
import pytest
import yaml
from dagster import AssetKey, DagsterInstance, DagsterRunStatus, RunsFilter
from mlflow.tracking import MlflowClient

from eval_assets.core.digests import evaluation_key
from eval_assets.definitions import Settings, build_definitions
from eval_assets.demo.run import drive
from eval_assets.partitions import model_version_partitions
from eval_assets.resources.registry import EVAL_KEY_TAG, PENDING_KEY_TAG, MlflowModelRegistry
from eval_assets_tests.support.factories import (
    DATASET,
    MODEL,
    REPO,
    golden_frame,
    train,
    write_criteria,
)
from eval_assets_tests.support.runs import failure_text, stub_plots
from eval_assets_tests.support.services import MlflowServer

pytestmark = pytest.mark.integration
ROWS = 6000
SNAPSHOT = "golden"
EVAL_JOB = f"{MODEL}_evaluation_job"
KILL_TIMEOUT_S = 180.0


def sized_criteria(folder: Path) -> Path:
    """The real criteria sized for a few thousand rows (see test_graph_over_fakes.py)."""
    gates = yaml.safe_load((REPO / "criteria" / f"{MODEL}.yaml").read_text())["gates"]
    for gate in gates:
        if gate["kind"] == "support":
            gate["min_rows"], gate["min_positives"] = 50, 5
        if gate["kind"] == "fairness":
            gate["max"] = 0.5
    return write_criteria(
        folder, gates=gates, bootstrap={"resamples": 100, "seed": 7, "confidence": 0.95}
    )


@dataclass
class Stack:
    tmp: Path
    server: MlflowServer
    env: dict[str, str]
    home: Path
    defs: Any
    instance: DagsterInstance
    client: MlflowClient
    model: Any
    alias_log: Path
    experiment: str = ""
    keys: dict[str, str] = field(default_factory=dict)

    @property
    def outputs(self) -> Path:
        return self.tmp / "state" / "outputs"

    def register(self) -> str:
        """Log the (same) good model as a new version and ingest it, as the registry sensor does."""
        with mlflow.start_run(experiment_id=self.experiment):
            logged = mlflow.sklearn.log_model(self.model, name="model", registered_model_name=MODEL)
        version = str(logged.registered_model_version)
        self.instance.add_dynamic_partitions(
            model_version_partitions(MODEL).name, [f"{MODEL}.v{version}"]
        )
        ingest = self.defs.resolve_job_def(f"{MODEL}_model_version_job").execute_in_process(
            partition_key=f"{MODEL}.v{version}", instance=self.instance, raise_on_error=False
        )
        assert ingest.success
        return version

    def evaluate(self, version: str, **kwargs: Any):
        return self.defs.resolve_job_def(EVAL_JOB).execute_in_process(
            partition_key=partition(version), instance=self.instance, raise_on_error=False, **kwargs
        )

    def champion(self) -> str:
        return str(self.client.get_model_version_by_alias(MODEL, "champion").version)

    def key_of(self, version: str, champion: str | None) -> str:
        """The evaluation key of `version` on the snapshot against `champion` (as the sensors
        compute it: the champion compared against is part of the key)."""
        from eval_assets.assets.model_version import DIGEST_TAG
        from eval_assets.core.criteria import load_criteria

        def digest(v: str) -> str:
            return self.client.get_model_version(MODEL, v).tags[DIGEST_TAG]

        snapshot = self.defs.resources["snapshot_store"].list_snapshots(DATASET)[0]
        criteria = load_criteria(Path(self.env["EVAL_ASSETS_CRITERIA_DIR"]) / f"{MODEL}.yaml")
        return evaluation_key(
            digest(version),
            snapshot.sha256,
            criteria.digest(),
            champion_digest=digest(champion) if champion else None,
        )

    def evaluation_runs(self) -> list:
        experiment = self.client.get_experiment_by_name(f"eval-assets/{MODEL}")
        return self.client.search_runs([experiment.experiment_id], max_results=500)

    def finished_runs_per_key(self) -> Counter[str]:
        return Counter(
            r.data.tags[EVAL_KEY_TAG]
            for r in self.evaluation_runs()
            if EVAL_KEY_TAG in r.data.tags and r.info.status == "FINISHED"
        )

    def alias_moves_to(self, version: str) -> int:
        lines = self.alias_log.read_text().split() if self.alias_log.exists() else []
        return lines.count(version)


def partition(version: str) -> str:
    return f"{MODEL}.v{version}|{SNAPSHOT}"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("mlflow-faults")
    home = tmp / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    alias_log = tmp / "alias_moves.log"
    real_set_alias = MlflowClient.set_registered_model_alias

    def logged_set_alias(self, name, alias, version):
        # Every process (forked children inherit this) notes each move of the alias.
        with open(alias_log, "a") as handle:
            handle.write(f"{version}\n")
        return real_set_alias(self, name, alias, version)

    with pytest.MonkeyPatch.context() as patch, MlflowServer(tmp / "mlflow") as server:
        patch.setattr(MlflowClient, "set_registered_model_alias", logged_set_alias)
        stub_plots(patch)
        env = {
            "EVAL_ASSETS_STATE": str(tmp / "state"),
            "EVAL_ASSETS_CRITERIA_DIR": str(sized_criteria(tmp / "criteria").parent),
            "MLFLOW_TRACKING_URI": server.url,
        }
        defs = build_definitions(Settings.from_env(env))
        instance = DagsterInstance.from_config(str(home))
        mlflow.set_tracking_uri(server.url)
        s = Stack(
            tmp,
            server,
            env,
            home,
            defs,
            instance,
            MlflowClient(server.url),
            train("good", rows=ROWS),
            alias_log,
        )
        s.experiment = mlflow.create_experiment("training")
        defs.resources["snapshot_store"].publish(DATASET, SNAPSHOT, golden_frame(rows=ROWS))
        drive(defs, instance, f"{MODEL}_snapshot_sensor")
        with mlflow.start_run(experiment_id=s.experiment):
            mlflow.sklearn.log_model(s.model, name="model", registered_model_name=MODEL)
        drive(defs, instance, f"{MODEL}_registry_sensor")  # ingests and evaluates v1
        assert s.champion() == "1"
        try:
            yield s
        finally:
            mlflow.set_tracking_uri(None)
            instance.dispose()


def assert_invariants(s: Stack) -> None:
    """At most one finished MLflow run per key; every output whole, no temporary left."""
    per_key = s.finished_runs_per_key()
    assert per_key and max(per_key.values()) == 1, per_key
    files = [p for p in s.outputs.rglob("*") if p.is_file()]
    assert [p for p in files if p.name.endswith(".tmp")] == []
    for path in files:
        if path.suffix == ".parquet":
            pd.read_parquet(path)
        elif path.suffix == ".json":
            json.loads(path.read_text())


def assert_promoted_once(s: Stack, version: str, previous: str | None) -> None:
    assert s.champion() == version
    assert s.alias_moves_to(version) == 1
    key = s.key_of(version, previous)
    assert s.finished_runs_per_key()[key] == 1
    verdict = json.loads(
        (
            s.outputs / MODEL / "gate_verdict" / f"{MODEL}.v{version}" / f"{SNAPSHOT}.json"
        ).read_text()
    )
    # A re-run once the alias has moved compares the new champion with itself: another
    # evaluation, under its own key; the comparison with `previous` keeps its one run above.
    compared = verdict["champion_version"]
    assert compared in (previous, version)
    assert verdict["passed"] and verdict["evaluation_key"] == s.key_of(version, compared)
    run = s.client.get_run(verdict["mlflow_run_id"])  # the record points at the complete run
    assert run.info.status == "FINISHED"
    assert run.data.tags[EVAL_KEY_TAG] == verdict["evaluation_key"]
    assert {a.path for a in s.client.list_artifacts(run.info.run_id)} >= {
        "verdict.json",
        "metrics.json",
    }
    assert_invariants(s)


# --- MLflow down during an evaluation run --------------------------------------------------------


def test_mlflow_down_during_a_run_fails_naming_mlflow_and_the_rerun_records_once(stack: Stack):
    s = stack
    candidate = s.register()  # ingested while MLflow is up
    before = s.champion()
    s.server.stop()
    try:
        with pytest.MonkeyPatch.context() as patch:
            # MLflow's client retries a refused connection for minutes by default; bound it.
            patch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
            patch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")
            began = time.monotonic()
            result = s.evaluate(candidate)
            elapsed = time.monotonic() - began
    finally:
        s.server.start()
    assert not result.success
    text = failure_text(result)
    assert f"MLflow at {s.server.url} is unavailable" in text, text
    assert elapsed < 60, elapsed
    assert s.champion() == before
    assert s.key_of(candidate, before) not in s.finished_runs_per_key()
    assert not s.instance.get_materialized_partitions(AssetKey([MODEL, "promotion"])) & {
        partition(candidate)
    }

    again = s.evaluate(candidate)  # MLflow is back: the same run, re-executed
    assert again.success, failure_text(again)
    assert_promoted_once(s, candidate, before)


# --- the run process SIGKILLed in the middle, then re-run -----------------------------------------


def _child(env: dict[str, str], home: str, version: str, kill_at: str | None, log: str) -> None:
    """Body of a forked run process: fresh definitions and instance handle (MLflow keys its HTTP
    sessions by process id, so no socket of the parent is shared)."""
    import logging
    import sys

    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    sys.stdout = sys.stderr = open(log, "a", buffering=1)  # noqa: SIM115 (pytest's capture)
    logging.basicConfig(stream=sys.stderr, force=True)

    def die() -> None:
        os.kill(os.getpid(), signal.SIGKILL)

    if kill_at == "mid-write":
        from eval_assets.core import atomic

        real_replace = os.replace

        def replace(src, dst, *args, **kwargs):
            if "/audit/" in str(dst):
                die()  # the temporary is whole on disk, the rename never happens
            return real_replace(src, dst, *args, **kwargs)

        atomic.os.replace = replace  # type: ignore[attr-defined]
    elif kill_at == "half-logged-run":
        MlflowClient.log_artifacts = lambda *a, **k: die()  # type: ignore[method-assign]
    elif kill_at == "after-alias-move":
        moving = MlflowClient.set_registered_model_alias

        def move_then_die(self, *args, **kwargs):
            moving(self, *args, **kwargs)
            die()

        MlflowClient.set_registered_model_alias = move_then_die  # type: ignore[method-assign]

    instance = DagsterInstance.from_config(home)
    defs = build_definitions(Settings.from_env(env))
    result = defs.resolve_job_def(EVAL_JOB).execute_in_process(
        partition_key=partition(version), instance=instance, raise_on_error=False
    )
    if not result.success:
        print(failure_text(result), flush=True)
    os._exit(0 if result.success else 1)


def start_child(s: Stack, version: str, kill_at: str | None = None):
    log = s.tmp / f"run-v{version}-{uuid.uuid4().hex[:6]}.log"
    process = multiprocessing.get_context("fork").Process(
        target=_child, args=(s.env, str(s.home), version, kill_at, str(log))
    )
    process.start()
    process.log = log  # type: ignore[attr-defined]
    return process


def tail(process) -> str:
    log: Path = process.log
    return "\n".join(log.read_text(errors="replace").splitlines()[-40:]) if log.exists() else ""


def wait_for(path: Path, process, timeout: float = KILL_TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        ended = f"the run ended (exit {process.exitcode}) before {path}:\n"
        assert process.is_alive(), ended + tail(process)
        assert time.monotonic() < deadline, f"no {path} after {timeout} s"
        time.sleep(0.02)


def killed_runs(s: Stack, version: str) -> list:
    runs = s.instance.get_runs(RunsFilter(tags={"dagster/partition": partition(version)}))
    return [r for r in runs if r.status == DagsterRunStatus.STARTED]


def test_a_run_killed_at_any_point_of_materialization_then_rerun_leaves_everything_whole(
    stack: Stack,
):
    """One candidate, its evaluation run SIGKILLed four times at four points, then re-run."""
    s = stack
    candidate = s.register()
    previous = s.champion()
    key = s.key_of(candidate, previous)
    verdict_file = s.outputs / MODEL / "gate_verdict" / f"{MODEL}.v{candidate}" / f"{SNAPSHOT}.json"
    audit_file = s.outputs / MODEL / "audit" / f"{key}.json"

    # 1. From outside, once its predictions are stored (it is computing metrics and the verdict).
    child = start_child(s, candidate)
    wait_for(
        s.outputs / MODEL / "predictions" / f"{MODEL}.v{candidate}" / f"{SNAPSHOT}.parquet", child
    )
    os.kill(child.pid, signal.SIGKILL)
    child.join(KILL_TIMEOUT_S)
    assert child.exitcode == -signal.SIGKILL, (child.exitcode, tail(child))
    assert len(killed_runs(s, candidate)) == 1  # visibly not finished, in the Dagster instance
    assert s.champion() == previous and not verdict_file.exists()

    # 2. With its MLflow run half-logged (metrics and params, no artifacts, not FINISHED).
    child = start_child(s, candidate, "half-logged-run")
    child.join(KILL_TIMEOUT_S)
    assert child.exitcode == -signal.SIGKILL, (child.exitcode, tail(child))
    pending = [r for r in s.evaluation_runs() if r.data.tags.get(PENDING_KEY_TAG) == key]
    assert len(pending) == 1 and pending[0].info.status == "RUNNING"
    assert EVAL_KEY_TAG not in pending[0].data.tags  # never taken for the evaluation's record
    assert key not in s.finished_runs_per_key()

    # 3. Mid-write: the audit record's temporary is whole on disk, the rename never happened.
    child = start_child(s, candidate, "mid-write")
    child.join(KILL_TIMEOUT_S)
    assert child.exitcode == -signal.SIGKILL, (child.exitcode, tail(child))
    orphans = list(audit_file.parent.glob(f".{audit_file.name}.*.tmp"))
    assert len(orphans) == 1 and not audit_file.exists()  # readers see no audit record at all
    assert s.finished_runs_per_key()[key] == 1
    assert s.champion() == previous

    # 4. Right after the alias moved, before the promotion was recorded.
    child = start_child(s, candidate, "after-alias-move")
    child.join(KILL_TIMEOUT_S)
    assert child.exitcode == -signal.SIGKILL, (child.exitcode, tail(child))
    assert s.champion() == candidate and s.alias_moves_to(candidate) == 1
    assert not list(audit_file.parent.glob("*.tmp"))  # the dead writer's temporary is gone
    assert len(killed_runs(s, candidate)) == 4

    again = s.evaluate(candidate)
    assert again.success, failure_text(again)
    decision = again.asset_value(AssetKey([MODEL, "promotion"]))
    assert decision["moved"] is False and "already the champion" in decision["reason"]
    assert_promoted_once(s, candidate, previous)  # one MLflow run, one alias move, files whole
    audit = json.loads(audit_file.read_text())  # the audit record of the key compared with v1
    [recorded] = [
        r
        for r in s.evaluation_runs()
        if r.info.status == "FINISHED" and r.data.tags.get(EVAL_KEY_TAG) == key
    ]
    assert audit["mlflow_run_id"] == recorded.info.run_id


# --- two runs racing for the same version --------------------------------------------------------


def test_two_processes_evaluating_the_same_version_at_once_promote_once(stack: Stack):
    s = stack
    candidate = s.register()
    previous = s.champion()
    racers = [start_child(s, candidate), start_child(s, candidate)]
    for racer in racers:
        racer.join(KILL_TIMEOUT_S)
    assert [r.exitcode for r in racers].count(0) >= 1, [tail(r) for r in racers]
    # A racer that read the champion after the other's promotion compared the candidate with
    # itself: another key; the comparison with `previous` still has one run and one move.
    assert_promoted_once(s, candidate, previous)
    decisions = [
        r.asset_materialization.metadata["moved"].value
        for r in s.instance.fetch_materializations(
            AssetKey([MODEL, "promotion"]), limit=100
        ).records
        if r.partition_key == partition(candidate)
    ]
    assert decisions.count("True") == 1, decisions


def test_two_writers_through_the_search_then_create_window_keep_one_mlflow_run(stack: Stack):
    s = stack
    key = uuid.uuid4().hex
    barrier = threading.Barrier(2, timeout=60)
    results: dict[str, Any] = {}

    def writer(name: str) -> None:
        registry = MlflowModelRegistry(tracking_uri=s.server.url)
        client = registry.client
        search = client.search_runs
        state = {"first": True}

        def search_then_wait(*args, **kwargs):
            found = search(*args, **kwargs)
            if state.pop("first", False):
                barrier.wait()  # both writers have looked, and found nothing
            return found

        client.search_runs = search_then_wait
        results[name] = registry.record_evaluation(
            MODEL,
            key,
            params={"writer": name},
            tags={"mlflow.runName": f"race {name}"},
            metrics={"roc_auc.overall": 0.9},
            artifacts={"verdict.json": b"{}"},
        )

    threads = [threading.Thread(target=writer, args=(n,)) for n in ("a", "b")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert set(results) == {"a", "b"}
    assert results["a"].run_id == results["b"].run_id
    assert sorted(r.created for r in results.values()) == [False, True]
    assert s.finished_runs_per_key()[key] == 1
    pending = [r for r in s.evaluation_runs() if r.data.tags.get(PENDING_KEY_TAG) == key]
    assert [r.info.run_id for r in pending] == [results["a"].run_id]  # the loser's copy is gone


# --- the champion alias moved by someone else during an evaluation (last: it rolls back to v1) ---


def test_alias_moved_by_someone_else_between_verdict_and_promotion_is_not_overwritten(stack: Stack):
    s = stack
    candidate = s.register()
    before, other = s.champion(), "1"  # someone else rolls the alias back to v1
    assert before != other
    job = s.defs.resolve_job_def(EVAL_JOB)
    verdict_keys = [
        AssetKey([MODEL, n])
        for n in ("predictions", "slice_metrics", "gate_verdict", "evaluation_report")
    ]
    judged = job.execute_in_process(
        partition_key=partition(candidate), instance=s.instance, asset_selection=verdict_keys
    )
    assert judged.success  # a full pass, compared against `before`

    s.client.set_registered_model_alias(MODEL, "champion", other)  # someone else, meanwhile

    promoted = job.execute_in_process(
        partition_key=partition(candidate),
        instance=s.instance,
        asset_selection=[AssetKey([MODEL, "promotion"])],
    )
    assert promoted.success
    decision = promoted.asset_value(AssetKey([MODEL, "promotion"]))
    assert decision["moved"] is False and decision["previous_champion"] == before
    assert f"champion is now {other}, not {before}" in decision["reason"]
    assert s.champion() == other  # stays where the other party put it
    assert s.alias_moves_to(candidate) == 0
    tags = s.client.get_model_version(MODEL, candidate).tags
    assert tags["eval_assets.promotion"] == decision["reason"]
    assert_invariants(s)
