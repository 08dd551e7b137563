"""Benchmark: the command-line tool's peak memory and wall time as the data grows.

Run `python bench/bench_cli.py [--rows 1000000 10000000]`.

Setup (not timed): the demo's synthetic transactions (`generate_transactions`), written as one
CSV file per size, a million rows at a time (so the bench itself stays flat); two small models
saved with skops, the demo's logistic regression on 4 features (the champion) and on 5 (the
candidate), each trained on 50,000 other rows; the demo's criteria (`criteria/fraud_detector.yaml`:
9 slices and 5 age bands, 4 gates, the 1000-resample paired bootstrap).

Timed, each in a fresh process whose peak resident memory (VmHWM, imports included) is its own:
`eval_assets.cli.main(["evaluate", ...])` on the CSV with the candidate and the champion:

- streamed: the CLI as it is, the core's streamed pipeline (the Dagster assets' pipeline);
- whole file: the CLI as it was at `--baseline-rev` (pandas reads the whole file, the in-memory
  core evaluates it), run from that revision's `cli.py` over today's core, up to
  `--baseline-max-rows` rows (its memory grows with the rows).

The imports both need are done before the clock starts. Checked in the run: both give the same
verdict, and the same metrics to 1e-9.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
CRITERIA = REPO / "criteria" / "fraud_detector.yaml"
# The last commit whose CLI read the whole file and ran the in-memory evaluation.
WHOLE_FILE_REV = "60b1363"
CHUNK_ROWS = 1_000_000
RESULT = "BENCH-RESULT "


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[1_000_000, 10_000_000])
    parser.add_argument("--baseline-rev", default=WHOLE_FILE_REV)
    parser.add_argument("--baseline-max-rows", type=int, default=1_000_000)
    parser.add_argument("--state", type=Path, help="keep data and outputs here (default: temp)")
    parser.add_argument("--worker", choices=["streamed", "whole_file"], help=argparse.SUPPRESS)
    parser.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(RESULT + json.dumps(worker(args.worker, args.data, args.state)), flush=True)
        return
    with tempfile.TemporaryDirectory(prefix="bench-cli-") as temporary:
        state = args.state or Path(temporary)
        state.mkdir(parents=True, exist_ok=True)
        baseline = state / "whole_file_cli.py"
        baseline.write_text(
            subprocess.run(
                ["git", "show", f"{args.baseline_rev}:eval_assets/cli.py"],
                cwd=REPO,
                check=True,
                capture_output=True,
                text=True,
            ).stdout
        )
        models(state)
        rows: list[dict[str, Any]] = []
        for n in args.rows:
            data = state / f"transactions_{n}.csv"
            if not data.exists():
                write_csv(data, n)
            streamed = run_worker("streamed", data, state)
            row = {"rows": n, "streamed": streamed, "whole_file": None}
            if n <= args.baseline_max_rows:
                row["whole_file"] = run_worker("whole_file", data, state)
                check(streamed, row["whole_file"])
            rows.append(row)
            brief = {
                k: (v and {"seconds": v["seconds"], "peak_mb": v["peak_mb"]})
                for k, v in row.items()
                if k != "rows"
            }
            print(n, json.dumps(brief), file=sys.stderr, flush=True)
        table(rows, args.baseline_rev)


def write_csv(path: Path, n_rows: int) -> None:
    """`n_rows` demo transactions, a million at a time (ids stay unique: one seed per chunk)."""
    from eval_assets.demo.synthetic import generate_transactions

    with open(path, "w", encoding="utf-8") as handle:
        for k, start in enumerate(range(0, n_rows, CHUNK_ROWS)):
            chunk = generate_transactions(min(CHUNK_ROWS, n_rows - start), seed=1_000 + k)
            chunk.to_csv(handle, index=False, header=k == 0)


def models(state: Path) -> None:
    import skops.io

    from eval_assets.demo.synthetic import generate_transactions
    from eval_assets.demo.training import _logistic

    train = generate_transactions(50_000, seed=99)
    champion = ["amount", "card_present", "hour", "merchant_category"]
    for name, features in (("champion", champion), ("candidate", [*champion, "country"])):
        model = _logistic(features).fit(train[features], train["is_fraud"])
        skops.io.dump(model, state / f"{name}.skops")


def run_worker(name: str, data: Path, state: Path) -> dict[str, Any]:
    command = [sys.executable, __file__, "--worker", name, "--data", str(data)]
    done = subprocess.run([*command, "--state", str(state)], capture_output=True, text=True)
    lines = [line for line in done.stdout.splitlines() if line.startswith(RESULT)]
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"{name} on {data} failed:\n{done.stdout}\n{done.stderr}")
    return json.loads(lines[-1][len(RESULT) :])


def worker(name: str, data: Path, state: Path) -> dict[str, Any]:
    """One CLI run in this fresh process: its wall time, exit code, peak memory, outputs."""
    import importlib.util

    import sklearn.linear_model  # noqa: F401
    import skops.io  # noqa: F401

    # What both versions import once they run, loaded before the clock starts.
    import eval_assets.core.evaluation  # noqa: F401
    import eval_assets.core.pipeline.compare  # noqa: F401
    import eval_assets.core.pipeline.dataset  # noqa: F401
    import eval_assets.core.pipeline.scoring  # noqa: F401
    import eval_assets.core.render.html  # noqa: F401
    import eval_assets.core.render.plots  # noqa: F401

    if name == "streamed":
        from eval_assets.cli import main as cli_main
    else:
        spec = importlib.util.spec_from_file_location("whole_file_cli", state / "whole_file_cli.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        cli_main = module.main
    out = state / f"out_{name}_{data.stem}"
    argv = [
        "evaluate",
        "--model-path",
        str(state / "candidate.skops"),
        "--champion-path",
        str(state / "champion.skops"),
        "--data-path",
        str(data),
        "--criteria",
        str(CRITERIA),
        "--out",
        str(out),
        "--quiet",
    ]
    started = time.perf_counter()
    code = cli_main(argv)
    seconds = time.perf_counter() - started
    (folder,) = sorted(p for p in out.iterdir() if not p.name.startswith("."))
    metrics = json.loads((folder / "metrics.json").read_text())
    verdict = json.loads((folder / "verdict.json").read_text())
    return {
        "seconds": round(seconds, 2),
        "peak_mb": round(peak_mb(), 1),
        "exit": code,
        "passed": verdict["passed"],
        "gates": {g["name"]: g["passed"] for g in verdict["gates"]},
        "overall": metrics["candidate"]["slices"][0],
        "slices": [
            {k: v for k, v in s.items() if isinstance(v, (int, float))}
            for side in ("candidate", "champion")
            for s in metrics[side]["slices"]
        ],
        "intervals": metrics["intervals"],
    }


def peak_mb() -> float:
    """This process's peak resident memory since it started (VmHWM), in MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status: peak memory needs Linux")


