"""`eval-assets`: the evaluation core on a model file and a dataset, with no Dagster deployment.

Exit codes: 0 every gate passed (or none was asked for), 1 a gate failed, 2 bad input or usage.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

# The evaluation core (pandas, scikit-learn, matplotlib) is imported when a command runs, so that
# `--help` and usage errors answer at once.
if TYPE_CHECKING:
    from eval_assets.core.criteria import Criteria
    from eval_assets.core.evaluation import Evaluation
    from eval_assets.core.models import LoadedModel

EXIT_PASS, EXIT_GATE_FAILED, EXIT_BAD_INPUT = 0, 1, 2


class _Progress:
    """Step lines on stderr, so long runs show where they are."""

    def __init__(self, total: int, quiet: bool):
        self.total, self.quiet, self.step = total, quiet, 0
        self.started = time.perf_counter()

    def __call__(self, message: str) -> None:
        self.step += 1
        if not self.quiet:
            elapsed = time.perf_counter() - self.started
            print(f"[{self.step}/{self.total} {elapsed:6.1f}s] {message}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)

    from eval_assets.core import atomic
    from eval_assets.core.contract import DatasetError
    from eval_assets.core.criteria import CriteriaError, criteria_json_schema
    from eval_assets.core.models import ModelLoadError
    from eval_assets.core.predicates import PredicateError

    if args.command == "schema":
        text = json.dumps(criteria_json_schema(), indent=2, sort_keys=True) + "\n"
        if args.out:
            atomic.write_text(args.out, text)
        else:
            sys.stdout.write(text)
        return EXIT_PASS
    try:
        return _evaluate(args)
    except (CriteriaError, DatasetError, ModelLoadError, PredicateError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except OSError as exc:  # an unreadable input or an unwritable --out; never "gate failed"
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT


def _evaluate(args: argparse.Namespace) -> int:
    """The streamed pipeline the Dagster assets run: the data read, hashed and validated in
    batches (a CSV converted once to Parquet in a scratch folder), each model scored into a
    predictions file, then slice metrics, the paired bootstrap, the gates and the plots read those
    files in batches; memory holds a few batches whatever the number of rows."""
    import tempfile

    from eval_assets.core import atomic
    from eval_assets.core.digests import evaluation_key
    from eval_assets.core.pipeline.compare import evaluate_and_draw
    from eval_assets.core.pipeline.dataset import streamed_dataset
    from eval_assets.core.pipeline.scoring import score_into
    from eval_assets.core.provenance import run_id

    progress = _Progress(total=6, quiet=args.quiet)
    criteria = _criteria(args)
    policy = _loading_policy(args, criteria)
    # Outside --out: nothing of a failed run may appear there.
    with (
        tempfile.TemporaryDirectory(prefix="eval-assets-") as scratch,
        streamed_dataset(
            args.data_path,
            criteria.dataset,
            Path(scratch),
            required_columns=criteria.referenced_columns(),
        ) as data,
    ):
        progress(f"read and validated {data.rows:,} rows of {args.data_path}")
        # Both models load before either is scored, so a refused champion stops the run at once.
        candidate = _load(args.model_path, policy, criteria_given=bool(args.criteria))
        champion = (
            _load(args.champion_path, policy, criteria_given=bool(args.criteria))
            if args.champion_path
            else None
        )

        def score(model: LoadedModel, role: str) -> Path:
            progress(f"scoring {data.rows:,} rows with the {role} ({model.format}: {model.path})")
            if not isinstance(data.parquet, Path):
                data.parquet.seek(0)
            predictions = Path(scratch) / f"{role}.parquet"
            score_into(criteria, data.parquet, model, model.source, data.sha256, predictions)
            return predictions

        candidate_file = score(candidate, "candidate")
        champion_file = score(champion, "champion") if champion is not None else None
        if champion is None:
            progress("no champion given")

        progress(f"computing metrics ({criteria.bootstrap.resamples} bootstrap resamples)")
        result, images = evaluate_and_draw(criteria, candidate_file, None, champion_file, None)
    if not criteria.gates:
        images.pop("gate_changes.png", None)
    # The champion compared against is part of the key, as in Dagster: another champion, another
    # evaluation.
    key = evaluation_key(
        candidate.digest,
        data.sha256,
        criteria.digest(),
        champion_digest=champion.digest if champion is not None else None,
    )
    identity = run_id(key)
    if champion is not None:
        # The run folder holds one comparison: a run against another champion must not replace it.
        identity += f"-vs-{champion.digest[:12]}"
    progress(f"writing {args.out / identity}")

    staged = atomic.staging_dir(args.out / identity)
    try:
        gated = _write_outputs(
            staged,
            args,
            result,
            criteria,
            policy,
            candidate,
            champion,
            data.rows,
            key,
            identity,
            data.sha256,
        )
        _write_report(staged, result, criteria, images, identity, gated)
        atomic.publish_dir(staged, args.out / identity)
    except BaseException:
        shutil.rmtree(staged, ignore_errors=True)  # nothing half-written stays in --out
        raise

    if not gated:
        progress("done: no gates were asked for (give --criteria or --champion-path)")
        print(args.out / identity)
        return EXIT_PASS
    for gate in result.verdict.gates:
        mark = "PASS" if gate.passed else "FAIL"
        print(f"{mark}  {gate.name}: {gate.summary().removeprefix(f'{gate.name}: ')}")
    passed = result.verdict.passed
    progress(f"verdict: {'passed' if passed else 'FAILED'}; outputs in {args.out / identity}")
    return EXIT_PASS if passed else EXIT_GATE_FAILED


def _write_outputs(
    staged: Path,
    args: argparse.Namespace,
    result: Evaluation,
    criteria: Criteria,
    policy: dict[str, Any],
    candidate: LoadedModel,
    champion: LoadedModel | None,
    rows: int,
    key: str,
    identity: str,
    data_digest: str,
) -> bool:
    """Write every output into the staging folder; True when a verdict was written."""
    from eval_assets.core import EVALUATOR_VERSION
    from eval_assets.core.evaluation import to_json
    from eval_assets.core.provenance import git_commit
    from eval_assets.core.render.plots import confusion_matrix_png

    contract = criteria.dataset
    metrics = {
        "evaluation_key": key,
        "evaluator_version": EVALUATOR_VERSION,
        "run_id": identity,
        "git_commit": git_commit(),
        # Under "models": the metric tables below take the keys "candidate" and "champion".
        "models": {
            "candidate": {
                "path": str(args.model_path),
                "format": candidate.format,
                "digest": candidate.digest,
            },
            "champion": (
                {
                    "path": str(args.champion_path),
                    "format": champion.format,
                    "digest": champion.digest,
                }
                if champion
                else None
            ),
        },
        "data": {"path": str(args.data_path), "digest": data_digest, "rows": rows},
        "criteria": {
            "model": criteria.model,
            "hash": criteria.digest(),
            "path": str(args.criteria) if args.criteria else None,
        },
        "loading_policy": policy,
        "threshold": contract.threshold,
        **result.metrics_record(),
    }
    (staged / "metrics.json").write_text(to_json(metrics))
    (staged / "confusion_matrix.png").write_bytes(
        confusion_matrix_png(result.candidate, result.champion, threshold=contract.threshold)
    )
    gated = bool(criteria.gates) or champion is not None
    if gated:
        verdict = {"evaluation_key": key, "run_id": identity, **result.verdict.to_dict()}
        (staged / "verdict.json").write_text(to_json(verdict))
    return gated


def _write_report(
    staged: Path,
    result: Evaluation,
    criteria: Criteria,
    images: dict[str, bytes],
    identity: str,
    gated: bool,
) -> None:
    """The same plots and HTML report as the Dagster evaluation_report asset."""
    from eval_assets.core.render.html import html_report

    # The report shows the curves first, as it always has.
    order = ["roc_pr_overall.png", "confusion_matrices.png", "gate_changes.png"]
    images = {name: images[name] for name in order if name in images}
    for name, data in images.items():
        (staged / name).write_bytes(data)
    html = html_report(
        title=f"eval-assets {identity}",
        summary={"run id": identity, "criteria hash": criteria.digest()[:16]},
        verdict=result.verdict,
        candidate=result.candidate,
        champion=result.champion,
        images=images,
        gated=gated,
    )
    (staged / "report.html").write_text(html, encoding="utf-8")


def _loading_policy(args: argparse.Namespace, criteria: Criteria) -> dict[str, Any]:
    """The loading policy of this run and what decided it (recorded in metrics.json).

    With --criteria, its `loading` section decides, as it does in the Dagster assets. Without,
    the default policy: skops files and MLflow-skops folders load, pickles do not, because
    unpickling runs the file's code; --allow-pickle is the user saying they trust their own file.
    """
    from eval_assets.core.criteria import CriteriaError

    loading = criteria.loading
    trusted = list(loading.trusted_skops_types)
    if args.criteria:
        if args.allow_pickle and not loading.allow_pickle:
            raise CriteriaError(
                f"{args.criteria}: --allow-pickle cannot override the criteria's loading policy, "
                "which forbids pickles (loading.allow_pickle: false); save the model with skops, "
                "or set loading.allow_pickle: true in the criteria"
            )
        return {
            "allow_pickle": loading.allow_pickle,
            "trusted_skops_types": trusted,
            "decided_by": "criteria",
        }
    if args.allow_pickle:
        return {
            "allow_pickle": True,
            "trusted_skops_types": trusted,
            "decided_by": "--allow-pickle",
        }
    return {"allow_pickle": False, "trusted_skops_types": trusted, "decided_by": "default"}


def _load(path: Path, policy: dict[str, Any], *, criteria_given: bool) -> LoadedModel:
    from eval_assets.core.models import ModelLoadError, PickleRefusedError, load_model

    try:
        return load_model(
            path,
            allow_pickle=policy["allow_pickle"],
            trusted_skops_types=policy["trusted_skops_types"],
        )
    except PickleRefusedError as exc:
        if criteria_given:
            raise
        raise ModelLoadError(
            f"{exc}; or, if you made this file yourself and trust it, pass --allow-pickle"
        ) from None


def _criteria(args: argparse.Namespace) -> Criteria:
    from pydantic import ValidationError

    from eval_assets.core.criteria import (
        ChangeGate,
        Criteria,
        CriteriaError,
        default_criteria,
        load_criteria,
    )

    if args.criteria:
        criteria = load_criteria(args.criteria)
        if args.label_column and args.label_column != criteria.dataset.label_column:
            # Re-validated, so that the override cannot break the contract's own rules.
            data = criteria.model_dump(mode="json")
            data["dataset"]["label_column"] = args.label_column
            try:
                criteria = Criteria.model_validate(data)
            except ValidationError as exc:
                problems = "; ".join(e["msg"].removeprefix("Value error, ") for e in exc.errors())
                raise CriteriaError(
                    f"{args.criteria}: --label-column {args.label_column!r} does not fit the "
                    f"criteria: {problems}"
                ) from None
        return criteria
    if not args.label_column:
        raise CriteriaError("without --criteria, --label-column must name the label column")
    criteria = default_criteria(args.label_column)
    if args.champion_path:
        # With a champion and no criteria, the one gate is the design's default: at most 1%
        # relative loss of ROC AUC overall.
        gate = ChangeGate(
            kind="change",
            name="overall_roc_auc_vs_champion",
            metric="roc_auc",
            slices=["overall"],
            max_relative_drop=0.01,
        )
        criteria = criteria.model_copy(update={"gates": [gate]})
    return criteria


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="eval-assets", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("evaluate", help="evaluate a model file on a CSV or Parquet file")
    run.add_argument(
        "--model-path",
        type=Path,
        required=True,
        help=".skops, .pkl/.joblib file, or an MLflow model folder",
    )
    run.add_argument("--data-path", type=Path, required=True, help="CSV or Parquet")
    run.add_argument("--criteria", type=Path, help="criteria YAML (contract, slices, gates)")
    run.add_argument("--label-column", help="label column (required without --criteria)")
    run.add_argument("--champion-path", type=Path, help="champion model to compare against")
    run.add_argument(
        "--allow-pickle",
        action="store_true",
        help="load .pkl/.joblib files (and pickled MLflow models), which run code when loaded: "
        "only for files you made yourself. Without --criteria, only skops loads unless this is "
        "given; with --criteria, its loading section decides and this cannot override it",
    )
    run.add_argument("--out", type=Path, default=Path("eval-out"), help="output folder")
    run.add_argument("--quiet", action="store_true", help="no progress lines")
    schema = commands.add_parser("schema", help="print the criteria file's JSON Schema")
    schema.add_argument("--out", type=Path, help="write to this file instead of stdout")
    return parser


if __name__ == "__main__":
    sys.exit(main())
