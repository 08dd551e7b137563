"""`eval-assets evaluate` end to end, as a user runs it: a subprocess on real files.

A generated dataset and two generated scikit-learn models (a good one and one that learned noise),
saved as skops and pickle, exercise every exit code (0 pass, 1 a gate failed, 2 bad input or
usage), the files written (metrics, confusion matrix, verdict only when gated), the run id (git
commit inside a repository, UTC timestamp outside) and the promise that nothing half-written or
temporary is left in the output folder.

Each scenario is one `eval-assets` process; the scenarios are independent, so the module fixture
launches them all at once and each test then reads the outcome of its own.
"""

from __future__ import annotations

import builtins
import json
import os
import pickle
import re
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import skops.io
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

from eval_assets_tests.support.malformed import KINDS, MALFORMED_TYPE, MalformedOutput

FEATURES = ["x1", "x2", "x3"]
TIMESTAMP_RUN_ID = re.compile(r"^\d{8}T\d{6}Z-[0-9a-f]{12}$")
GIT = ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", "-c", "commit.gpgsign=false"]

CRITERIA = """\
model: cli_test_model
dataset:
  id_column: id
  label_column: label
  features: [x1, x2, x3]
  columns: {id: string, label: integer, x1: float, x2: float, x3: float, amount: float,
            country: string, age_band: string}
slices:
  - name: high_value
    where: amount > 5000
    key: true
  - by: country
    expected_values: [US, FR, DE]
fairness: [age_band]
gates:
  - name: overall_roc_auc_floor
    kind: absolute
    metric: roc_auc
    min: 0.70
  - name: key_slice_roc_auc_vs_champion
    kind: change
    metric: roc_auc
    slices: key
    max_relative_drop: 0.01
  - name: age_band_equalized_odds
    kind: fairness
    attribute: age_band
    metric: equalized_odds_difference
    max: 0.5
  - name: every_slice_support
    kind: support
    slices: all
    min_rows: 100
bootstrap: {resamples: 50, seed: 3}
"""


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("cli_inputs")
    rng = np.random.default_rng(42)
    n = 3000
    frame = pd.DataFrame(rng.normal(size=(n, 3)), columns=FEATURES)
    frame.insert(0, "id", [f"tx{i:05d}" for i in range(n)])
    frame["amount"] = rng.exponential(4000, n).round(2)
    frame["country"] = rng.choice(["US", "FR", "DE"], n)
    frame["age_band"] = rng.choice(["18-25", "26-40", "41+"], n)
    logit = 1.8 * frame["x1"] - 1.2 * frame["x2"] - 1.0
    frame["label"] = rng.binomial(1, 1 / (1 + np.exp(-logit)))

    good = LogisticRegression().fit(frame[FEATURES], frame["label"])
    noise = LogisticRegression().fit(frame[FEATURES], rng.permutation(frame["label"].to_numpy()))
    paths = {
        "data": root / "golden.csv",
        "bare": root / "bare.csv",
        "criteria": root / "criteria.yaml",
        "good_skops": root / "good.skops",
        "good_pkl": root / "good.pkl",
        "noise_skops": root / "noise.skops",
        "noise_pkl": root / "noise.pkl",
    }
    frame.to_csv(paths["data"], index=False)
    frame[[*FEATURES, "label"]].to_csv(paths["bare"], index=False)
    paths["criteria"].write_text(CRITERIA)
    skops.io.dump(good, paths["good_skops"])
    paths["good_pkl"].write_bytes(pickle.dumps(good))
    skops.io.dump(noise, paths["noise_skops"])
    paths["noise_pkl"].write_bytes(pickle.dumps(noise))
    paths["good_auc"] = roc_auc_score(frame["label"], good.predict_proba(frame[FEATURES])[:, 1])
    # Criteria that trust the malformed-output model's skops type, and criteria that say in so
    # many words that pickles may not load.
    paths["criteria_trusting"] = root / "criteria_trusting.yaml"
    paths["criteria_trusting"].write_text(
        CRITERIA + f"loading:\n  trusted_skops_types: [{MALFORMED_TYPE}]\n"
    )
    paths["criteria_no_pickle"] = root / "criteria_no_pickle.yaml"
    paths["criteria_no_pickle"].write_text(CRITERIA + "loading:\n  allow_pickle: false\n")
    for kind in KINDS:
        paths[f"malformed_{kind}"] = root / f"malformed_{kind}.skops"
        skops.io.dump(MalformedOutput(good, kind), paths[f"malformed_{kind}"])
    return paths


