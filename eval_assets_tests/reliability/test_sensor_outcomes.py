"""Every version ends in a recorded outcome, and an outage heals without anyone (issue 22).

The sensors' decisions, tick by tick, over the project's own definitions and jobs on a fake
registry and an ephemeral instance: a tick's run requests are launched in process as the daemon
would launch them (with their tags and run key), and the daemon's rule that a sensor launches a
run key once is checked against the run keys already used. The same behaviours on the real
daemon, MLflow server and S3 are in e2e/test_sensors_e2e.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from dagster import AssetKey, DagsterRunStatus, RunsFilter, build_sensor_context
from dagster._core.storage.dagster_run import DagsterRun

from eval_assets.resources.registry import RegistryUnavailable
from eval_assets_tests.reliability.test_graph_over_fakes import GOLDEN, ROWS, Graph
from eval_assets_tests.support.factories import MODEL, REPO, golden_frame, train
from eval_assets_tests.support.factories import save_mlflow_model as save
from eval_assets_tests.support.fakes import FakeModelRegistry
from eval_assets_tests.support.runs import stub_plots

# The run tags people filter on, spelled out: they are the interface, not an implementation detail.
MODEL_TAG = "eval_assets/model"
MAX_RUNTIME_TAG = "dagster/max_runtime"
KEY_TAG = "eval_assets/evaluation_key"
OUTCOME_TAG = "eval_assets/outcome"
VERDICT_TAG = "eval_assets/verdict"
MAX_ATTEMPTS = 3  # as docs/reliability.md says
REGISTRY_SENSOR = f"{MODEL}_registry_sensor"
OUTCOME_SENSOR = f"{MODEL}_outcome_sensor"
EVALUATION_JOB = f"{MODEL}_evaluation_job"


class Daemon:
    """Ticks the model's sensors and launches what they request, once per run key."""

    def __init__(self, graph: Graph):
        self.g = graph

    def tick(self, sensor: str = REGISTRY_SENSOR):
        with build_sensor_context(
            instance=self.g.instance,
            definitions=self.g.defs,
            sensor_name=sensor,
            resources=self.g.defs.resources,
        ) as context:
            return self.g.defs.resolve_sensor_def(sensor)(context)

    def used_run_keys(self) -> set[str]:
        return {r.tags["dagster/run_key"] for r in self.runs() if "dagster/run_key" in r.tags}

    def runs(self, job: str = EVALUATION_JOB, **tags: str) -> list[DagsterRun]:
        return list(self.g.instance.get_runs(RunsFilter(job_name=job, tags=tags)))

    def launch(self, request, asset_selection: list[str] | None = None):
        """Launch one request as the daemon does; a run key already used is not launched."""
        assert request.run_key not in self.used_run_keys(), (
            f"run key {request.run_key} was already used: the daemon would skip this request"
        )
        job = self.g.defs.resolve_job_def(request.job_name)
        return job.execute_in_process(
            partition_key=request.partition_key,
            instance=self.g.instance,
            tags={**request.tags, "dagster/run_key": request.run_key},
            asset_selection=[AssetKey([MODEL, a]) for a in asset_selection]
            if asset_selection
            else None,
            raise_on_error=False,
        )

    def evaluations(self, result) -> dict[str, object]:
        """The tick's evaluation requests by version ('1', '2', ...)."""
        return {
            str(r.partition_key).split("|")[0].rsplit(".v", 1)[1]: r
            for r in result.run_requests
            if r.job_name == EVALUATION_JOB
        }


@pytest.fixture()
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Graph, Daemon]:
    stub_plots(monkeypatch)
    g = Graph(tmp_path)
    assert g.publish(GOLDEN, golden_frame(rows=ROWS)).success
    g.good = train("good", rows=ROWS)  # type: ignore[attr-defined]
    return g, Daemon(g)


def _champion_v1(g: Graph, d: Daemon, folder: Path) -> None:
    """v1, evaluated by the sensor's request with no champion, becomes champion."""
    version, ingested = g.register(folder)
    assert ingested.success and version == "1"
    assert d.launch(d.evaluations(d.tick())["1"]).success
    assert g.champion() == "1"


def test_a_version_with_the_bytes_of_an_earlier_one_gets_its_own_outcome(world, tmp_path):
    """Re-registering the same artifact (a rollback, a retrain that converged) used to give the
    new version the earlier version's run key: the daemon skipped it on every tick, and the
    version never got a verdict. Its run key now names its partition; the evaluation key, and the
    MLflow run, are still shared when the comparison is the same."""
    g, d = world
    artifact = save(g.good, tmp_path / "models" / "same")
    _champion_v1(g, d, artifact)

    assert g.register(artifact)[1].success  # v2: the same folder, the same bytes
    request = d.evaluations(d.tick())["2"]  # launch() fails if its run key was used
    assert d.launch(request).success
    assert g.materialized("gate_verdict", f"{MODEL}.v2|{GOLDEN}")

    # v3, the same bytes again, compared with a champion of the same bytes as v2 was: the same
    # evaluation key as v2, so no second MLflow run, but its own verdict all the same.
    assert g.register(artifact)[1].success
    request = d.evaluations(d.tick())["3"]
    assert (
        request.tags[KEY_TAG]
        == d.runs(**{"dagster/partition": f"{MODEL}.v2|{GOLDEN}"})[0].tags[KEY_TAG]
    )
    assert d.launch(request).success
    assert g.materialized("gate_verdict", f"{MODEL}.v3|{GOLDEN}")
    assert len(g.registry.state.runs) == 2  # v1's key (no champion), and v2's shared with v3

    # Every version has its outcome: the next tick asks for nothing.
    again = d.tick()
    assert not again.run_requests, again.skip_reason


