"""The Dagster UI as an auditor uses it, in a real browser (Debian's Chromium through Playwright).

Module-scoped setup, all on 127.0.0.1 and in one temporary folder (the harness stops every process,
even on failure):

- ``mlflow server`` (so the evaluation's MLflow run link is an http URL a person can follow);
- a persistent ``DAGSTER_HOME`` (the repository's ``dagster.yaml``) where three versions of
  ``fraud_detector`` are registered through MLflow and evaluated on one golden snapshot by the
  project's own sensors, ticked in-process as in the integration test: ``weak`` becomes champion,
  ``good`` is promoted, ``bad`` is blocked;
- ``dagster dev -m eval_assets.definitions`` on that home, with the same environment.

Then, as a user would: the group's lineage page shows every evaluation asset; the blocked version's
``gate_verdict`` partition shows which gates failed and on which slice (its verdict and the checks
tab); the ``evaluation_report`` materialization shows the gate-changes plot inline and a link to the
MLflow run, which opens that run in MLflow.

Every checked page is saved to ``eval_assets_tests/browser/screenshots/`` on each run (overwritten).
Chromium: ``.ci/install-browser`` (Debian's package, never a Playwright download).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import mlflow
import pytest
from dagster import DagsterInstance

from eval_assets.definitions import Settings, build_definitions
from eval_assets.demo.run import drive
from eval_assets.partitions import pair_key, version_key
from eval_assets_tests.support.factories import (
    DATASET,
    MODEL,
    REPO,
    golden_frame,
    train,
    write_criteria,
)
from eval_assets_tests.support.services import dagster_dev, mlflow_server

playwright_api = pytest.importorskip("playwright.sync_api")
expect = playwright_api.expect

pytestmark = pytest.mark.browser

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SHOTS = Path(__file__).resolve().parent / "screenshots"
SNAPSHOT = "snap-001"
LOCATION = "eval_assets.definitions"  # `dagster dev -m eval_assets.definitions` names it so
EVALUATION_ASSETS = (
    "data_snapshot",
    "model_version",
    "predictions",
    "slice_metrics",
    "gate_verdict",
    "evaluation_report",
    "promotion",
)
UI_TIMEOUT_MS = 30_000  # any single wait in the browser
MLFLOW_UI_TIMEOUT_MS = 60_000  # MLflow's single-page app loads a large bundle on first visit


@dataclass(frozen=True)
class Stack:
    """The running services and what the product decided for the blocked version."""

    dagster_url: str
    mlflow_url: str
    blocked_partition: str  # fraud_detector.v3|snap-001
    failed_gates: dict[str, list[str]]  # gate name -> failing slices, from the stored verdict
    first_reasons: dict[str, str]  # gate name -> reason of its first failing result
    mlflow_run_id: str


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: run .ci/install-browser")
    tmp = tmp_path_factory.mktemp("browser")
    home = tmp / "dagster_home"
    home.mkdir()
    shutil.copy(REPO / "dagster.yaml", home / "dagster.yaml")
    with contextlib.ExitStack() as stop:
        ml = stop.enter_context(mlflow_server(tmp / "mlflow"))
        env = {
            "EVAL_ASSETS_STATE": str(tmp / "state"),
            "EVAL_ASSETS_CRITERIA_DIR": str(write_criteria(tmp / "criteria").parent),
            "MLFLOW_TRACKING_URI": ml.url,
            "MLFLOW_DISABLE_TELEMETRY": "true",
        }
        blocked, record = _evaluate_three_versions(env, home, ml.url)
        failed = {
            gate["name"]: [r["slice"] for r in gate["results"] if not r["passed"]]
            for gate in record["verdict"]["gates"]
            if not gate["passed"]
        }
        reasons = {
            gate["name"]: next(r["reason"] for r in gate["results"] if not r["passed"])
            for gate in record["verdict"]["gates"]
            if not gate["passed"]
        }
        assert not record["passed"] and failed, "setup: the bad version was expected to be blocked"
        dev = stop.enter_context(dagster_dev(tmp / "dev", home, env, REPO, module=LOCATION))
        yield Stack(dev.url, ml.url, blocked, failed, reasons, record["mlflow_run_id"])


def _evaluate_three_versions(
    env: dict[str, str], home: Path, tracking_uri: str
) -> tuple[str, dict]:
    """weak -> champion, good -> promoted, bad -> blocked, kept in the persistent Dagster home."""
    saved = os.environ.get("DAGSTER_HOME")
    os.environ["DAGSTER_HOME"] = str(home)
    mlflow.set_tracking_uri(tracking_uri)
    try:
        defs = build_definitions(Settings.from_env(env))
        with DagsterInstance.get() as instance:
            defs.resources["snapshot_store"].publish(DATASET, SNAPSHOT, golden_frame())
            drive(defs, instance, f"{MODEL}_snapshot_sensor")
            experiment = mlflow.create_experiment("training")
            versions = []
            for kind in ("weak", "good", "bad"):
                with mlflow.start_run(experiment_id=experiment):
                    logged = mlflow.sklearn.log_model(
                        train(kind), name="model", registered_model_name=MODEL
                    )
                versions.append(str(logged.registered_model_version))
                drive(defs, instance, f"{MODEL}_registry_sensor")
        assert versions == ["1", "2", "3"]
        blocked = str(pair_key(version_key(MODEL, "3"), SNAPSHOT))
        store = defs.resources["evaluation_store"]
        record = store.read_json(store.gate_verdict(MODEL, blocked))
        assert record is not None, f"setup: no stored verdict for {blocked}"
        return blocked, record
    finally:
        mlflow.set_tracking_uri(None)
        if saved is None:
            os.environ.pop("DAGSTER_HOME", None)
        else:
            os.environ["DAGSTER_HOME"] = saved


@pytest.fixture(scope="module")
def browser(stack: Stack) -> Iterator[object]:
    SHOTS.mkdir(exist_ok=True)
    with playwright_api.sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def page(browser, stack: Stack):
    context = browser.new_context(viewport={"width": 1600, "height": 1000})
    context.set_default_timeout(UI_TIMEOUT_MS)
    context.set_default_navigation_timeout(UI_TIMEOUT_MS)
    page = context.new_page()
    # First visit: Dagster asks to join its community; a user skips it.
    page.add_locator_handler(
        page.get_by_text("Join the Dagster community"),
        lambda _: page.get_by_role("button", name="Skip").click(),
    )
    try:
        yield page
    finally:
        context.close()


def shot(page, name: str) -> None:
    page.screenshot(path=str(SHOTS / f"{name}.png"))


def partition_page(stack: Stack, asset: str) -> str:
    return (
        f"{stack.dagster_url}/assets/{MODEL}/{asset}"
        f"?view=partitions&partition={quote(stack.blocked_partition, safe='')}"
    )


def open_markdown(page, label: str):
    """Click ``[Show Markdown]`` in the metadata row ``label``; return the dialog it opens."""
    row = page.get_by_role("row").filter(has=page.get_by_text(label, exact=True))
    row.get_by_text("[Show Markdown]").click()
    dialog = page.get_by_role("dialog")
    expect(dialog).to_be_visible()
    return dialog


def test_lineage_page_shows_every_evaluation_asset(stack: Stack, page) -> None:
    page.goto(f"{stack.dagster_url}/locations/{LOCATION}/asset-groups/{MODEL}/lineage")
    expect(page.get_by_text(MODEL, exact=True).first).to_be_visible()
    graph = page.locator("svg")  # the nodes are drawn in the lineage canvas
    for name in EVALUATION_ASSETS:
        expect(graph.get_by_text(name, exact=True)).to_be_visible()
    # Each node then loads its status (latest event, partitions); wait for it for the screenshot.
    expect(graph.get_by_text("Loading...")).to_have_count(0)
    expect(graph.get_by_text("3 partitions").first).to_be_visible()
    shot(page, "01_lineage_fraud_detector")


def test_blocked_partition_shows_its_failed_gates_and_slices(stack: Stack, page) -> None:
    page.goto(partition_page(stack, "gate_verdict"))
    expect(page.get_by_text(stack.blocked_partition, exact=True).first).to_be_visible()
    passed = page.get_by_role("row").filter(has=page.get_by_text("passed", exact=True))
    expect(passed).to_contain_text("false")
    shot(page, "02_blocked_partition_page")
    dialog = open_markdown(page, "verdict")
    expect(dialog.get_by_role("heading")).to_contain_text("BLOCKED by")
    for gate, slices in stack.failed_gates.items():
        expect(dialog.get_by_role("heading")).to_contain_text(gate)
        for slice_name in slices:
            row = (
                dialog.get_by_role("row")
                .filter(has=page.get_by_role("cell", name=gate, exact=True))
                .filter(has=page.get_by_role("cell", name=slice_name, exact=True))
            )
            expect(row).to_have_count(1)
            expect(row.get_by_role("cell", name="fail", exact=True)).to_be_visible()
    shot(page, "02_blocked_partition_verdict_markdown")
    dialog.get_by_role("button", name="Close").click()

    # The checks tab: each failed gate is a failed blocking check naming its slice. The latest
    # execution is the blocked version's: it was evaluated last (checks are not partitioned).
    page.get_by_role("tab", name="Checks").click()
    for i, (gate, slices) in enumerate(stack.failed_gates.items()):
        # Each check in the list: its name (a title attribute) and its latest status.
        entry = (
            page.locator("span")
            .filter(has=page.get_by_title(gate, exact=True))
            .filter(has=page.get_by_text("Failed", exact=True))
        )
        expect(entry.last).to_be_visible()
        entry.last.get_by_title(gate, exact=True).click()
        expect(page.get_by_text("This is a blocking asset check.").first).to_be_visible()
        expect(page.get_by_text("Latest execution", exact=True)).to_be_visible()
        reason_row = page.get_by_role("row").filter(
            has=page.get_by_role("cell", name="reason", exact=True)
        )
        expect(reason_row.get_by_role("cell").nth(1)).to_have_text(stack.first_reasons[gate])
        for slice_name in slices:  # the check's description names every failing slice
            expect(page.get_by_role("paragraph").filter(has_text=f"{slice_name}: ")).to_be_visible()
        slice_row = page.get_by_role("row").filter(
            has=page.get_by_role("cell", name="slice", exact=True)
        )
        expect(slice_row).to_have_count(1)
        expect(slice_row.get_by_role("cell").nth(1)).to_have_text(slices[0])
        expect(
            page.get_by_role("row").filter(has=page.get_by_role("cell", name="outcome", exact=True))
        ).to_contain_text("fail")
        shot(page, f"03_blocked_check_{i + 1}_{gate}")


def test_report_materialization_shows_the_plot_and_the_mlflow_link(stack: Stack, page) -> None:
    page.goto(partition_page(stack, "evaluation_report"))
    expect(page.get_by_text(stack.blocked_partition, exact=True).first).to_be_visible()
    row = page.get_by_role("row").filter(has=page.get_by_text("mlflow_run", exact=True))
    link = row.get_by_role("link").filter(visible=True).first
    run_url = re.compile(
        rf"^{re.escape(stack.mlflow_url)}/#/experiments/\d+/runs/{stack.mlflow_run_id}$"
    )
    expect(link).to_have_attribute("href", run_url)
    shot(page, "04_report_materialization")

    dialog = open_markdown(page, "gate_changes")
    image = dialog.locator('img[src^="data:image/png;base64,"]')
    expect(image).to_be_visible()
    width = image.evaluate("img => img.complete ? img.naturalWidth : 0")
    assert width > 100, f"the gate-changes plot did not decode (naturalWidth {width})"
    shot(page, "05_report_gate_changes_plot")
    dialog.get_by_role("button", name="Close").click()

    with page.context.expect_page(timeout=UI_TIMEOUT_MS) as opened:
        link.click()
    mlflow_page = opened.value
    title = f"{stack.blocked_partition.replace('|', ' on ')}"
    expect(mlflow_page.get_by_text(title).first).to_be_visible(timeout=MLFLOW_UI_TIMEOUT_MS)
    expect(mlflow_page.get_by_text(stack.mlflow_run_id).first).to_be_visible()
    time.sleep(1)  # metrics and tags fill in after the title
    shot(mlflow_page, "06_mlflow_run_from_link")
