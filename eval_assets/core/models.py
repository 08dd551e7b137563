"""Loading a scikit-learn model under a policy, and scoring a dataset with it.

Unpickling runs code: a model file is a program. So pickle and joblib files load only when the
caller allows it; skops files load with skops' default trusted types plus an explicit list; an
MLflow model folder is read from its ``MLmodel`` file without importing mlflow, and its model file
must lie inside that folder.
"""

from __future__ import annotations

import pickle
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from eval_assets.core.digests import artifact_digest

PICKLE_SUFFIXES = (".pkl", ".pickle", ".joblib", ".sav")
SKOPS_SUFFIXES = (".skops",)
PREDICT_BATCH_ROWS = 100_000


class ModelLoadError(ValueError):
    """A model that cannot or may not be loaded; the message names the file and why."""


class PickleRefusedError(ModelLoadError):
    """A pickle or joblib file that the loading policy forbids; none of its code ran."""


class ModelOutputError(ModelLoadError):
    """A model whose predict_proba output breaks the contract (shape, rows, dtype).

    A ModelLoadError, so that every caller that stops on a model it cannot use stops on this too:
    a malformed output is as unusable as an unreadable file, and must never reach the metrics.
    """


@dataclass(frozen=True)
class LoadedModel:
    """A loaded classifier with where it came from, its format and the digest of its bytes."""

    estimator: Any
    format: str
    path: Path
    digest: str
    # What errors call the model: its file for the CLI, its version for the Dagster assets
    # (where `path` is a temporary download folder that means nothing to the reader).
    name: str = ""

    @property
    def source(self) -> str:
        return self.name or str(self.path)

    @property
    def classes(self) -> list[Any]:
        """The model's classes as plain Python values (messages show 1, not np.int64(1))."""
        classes = getattr(self.estimator, "classes_", [0, 1])
        return [c.item() if isinstance(c, np.generic) else c for c in classes]

    def positive_column(self, positive_class: int | str) -> int:
        """Index of the positive class in predict_proba's columns."""
        classes = self.classes
        if len(classes) != 2:
            raise ModelLoadError(
                f"{self.source}: the model has {len(classes)} classes {classes}; a binary "
                "classifier is required"
            )
        for index, cls in enumerate(classes):
            if cls == positive_class or str(cls) == str(positive_class):
                return index
        raise ModelLoadError(
            f"{self.source}: the model's classes {classes} do not include the positive class "
            f"{positive_class!r}"
        )

    def predict_scores(
        self,
        frame: pd.DataFrame,
        features: Sequence[str],
        positive_class: int | str = 1,
        batch_rows: int = PREDICT_BATCH_ROWS,
    ) -> np.ndarray:
        """Probability of the positive class for every row, predicted in batches.

        Each batch's output must have one row per input row, one numeric column per class;
        anything else raises ModelOutputError. The range of the scores is the caller's check
        (`contract.validate_scores`), which names the offending row and id.
        """
        column = self.positive_column(positive_class)
        out = np.empty(len(frame), dtype=np.float64)
        for start in range(0, len(frame), batch_rows):
            batch = frame.iloc[start : start + batch_rows][list(features)]
            rows = f"rows {start}..{start + len(batch) - 1}"
            try:
                proba = self.estimator.predict_proba(batch)
            except Exception as exc:  # the model's own error, reported with our context
                raise ModelLoadError(
                    f"{self.source}: predict_proba failed on {rows}: {type(exc).__name__}: {exc}"
                ) from exc
            proba = self._checked_output(proba, len(batch), rows)
            out[start : start + len(batch)] = proba[:, column]
        return out

    def _checked_output(self, proba: Any, expected_rows: int, rows: str) -> np.ndarray:
        """predict_proba's output as a float64 (rows, classes) array, or ModelOutputError."""
        classes = self.classes
        expected = f"({expected_rows}, {len(classes)}): one row per input row, one column per class"

        def refuse(problem: str) -> ModelOutputError:
            return ModelOutputError(
                f"{self.source}: predict_proba on {rows} returned {problem}; expected shape "
                f"{expected} {classes}"
            )

        try:
            array = np.asarray(proba)
        except ValueError as exc:  # ragged nested sequences
            raise refuse(f"a {type(proba).__name__} that is not an array ({exc})") from None
        # Numbers only: numpy would turn the text "0.3" into 0.3 and True into 1.0 without a word,
        # and a model that returns either is not returning probabilities.
        if array.dtype.kind not in "fiu":
            first = array.flat[0] if array.size else None
            if isinstance(first, np.generic):
                first = first.item()
            shown = f", first value {first!r}" if first is not None else ""
            raise refuse(f"values of dtype {array.dtype}{shown}, not numbers")
        if array.ndim != 2:
            raise refuse(f"an array of shape {array.shape}")
        if array.shape[0] != expected_rows:
            raise refuse(f"{array.shape[0]} rows for {expected_rows} input rows")
        if array.shape[1] != len(classes):
            raise refuse(f"{array.shape[1]} columns for the model's {len(classes)} classes")
        return array.astype(np.float64, copy=False)