def test_a_candidate_that_passed_against_a_replaced_champion_is_compared_again(world, tmp_path):
    """Two candidates judged against v1 both pass; v3 is promoted first, so v2's promotion finds
    the alias moved and leaves it (compare-and-set). v2 used to stay there forever, passed but
    never compared with the champion that replaced v1; now it is requested against v3, under a
    new evaluation key. A blocked candidate and a former champion are not re-requested."""
    g, d = world
    _champion_v1(g, d, save(g.good, tmp_path / "models" / "v1"))
    for name in ("v2", "v3"):  # the same fitted model in new folders: passes against v1
        assert g.register(save(g.good, tmp_path / "models" / name))[1].success
    assert g.register(save(train("bad", rows=ROWS), tmp_path / "models" / "v4"))[1].success
    first = d.evaluations(d.tick())
    assert set(first) == {"2", "3", "4"}

    # v2 is judged against v1; meanwhile v3 is judged and promoted; then v2's promotion runs.
    everything_but_promotion = ["predictions", "slice_metrics", "gate_verdict", "evaluation_report"]
    assert d.launch(first["2"], everything_but_promotion).success
    assert d.launch(first["3"]).success
    assert g.champion() == "3"
    late = first["2"]
    late = late.with_replaced_attrs(run_key=late.run_key + ":promotion")
    assert d.launch(late, ["promotion"]).success
    assert g.champion() == "3"  # compare-and-set: v2 was compared with v1, not v3
    assert not d.launch(first["4"]).success  # blocked against v3

    again = d.evaluations(d.tick())
    assert set(again) == {"2"}, "only the stale pass is compared again"
    assert again["2"].tags[KEY_TAG] != first["2"].tags[KEY_TAG]  # the champion is in the key
    assert d.launch(again["2"]).success
    verdict = g.store.read_json(f"{MODEL}/gate_verdict/{MODEL}.v2/{GOLDEN}.json")
    assert verdict["champion_version"] == "3"
    assert g.champion() == "2"  # as good as v3 within the tolerance, and now compared with it
    assert not d.tick().run_requests  # v3 was promoted once: never handed the alias back


def _registry_down(monkeypatch: pytest.MonkeyPatch, *, probe: bool) -> None:
    def unavailable(*args, **kwargs):
        raise RegistryUnavailable("MLflow at http://127.0.0.1:1 is unavailable: could not log")

    monkeypatch.setattr(FakeModelRegistry, "record_evaluation", unavailable)
    if probe:
        monkeypatch.setattr(FakeModelRegistry, "check_available", unavailable)


def test_an_evaluation_that_failed_on_an_outage_is_retried_once_the_registry_answers(
    world, tmp_path
):
    """MLflow lost mid-evaluation used to leave the version failed until someone re-executed it:
    the sensor re-requested the used run key, which the daemon skips. Now the sensor requests a
    second attempt, but only once the registry answers again (no attempt is spent during the
    outage), and the work finishes with one MLflow run for the key and one move of the alias."""
    g, d = world
    _champion_v1(g, d, save(g.good, tmp_path / "models" / "v1"))
    assert g.register(save(g.good, tmp_path / "models" / "v2"))[1].success
    request = d.evaluations(d.tick())["2"]

    with pytest.MonkeyPatch.context() as outage:
        _registry_down(outage, probe=True)
        failed = d.launch(request)
        assert not failed.success
        with pytest.raises(RegistryUnavailable):
            d.tick()  # the tick fails naming MLflow: nothing is requested while it is down
    [run] = d.runs(**{"dagster/partition": f"{MODEL}.v2|{GOLDEN}"})
    assert run.status == DagsterRunStatus.FAILURE

    retry = d.evaluations(d.tick())["2"]
    assert d.launch(retry).success  # launch() fails if the run key was used
    assert retry.tags[KEY_TAG] == request.tags[KEY_TAG] and retry.tags["eval_assets/attempt"] == "2"
    assert run.tags[VERDICT_TAG] == "passed"  # the first attempt failed after its verdict
    assert g.champion() == "2"
    assert [r["run_id"] for r in g.registry.state.runs.values()].count("fake-run-2") == 1
    assert len(g.registry.state.runs) == 2
    moved = [
        e.asset_materialization.metadata["moved"].value
        for r in d.runs()
        for e in g.instance.all_logs(r.run_id)
        if e.asset_materialization is not None
        and e.asset_materialization.asset_key == AssetKey([MODEL, "promotion"])
        and e.asset_materialization.partition.startswith(f"{MODEL}.v2|")
    ]
    assert moved == ["True"]
    assert not d.tick().run_requests