def check(streamed: dict[str, Any], whole: dict[str, Any]) -> None:
    """Both pipelines must decide alike, on the same metrics."""
    assert streamed["gates"] == whole["gates"], (streamed["gates"], whole["gates"])
    assert streamed["exit"] == whole["exit"]
    for ours, theirs in zip(streamed["slices"], whole["slices"], strict=True):
        for key, value in theirs.items():
            got = ours[key]
            same = got == value or (got is not None and abs(got - value) <= 1e-9)
            assert same, (key, got, value)
    assert len(streamed["intervals"]) == len(whole["intervals"])


def table(rows: list[dict[str, Any]], rev: str) -> None:
    print("\nbench_cli: eval-assets evaluate, demo criteria, candidate + champion (CSV input)")
    print(f"whole file = the CLI at {rev} (pandas reads the whole file, in-memory core)\n")
    print(
        "| rows | streamed: wall s | streamed: peak MB | whole file: wall s | whole file: peak MB |"
    )
    print("|---:|---:|---:|---:|---:|")
    for row in rows:
        s, w = row["streamed"], row["whole_file"]
        whole = f"{w['seconds']:.1f} | {w['peak_mb']:,.0f}" if w else "- | -"
        print(f"| {row['rows']:,} | {s['seconds']:.1f} | {s['peak_mb']:,.0f} | {whole} |")
    if len(rows) > 1:
        first, last = rows[0], rows[-1]
        ratio = last["streamed"]["peak_mb"] / first["streamed"]["peak_mb"]
        print(
            f"\nstreamed peak({last['rows']:,}) / peak({first['rows']:,}) = {ratio:.2f} "
            f"for {last['rows'] / first['rows']:.0f}x the rows"
        )
    for row in rows:
        if row["whole_file"]:
            speed = row["whole_file"]["seconds"] / row["streamed"]["seconds"]
            print(
                f"at {row['rows']:,} rows the whole-file CLI takes {speed:.2f}x the streamed time"
            )


if __name__ == "__main__":
    main()