def eval_assets(*args: object, cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run the installed `eval-assets` command (or the module) in `cwd`."""
    script = Path(sys.executable).with_name("eval-assets")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "eval_assets.cli"]
    env = dict(os.environ)
    # Cache bytecode in a shared temporary folder, so child interpreters start quickly.
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = str(Path(tempfile.gettempdir()) / "eval-assets-test-pycache")
    return subprocess.run(
        [*command, *map(str, args)],
        cwd=cwd,
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )


def git_repo(path: Path, dirty: bool = False) -> str:
    """A repository with one commit; returns the short sha the run id must begin with."""
    path.mkdir()
    subprocess.run([*GIT, "init", "-q"], cwd=path, check=True)
    (path / "train.py").write_text("print('train')\n")
    subprocess.run([*GIT, "add", "train.py"], cwd=path, check=True)
    subprocess.run([*GIT, "commit", "-q", "-m", "init"], cwd=path, check=True)
    if dirty:
        (path / "train.py").write_text("print('changed')\n")  # a change to a tracked file
    return subprocess.run(
        ["git", "rev-parse", "--short=12", "HEAD"],
        cwd=path,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()


@dataclass
class Run:
    """One `eval-assets` invocation and what it left behind."""

    cwd: Path
    out: Path
    args: list[object]
    sha: str | None = None
    completed: subprocess.CompletedProcess[str] | None = None

    @property
    def code(self) -> int:
        return self.completed.returncode

    @property
    def stdout(self) -> str:
        return self.completed.stdout

    @property
    def stderr(self) -> str:
        return self.completed.stderr

    def folder(self) -> Path:
        """The single run folder in --out, after checking that nothing else was left there."""
        entries = sorted(self.out.iterdir())
        assert len(entries) == 1, entries
        leftovers = [p for p in self.out.rglob("*") if p.name.startswith(".") or ".tmp" in p.name]
        assert leftovers == []
        return entries[0]

    def json(self, name: str) -> dict:
        return json.loads((self.folder() / name).read_text())


@pytest.fixture(scope="module")
def runs(files, tmp_path_factory) -> dict[str, Run]:
    def place(name: str) -> Path:
        return tmp_path_factory.mktemp(name)

    def evaluate(cwd: Path, *extra: object, model: str, data: str | Path = "data", **kw) -> Run:
        out = cwd / "out"
        data_path = files[data] if isinstance(data, str) else data
        args = [
            "evaluate",
            "--model-path",
            files[model],
            "--data-path",
            data_path,
            "--out",
            out,
            *extra,
        ]
        return Run(cwd, out, args, **kw)

    scenarios: dict[str, Run] = {}
    scenarios["bare"] = evaluate(
        place("bare"), "--label-column", "label", "--allow-pickle", model="good_pkl", data="bare"
    )
    repo = place("clean") / "repo"
    scenarios["passing"] = evaluate(
        repo,
        "--criteria",
        files["criteria"],
        "--champion-path",
        files["noise_skops"],
        "--quiet",
        model="good_skops",
        sha=git_repo(repo),
    )
    scenarios["default_gate"] = evaluate(
        place("default_gate"),
        "--label-column",
        "label",
        "--allow-pickle",
        "--champion-path",
        files["noise_pkl"],
        model="good_pkl",
        data="bare",
    )
    repo = place("dirty") / "repo"
    scenarios["failing"] = evaluate(
        repo,
        "--criteria",
        files["criteria"],
        "--champion-path",
        files["good_skops"],
        model="noise_skops",
        sha=git_repo(repo, dirty=True),
    )
    bad = place("bad_data")
    frame = pd.read_csv(files["data"])
    frame["x2"] = frame["x2"].astype(object)
    frame.loc[10, "x2"] = "n/a?"
    frame.to_csv(bad / "bad.csv", index=False)
    scenarios["bad_data"] = evaluate(
        bad, "--criteria", files["criteria"], model="good_skops", data=bad / "bad.csv"
    )
    missing = place("missing")
    scenarios["missing_data"] = evaluate(
        missing, "--criteria", files["criteria"], model="good_skops", data=missing / "nope.csv"
    )
    broken = place("bad_criteria")
    (broken / "criteria.yaml").write_text(BROKEN_CRITERIA)
    scenarios["bad_criteria"] = evaluate(
        broken, "--criteria", broken / "criteria.yaml", model="good_skops"
    )
    usage = place("usage")
    scenarios["usage"] = Run(usage, usage / "out", ["evaluate", "--data-path", "x.csv"])

    with ThreadPoolExecutor(max_workers=len(scenarios)) as pool:
        done = pool.map(lambda r: eval_assets(*r.args, cwd=r.cwd), scenarios.values())
        for scenario, completed in zip(scenarios.values(), done, strict=True):
            scenario.completed = completed
    return scenarios


BROKEN_CRITERIA = CRITERIA.replace("where: amount > 5000", "where: amont > 5000")


# --- exit 0 -------------------------------------------------------------------------------------


def test_without_criteria_it_writes_metrics_and_a_confusion_matrix_and_no_verdict(runs, files):
    run = runs["bare"]

    assert run.code == 0, run.stderr
    folder = run.folder()
    assert sorted(p.name for p in folder.iterdir()) == [
        "confusion_matrices.png",
        "confusion_matrix.png",
        "metrics.json",
        "report.html",
        "roc_pr_overall.png",
    ]
    assert (folder / "confusion_matrix.png").read_bytes().startswith(b"\x89PNG")
    metrics = run.json("metrics.json")
    assert metrics["run_id"] == folder.name
    assert metrics["models"]["candidate"]["format"] == "pickle"
    # Without criteria, the pickle loaded because the user said they trust it.
    assert metrics["loading_policy"] == {
        "allow_pickle": True,
        "trusted_skops_types": [],
        "decided_by": "--allow-pickle",
    }
    assert metrics["models"]["champion"] is None
    assert metrics["data"]["rows"] == 3000
    (overall,) = metrics["candidate"]["slices"]
    assert overall["slice"] == "overall"
    assert overall["roc_auc"] == pytest.approx(files["good_auc"], abs=1e-9)
    assert "[1/6" in run.stderr  # progress lines
    assert str(folder) in run.stdout


def test_outside_git_the_run_id_is_a_utc_timestamp_and_the_evaluation_key(runs):
    run = runs["bare"]
    if subprocess.run(["git", "rev-parse"], cwd=run.cwd, capture_output=True).returncode == 0:
        pytest.skip("the temporary folder lies inside a git repository")

    name = run.folder().name

    assert TIMESTAMP_RUN_ID.match(name), name
    assert name.endswith(run.json("metrics.json")["evaluation_key"][:12])


def test_passing_gates_exit_zero_and_the_run_id_begins_with_the_git_commit(runs):
    run = runs["passing"]

    assert run.code == 0, run.stdout + run.stderr
    metrics = run.json("metrics.json")
    key, champion = metrics["evaluation_key"], metrics["models"]["champion"]["digest"]
    # commit, evaluation key, and the champion compared with: one folder per comparison.
    assert run.folder().name == f"{run.sha}-{key[:12]}-vs-{champion[:12]}"
    verdict = run.json("verdict.json")
    assert verdict["passed"] is True
    assert verdict["champion_present"] is True
    assert [g["name"] for g in verdict["gates"]] == [
        "overall_roc_auc_floor",
        "key_slice_roc_auc_vs_champion",
        "age_band_equalized_odds",
        "every_slice_support",
    ]
    assert all(g["results"] for g in verdict["gates"])
    assert "PASS  key_slice_roc_auc_vs_champion: passed on 2 slice(s)" in run.stdout
    assert run.stdout.count("PASS  ") == 4
    assert run.stderr == ""  # --quiet
    assert metrics["models"]["candidate"]["format"] == "skops"
    assert metrics["loading_policy"]["decided_by"] == "criteria"
    assert metrics["loading_policy"]["allow_pickle"] is False
    assert [s["slice"] for s in metrics["candidate"]["slices"]] == [
        "overall",
        "high_value",
        "country=DE",
        "country=FR",
        "country=US",
    ]


def test_a_champion_without_criteria_is_judged_by_the_default_overall_roc_auc_gate(runs):
    run = runs["default_gate"]

    assert run.code == 0, run.stderr
    (gate,) = run.json("verdict.json")["gates"]
    assert gate["name"] == "overall_roc_auc_vs_champion"
    assert gate["kind"] == "change"
    assert [r["slice"] for r in gate["results"]] == ["overall"]
    assert gate["results"][0]["threshold"] == "relative drop <= 1.00%"


# --- exit 1 -------------------------------------------------------------------------------------


def test_a_failing_gate_exits_one_and_the_verdict_names_it(runs):
    run = runs["failing"]

    assert run.code == 1, run.stderr
    assert run.folder().name.startswith(f"{run.sha}-dirty-")
    verdict = run.json("verdict.json")
    failed = {g["name"] for g in verdict["gates"] if not g["passed"]}
    assert verdict["passed"] is False
    assert {"overall_roc_auc_floor", "key_slice_roc_auc_vs_champion"} <= failed
    assert "every_slice_support" not in failed
    assert "FAIL  key_slice_roc_auc_vs_champion: overall: roc_auc" in run.stdout
    assert "verdict: FAILED" in run.stderr
    # The same report as the Dagster asset: the reviewer's plot and a self-contained page.
    assert (run.folder() / "gate_changes.png").read_bytes().startswith(b"\x89PNG")
    html = (run.folder() / "report.html").read_text()
    assert "key_slice_roc_auc_vs_champion" in html and "https://" not in html


# --- exit 2 -------------------------------------------------------------------------------------


def test_bad_data_exits_two_naming_the_file_column_and_value(runs):
    run = runs["bad_data"]

    assert run.code == 2
    assert (
        f"error: {run.cwd / 'bad.csv'}: column 'x2': expected float, found 'n/a?' "
        "at line 12 (id 'tx00010')"
    ) in run.stderr
    assert not run.out.exists()


def test_a_missing_data_file_exits_two_naming_it(runs):
    run = runs["missing_data"]

    assert run.code == 2
    assert f"error: {run.cwd / 'nope.csv'}: file does not exist" in run.stderr
    assert "Traceback" not in run.stderr


def test_bad_criteria_exit_two_naming_the_file_line_and_key(runs):
    run = runs["bad_criteria"]
    line = BROKEN_CRITERIA.splitlines().index("    where: amont > 5000") + 1

    assert run.code == 2
    assert f"error: {run.cwd / 'criteria.yaml'}: line {line}: slices.0.where:" in run.stderr
    assert "amont" in run.stderr


def test_a_usage_error_exits_two_with_argparse_usage(runs):
    run = runs["usage"]

    assert run.code == 2
    assert run.stderr.startswith("usage: eval-assets evaluate")
    assert "the following arguments are required: --model-path" in run.stderr


# --- in process: the same entry point, for cases that need no separate interpreter ---------------


def test_a_label_column_override_that_breaks_the_criteria_exits_two(files, tmp_path, capsys):
    from eval_assets.cli import main

    code = main(
        [
            "evaluate",
            "--model-path",
            str(files["good_skops"]),
            "--data-path",
            str(files["data"]),
            "--criteria",
            str(files["criteria"]),
            "--label-column",
            "id",
            "--out",
            str(tmp_path / "out"),
            "--quiet",
        ]
    )

    assert code == 2
    assert "--label-column 'id' does not fit the criteria" in capsys.readouterr().err


def test_an_output_folder_that_cannot_be_written_exits_two_not_one(files, tmp_path, capsys):
    from eval_assets.cli import main

    blocker = tmp_path / "out"
    blocker.write_text("a file where the output folder should be")

    code = main(
        [
            "evaluate",
            "--model-path",
            str(files["good_skops"]),
            "--data-path",
            str(files["bare"]),
            "--label-column",
            "label",
            "--out",
            str(blocker),
            "--quiet",
        ]
    )

    assert code == 2
    assert capsys.readouterr().err.startswith("error: ")
    assert list(tmp_path.iterdir()) == [blocker]


def cli(*args: object, capsys) -> tuple[int, str, str]:
    """`eval-assets` in process: (exit code, stdout, stderr)."""
    from eval_assets.cli import main

    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


class Canary:
    """Unpickling this creates `marker`: proof that code in a pickle ran."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return builtins.open, (str(self.marker), "w")


def canary(path: Path) -> Path:
    """Write a canary pickle at `path`; return the marker its unpickling would create."""
    marker = path.parent / f"{path.name}.ran"
    path.write_bytes(pickle.dumps(Canary(marker)))
    return marker


# --- a model whose output breaks the contract (issue 22, item 3) ---------------------------------

MALFORMED = {
    # kind: what the error must say
    "three-columns": "returned 3 columns for the model's 2 classes",
    "one-dimensional": "returned an array of shape (3000,)",
    "too-few-rows": "returned 2999 rows for 3000 input rows",
    "too-many-rows": "returned 3001 rows for 3000 input rows",
    "text": "returned values of dtype <U",
    "nan": "model score nan for row 3 (id 'tx00003')",
    "out-of-range": "model score 1.5 for row 5 (id 'tx00005')",
}


@pytest.mark.parametrize(
    "kind, role",
    [(kind, "model") for kind in MALFORMED]
    + [("three-columns", "champion"), ("one-dimensional", "champion")],
)
def test_a_model_whose_output_breaks_the_contract_exits_two_naming_the_file(
    files, tmp_path, capsys, kind, role
):
    """A three-column output for a binary model used to be scored and gated, a 1-D or wrongly
    sized one crashed with a numpy traceback and exit 1 ("gate failed"). Each is bad input:
    exit 2, the file named, nothing written to --out, as the candidate and as the champion."""
    malformed = files[f"malformed_{kind}"]
    model, champion = (malformed, files["good_skops"])
    if role == "champion":
        model, champion = files["good_skops"], malformed
    out = tmp_path / "out"

    code, stdout, stderr = cli(
        "evaluate",
        "--model-path",
        model,
        "--data-path",
        files["data"],
        "--criteria",
        files["criteria_trusting"],
        "--champion-path",
        champion,
        "--out",
        out,
        "--quiet",
        capsys=capsys,
    )

    assert code == 2, stdout + stderr
    assert stderr.startswith(f"error: {malformed}: "), stderr
    assert MALFORMED[kind] in stderr, stderr
    assert "Traceback" not in stderr
    assert not out.exists()


# --- the loading policy (issue 22, item 6) -------------------------------------------------------


@pytest.mark.parametrize("role", ["model", "champion"])
def test_criteria_that_forbid_pickles_stop_a_pickle_before_it_runs_any_code(
    files, tmp_path, capsys, role
):
    """The CLI used to load any pickle it was given, whatever the criteria said, so a pickle's
    code ran on the user's machine (the canary's marker appeared). With loading.allow_pickle:
    false the pickle is refused unopened, as the model and as the champion."""
    evil = tmp_path / "evil.pkl"
    marker = canary(evil)
    model, champion = (
        (evil, files["good_skops"]) if role == "model" else (files["good_skops"], evil)
    )
    out = tmp_path / "out"

    code, _, stderr = cli(
        "evaluate",
        "--model-path",
        model,
        "--data-path",
        files["data"],
        "--criteria",
        files["criteria_no_pickle"],
        "--champion-path",
        champion,
        "--out",
        out,
        capsys=capsys,
    )

    assert not marker.exists(), "the refused pickle's code ran"
    assert code == 2
    assert f"error: {evil}: pickle files run code when loaded" in stderr
    assert "loading policy forbids them" in stderr
    assert not out.exists()
    # The canary is real: unpickled, it creates its marker.
    pickle.loads(evil.read_bytes())
    assert marker.exists()


def test_without_criteria_a_pickle_loads_only_when_the_user_says_they_trust_it(
    files, tmp_path, capsys
):
    """Without criteria the default policy applies: skops loads, a pickle does not, and the error
    says how to vouch for one's own file (--allow-pickle)."""
    evil = tmp_path / "evil.pkl"
    marker = canary(evil)

    code, _, stderr = cli(
        "evaluate",
        "--model-path",
        evil,
        "--data-path",
        files["bare"],
        "--label-column",
        "label",
        "--out",
        tmp_path / "out",
        capsys=capsys,
    )

    assert not marker.exists(), "the refused pickle's code ran"
    assert code == 2
    assert f"error: {evil}: pickle files run code when loaded" in stderr
    assert "pass --allow-pickle" in stderr
    assert not (tmp_path / "out").exists()


def test_allow_pickle_cannot_override_criteria_that_forbid_pickles(files, tmp_path, capsys):
    """--allow-pickle is the user trusting their own file; the criteria are the model's policy,
    and a command-line flag must not overrule them: a usage error, before anything loads."""
    evil = tmp_path / "evil.pkl"
    marker = canary(evil)

    for criteria in (files["criteria_no_pickle"], files["criteria"]):  # explicit, and by default
        code, _, stderr = cli(
            "evaluate",
            "--model-path",
            evil,
            "--data-path",
            files["data"],
            "--criteria",
            criteria,
            "--allow-pickle",
            "--out",
            tmp_path / "out",
            capsys=capsys,
        )

        assert code == 2
        assert stderr.startswith(f"error: {criteria}: --allow-pickle cannot override"), stderr
        assert not marker.exists()
        assert not (tmp_path / "out").exists()


def test_without_criteria_skops_loads_under_the_default_policy_and_no_gates_is_no_verdict(
    files, tmp_path, capsys
):
    """The default policy loads skops with no flag and is recorded as such; and a run that asked
    for no gates says so in its report, as the command does, instead of BLOCKED (issue 22,
    item 8a: the report said BLOCKED while the command said "no gates" and exited 0)."""
    out = tmp_path / "out"

    code, stdout, stderr = cli(
        "evaluate",
        "--model-path",
        files["good_skops"],
        "--data-path",
        files["bare"],
        "--label-column",
        "label",
        "--out",
        out,
        capsys=capsys,
    )

    assert code == 0, stderr
    assert "no gates were asked for" in stderr
    (folder,) = out.iterdir()
    metrics = json.loads((folder / "metrics.json").read_text())
    assert metrics["loading_policy"] == {
        "allow_pickle": False,
        "trusted_skops_types": [],
        "decided_by": "default",
    }
    html = (folder / "report.html").read_text()
    assert "NO GATES" in html and "no gates were asked for" in html
    assert "BLOCKED" not in html and "PASSED" not in html


# --- exit codes through the documented commands (issue 22, item 8b) ------------------------------

REPO = Path(__file__).resolve().parents[2]


def test_make_eval_names_the_exit_code_of_eval_assets_which_make_cannot_keep(files, tmp_path):
    """GNU make exits 2 whenever a recipe fails, so `make eval` turned "a gate failed" (1) into
    what reads as "bad input" (2). The target cannot keep the code; it must say which it was."""
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    env.pop("MAKEFLAGS", None)
    common = [f"DATA={files['data']}", f"CRITERIA={files['criteria']}", f"OUT={tmp_path / 'out'}"]

    def make_eval(*variables: str) -> subprocess.CompletedProcess[str]:
        # RUN= runs the installed eval-assets from PATH; -o setup skips the environment sync.
        return subprocess.run(
            ["make", "--no-print-directory", "-o", "setup", "eval", "RUN=", *variables, *common],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )

    failed = make_eval(f"MODEL={files['noise_skops']}", f"CHAMPION={files['good_skops']}")
    assert failed.returncode == 2  # make's own code for any failed recipe
    assert "make eval: eval-assets exited 1: a gate failed" in failed.stderr, failed.stderr

    bad = make_eval(f"MODEL={tmp_path / 'missing.skops'}")
    assert bad.returncode == 2
    assert "make eval: eval-assets exited 2: bad input or usage" in bad.stderr, bad.stderr


def test_the_readme_gives_the_exit_codes_for_eval_assets_itself_and_no_pickle_example():
    """The README's promise (0 pass, 1 gate failed, 2 bad input) holds for the command it shows
    beside it, eval-assets itself (whose codes the tests above prove), not for make; and its
    examples do not teach loading pickles."""
    readme = (REPO / "README.md").read_text()
    promise = "It exits 0 when every gate passed (or none was asked for), 1 when a gate failed, 2"
    assert promise in readme
    before = readme[: readme.index(promise)]
    command = before[before.rindex("```bash") :].splitlines()[1]
    assert command.startswith("uv run --frozen eval-assets evaluate "), command
    assert "make eval: eval-assets exited" not in command
    assert ".pkl" not in readme.split("## How it is built")[0]