def test_retries_are_bounded(world, tmp_path, monkeypatch):
    """An error that does not go away is retried at most MAX_ATTEMPTS times in all; then the
    version stays visibly failed, with the reason in the tick."""
    g, d = world
    _champion_v1(g, d, save(g.good, tmp_path / "models" / "v1"))
    assert g.register(save(g.good, tmp_path / "models" / "v2"))[1].success
    _registry_down(monkeypatch, probe=False)  # the probe answers, logging always fails
    for attempt in range(1, MAX_ATTEMPTS + 1):
        request = d.evaluations(d.tick())["2"]
        assert not d.launch(request).success  # launch() fails if the run key was used
        assert request.tags["eval_assets/attempt"] == str(attempt)
    last = d.tick()
    assert not last.run_requests
    assert f"error after {MAX_ATTEMPTS} attempts, not retried" in str(last.skip_reason)
    assert g.champion() == "1"


def test_finished_runs_are_tagged_with_their_outcome(world, tmp_path):
    """In the runs list a blocked evaluation looked like a crash. The outcome sensor tags every
    finished run of the model's jobs: promoted, passed, blocked, error, timed_out (a run that run
    monitoring stopped past dagster/max_runtime), so people can filter on it."""
    g, d = world
    _champion_v1(g, d, save(g.good, tmp_path / "models" / "v1"))
    assert g.register(save(train("bad", rows=ROWS), tmp_path / "models" / "v2"))[1].success
    assert not d.launch(d.evaluations(d.tick())["2"]).success
    # A run that run monitoring stopped, as the daemon records it.
    job = g.defs.resolve_job_def(EVALUATION_JOB)
    stuck = g.instance.create_run_for_job(job, tags={**job.tags, "dagster/partition": "x|y"})
    g.instance.report_run_failed(stuck, "Exceeded maximum runtime of 5 seconds.")
    with pytest.MonkeyPatch.context() as outage:
        _registry_down(outage, probe=False)
        assert g.register(save(g.good, tmp_path / "models" / "v3"))[1].success
        assert not d.launch(d.evaluations(d.tick())["3"]).success

    result = d.tick(OUTCOME_SENSOR)
    outcomes = {
        r.tags.get("dagster/partition"): r.tags.get(OUTCOME_TAG)
        for r in g.instance.get_runs(RunsFilter(tags={MODEL_TAG: MODEL}))
    }
    assert outcomes == {
        GOLDEN: "ingested",
        f"{MODEL}.v1": "ingested",
        f"{MODEL}.v2": "ingested",
        f"{MODEL}.v3": "ingested",
        f"{MODEL}.v1|{GOLDEN}": "promoted",
        f"{MODEL}.v2|{GOLDEN}": "blocked",
        f"{MODEL}.v3|{GOLDEN}": "error",
        "x|y": "timed_out",
    }, result.skip_reason
    assert "1 timed_out" in str(result.skip_reason)
    assert "no newly finished run" in str(d.tick(OUTCOME_SENSOR).skip_reason)


def test_every_run_of_a_models_jobs_carries_the_per_model_concurrency_tag(tmp_path):
    """dagster.yaml limits runs per value of `eval_assets/model`, but runs did not carry that
    tag, so the limit never applied (two runs of one key started together). Every job of the
    model now tags its runs with it, and with the max runtime that run monitoring enforces."""
    g = Graph(tmp_path)
    jobs = [j for j in g.defs.resolve_all_job_defs() if j.name.startswith(f"{MODEL}_")]
    assert len(jobs) == 3
    for job in jobs:
        assert job.tags.get(MODEL_TAG) == MODEL, job.name
        assert int(job.tags[MAX_RUNTIME_TAG]) > 0
    config = yaml.safe_load((REPO / "dagster.yaml").read_text())
    [limit] = config["run_coordinator"]["config"]["tag_concurrency_limits"]
    assert limit == {"key": MODEL_TAG, "value": {"applyLimitPerUniqueValue": True}, "limit": 1}
    assert config["run_monitoring"]["enabled"] is True
    # The runs themselves: test_finished_runs_are_tagged_with_their_outcome finds every run of
    # the three jobs by this tag; e2e/test_sensors_e2e.py shows the coordinator queueing them.


def test_a_champion_set_by_hand_is_not_compared_again_once_replaced(world, tmp_path):
    """An operator points the alias at v1 by hand, v1 is then judged as the champion itself
    ("already the champion"), and v2, a copy of it, is promoted. v1's promotion did not move the
    alias, but it was never a candidate left behind: asking for it again would hand the alias
    back to an equal copy, then back again, on every tick."""
    g, d = world
    for name in ("v1", "v2"):
        assert g.register(save(g.good, tmp_path / "models" / name))[1].success
    assert g.registry.move_champion(MODEL, "1", None)[0]
    first = d.evaluations(d.tick())
    assert d.launch(first["1"]).success  # judged against itself: "already the champion"
    assert d.launch(first["2"]).success
    assert g.champion() == "2"

    again = d.tick()
    assert not again.run_requests, again.skip_reason