def load_model(
    path: str | Path,
    *,
    allow_pickle: bool,
    trusted_skops_types: Sequence[str] = (),
    name: str | None = None,
) -> LoadedModel:
    """Load a model file or an MLflow model folder under the loading policy.

    `name` is what later errors (scoring, malformed output) call the model; the path by default.
    """
    path = Path(path)
    if not path.exists():
        raise ModelLoadError(f"{path}: model path does not exist")
    if path.is_dir():
        model_file, fmt = _mlflow_model_file(path)
    else:
        model_file, fmt = path, _format_of(path)
    estimator = _load_file(model_file, fmt, allow_pickle, trusted_skops_types)
    if not hasattr(estimator, "predict_proba"):
        raise ModelLoadError(
            f"{model_file}: loaded a {type(estimator).__name__}, which has no predict_proba; "
            "a binary classifier is required"
        )
    return LoadedModel(estimator, fmt, path, artifact_digest(path), name or "")


def _format_of(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix in SKOPS_SUFFIXES:
        return "skops"
    if suffix in PICKLE_SUFFIXES:
        return "joblib" if suffix == ".joblib" else "pickle"
    raise ModelLoadError(
        f"{path}: unknown model format {suffix!r}; expected a .skops, .pkl or .joblib file "
        "or an MLflow model folder"
    )


def _mlflow_model_file(folder: Path) -> tuple[Path, str]:
    mlmodel = folder / "MLmodel"
    if not mlmodel.is_file():
        raise ModelLoadError(f"{folder}: a model folder must contain an MLmodel file")
    try:
        spec = yaml.safe_load(mlmodel.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ModelLoadError(f"{mlmodel}: not a valid MLmodel file: {exc}") from None
    flavors = spec.get("flavors") if isinstance(spec, dict) else None
    flavor = flavors.get("sklearn") if isinstance(flavors, dict) else None
    if not isinstance(flavor, dict) or "pickled_model" not in flavor:
        raise ModelLoadError(f"{mlmodel}: no sklearn flavor with a model file (pickled_model)")
    relative = str(flavor["pickled_model"])
    target = (folder / relative).resolve()
    if not target.is_relative_to(folder.resolve()):
        raise ModelLoadError(
            f"{mlmodel}: pickled_model {relative!r} points outside the model folder; refused"
        )
    if not target.is_file():
        raise ModelLoadError(f"{mlmodel}: pickled_model {relative!r} does not exist")
    fmt = str(flavor.get("serialization_format", "pickle"))
    if fmt not in ("skops", "pickle", "cloudpickle"):
        raise ModelLoadError(f"{mlmodel}: unknown serialization_format {fmt!r}")
    return target, fmt


def _load_file(path: Path, fmt: str, allow_pickle: bool, trusted: Sequence[str]) -> Any:
    if fmt == "skops":
        import skops.io

        try:
            untrusted = skops.io.get_untrusted_types(file=path)
        except Exception as exc:  # zipfile, json and skops errors of a damaged archive
            raise ModelLoadError(
                f"{path}: not a readable skops file (corrupt or truncated): "
                f"{type(exc).__name__}: {exc}"
            ) from exc
        refused = sorted(set(untrusted) - set(trusted))
        if refused:
            raise ModelLoadError(
                f"{path}: the skops file uses types that are not trusted: {', '.join(refused)}; "
                "list them under loading.trusted_skops_types in the criteria if you trust them"
            )
        try:
            return skops.io.load(path, trusted=list(untrusted))
        except Exception as exc:  # skops raises many types for damaged archives
            raise ModelLoadError(f"{path}: the skops file cannot be loaded: {exc}") from exc
    if not allow_pickle:
        raise PickleRefusedError(
            f"{path}: {fmt} files run code when loaded and the loading policy forbids them; "
            "use skops, or set loading.allow_pickle: true in the model's criteria"
        )
    try:
        if fmt == "joblib":
            import joblib

            return joblib.load(path)
        with open(path, "rb") as handle:
            return pickle.load(handle)  # noqa: S301 - allowed explicitly by the caller's policy
    except Exception as exc:
        raise ModelLoadError(
            f"{path}: the {fmt} file cannot be loaded (corrupt, truncated or incompatible): "
            f"{type(exc).__name__}: {exc}"
        ) from exc
