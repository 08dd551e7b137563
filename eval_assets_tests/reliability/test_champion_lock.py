"""The champion's compare-and-set under concurrency: the store's lock and promotions racing.

MLflow reads and sets an alias in two requests, so two promotions at once could both see the
champion they compared against and both move it. `promote` holds a lock in the evaluation store
around the two; here the lock is proven on both stores (a local folder; S3 on moto's server) and
the race is proven closed with promotions on threads, a registry slowed between read and set.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
import time
import uuid
from pathlib import Path

import boto3
import pytest
from dagster_aws.s3 import S3Resource

from eval_assets.assets.promotion import promote
from eval_assets.core.criteria import load_criteria
from eval_assets.resources.storage import (
    EvaluationStore,
    LocalEvaluationStore,
    LockTimeout,
    S3EvaluationStore,
)
from eval_assets_tests.support.factories import MODEL, write_criteria
from eval_assets_tests.support.fakes import FakeModelRegistry
from eval_assets_tests.support.services import MotoS3Server

LOCK = f"{MODEL}/champion.lock"


@pytest.fixture
def s3_store(s3_service: MotoS3Server, monkeypatch: pytest.MonkeyPatch) -> S3EvaluationStore:
    for key, value in s3_service.env().items():
        monkeypatch.setenv(key, value)
    bucket = f"outputs-{uuid.uuid4().hex[:8]}"
    boto3.client("s3").create_bucket(Bucket=bucket)
    return S3EvaluationStore(bucket=bucket, s3=S3Resource())


@pytest.fixture(params=["local", pytest.param("s3", marks=pytest.mark.integration)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> EvaluationStore:
    if request.param == "local":
        return LocalEvaluationStore(root=str(tmp_path / "outputs"))
    return request.getfixturevalue("s3_store")


def test_the_lock_admits_one_holder_at_a_time(store: EvaluationStore):
    """Eight threads each read a counter, pause, then write it plus one: without mutual exclusion
    the increments overwrite each other and the count ends short."""
    counter = {"value": 0, "inside": 0, "most_inside": 0}

    def increment(n: int) -> None:
        with store.lock(LOCK, holder=f"thread {n}", wait_s=60):
            counter["inside"] += 1
            counter["most_inside"] = max(counter["most_inside"], counter["inside"])
            seen = counter["value"]
            time.sleep(0.05)
            counter["value"] = seen + 1
            counter["inside"] -= 1

    threads = [threading.Thread(target=increment, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert counter["value"] == 8 and counter["most_inside"] == 1, counter
    with store.lock(LOCK, holder="after", wait_s=0):  # released by every holder
        pass


def test_a_held_lock_times_out_the_waiter_naming_the_lock(store: EvaluationStore):
    with store.lock(LOCK, holder="run r-1 promoting fraud_detector v4", wait_s=5):
        began = time.monotonic()
        with pytest.raises(LockTimeout) as caught:
            with store.lock(LOCK, holder="run r-2 promoting fraud_detector v5", wait_s=1):
                pytest.fail("two holders at once")
        assert 0.9 < time.monotonic() - began < 10
    message = str(caught.value)
    assert message.startswith("run r-2 promoting fraud_detector v5: waited 1 s for the lock ")
    assert store.location(LOCK) in message
    if isinstance(store, S3EvaluationStore):  # the object says who holds it
        assert "held by run r-1 promoting fraud_detector v4" in message


def _hold_then_sleep(root: str, ready: str) -> None:
    store = LocalEvaluationStore(root=root)
    with store.lock(LOCK, holder="child", wait_s=5):
        Path(ready).touch()
        time.sleep(120)


def test_a_local_lock_whose_holder_is_killed_is_free_at_once(tmp_path: Path):
    store = LocalEvaluationStore(root=str(tmp_path / "outputs"))
    ready = tmp_path / "ready"
    child = multiprocessing.get_context("fork").Process(
        target=_hold_then_sleep, args=(store.root, str(ready))
    )
    child.start()
    try:
        deadline = time.monotonic() + 30
        while not ready.exists():
            assert child.is_alive() and time.monotonic() < deadline
            time.sleep(0.02)
        with pytest.raises(LockTimeout), store.lock(LOCK, holder="parent", wait_s=0.3):
            pass
        os.kill(child.pid, signal.SIGKILL)
        child.join(10)
        began = time.monotonic()
        with store.lock(LOCK, holder="parent", wait_s=5):
            assert time.monotonic() - began < 2
    finally:
        if child.is_alive():
            child.kill()


@pytest.mark.integration
def test_an_s3_lock_past_its_lease_is_taken_over_once_and_the_late_release_spares_the_new_holder(
    s3_store: S3EvaluationStore, monkeypatch: pytest.MonkeyPatch
):
    store = s3_store.model_copy(update={"lock_lease_s": 1.0})
    dead = store.lock(LOCK, holder="a dead holder", wait_s=1)
    dead.__enter__()  # acquired, never released (its process died)

    # All three waiters find the expired lease before any of them takes it over.
    real_held, everyone_saw_it, waited = S3EvaluationStore._held, threading.Barrier(3), set()

    def held_then_meet(self, client, key):
        found = real_held(self, client, key)
        if found and found[1] > self.lock_lease_s and threading.get_ident() not in waited:
            waited.add(threading.get_ident())
            everyone_saw_it.wait(timeout=10)
        return found

    monkeypatch.setattr(S3EvaluationStore, "_held", held_then_meet)
    winners: list[int] = []
    inside = {"now": 0, "most": 0}

    def take_over(n: int) -> None:
        with store.lock(LOCK, holder=f"waiter {n}", wait_s=30):
            inside["now"] += 1
            inside["most"] = max(inside["most"], inside["now"])
            winners.append(n)
            time.sleep(0.3)
            inside["now"] -= 1

    began = time.monotonic()
    threads = [threading.Thread(target=take_over, args=(n,)) for n in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(winners) == [0, 1, 2] and inside["most"] == 1, (winners, inside)
    assert len(waited) == 3 and not everyone_saw_it.broken
    assert time.monotonic() - began >= 0.9  # the lease ran out first

    with store.lock(LOCK, holder="the new holder", wait_s=1):
        dead.__exit__(None, None, None)  # the old holder's late release must not delete this one
        client = boto3.client("s3")
        held = client.get_object(Bucket=store.bucket, Key=f"{store.prefix}/{LOCK}")
        assert b"the new holder" in held["Body"].read()
    with store.lock(LOCK, holder="after", wait_s=0):
        pass


# --- promotions racing ------------------------------------------------------------------------


MOVES: dict[str, list[str]] = {}  # namespace -> the versions the alias was pointed at


class SlowChampionRegistry(FakeModelRegistry):
    """Pauses after reading the champion, so racing promotions all read it before any moves it."""

    def champion(self, model: str):
        found = super().champion(model)
        time.sleep(0.2)
        return found

    def _point_champion_at(self, model: str, version: str) -> None:
        MOVES.setdefault(self.namespace, []).append(version)
        super()._point_champion_at(model, version)


def _race(
    tmp_path: Path, store: EvaluationStore, candidates: list[str]
) -> tuple[list[dict], list[str], FakeModelRegistry]:
    """Each candidate promoted on its own thread against v1: (decisions, moves, registry)."""
    criteria = load_criteria(write_criteria(tmp_path / "criteria"))
    registry = SlowChampionRegistry(namespace=uuid.uuid4().hex)
    for _ in range(3):
        registry.register(MODEL, tmp_path)
    registry.state.aliases[MODEL] = "1"
    decisions: list[dict] = []

    def run(version: str) -> None:
        verdict = {
            "version": version,
            "passed": True,
            "criteria_hash": criteria.digest(),
            "champion_version": "1",
            "evaluation_key": f"key-{version}",
            "snapshot": "golden-001",
        }
        decisions.append(promote(criteria, verdict, registry, store, f"promoting v{version}"))

    threads = [threading.Thread(target=run, args=(v,)) for v in candidates]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(decisions) == len(candidates)
    return decisions, MOVES.get(registry.namespace, []), registry


def test_the_same_version_promoted_twice_at_once_moves_the_alias_once(
    tmp_path: Path, store: EvaluationStore
):
    decisions, moves, registry = _race(tmp_path, store, ["2", "2"])
    assert moves == ["2"] and registry.state.aliases[MODEL] == "2"
    assert sorted(d["moved"] for d in decisions) == [False, True]
    assert [d["reason"] for d in decisions if not d["moved"]] == ["v2 is already the champion"]


def test_two_candidates_compared_with_the_same_champion_cannot_both_move_it(
    tmp_path: Path, store: EvaluationStore
):
    decisions, moves, registry = _race(tmp_path, store, ["2", "3"])
    assert len(moves) == 1
    winner = moves[0]
    assert registry.state.aliases[MODEL] == winner
    loser = next(d for d in decisions if not d["moved"])
    assert loser["reason"] == f"champion is now {winner}, not 1 as compared against; not moved"
