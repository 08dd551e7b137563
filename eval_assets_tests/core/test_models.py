"""A model file is a program: loading one must follow the policy and must never surprise.

skops files load with their types checked; pickles load only when allowed, and a refused pickle
runs none of its code (a canary whose unpickling would create a file proves it); an MLflow model
folder cannot point outside itself; damaged files and non-classifiers are refused with an error
that names the file.
"""

from __future__ import annotations

import builtins
import pickle
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import skops.io
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LinearRegression, LogisticRegression

from eval_assets.core.digests import file_digest
from eval_assets.core.models import ModelLoadError, load_model

RNG = np.random.default_rng(0)
X = pd.DataFrame(RNG.normal(size=(300, 3)), columns=["a", "b", "c"])
Y = (X["a"] + 0.5 * RNG.normal(size=300) > 0).astype(int)
CLASSIFIER = LogisticRegression().fit(X, Y)


class Canary:
    """Unpickling this creates `marker`: proof that code in a pickle ran."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return builtins.open, (str(self.marker), "w")


@pytest.fixture()
def skops_file(tmp_path) -> Path:
    path = tmp_path / "model.skops"
    skops.io.dump(CLASSIFIER, path)
    return path


@pytest.fixture()
def pickle_file(tmp_path) -> Path:
    path = tmp_path / "model.pkl"
    path.write_bytes(pickle.dumps(CLASSIFIER))
    return path


def canary(path: Path) -> Path:
    """Write a canary pickle at `path`; return the marker it would create."""
    marker = path.parent / f"{path.name}.ran"
    path.write_bytes(pickle.dumps(Canary(marker)))
    return marker


# --- what loads -----------------------------------------------------------------------------------


def test_a_skops_file_loads_and_scores_like_the_original_model(skops_file):
    loaded = load_model(skops_file, allow_pickle=False)

    assert loaded.format == "skops"
    assert loaded.digest == file_digest(skops_file)
    np.testing.assert_array_equal(
        loaded.predict_scores(X, ["a", "b", "c"]), CLASSIFIER.predict_proba(X)[:, 1]
    )


def test_scores_are_the_same_whatever_the_batch_size(skops_file):
    loaded = load_model(skops_file, allow_pickle=False)

    whole = loaded.predict_scores(X, ["a", "b", "c"])
    batched = loaded.predict_scores(X, ["a", "b", "c"], batch_rows=7)

    np.testing.assert_array_equal(whole, batched)


def test_the_positive_class_picks_the_probability_column(skops_file):
    loaded = load_model(skops_file, allow_pickle=False)

    negative = loaded.predict_scores(X, ["a", "b", "c"], positive_class=0)

    np.testing.assert_allclose(negative, CLASSIFIER.predict_proba(X)[:, 0])
    with pytest.raises(ModelLoadError, match="do not include the positive class 'yes'"):
        loaded.predict_scores(X, ["a", "b", "c"], positive_class="yes")


def test_a_pickle_loads_only_when_the_policy_allows_it(pickle_file):
    loaded = load_model(pickle_file, allow_pickle=True)

    assert loaded.format == "pickle"
    with pytest.raises(ModelLoadError) as caught:
        load_model(pickle_file, allow_pickle=False)
    assert str(pickle_file) in str(caught.value)
    assert "loading policy forbids" in str(caught.value)


def test_a_refused_pickle_runs_none_of_its_code(tmp_path):
    path = tmp_path / "evil.pkl"
    marker = canary(path)

    with pytest.raises(ModelLoadError, match="policy forbids"):
        load_model(path, allow_pickle=False)
    assert not marker.exists()

    # The canary is real: when pickles are allowed, its code does run (and it is no classifier).
    with pytest.raises(ModelLoadError, match="no predict_proba"):
        load_model(path, allow_pickle=True)
    assert marker.exists()


def test_a_joblib_file_is_a_pickle_too(tmp_path):
    path = tmp_path / "model.joblib"
    marker = canary(path)

    with pytest.raises(ModelLoadError, match="joblib files run code"):
        load_model(path, allow_pickle=False)
    assert not marker.exists()


# --- what is refused ------------------------------------------------------------------------------


def test_a_skops_file_with_untrusted_types_is_refused_unless_they_are_listed(tmp_path):
    path = tmp_path / "hgb.skops"
    skops.io.dump(HistGradientBoostingClassifier(max_iter=3).fit(X, Y), path)
    untrusted = "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor"

    with pytest.raises(ModelLoadError) as caught:
        load_model(path, allow_pickle=True)
    assert str(path) in str(caught.value)
    assert f"not trusted: {untrusted}" in str(caught.value)

    assert load_model(path, allow_pickle=False, trusted_skops_types=[untrusted]).format == "skops"


@pytest.mark.parametrize("damage", ["truncated", "garbage", "empty"])
def test_a_damaged_skops_file_is_a_load_error_naming_the_file(skops_file, damage):
    data = skops_file.read_bytes()
    skops_file.write_bytes(
        {"truncated": data[: len(data) // 2], "garbage": b"not a zip archive", "empty": b""}[damage]
    )

    with pytest.raises(ModelLoadError) as caught:
        load_model(skops_file, allow_pickle=False)

    assert str(caught.value).startswith(f"{skops_file}: ")


@pytest.mark.parametrize("damage", ["truncated", "garbage", "empty"])
def test_a_damaged_pickle_is_a_load_error_naming_the_file(pickle_file, damage):
    data = pickle_file.read_bytes()
    pickle_file.write_bytes(
        {"truncated": data[: len(data) // 2], "garbage": b"\x00\x01junk", "empty": b""}[damage]
    )

    with pytest.raises(ModelLoadError) as caught:
        load_model(pickle_file, allow_pickle=True)

    assert str(caught.value).startswith(f"{pickle_file}: the pickle file cannot be loaded")


def test_a_model_without_predict_proba_is_refused(tmp_path):
    path = tmp_path / "regressor.skops"
    skops.io.dump(LinearRegression().fit(X, Y), path)

    with pytest.raises(ModelLoadError, match="LinearRegression, which has no predict_proba"):
        load_model(path, allow_pickle=False)


def test_a_classifier_with_more_than_two_classes_is_refused(tmp_path):
    path = tmp_path / "three.skops"
    skops.io.dump(LogisticRegression().fit(X, np.arange(len(X)) % 3), path)
    loaded = load_model(path, allow_pickle=False)

    with pytest.raises(ModelLoadError, match="3 classes"):
        loaded.predict_scores(X, ["a", "b", "c"])


def test_a_missing_path_or_an_unknown_format_is_refused(tmp_path):
    odd = tmp_path / "model.onnx"
    odd.write_bytes(b"x")

    with pytest.raises(ModelLoadError, match="nope.skops: model path does not exist"):
        load_model(tmp_path / "nope.skops", allow_pickle=True)
    with pytest.raises(ModelLoadError, match="model.onnx: unknown model format '.onnx'"):
        load_model(odd, allow_pickle=True)


def test_predict_proba_failures_are_reported_with_the_file_and_rows(skops_file):
    loaded = load_model(skops_file, allow_pickle=False)

    with pytest.raises(ModelLoadError) as caught:
        loaded.predict_scores(X.assign(c="text"), ["a", "b", "c"], batch_rows=100)

    assert str(skops_file) in str(caught.value)
    assert "rows 0..99" in str(caught.value)


# --- MLflow model folders -------------------------------------------------------------------------


def mlflow_folder(root: Path, pickled_model: str, serialization_format: str) -> Path:
    folder = root / "mlflow_model"
    folder.mkdir()
    (folder / "MLmodel").write_text(
        "flavors:\n"
        "  sklearn:\n"
        f"    pickled_model: {pickled_model}\n"
        f"    serialization_format: {serialization_format}\n"
        "    sklearn_version: 1.9.1\n"
    )
    return folder


def test_an_mlflow_model_folder_loads_its_model_file(tmp_path):
    folder = mlflow_folder(tmp_path, "model.skops", "skops")
    skops.io.dump(CLASSIFIER, folder / "model.skops")

    loaded = load_model(folder, allow_pickle=False)

    assert loaded.format == "skops"
    assert loaded.path == folder
    assert len(loaded.digest) == 64


def test_an_mlflow_folder_pointing_outside_itself_is_refused_and_runs_nothing(tmp_path):
    marker = canary(tmp_path / "outside.pkl")
    folder = mlflow_folder(tmp_path, "../outside.pkl", "cloudpickle")

    with pytest.raises(ModelLoadError) as caught:
        load_model(folder, allow_pickle=True)

    assert "points outside the model folder; refused" in str(caught.value)
    assert str(folder / "MLmodel") in str(caught.value)
    assert not marker.exists()


def test_an_mlflow_folder_pickle_obeys_the_pickle_policy(tmp_path):
    folder = mlflow_folder(tmp_path, "model.pkl", "cloudpickle")
    marker = canary(folder / "model.pkl")

    with pytest.raises(ModelLoadError, match="policy forbids"):
        load_model(folder, allow_pickle=False)
    assert not marker.exists()


def test_a_folder_without_a_usable_mlmodel_is_refused(tmp_path):
    (tmp_path / "empty").mkdir()
    no_sklearn = tmp_path / "other"
    no_sklearn.mkdir()
    (no_sklearn / "MLmodel").write_text("flavors:\n  python_function: {}\n")

    with pytest.raises(ModelLoadError, match="must contain an MLmodel file"):
        load_model(tmp_path / "empty", allow_pickle=True)
    with pytest.raises(ModelLoadError, match="no sklearn flavor"):
        load_model(no_sklearn, allow_pickle=True)
    (no_sklearn / "MLmodel").write_text("flavors: [sklearn]\n")
    with pytest.raises(ModelLoadError, match="no sklearn flavor"):
        load_model(no_sklearn, allow_pickle=True)


# --- what a model returns -------------------------------------------------------------------------

MALFORMED_OUTPUTS = {
    # kind: what the error must say about the output
    "three-columns": "returned 3 columns for the model's 2 classes",
    "one-dimensional": "returned an array of shape (300,)",
    "too-few-rows": "returned 299 rows for 300 input rows",
    "too-many-rows": "returned 301 rows for 300 input rows",
    "text": "returned values of dtype <U",
}


@pytest.mark.parametrize("kind", list(MALFORMED_OUTPUTS))
def test_a_malformed_predict_proba_output_is_refused_naming_the_model_and_the_problem(
    tmp_path, kind
):
    """Issue 22 item 3: a 3-column output for a binary model was scored (its second column taken
    as the score) and promoted; a 1-D or short output crashed with an IndexError or a numpy
    broadcast error; text was silently parsed as numbers. Each is now a ModelOutputError that
    names the file, the rows and what was wrong."""
    from eval_assets.core.models import ModelOutputError
    from eval_assets_tests.support.malformed import MALFORMED_TYPE, MalformedOutput

    path = tmp_path / f"{kind}.skops"
    skops.io.dump(MalformedOutput(CLASSIFIER, kind), path)
    loaded = load_model(path, allow_pickle=False, trusted_skops_types=[MALFORMED_TYPE])

    with pytest.raises(ModelOutputError) as caught:
        loaded.predict_scores(X, ["a", "b", "c"])

    message = str(caught.value)
    assert message.startswith(f"{path}: predict_proba on rows 0..299 returned "), message
    assert MALFORMED_OUTPUTS[kind] in message, message
    assert "expected shape (300, 2): one row per input row, one column per class [0, 1]" in message
    assert isinstance(caught.value, ModelLoadError)  # every caller's "unusable model" path


def test_output_errors_name_the_model_as_the_caller_names_it(skops_file):
    """The Dagster assets load from a temporary download folder; their errors must name the
    version instead, which the caller passes as `name`."""
    from eval_assets.core.models import ModelOutputError, PickleRefusedError

    class Short:
        classes_ = np.array([0, 1])

        def predict_proba(self, frame):
            return np.full((len(frame) - 1, 2), 0.5)

    loaded = load_model(skops_file, allow_pickle=False, name="fraud_detector.v7")
    with pytest.raises(ModelOutputError, match=r"^fraud_detector\.v7: predict_proba on rows 0\.\."):
        type(loaded)(Short(), "skops", skops_file, loaded.digest, loaded.name).predict_scores(
            X, ["a", "b", "c"]
        )
    assert loaded.source == "fraud_detector.v7"
    assert load_model(skops_file, allow_pickle=False).source == str(skops_file)
    assert issubclass(PickleRefusedError, ModelLoadError)


@pytest.mark.parametrize("dtype", [np.int8, np.float32])
def test_numeric_outputs_of_any_width_are_accepted_as_floats(skops_file, dtype):
    """Integer (hard 0/1) or float32 probabilities are numbers: the output check looks at their
    shape and kind only, and leaves their range to contract.validate_scores."""
    loaded = load_model(skops_file, allow_pickle=False)

    class Narrow:
        classes_ = np.array([0, 1])

        def predict_proba(self, frame):
            return np.column_stack([1 - (frame["a"] > 0), frame["a"] > 0]).astype(dtype)

    narrow = type(loaded)(Narrow(), "skops", skops_file, loaded.digest)
    scores = narrow.predict_scores(X, ["a", "b", "c"])
    assert scores.dtype == np.float64
    np.testing.assert_array_equal(scores, (X["a"] > 0).to_numpy(dtype=float))
